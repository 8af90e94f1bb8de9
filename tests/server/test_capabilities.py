"""``/api/show`` capabilities as ollama derives them (server/images.go): ``embedding`` for a
file with ``{arch}.pooling_type`` (and nothing else), ``completion`` otherwise, plus ``tools``,
``insert`` and ``thinking`` from the template."""

from __future__ import annotations

import pytest

from kettle.server.models import capabilities_of

LLAMA = {"general.architecture": "llama"}


@pytest.mark.parametrize(("metadata", "template", "expected"), [
    (LLAMA, "{{ .Prompt }}", ["completion"]),
    (LLAMA, "{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}", ["completion", "tools"]),
    (LLAMA, "{%- if tools %}{{ tools | tojson }}{% endif %}", ["completion", "tools"]),
    (LLAMA, "<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}", ["completion", "insert"]),
    (LLAMA, "{% for m in messages %}<think>{{ m.reasoning }}</think>{% endfor %}", ["completion", "thinking"]),
    (LLAMA, "<think> only opens", ["completion"]),
    (LLAMA, "<|start|>assistant<|channel|>analysis<|message|>{{ .Thinking }}<|end|>", ["completion", "thinking"]),
    ({"general.architecture": "bert", "bert.pooling_type": 1}, "{{ .Prompt }}", ["embedding"]),
    ({"general.architecture": "qwen2", "qwen2.pooling_type": 3}, "{{ .Tools }}", ["embedding"]),
    ({"general.architecture": "bert", "llama.pooling_type": 1}, "", ["completion"]),  # another arch's key
])
def test_capabilities_of(metadata, template, expected):
    assert capabilities_of(metadata, template) == expected
