"""Qwen3 checkpoints (``Qwen3ForCausalLM``) -> arch ``qwen3``: per-head q/k RMS norms, NEOX rope order kept."""

from __future__ import annotations

from typing import Any

from kettle.convert import decoder
from kettle.convert.checkpoint import Checkpoint
from kettle.convert.writer import TensorPlan

ARCH = "qwen3"
FAMILY = decoder.Family(ARCH, permute_qk=False, qk_norm=True)


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    return decoder.prepare(ckpt, writer, FAMILY)
