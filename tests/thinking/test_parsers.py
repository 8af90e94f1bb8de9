"""kettle.thinking: the think value, the template check, and the streaming splitters cut at
every point of realistic outputs of qwen3, deepseek-r1 and gpt-oss."""

import pytest

from kettle.errors import CapabilityError, InvalidParameter
from kettle.thinking import (
    HarmonyParser,
    Style,
    TagParser,
    Think,
    new_splitter,
    parse_think,
    resolve_think,
    thinking_style,
)

QWEN3 = "<think>\nThe user wants the capital of France. That is Paris.\n</think>\n\nThe capital of France is Paris."
DEEPSEEK_R1 = "Okay, 2 + 2 is 4. Simple.\n</think>\n\n**4**"  # its prompt already opened <think>
GPT_OSS = ("<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.")

CASES = [  # (parser factory, output, thinking, content)
    (TagParser, QWEN3, "The user wants the capital of France. That is Paris.\n", "The capital of France is Paris."),
    (TagParser, "  \n" + QWEN3, "The user wants the capital of France. That is Paris.\n", "The capital of France is Paris."),
    (TagParser, "Paris is the capital.", "", "Paris is the capital."),
    (TagParser, "Sure. <think>not thinking</think> ok", "", "Sure. <think>not thinking</think> ok"),
    (TagParser, "<think>\n\n</think>\n\nHello!", "", "Hello!"),
    (TagParser, "<think>still going", "still going", ""),
    (TagParser, "<thi", "", "<thi"),
    (lambda: TagParser(inside=True), DEEPSEEK_R1, "Okay, 2 + 2 is 4. Simple.\n", "**4**"),
    (HarmonyParser, GPT_OSS, "User asks 2+2. Answer 4.", "2 + 2 = 4."),
    (HarmonyParser, "<|channel|>final<|message|>Hi there<|return|>", "", "Hi there"),
    (HarmonyParser, ("<|channel|>analysis<|message|>Hmm<|end|><|start|>assistant<|channel|>commentary<|message|>a"
                     "<|end|><|start|>assistant<|channel|>final <|constrain|>json<|message|>{}"), "Hmm", "a{}"),
]


def run(parser, pieces):
    thinking, content = [], []
    for piece in pieces:
        t, c = parser.feed(piece)
        thinking.append(t)
        content.append(c)
    t, c = parser.finish()
    return "".join(thinking) + t, "".join(content) + c


@pytest.mark.parametrize(("make", "output", "thinking", "content"), CASES)
def test_every_split_point(make, output, thinking, content):
    assert run(make(), [output]) == (thinking, content)
    assert run(make(), list(output)) == (thinking, content)  # one character at a time
    for i in range(len(output) + 1):
        for j in range(i, len(output) + 1, 7):
            assert run(make(), [output[:i], output[i:j], output[j:]]) == (thinking, content), (i, j)


def test_thinking_streams_before_the_close_tag():
    p = TagParser()
    assert p.feed("<think>Let me ") == ("Let me ", "")
    assert p.feed("see</th") == ("see", "")  # the possible start of </think> is held
    assert p.feed("ink>\n\nDone") == ("", "Done")


def test_think_false_drops_thinking():
    split = new_splitter(Style.TAGS, "<|im_start|>assistant\n", Think(False))
    assert run(split, [QWEN3]) == ("", "The capital of France is Paris.")
    assert new_splitter(None, "", Think(True)) is None


def test_prompt_ending_in_open_tag_starts_inside():
    split = new_splitter(Style.TAGS, "<｜Assistant｜><think>\n", Think(True, "medium"))
    assert run(split, [DEEPSEEK_R1]) == ("Okay, 2 + 2 is 4. Simple.\n", "**4**")


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (True, Think(True, "medium")), (False, Think(False, "")), ("low", Think(True, "low")),
    ("high", Think(True, "high")),
])
def test_parse_think(value, expected):
    assert parse_think(value) == expected


@pytest.mark.parametrize("value", ["yes", "", 1, 0, ["high"], {"level": "low"}, "HIGH"])
def test_parse_think_refuses(value):
    with pytest.raises(InvalidParameter, match="'think'"):
        parse_think(value)


def test_styles_and_capability():
    assert thinking_style("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}") is Style.TAGS
    assert thinking_style("<|start|>assistant<|channel|>analysis<|message|>") is Style.HARMONY
    assert thinking_style("<|im_start|>{{ .Content }}") is None
    assert resolve_think(None, Style.TAGS, "m") == Think(True, "medium")
    assert resolve_think(Think(False), Style.TAGS, "m") == Think(False)
    assert resolve_think(None, None, "m") is None
    assert resolve_think(Think(False), None, "m") == Think(False)
    with pytest.raises(CapabilityError, match='"smollm2" does not support thinking'):
        resolve_think(Think(True, "high"), None, "smollm2")
