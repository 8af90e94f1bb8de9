"""ctransformers' ``LLM`` on the bundled smollm2: generation, prompt caching, tokens, config."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from kettle.compat import LLM, AutoModelForCausalLM, Config
from kettle.compat.config import to_options
from kettle.errors import KettleError
from tests.compat.conftest import CONTEXT, MODEL

PROMPT = "The capital of France is"
MAX_NEW = 12


@pytest.fixture(scope="module")
def llm() -> Iterator[LLM]:
    model = AutoModelForCausalLM.from_pretrained(MODEL, model_type="llama", context_length=CONTEXT,
                                                 temperature=0, max_new_tokens=MAX_NEW)
    yield model
    model.model.close()


@pytest.fixture
def forwarded(llm: LLM, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of tokens in each forward pass the runner makes during the test."""
    calls: list[int] = []
    runner = llm.model.runner
    real = runner.forward

    def counting(tokens, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(tokens))
        return real(tokens, *args, **kwargs)

    monkeypatch.setattr(runner, "forward", counting)
    return calls


def test_properties(llm: LLM) -> None:
    # smollm2's vocabulary (tests/oracle): BOS 1 <|im_start|>, EOS 2 <|im_end|>, 49152 tokens.
    assert (llm.bos_token_id, llm.eos_token_id, llm.vocab_size) == (1, 2, 49152)
    assert llm.context_length == CONTEXT
    assert llm.model_type == "llama"
    assert llm.is_eos_token(2) and llm.is_eos_token(0)  # <|endoftext|> also ends generation
    assert not llm.is_eos_token(100)
    assert llm.config.temperature == 0 and llm.config.max_new_tokens == MAX_NEW


def test_streamed_text_equals_non_streamed_and_tokens(llm: LLM) -> None:
    full = llm(PROMPT)
    streamed = llm(PROMPT, stream=True)
    assert not isinstance(streamed, str)
    pieces = list(streamed)
    assert len(pieces) > 1 and "".join(pieces) == full
    tokens = list(llm.generate(llm.tokenize(PROMPT)))
    assert len(tokens) == MAX_NEW
    assert llm.detokenize(tokens) == full
    assert "".join(llm.detokenize(t) for t in tokens) == full


def test_stream_from_config(llm: LLM) -> None:
    llm.config.stream = True
    try:
        assert "".join(llm(PROMPT, max_new_tokens=3)) == llm(PROMPT, max_new_tokens=3, stream=False)
    finally:
        llm.config.stream = False


def test_stop_string_cuts_the_text(llm: LLM) -> None:
    full = llm(PROMPT)
    stop = full.split()[2]
    assert llm(PROMPT, stop=[stop]) == full[: full.index(stop)]
    assert "".join(llm(PROMPT, stop=stop, stream=True)) == full[: full.index(stop)]


def test_reset_true_evaluates_only_the_new_suffix(llm: LLM, forwarded: list[int]) -> None:
    llm.reset()
    ids = llm.tokenize(PROMPT)
    first = list(llm.generate(ids, max_new_tokens=4))
    assert llm.context == ids + first  # every yielded token was evaluated
    extra = llm.tokenize(" Its river is", add_bos_token=False)
    forwarded.clear()
    second = list(llm.generate(ids + first + extra, max_new_tokens=3))
    assert forwarded[0] == len(extra), "the cached prefix is not evaluated again"
    llm.reset()
    assert list(llm.generate(ids + first + extra, max_new_tokens=3)) == second, "cache == no cache"


def test_reset_true_with_a_diverging_prompt_keeps_the_common_prefix(llm: LLM, forwarded: list[int]) -> None:
    llm.reset()
    ids = llm.tokenize(PROMPT)
    list(llm.generate(ids, max_new_tokens=2))
    other = ids[:3] + llm.tokenize(" of Spain is", add_bos_token=False)
    forwarded.clear()
    reused = list(llm.generate(other, max_new_tokens=3))
    assert forwarded[0] == len(other) - 3
    llm.reset()
    assert list(llm.generate(other, max_new_tokens=3)) == reused


def test_reset_false_continues_the_context(llm: LLM, forwarded: list[int]) -> None:
    llm.reset()
    ids = llm.tokenize(PROMPT)
    first = list(llm.generate(ids, max_new_tokens=3))
    extra = llm.tokenize(" Also,", add_bos_token=False)
    forwarded.clear()
    more = list(llm.generate(extra, reset=False, max_new_tokens=3))
    assert forwarded[0] == len(extra)
    assert llm.context == ids + first + extra + more
    llm.reset()
    assert list(llm.generate(ids + first + extra, max_new_tokens=3)) == more


def test_eval_and_sample_match_the_model(llm: LLM) -> None:
    llm.reset()
    ids = llm.tokenize(PROMPT)
    llm.eval(ids, batch_size=3)  # three forward passes of at most 3 tokens
    assert llm.context == ids
    chunked = np.array(llm.logits)  # (n_vocab,)
    greedy = llm.sample(temperature=0)
    seeded = [llm.sample(temperature=1.0, top_k=0, top_p=1.0, seed=7) for _ in range(3)]
    llm.reset()
    reference = llm.model.logits(ids)[-1]  # evaluated from scratch in one pass
    assert greedy == int(np.argmax(reference))
    np.testing.assert_allclose(chunked, reference, rtol=1e-3, atol=1e-3)
    llm.eval(ids)
    assert [llm.sample(temperature=1.0, top_k=0, top_p=1.0, seed=7) for _ in range(3)] == seeded


def test_sample_needs_an_eval(llm: LLM) -> None:
    llm.reset()
    with pytest.raises(KettleError, match="eval"):
        llm.sample()


def test_detokenize_one_id_a_list_and_bytes(llm: LLM) -> None:
    ids = llm.tokenize("Hello world")
    assert llm.detokenize(ids) == "Hello world"
    assert llm.detokenize(ids[0]) == llm.detokenize([ids[0]]) == "Hello"
    assert llm.detokenize(ids, decode=False) == b"Hello world"
    assert llm.detokenize([llm.eos_token_id]) == ""  # control tokens render as nothing


def test_tokenize_bos_flag(llm: LLM) -> None:
    plain = llm.tokenize("Hi")  # smollm2 adds no BOS of its own
    assert llm.tokenize("Hi", add_bos_token=True) == [llm.bos_token_id] + plain
    assert llm.tokenize("<|im_start|>user")[0] == llm.bos_token_id  # special text is parsed


def test_max_new_tokens_zero_generates_nothing(llm: LLM) -> None:
    assert llm(PROMPT, max_new_tokens=0) == ""
    assert list(llm.generate(llm.tokenize(PROMPT), max_new_tokens=0)) == []


def test_embed_text_and_tokens_agree(llm: LLM) -> None:
    text = "Kettles boil water."
    from_text = np.array(llm.embed(text))
    from_ids = np.array(llm.embed(llm.tokenize(text)))
    assert from_text.shape == (llm.model.transformer.config.n_embd,)
    assert abs(np.linalg.norm(from_text) - 1) < 1e-5
    np.testing.assert_allclose(from_text, from_ids, atol=1e-5)
    assert llm.embeddings == from_ids.tolist()
    assert llm.context == []


def test_config_defaults_are_ctransformers() -> None:
    c = Config()
    assert (c.top_k, c.top_p, c.temperature, c.repetition_penalty, c.last_n_tokens, c.seed) == (40, 0.95, 0.8, 1.1, 64, -1)
    assert (c.batch_size, c.threads, c.max_new_tokens, c.stop, c.stream, c.reset) == (8, -1, 256, None, False, True)
    assert (c.context_length, c.gpu_layers, c.mmap, c.mlock) == (-1, 0, True, False)


def test_config_maps_to_kettle_options() -> None:
    c = Config(top_k=-1, repetition_penalty=1.3, last_n_tokens=-5, seed=-9, max_new_tokens=7, stop=["x"],
               batch_size=16, threads=-1, context_length=1024, gpu_layers=3)
    assert to_options(c, sampling=True) == {
        "top_k": 0, "top_p": 0.95, "temperature": 0.8, "repeat_penalty": 1.3, "repeat_last_n": -1,
        "seed": -1, "num_predict": 7, "stop": ["x"],
    }
    assert to_options(c, sampling=False) == {"num_batch": 16, "num_thread": 0, "num_ctx": 1024, "num_gpu": 3}
    assert "num_ctx" not in to_options(Config(), sampling=False)  # -1: kettle's default window
