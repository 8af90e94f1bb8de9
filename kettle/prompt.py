"""From a conversation to prompt token ids, the way ollama and llama.cpp do it.

The template is, in order of precedence: the Modelfile's TEMPLATE (Go or
Jinja, detected), the GGUF file's ``tokenizer.chat_template`` (Jinja,
sandboxed), or kettle's built-in template for the model family (the bundled
gemma3 file carries none). The Modelfile's SYSTEM applies when the
conversation has no system message; its MESSAGEs come first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kettle.errors import TemplateError
from kettle.templates import ChatTemplate, builtin_template, compile_template
from kettle.tokenizer import Tokenizer

if TYPE_CHECKING:
    from kettle.api import ModelSpec


class PromptBuilder:
    def __init__(self, metadata: Mapping[str, Any], tokenizer: Tokenizer, spec: ModelSpec) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.stop_words: tuple[str, ...] = ()
        arch = metadata.get("general.architecture", "")
        source = spec.template or metadata.get("tokenizer.chat_template")
        self.template: ChatTemplate | None = None
        if isinstance(source, str) and source.strip():
            self.template = compile_template(source)
            self.origin = "modelfile" if spec.template else "gguf"
        else:
            found = builtin_template(str(arch))
            if found is not None:
                self.template, self.stop_words = found
                self.origin = f"builtin:{arch}"
        if self.template is None:
            found = builtin_template("chatml")
            assert found is not None  # kettle ships chatml
            self.template, self.stop_words = found
            self.origin = "builtin:chatml"
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        self.bos_text = tokenizer.token_to_piece(bos).decode("utf-8", "replace") if bos is not None and bos >= 0 else ""
        self.eos_text = tokenizer.token_to_piece(eos).decode("utf-8", "replace") if eos is not None and eos >= 0 else ""

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
                    add_generation_prompt: bool = True) -> str:
        assert self.template is not None
        return self.template.render(
            self.conversation(messages), tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt, bos_token=self.bos_text, eos_token=self.eos_text,
        )

    def tokenize_prompt(self, text: str) -> list[int]:
        """Rendered template text -> ids: special tokens parsed, BOS added once."""
        ids = self.tokenizer.encode(text, add_special=True, parse_special=True)
        bos = self.tokenizer.bos_id
        if self.tokenizer.add_bos and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the template wrote BOS itself
        return ids
