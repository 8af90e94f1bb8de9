"""Bad input to the compat APIs: every error is typed and names the argument at fault."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kettle.compat import LLM, AutoModelForCausalLM, ChatConfig, ChatModule, ConvConfig, GenerationConfig
from kettle.errors import InvalidParameter, ModelNotFound
from tests.compat.conftest import CONTEXT, MODEL

ARG = "model_path_or_repo_id"


def invalid(name: str) -> Any:
    """``pytest.raises`` for an ``InvalidParameter`` naming ``name``."""
    return pytest.raises(InvalidParameter, match=f"invalid value for '{name}'")


@pytest.fixture(scope="module")
def llm() -> Iterator[LLM]:
    model = AutoModelForCausalLM.from_pretrained(MODEL, context_length=CONTEXT, temperature=0, max_new_tokens=4)
    yield model
    model.model.close()


@pytest.fixture
def two_ggufs(tmp_path: Path, smollm2_path: Path) -> Path:
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).symlink_to(smollm2_path)
    return tmp_path


# -- from_pretrained: caught before anything is loaded ------------------------------------

def test_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with invalid(ARG):
        AutoModelForCausalLM.from_pretrained(str(path))
    with invalid("model"):
        ChatModule(model=str(path))


def test_a_directory_without_a_model(tmp_path: Path) -> None:
    with invalid(ARG):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_a_directory_with_several_models(two_ggufs: Path) -> None:
    with invalid("model_file") as info:
        AutoModelForCausalLM.from_pretrained(two_ggufs)
    assert "a.gguf, b.gguf" in str(info.value)
    with invalid("model_file"):
        AutoModelForCausalLM.from_pretrained(two_ggufs, model_file="c.gguf")


def test_a_name_that_is_nowhere() -> None:
    with pytest.raises(ModelNotFound, match=ARG):
        AutoModelForCausalLM.from_pretrained("TheBloke/No-Such-Model-GGUF", model_file="x.gguf")
    with pytest.raises(ModelNotFound, match="model must be"):
        ChatModule(model="no-such-model-anywhere")


def test_unknown_model_type_lists_the_known_ones() -> None:
    with invalid("model_type") as info:
        AutoModelForCausalLM.from_pretrained(MODEL, model_type="gpt5")
    assert "llama" in str(info.value) and "gemma3" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_tokens": 10}, "max_tokens"),  # not a ctransformers field
        ({"temprature": 0.5}, "temprature"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"batch_size": 0}, "batch_size"),
        ({"stop": [""]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"gpu_layers": -2}, "gpu_layers"),
        ({"hf": True}, "hf"),
        ({"lib": 3}, "lib"),
        ({"config": {"seeed": 1}}, "seeed"),
        ({"config": 5}, "config"),
    ],
)
def test_bad_config(kwargs: dict[str, object], name: str) -> None:
    with invalid(name):
        AutoModelForCausalLM.from_pretrained(MODEL, **kwargs)


def test_unknown_key_suggests_the_field() -> None:
    with invalid("temprature") as info:
        AutoModelForCausalLM.from_pretrained(MODEL, temprature=0.5)
    assert "did you mean 'temperature'" in str(info.value)


# -- from_pretrained: caught after reading the file ----------------------------------------

def test_model_type_must_fit_the_file() -> None:
    with invalid("model_type") as info:
        AutoModelForCausalLM.from_pretrained(MODEL, model_type="gemma3")
    assert "'llama' model" in str(info.value) and "model_type='llama'" in str(info.value)


def test_model_type_names_for_gemma3(gemma3_path: Path) -> None:
    for model_type in ("gemma3", "Gemma"):
        llm = AutoModelForCausalLM.from_pretrained(gemma3_path, model_type=model_type, context_length=64)
        assert llm.model_type == "gemma3"
        llm.model.close()
    with invalid("model_type") as info:
        AutoModelForCausalLM.from_pretrained(gemma3_path, model_type="llama")
    assert "use model_type='gemma3'" in str(info.value)


def test_model_file_picks_one_of_several(two_ggufs: Path) -> None:
    llm = AutoModelForCausalLM.from_pretrained(two_ggufs, model_file="b.gguf", model_type="gguf", context_length=64)
    try:
        assert Path(llm.model_path).name == "b.gguf" and llm.model_type == "llama"
    finally:
        llm.model.close()


# -- the LLM's methods ----------------------------------------------------------------------

@pytest.mark.parametrize("tokens", [[49152], [-1], [1, 10**9], ["a"], [1.5], [True], "text", None])
def test_tokens_outside_the_vocabulary(llm: LLM, tokens: object) -> None:
    with invalid("tokens"):
        list(llm.generate(tokens))  # type: ignore[arg-type]
    with invalid("tokens"):
        llm.eval(tokens)  # type: ignore[arg-type]
    with invalid("tokens"):
        llm.detokenize(tokens)  # type: ignore[arg-type]


def test_generate_checks_before_the_first_token(llm: LLM) -> None:
    with invalid("tokens"):
        llm.generate([])
    with invalid("max_new_tokens"):
        llm.generate([1], max_new_tokens=-3)
    with invalid("top_p"):
        llm.generate([1], top_p=-0.1)


def test_detokenize_an_invalid_id(llm: LLM) -> None:
    with invalid("tokens") as info:
        llm.detokenize(49152)
    assert "0..49151" in str(info.value)
    with invalid("token"):
        llm.is_eos_token(-1)


def test_bad_calls(llm: LLM) -> None:
    with invalid("max_new_tokens"):
        llm("Hi", max_new_tokens=-1)
    with invalid("prompt"):
        llm("")
    with invalid("prompt"):
        llm(42)  # type: ignore[arg-type]
    with invalid("text"):
        llm.tokenize(b"bytes")  # type: ignore[arg-type]
    with invalid("input"):
        llm.embed([])


def test_a_mutated_config_is_checked_at_the_next_call(llm: LLM) -> None:
    llm.config.top_p = 3.0
    try:
        with invalid("top_p"):
            llm("Hi")
    finally:
        llm.config.top_p = 0.95


# -- ChatModule ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"device": 0}, "device"),
        ({"chat_config": {"temperature": 0}}, "chat_config"),
        ({"chat_config": ChatConfig(temperature="hot")}, "temperature"),  # type: ignore[arg-type]
        ({"chat_config": ChatConfig(top_p=2.0)}, "top_p"),
        ({"chat_config": ChatConfig(max_gen_len=0)}, "max_gen_len"),
        ({"chat_config": ChatConfig(context_window_size=0)}, "context_window_size"),
        ({"chat_config": ChatConfig(conv_config={"system": "x"})}, "conv_config"),  # type: ignore[arg-type]
        ({"model_lib_path": 7}, "model_lib_path"),
    ],
)
def test_bad_chat_module_arguments(kwargs: dict[str, object], name: str) -> None:
    with invalid(name):
        ChatModule(model=MODEL, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cm() -> Iterator[ChatModule]:
    chat = ChatModule(model=MODEL, chat_config=ChatConfig(temperature=0, max_gen_len=4, context_window_size=CONTEXT))
    yield chat
    chat.kettle_model.close()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda cm: cm.generate("Hi", progress_callback=print), "progress_callback"),
        (lambda cm: cm.generate([]), "prompt"),
        (lambda cm: cm.generate(42), "prompt"),
        (lambda cm: cm.generate([{"role": "robot", "content": "beep"}]), "prompt"),
        (lambda cm: cm.generate("Hi", generation_config=GenerationConfig(n=0)), "n"),
        (lambda cm: cm.generate("Hi", generation_config=GenerationConfig(temperature=float("nan"))), "temperature"),
        (lambda cm: cm.generate("Hi", generation_config=GenerationConfig(stop=[""])), "stop"),
        (lambda cm: cm.generate("Hi", generation_config={"n": 2}), "generation_config"),
        (lambda cm: cm.reset_chat(ChatConfig(conv_config=ConvConfig(messages=[["robot", "beep"]]))), "prompt"),
        (lambda cm: cm.embed_text(3), "input"),
    ],
)
def test_bad_chat_calls_leave_the_chat_as_it_was(cm: ChatModule, call, name: str) -> None:  # type: ignore[no-untyped-def]
    cm.reset_chat(ChatConfig(temperature=0, max_gen_len=4, context_window_size=CONTEXT))
    cm.generate("Hi")
    before = cm.history
    with invalid(name):
        call(cm)
    assert cm.history == before
