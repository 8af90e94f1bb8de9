"""From a conversation to prompt token ids, the way ollama and llama.cpp do it.

The template is, in order of precedence: the Modelfile's TEMPLATE (Go or
Jinja, detected), the GGUF file's ``tokenizer.chat_template`` (Jinja,
sandboxed), or kettle's built-in template for the model family (the bundled
gemma3 file carries none). A GGUF template that a built-in one supersedes (it
renders the same and adds tools: SmolLM2's) is replaced by it. The Modelfile's
SYSTEM applies when the conversation has no system message; its MESSAGEs come
first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kettle.errors import TemplateError
from kettle.templates import ChatTemplate, builtin_superseding, builtin_template, compile_template
from kettle.thinking import Think
from kettle.tokenizer import Tokenizer

if TYPE_CHECKING:
    from kettle.api import ModelSpec


def choose_template(metadata: Mapping[str, Any], spec: ModelSpec) -> tuple[ChatTemplate, tuple[str, ...], str]:
    """The template a model uses, its default stop words, and where it came from
    (``modelfile``, ``gguf`` or ``builtin:<family>``)."""
    source = spec.template or metadata.get("tokenizer.chat_template")
    if isinstance(source, str) and source.strip():
        superseding = None if spec.template else builtin_superseding(source)
        if superseding is not None:
            family, template, stops = superseding
            return template, stops, f"builtin:{family}"
        return compile_template(source), (), "modelfile" if spec.template else "gguf"
    arch = str(metadata.get("general.architecture", ""))
    for family in (arch, "chatml"):  # kettle ships chatml for families it does not know
        found = builtin_template(family)
        if found is not None:
            return found[0], found[1], f"builtin:{family}"
    raise TemplateError("no chat template: the model has none and kettle ships none for its family")


class PromptBuilder:
    def __init__(self, metadata: Mapping[str, Any], tokenizer: Tokenizer, spec: ModelSpec) -> None:
        self.metadata = metadata
        self.tokenizer = tokenizer
        self.spec = spec
        self.template, self.stop_words, self.origin = choose_template(metadata, spec)
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        self.bos_text = tokenizer.token_to_piece(bos).decode("utf-8", "replace") if bos is not None and bos >= 0 else ""
        self.eos_text = tokenizer.token_to_piece(eos).decode("utf-8", "replace") if eos is not None and eos >= 0 else ""

    def with_template(self, source: str) -> PromptBuilder:
        """The same model with the template ``source`` (a request's ``template`` override)."""
        return PromptBuilder(self.metadata, self.tokenizer, dataclasses.replace(self.spec, template=source))

    def conversation(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The Modelfile's MESSAGEs, then the request's; SYSTEM when none is given."""
        msgs = [dict(m) for m in self.spec.messages] + [dict(m) for m in messages]
        for m in msgs:
            if not isinstance(m.get("role"), str):
                raise TemplateError("every message needs a 'role' string")
            if m.get("content") is None:
                m["content"] = ""
        if self.spec.system and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.spec.system})
        return msgs

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None,
                    add_generation_prompt: bool = True, think: Think | None = None) -> str:
        return self.template.render(
            self.conversation(messages), tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt, bos_token=self.bos_text, eos_token=self.eos_text,
            think=think,
        )

    def tokenize_prompt(self, text: str) -> list[int]:
        """Rendered template text -> ids: special tokens parsed, BOS added once."""
        ids = self.tokenizer.encode(text, add_special=True, parse_special=True)
        bos = self.tokenizer.bos_id
        if self.tokenizer.add_bos and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the template wrote BOS itself
        return ids
