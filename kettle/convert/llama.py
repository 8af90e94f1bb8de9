"""Llama and Mistral checkpoints (``LlamaForCausalLM``, ``MistralForCausalLM``) -> arch ``llama``.

The shared decoder conversion (``decoder.py``), with q and k rows permuted to
llama's interleaved rope pairs.
"""

from __future__ import annotations

from typing import Any

from kettle.convert import decoder
from kettle.convert.checkpoint import Checkpoint
from kettle.convert.writer import TensorPlan

ARCH = "llama"
FAMILY = decoder.Family(ARCH, permute_qk=True)


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    return decoder.prepare(ckpt, writer, FAMILY)
