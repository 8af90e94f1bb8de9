"""mlc's ``ChatModule`` on the bundled smollm2: memory, callbacks, statistics, overrides."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from kettle.compat import ChatConfig, ChatModule, ConvConfig, GenerationConfig
from kettle.compat.callback import DeltaCallback, StreamToStdout
from tests.compat.conftest import CONTEXT, MODEL

STATS = re.compile(r"^prefill: (\d+\.\d) tok/s, decode: (\d+\.\d) tok/s$")
GREEDY = ChatConfig(temperature=0, max_gen_len=16, context_window_size=CONTEXT)


@pytest.fixture(scope="module")
def cm() -> Iterator[ChatModule]:
    chat = ChatModule(model=MODEL, chat_config=GREEDY)
    yield chat
    chat.kettle_model.close()


@pytest.fixture(autouse=True)
def fresh_chat(cm: ChatModule) -> None:
    cm.reset_chat(GREEDY)


def totals(cm: ChatModule) -> tuple[int, int]:
    """(prefill tokens, decode tokens) from mlc's verbose statistics text."""
    counts = [int(n) for n in re.findall(r"total tokens: (\d+) tok", cm.stats(verbose=True))]
    assert len(counts) == 2
    return counts[0], counts[1]


def cached_text(cm: ChatModule) -> str:
    model = cm.kettle_model
    return model.detokenize(model.runner.cache.tokens[0])


class Recorder(DeltaCallback):
    def __init__(self, callback_interval: int) -> None:
        super().__init__()
        self.callback_interval = callback_interval
        self.messages: list[str] = []
        self.deltas: list[str] = []
        self.stops = 0

    def __call__(self, message: str = "", stopped: bool = False) -> None:
        if not stopped:
            self.messages.append(message)
        super().__call__(message, stopped)

    def delta_callback(self, delta_message: str) -> None:
        self.deltas.append(delta_message)

    def stopped_callback(self) -> None:
        self.stops += 1


RED_FRUITS = ("raspberry", "strawberry", "cherry", "apple", "tomato", "watermelon", "pomegranate", "cranberry")


def test_second_question_refers_to_the_first_answer(cm: ChatModule) -> None:
    first = cm.generate("Name one fruit that is red.")
    named = [f for f in RED_FRUITS if f in first.lower()]
    assert named, first
    prefill_before, _ = totals(cm)
    second = cm.generate("What color is it?")
    assert any(f in second.lower() for f in named), ("the answer builds on the first answer", first, second)
    assert first in cached_text(cm), "the KV cache holds the whole conversation"
    model = cm.kettle_model
    prompt = model.prompts.render_chat(cm.history[:-1])  # the second turn's prompt
    prefilled = totals(cm)[0] - prefill_before
    assert 0 < prefilled < len(model.prompts.tokenize_prompt(prompt)) // 2, "earlier turns are not evaluated again"
    alone = cm.generate("What color is it?", stateless=True)
    assert "Raspberry" not in alone, "without the history the model cannot know"


def test_reset_chat_forgets(cm: ChatModule) -> None:
    cm.generate("Name one fruit that is red.")
    cm.reset_chat()
    assert cm.history == [] and cm.stats() == "prefill: 0.0 tok/s, decode: 0.0 tok/s"
    assert cm.generate("What color is it?") == cm.generate("What color is it?", stateless=True)


def test_callback_schedule_is_mlcs(cm: ChatModule) -> None:
    recorder = Recorder(callback_interval=3)
    answer = cm.generate("Write a sentence about the sea.", progress_callback=recorder)
    _, decoded = totals(cm)
    assert decoded >= 4
    expected = [i for i in range(decoded) if i % 3 == 0 or i == decoded - 1]
    assert len(recorder.messages) == len(expected)
    assert recorder.messages[-1] == answer and "".join(recorder.deltas) == answer
    assert all(answer.startswith(m) for m in recorder.messages)
    assert recorder.stops == 1


def test_stream_to_stdout_prints_the_answer_and_a_newline(cm: ChatModule, capsys: pytest.CaptureFixture[str]) -> None:
    answer = cm.generate("Say hello.", progress_callback=StreamToStdout(callback_interval=2))
    assert capsys.readouterr().out == answer + "\n"


def test_stats_format(cm: ChatModule) -> None:
    assert cm.stats() == "prefill: 0.0 tok/s, decode: 0.0 tok/s"
    cm.generate("Say hello.")
    match = STATS.match(cm.stats())
    assert match and float(match[1]) > 0 and float(match[2]) > 0
    verbose = cm.stats(verbose=True)
    assert verbose.startswith("----------- prefill -----------\nthroughput: ")
    assert "------------ decode ------------\n" in verbose and verbose.endswith(" s\n")


def test_chat_config_overrides(cm: ChatModule) -> None:
    config = ChatConfig(temperature=0, max_gen_len=5, context_window_size=CONTEXT,
                        conv_config=ConvConfig(system_message="You are a pirate."))
    cm.reset_chat(config)
    cm.generate("Tell me about ships.")
    _, decoded = totals(cm)
    assert decoded + 1 <= 5, "max_gen_len bounds the answer"
    assert cached_text(cm).startswith("<|im_start|>system\nYou are a pirate.<|im_end|>")
    cm.reset_chat(ChatConfig(conv_config=ConvConfig(system="Answer in French.")))
    assert cm.system_message == "Answer in French."


def test_conv_config_messages_start_the_history(cm: ChatModule) -> None:
    conv = ConvConfig(roles=["USER", "ASSISTANT"], messages=[["USER", "Hi, I am Bob."], ["ASSISTANT", "Hello Bob!"]])
    cm.reset_chat(ChatConfig(temperature=0, max_gen_len=8, context_window_size=CONTEXT, conv_config=conv))
    assert cm.history == [{"role": "user", "content": "Hi, I am Bob."}, {"role": "assistant", "content": "Hello Bob!"}]
    cm.generate("What is my name?")
    assert "Hello Bob!" in cached_text(cm)


def test_generation_config(cm: ChatModule) -> None:
    answers = cm.generate("Say hello.", generation_config=GenerationConfig(n=2, max_gen_len=6))
    assert isinstance(answers, list) and len(answers) == 2 and answers[0] == answers[1]
    full = cm.generate("Say hello.", stateless=True)
    word = full.split()[1]
    cut = cm.generate("Say hello.", generation_config=GenerationConfig(stop=[word]), stateless=True)
    assert cut == full[: full.index(word)]


def test_a_conversation_as_the_prompt(cm: ChatModule) -> None:
    messages = [{"role": "user", "content": "Name one fruit that is red."}]
    first = cm.generate(messages)
    assert cm.history == messages + [{"role": "assistant", "content": first}]


def test_embed_text(cm: ChatModule) -> None:
    vector = cm.embed_text("Kettles boil water.")
    assert vector.shape == (cm.kettle_model.transformer.config.n_embd,)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_old_turns_leave_a_full_window() -> None:
    small = ChatModule(model=MODEL, chat_config=ChatConfig(temperature=0, max_gen_len=12, mean_gen_len=16,
                                                           context_window_size=128))
    try:
        for question in ("Name a red fruit.", "Name a blue thing.", "Name a green plant.", "Name a yellow bird.",
                         "Name a black animal."):
            small.generate(question)
        assert len(small.history) == 10, "the whole conversation is remembered"
        held = small.kettle_model.runner.cache.tokens[0]
        text = small.kettle_model.detokenize(held)
        assert "Name a black animal." in text and "Name a red fruit." not in text
        assert len(held) <= 128
    finally:
        small.kettle_model.close()


def test_answer_length_defaults_to_mlc_max_gen_len(cm: ChatModule, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no max_gen_len anywhere an answer stops at mlc's default (512, here made 6 to be
    quick) instead of ollama's unlimited num_predict; a max_gen_len given still wins."""
    from kettle.compat import mlc

    monkeypatch.setattr(mlc, "DEFAULT_MAX_GEN_LEN", 6)
    cm.reset_chat(ChatConfig(temperature=0, context_window_size=CONTEXT))
    cm.generate("Write a long story about a dragon.")
    _, decoded = totals(cm)
    assert decoded + 1 == 6, "the default bounds the answer"
    cm.reset_chat(ChatConfig(temperature=0, context_window_size=CONTEXT))
    cm.generate("Write a long story about a dragon.", generation_config=GenerationConfig(max_gen_len=9))
    _, decoded = totals(cm)
    assert decoded + 1 == 9
