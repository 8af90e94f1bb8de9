"""The LoRA test case: a tiny llama and a random adapter, rebuilt the same from a seed.

``write_case(folder)`` writes ``base.gguf`` (Q8_0 matrices, a tokenizer) and
``adapter.gguf`` (llama.cpp's GGUF LoRA format: ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, F16 ``<weight>.lora_a`` (rank,
cols) and ``<weight>.lora_b`` (rows, rank) on every kind of matrix a block has
and on the output). The oracle (``make_oracle.py``) and the tests use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.gguf_factory import tiny_model_parts, write_gguf

SEED = 7
RANK = 4
ALPHA = 8.0  # scale = alpha / rank = 2
N_LAYER = 3
ADAPTED = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
IDS = [1, 5, 17, 30, 42, 8, 61, 3, 77, 12, 25, 90, 44, 33, 9, 70, 51, 28, 6, 14, 38, 65, 19, 2]


def base_parts(qtype: str = "Q8_0") -> tuple[dict[str, Any], dict[str, Any]]:
    return tiny_model_parts("llama", qtype, SEED, vocab=True, n_layer=N_LAYER)


def adapter_tensors(base_tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    """name.lora_a (rank, cols) and name.lora_b (rows, rank), F16, for every adapted matrix."""
    rng = np.random.default_rng(SEED + 1)
    out: dict[str, np.ndarray] = {}
    names = [f"blk.{i}.{m}.weight" for i in range(N_LAYER) for m in ADAPTED] + ["output.weight"]
    for name in names:
        rows, cols = _shape(base_tensors[name] if name in base_tensors else base_tensors["token_embd.weight"])
        out[name + ".lora_a"] = (rng.standard_normal((RANK, cols)) / np.sqrt(cols)).astype(np.float16)
        out[name + ".lora_b"] = (rng.standard_normal((rows, RANK)) * 0.2 / np.sqrt(RANK)).astype(np.float16)
    return out


def _shape(t: Any) -> tuple[int, int]:
    if isinstance(t, tuple):  # (raw, type): rows from the raw bytes, cols from the type's geometry
        from kettle.quant import QUANT_INFO, GGMLType

        raw, ggml_type = t
        info = QUANT_INFO[GGMLType(int(ggml_type))]
        return raw.shape[0], raw.shape[1] // info.type_size * info.block_size
    return t.shape


def adapter_metadata(**override: Any) -> dict[str, Any]:
    meta = {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora",
            "adapter.lora.alpha": ALPHA}
    meta.update(override)
    return {k: v for k, v in meta.items() if v is not None}


def write_case(folder: Path, qtype: str = "Q8_0") -> tuple[Path, Path]:
    """(base.gguf, adapter.gguf) in ``folder``."""
    meta, tensors = base_parts(qtype)
    if "output.weight" not in tensors:  # tied: give the model its own output so the adapter has one to adapt
        tensors["output.weight"] = tensors["token_embd.weight"]
    base = write_gguf(folder / "base.gguf", meta, tensors)
    adapter = write_gguf(folder / "adapter.gguf", adapter_metadata(), adapter_tensors(tensors))
    return base, adapter
