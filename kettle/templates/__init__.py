"""Chat templates: conversation -> prompt text, in ollama's Go syntax or a GGUF file's Jinja.

>>> t = compile_template("{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}")
>>> t.syntax, t.render([{"role": "user", "content": "hi"}])
('go', '<user>hi')

:func:`compile_template` detects the syntax and parses once (a bad template fails here, with
its line number); :meth:`ChatTemplate.render` may then run many times, from many threads.
:func:`builtin_template` gives kettle's template and stop words for a model family whose GGUF
file carries no ``tokenizer.chat_template``.

Syntax detection: a source with Jinja block or comment markers (``{%``, ``{#``) is Jinja, unless
Jinja refuses it and it parses as Go naming a Go chat field (``.Messages``, ``.Prompt``...);
any other source is Go, unless Go refuses it and it parses as Jinja naming a chat variable
(``messages``, ``bos_token``...). When neither fits, the error of the likelier syntax is raised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from kettle.errors import TemplateError
from kettle.templates.jinja import TEMPLATE_VARIABLES, JinjaChatTemplate
from kettle.templates.limits import DEFAULT_LIMITS, TemplateLimits
from kettle.templates.ollama import DEFAULT_TEMPLATE, GoChatTemplate
from kettle.thinking import Think

Syntax = Literal["go", "jinja"]
_JINJA_MARKERS = ("{%", "{#")
_GO_CHAT_NAMES = frozenset({"system", "prompt", "response", "messages", "tools", "suffix"})


class ChatTemplate:
    """A compiled chat template (Go or Jinja). Immutable; ``render`` is thread-safe."""

    def __init__(self, engine: GoChatTemplate | JinjaChatTemplate) -> None:
        self._engine = engine
        self.syntax: Syntax = "go" if isinstance(engine, GoChatTemplate) else "jinja"
        self.source: str = engine.source

    def __repr__(self) -> str:
        return f"ChatTemplate(syntax={self.syntax!r}, {len(self.source)} chars)"

    @property
    def renders_tools(self) -> bool:
        """Whether the template names the request's tools (Go ``.Tools``, Jinja ``tools``):
        ollama's test for the ``tools`` capability (``Template.Vars`` holds ``tools``)."""
        if isinstance(self._engine, GoChatTemplate):
            return "tools" in self._engine.names
        return "tools" in self._engine.variables

    def render(self, messages: list[dict], *, system: str | None = None, tools: list | None = None,
               add_generation_prompt: bool = True, bos_token: str = "", eos_token: str = "",
               suffix: str = "", response: str = "", think: Think | None = None) -> str:
        """The prompt for a conversation.

        ``messages``: dicts with ``role`` and ``content`` (and optionally ``tool_calls``,
        ``thinking``, ``tool_name``, ``tool_call_id``). ``system``: prepended as a system
        message unless the conversation starts with one (ollama's rule for a Modelfile SYSTEM).
        ``tools``: function schemas (``{"type": "function", "function": {...}}``).
        ``response``: text the assistant's answer starts with (ollama's prefill: the last turn's
        ``.Response`` in legacy Go templates; HF's ``continue_final_message`` in Jinja).
        ``suffix``: Go templates only, fill-in-the-middle with the last user message as prompt.
        ``think``: ``kettle.thinking.Think`` (None: not set): Go's ``.Think``, ``.ThinkLevel``,
        ``.IsThinkSet``; Jinja's ``enable_thinking`` and ``reasoning_effort``.
        ``add_generation_prompt``, ``bos_token``, ``eos_token``: Jinja templates only (a Go
        template always ends where the model writes, as in ollama).
        Raises :class:`TemplateError` for bad messages or when the template fails or hits a limit.
        """
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise TemplateError("messages must be a list of objects")
        for m in messages:
            if not isinstance(m, Mapping):
                raise TemplateError("every message must be an object with a role and content")
        if isinstance(self._engine, GoChatTemplate):
            return self._engine.render(messages, system=system, tools=tools, suffix=suffix, response=response,
                                       think=think)
        return self._engine.render(messages, system=system, tools=tools, add_generation_prompt=add_generation_prompt,
                                   bos_token=bos_token, eos_token=eos_token, response=response, think=think)


def compile_template(source: str, limits: TemplateLimits = DEFAULT_LIMITS) -> ChatTemplate:
    """Detect the syntax of ``source`` and compile it; raises :class:`TemplateError` (with the line)."""
    if not isinstance(source, str):
        raise TemplateError("a template must be text")
    if len(source) > limits.max_source_chars:
        raise TemplateError(f"template is longer than {limits.max_source_chars} characters")
    if "\x00" in source:
        raise TemplateError("template contains a NUL character")
    if any(m in source for m in _JINJA_MARKERS):
        try:
            return ChatTemplate(JinjaChatTemplate(source, limits))
        except TemplateError as exc:
            try:
                go = GoChatTemplate(source, limits)
            except TemplateError:
                raise exc from None
            if not go.names & _GO_CHAT_NAMES:
                raise exc from None  # no Go chat field in sight: a broken Jinja template
            return ChatTemplate(go)
    try:
        return ChatTemplate(GoChatTemplate(source, limits))
    except TemplateError as exc:
        try:
            jinja = JinjaChatTemplate(source, limits)
        except TemplateError:
            raise exc from None
        if not jinja.variables & TEMPLATE_VARIABLES:
            raise exc from None  # no chat variable in sight: a broken Go template, not Jinja
        return ChatTemplate(jinja)


def default_template() -> ChatTemplate:
    """ollama's template for a model that has none: the prompt, verbatim."""
    return compile_template(DEFAULT_TEMPLATE)


@lru_cache(maxsize=None)
def _builtin_index() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("builtin", "index.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def builtin_template(family: str) -> tuple[ChatTemplate, tuple[str, ...]] | None:
    """kettle's built-in (template, default stop words) for a model family, or None.

    Families: ``gemma3``, ``gemma2``, ``gemma`` (ollama's gemma3 template), ``chatml``,
    ``llama3`` (ollama's own templates, see ``builtin/README.md``) and ``smollm2`` (kettle's:
    SmolLM2's GGUF template with tools, used in its place; ``builtin_superseding``).
    """
    entry = _builtin_index().get(family.lower())
    if entry is None:
        return None
    source = resources.files(__package__).joinpath("builtin", entry["template"]).read_text(encoding="utf-8")
    return compile_template(source), tuple(entry["stop"])


def builtin_superseding(source: str) -> tuple[str, ChatTemplate, tuple[str, ...]] | None:
    """(family, template, stop words) of the built-in template that replaces a GGUF file's
    ``tokenizer.chat_template`` ``source``, or None. An index entry's ``supersedes`` lists the
    sha256 of the GGUF templates it renders identically while adding what they lack (tools)."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    for family, entry in _builtin_index().items():
        if digest in entry.get("supersedes", ()):
            found = builtin_template(family)
            if found is not None:
                return family, found[0], found[1]
    return None


def builtin_families() -> tuple[str, ...]:
    return tuple(sorted(_builtin_index()))


__all__ = [
    "ChatTemplate", "TemplateError", "TemplateLimits", "builtin_families", "builtin_superseding", "builtin_template",
    "compile_template", "default_template",
]
