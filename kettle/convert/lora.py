"""PEFT LoRA adapter folders (``adapter_config.json`` + ``adapter_model.safetensors``) -> GGUF adapters.

The output is llama.cpp's adapter format, as its ``convert_lora_to_gguf.py``
writes it: ``general.type = adapter``, ``general.architecture`` of the base,
``adapter.type = lora``, ``adapter.lora.alpha`` (config's ``lora_alpha``; with
``use_rslora``, ``lora_alpha * sqrt(r)``, so that llama.cpp's ``alpha / rank``
is PEFT's ``alpha / sqrt(rank)``), and each adapted matrix as
``<GGUF weight name>.lora_a`` (rank, cols) and ``.lora_b`` (rows, rank), F32.
Tensor names go through the base family's map (``decoder.gguf_name``); where
the base permutes q and k rows (arch ``llama``), the same permutation applies
to ``lora_b``'s rows (``A`` works on the input side, which is not permuted).
The base GGUF gives the architecture and head counts; the adapter is checked
against it by ``kettle.models.lora`` when a model is created with it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from kettle.convert import decoder
from kettle.convert.checkpoint import MAX_JSON_BYTES
from kettle.convert.writer import OutType, TensorPlan, write_gguf
from kettle.errors import ConvertError
from kettle.gguf import GGUFFile

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
FAMILIES = {"llama": "kettle.convert.llama", "qwen2": "kettle.convert.qwen2", "qwen3": "kettle.convert.qwen3"}
_PEFT_NAME = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")
MAX_RANK = 1 << 14


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def _config(folder: Path) -> dict:
    path = folder / CONFIG
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ConvertError(f"{path}: larger than {MAX_JSON_BYTES} bytes")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ConvertError(f"{path}: expected a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise ConvertError(f"{path}: peft_type {config.get('peft_type')!r} is not LORA")
    return config


def convert_adapter(folder: str | os.PathLike[str], base_gguf: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the PEFT adapter in ``folder`` as a GGUF adapter for the model ``base_gguf``."""
    import importlib

    import gguf
    from safetensors import safe_open

    folder, out = Path(folder), Path(out)
    config = _config(folder)
    weights = folder / WEIGHTS
    if not weights.is_file() or weights.is_symlink():
        raise ConvertError(f"{folder}: no {WEIGHTS} (only safetensors adapters are read)")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 < rank <= MAX_RANK:
        raise ConvertError(f"{folder / CONFIG}: 'r' is {rank!r}; expected a rank from 1 to {MAX_RANK}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ConvertError(f"{folder / CONFIG}: 'lora_alpha' is {alpha!r}; expected a number")
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)
    with GGUFFile(base_gguf) as base:
        arch = base.architecture
        n_head = base.get(f"{arch}.attention.head_count")
        n_kv = base.get(f"{arch}.attention.head_count_kv", n_head)
        shapes = {name: info.shape for name, info in base.tensors.items()}
    if arch not in FAMILIES:
        raise ConvertError(f"{folder}: converting adapters for '{arch}' models is not supported "
                           f"(supported: {', '.join(sorted(FAMILIES))})")
    family: decoder.Family = importlib.import_module(FAMILIES[arch]).FAMILY
    halves: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(weights), framework="numpy") as f:
        for key in f.keys():
            m = _PEFT_NAME.fullmatch(key)
            if m is None:
                raise ConvertError(f"{weights}: tensor {key!r} is not a LoRA A or B matrix "
                                   "(base_model.model.<module>.lora_A/lora_B.weight)")
            name = decoder.gguf_name(m.group(1) + ".weight", family)
            if name is None:
                continue
            value = f.get_tensor(key)
            if value.dtype.kind != "f" or value.ndim != 2:
                raise ConvertError(f"{weights}: tensor {key!r} is {value.dtype} {value.shape}, expected a float matrix")
            halves.setdefault(name, {})[m.group(2)] = np.ascontiguousarray(value, dtype=np.float32)
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    plans = []
    for name, pair in sorted(halves.items()):
        if set(pair) != {"A", "B"}:
            raise ConvertError(f"{weights}: '{name}' has lora_{''.join(pair)} only; each weight needs A and B")
        a, b = pair["A"], pair["B"]
        if name not in shapes:
            raise ConvertError(f"{weights}: adapts '{name}', which the base model does not have")
        if family.permute_qk and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = n_head if ".attn_q." in name else n_kv
            b = decoder.permute(b, int(heads))
        plans += [TensorPlan(name + ".lora_a", a.shape, lambda a=a: a), TensorPlan(name + ".lora_b", b.shape, lambda b=b: b)]
    if not plans:
        raise ConvertError(f"{weights}: no LoRA matrices")
    write_gguf(writer, out, plans, OutType.F32)
    return out
