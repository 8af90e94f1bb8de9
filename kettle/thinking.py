"""Thinking models: the ``think`` request value, which templates can think, and the streaming
parsers that split a model's output into ``thinking`` and ``content``.

    think = parse_think("high")                      # Think(enabled=True, level="high")
    style = thinking_style(template_source)          # Style.TAGS, Style.HARMONY or None
    split = new_splitter(style, prompt_tail, think)  # None when there is nothing to split
    thinking, content = split.feed("<think>Let me")  # ("Let me", "")  (any chunking)
    thinking, content = split.finish()               # what was held back at the end

``think`` is ollama's value: ``true``/``false`` or a level ``"low"``/``"medium"``/``"high"``
(``true`` is level ``"medium"``, as ollama's ``ThinkValue.String()``). A model can think when
its template writes the markers of a family:

* ``Style.TAGS``: ``<think>...</think>`` (qwen3, deepseek-r1, smollm3 and others). The
  output may start with whitespace; when it starts with ``<think>`` the text up to ``</think>``
  is thinking, with the whitespace after either tag trimmed, and everything after it is
  content. When the output starts with anything else there is no thinking (ollama's rule:
  text before an opening tag makes the whole answer content). A prompt that already ends
  with ``<think>`` (deepseek-r1's template opens it) starts the parser inside the thinking.
* ``Style.HARMONY``: gpt-oss's channels. The prompt ends with ``<|start|>assistant``; each
  message is ``<|channel|>NAME<|message|>BODY<|end|>`` and the next starts with
  ``<|start|>assistant``. The ``analysis`` channel is thinking; ``final`` and ``commentary``
  are content. (A message addressed to a tool, ``to=functions.x``, is content here: kettle
  parses tool calls from the content, see ``kettle.server.tools``.)

Markers split across chunks are held back until they are decided, so the concatenated
outputs do not depend on where the stream was cut. When ``think`` is false on a thinking
model, the template is told not to think, and whatever thinking the model still writes is
dropped (``ThinkSplitter(keep_thinking=False)``), never shown as content.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from kettle.errors import CapabilityError, InvalidParameter

LEVELS = ("low", "medium", "high", "max")
DEFAULT_LEVEL = "medium"  # the level of ``think: true`` (ollama's)
OPEN_TAG, CLOSE_TAG = "<think>", "</think>"
HARMONY_START, HARMONY_MESSAGE, HARMONY_CHANNEL = "<|start|>", "<|message|>", "<|channel|>"
HARMONY_ENDS = ("<|end|>", "<|return|>", "<|call|>")  # a message's end (the last two end the answer)
HARMONY_THINKING_CHANNEL = "analysis"


@dataclass(frozen=True)
class Think:
    """A request's ``think``: whether to think, and at which level (``""`` when not)."""

    enabled: bool
    level: str = ""

    def to_json(self) -> bool | str:
        """The value as a request carries it (``true`` for the default level)."""
        return self.level if self.enabled and self.level != DEFAULT_LEVEL else self.enabled


def parse_think(value: Any, field: str = "think") -> Think | None:
    """``think`` as a request gives it: None (not set), a bool or a level name."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Think(value, DEFAULT_LEVEL if value else "")
    if isinstance(value, str) and value in LEVELS:
        return Think(True, value)
    raise InvalidParameter(field, value, 'expected true, false, "low", "medium", "high" or "max"')


class Style(enum.Enum):
    """How a model family marks its thinking (see the module docstring)."""

    TAGS = "tags"
    HARMONY = "harmony"


def thinking_style(template_source: str) -> Style | None:
    """The thinking markers a chat template writes, or None when it cannot think."""
    if HARMONY_CHANNEL in template_source and HARMONY_THINKING_CHANNEL in template_source:
        return Style.HARMONY
    if OPEN_TAG in template_source and CLOSE_TAG in template_source:
        return Style.TAGS
    return None


def resolve_think(think: Think | None, style: Style | None, model: str) -> Think | None:
    """The ``think`` a request runs with: a thinking model thinks unless told not to (ollama's
    default); asking a model that cannot think to think is a ``CapabilityError``."""
    if style is None:
        if think is not None and think.enabled:
            raise CapabilityError(f'"{model}" does not support thinking')
        return think
    return Think(True, DEFAULT_LEVEL) if think is None else think


class Parser(Protocol):
    """A streaming splitter of model output: ``feed`` and ``finish`` give (thinking, content)."""

    def feed(self, text: str) -> tuple[str, str]: ...

    def finish(self) -> tuple[str, str]: ...


def _overlap(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class _TagState(enum.Enum):
    LOOKING = 0  # before the opening tag (leading whitespace held)
    START_SPACE = 1  # just after the opening tag, eating whitespace
    THINKING = 2
    END_SPACE = 3  # just after the closing tag, eating whitespace
    DONE = 4  # everything is content


class TagParser:
    """``<think>...</think>`` output (``Style.TAGS``); ``inside``: the prompt opened the tag."""

    def __init__(self, inside: bool = False, open_tag: str = OPEN_TAG, close_tag: str = CLOSE_TAG) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self.state = _TagState.START_SPACE if inside else _TagState.LOOKING
        self.held = ""  # text not yet decided

    def feed(self, text: str) -> tuple[str, str]:
        self.held += text
        thinking: list[str] = []
        content: list[str] = []
        while True:
            held = self.held
            if self.state is _TagState.LOOKING:
                trimmed = held.lstrip()
                if trimmed.startswith(self.open_tag):
                    self.held = trimmed[len(self.open_tag):]
                    self.state = _TagState.START_SPACE
                    continue
                if self.open_tag.startswith(trimmed):  # empty, or a prefix of the tag
                    break
                self.state, self.held = _TagState.DONE, ""
                content.append(held)
                break
            if self.state is _TagState.START_SPACE:
                trimmed = held.lstrip()
                if not trimmed:
                    self.held = ""
                    break
                self.state, self.held = _TagState.THINKING, trimmed
                continue
            if self.state is _TagState.THINKING:
                at = held.find(self.close_tag)
                if at >= 0:
                    thinking.append(held[:at])
                    self.held = held[at + len(self.close_tag):]
                    self.state = _TagState.END_SPACE
                    continue
                keep = _overlap(held, self.close_tag)
                thinking.append(held[:len(held) - keep])
                self.held = held[len(held) - keep:]
                break
            if self.state is _TagState.END_SPACE:
                trimmed = held.lstrip()
                self.held = ""
                if trimmed:
                    self.state = _TagState.DONE
                    content.append(trimmed)
                break
            self.held = ""
            content.append(held)
            break
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """The held text at the end: an unfinished tag is what it looked like."""
        held, self.held = self.held, ""
        if self.state is _TagState.THINKING:
            return held, ""
        if self.state is _TagState.LOOKING and held.strip():
            self.state = _TagState.DONE
            return "", held
        return "", ""


class _HarmonyState(enum.Enum):
    START = 0  # waiting for <|start|>
    HEADER = 1  # role and channel, up to <|message|>
    BODY = 2  # the message's text, up to <|end|>


class HarmonyParser:
    """gpt-oss's harmony output (``Style.HARMONY``), after a prompt that ends in
    ``<|start|>assistant``: the ``analysis`` channel is thinking, the rest content."""

    def __init__(self) -> None:
        self.state = _HarmonyState.HEADER  # the prompt wrote <|start|>assistant
        self.held = ""
        self.thinking = False  # the current message is on the analysis channel

    def feed(self, text: str) -> tuple[str, str]:
        self.held += text
        thinking: list[str] = []
        content: list[str] = []
        while True:
            held = self.held
            if self.state is _HarmonyState.START:
                at = held.find(HARMONY_START)
                if at < 0:
                    self.held = held[len(held) - _overlap(held, HARMONY_START):]
                    break
                self.held, self.state = held[at + len(HARMONY_START):], _HarmonyState.HEADER
                continue
            if self.state is _HarmonyState.HEADER:
                at = held.find(HARMONY_MESSAGE)
                if at < 0:
                    break
                self.thinking = self._channel(held[:at]) == HARMONY_THINKING_CHANNEL and "to=" not in held[:at]
                self.held, self.state = held[at + len(HARMONY_MESSAGE):], _HarmonyState.BODY
                continue
            found = [(held.find(end), end) for end in HARMONY_ENDS if end in held]
            out = thinking if self.thinking else content
            if found:
                at, end = min(found)
                out.append(held[:at])
                self.held, self.state = held[at + len(end):], _HarmonyState.START
                continue
            keep = max(_overlap(held, end) for end in HARMONY_ENDS)
            out.append(held[:len(held) - keep])
            self.held = held[len(held) - keep:]
            break
        return "".join(thinking), "".join(content)

    @staticmethod
    def _channel(header: str) -> str:
        at = header.find(HARMONY_CHANNEL)
        if at < 0:
            return ""
        rest = header[at + len(HARMONY_CHANNEL):].replace("<|constrain|>", " ").split()
        return rest[0] if rest else ""

    def finish(self) -> tuple[str, str]:
        held, self.held = self.held, ""
        if self.state is _HarmonyState.HEADER and HARMONY_CHANNEL not in held:
            return "", held  # text without any header: the model wrote plain content
        if self.state is not _HarmonyState.BODY:
            return "", ""
        return (held, "") if self.thinking else ("", held)


class ThinkSplitter:
    """A parser for one generation; ``keep_thinking=False`` drops the thinking (``think: false``)."""

    def __init__(self, parser: Parser, keep_thinking: bool = True) -> None:
        self.parser = parser
        self.keep_thinking = keep_thinking

    def feed(self, text: str) -> tuple[str, str]:
        thinking, content = self.parser.feed(text)
        return (thinking if self.keep_thinking else ""), content

    def finish(self) -> tuple[str, str]:
        thinking, content = self.parser.finish()
        return (thinking if self.keep_thinking else ""), content


def new_splitter(style: Style | None, prompt_tail: str, think: Think | None) -> ThinkSplitter | None:
    """The splitter for one answer of a model with ``style``, whose prompt ends with
    ``prompt_tail``; None when the model cannot think or ``think`` was not resolved."""
    if style is None or think is None:
        return None
    if style is Style.HARMONY:
        return ThinkSplitter(HarmonyParser(), think.enabled)
    return ThinkSplitter(TagParser(inside=prompt_tail.rstrip().endswith(OPEN_TAG)), think.enabled)
