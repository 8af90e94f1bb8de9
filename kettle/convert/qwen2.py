"""Qwen2 / Qwen2.5 checkpoints (``Qwen2ForCausalLM``) -> arch ``qwen2``: q, k, v biases, NEOX rope order kept."""

from __future__ import annotations

from typing import Any

from kettle.convert import decoder
from kettle.convert.checkpoint import Checkpoint
from kettle.convert.writer import TensorPlan

ARCH = "qwen2"
FAMILY = decoder.Family(ARCH, permute_qk=False, biases=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"))


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    return decoder.prepare(ckpt, writer, FAMILY)
