"""``kettle quantize``: a GGUF file re-encoded as llama-quantize does it, byte for byte.

The input is opened with the validating reader (every offset and size is
checked against the file before anything is read). The output has the input's
metadata in its order, then ``general.quantization_version`` (2) and
``general.file_type`` moved to the end as llama.cpp sets them; the tensors in
llama.cpp's order, each stored as ``mixes.TypeChooser`` decides, quantized by
``kettle.quant.quantize`` (the same bytes as llama.cpp without an importance
matrix) or copied when its type does not change. It is written through gguf's
``GGUFWriter`` to ``OUT.partial`` and renamed when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kettle.errors import UnsupportedModel
from kettle.gguf import GGUFFile
from kettle.gguf.constants import ValueType
from kettle.quant.formats import dequantize, quantize
from kettle.quant.mixes import FileType, ModelFacts, TypeChooser, file_type, llama_order
from kettle.quant.types import QUANT_INFO, GGMLType, row_nbytes

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
_DROPPED = ("general.quantization_version", "general.file_type", "split.no", "split.count", "split.tensors.count")
_FLOATS = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)


class QuantizeError(UnsupportedModel):
    """The input cannot be quantized as asked (already quantized, unsupported tensor type, ...)."""


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # numpy order
    current: GGMLType
    target: GGMLType


def model_facts(g: GGUFFile) -> ModelFacts:
    arch = g.architecture

    def first_int(key: str, default: int) -> int:
        v = g.get(f"{arch}.{key}", default)
        if isinstance(v, (np.ndarray, list)):  # per-layer arrays: llama.cpp reads layer 0
            v = v[0] if len(v) else default
        try:
            return int(v)
        except (TypeError, ValueError):
            raise QuantizeError(f"{g.path}: metadata '{arch}.{key}' is not an integer ({v!r})") from None

    n_layer = first_int("block_count", 0)
    n_head = first_int("attention.head_count", 0)
    n_head_kv = first_int("attention.head_count_kv", n_head)
    return ModelFacts(
        arch=arch,
        n_layer=n_layer,
        n_gqa=n_head // n_head_kv if n_head_kv > 0 else 0,
        n_expert=first_int("expert_count", 0),
        is_70b=arch == "llama" and n_layer == 80 and n_head != n_head_kv,
    )


def plan(g: GGUFFile, ft: FileType) -> tuple[list[PlannedTensor], list[str]]:
    """Each tensor's target type in output order, and the fallback warnings."""
    names = llama_order(list(g.tensors))
    chooser = TypeChooser(ft, model_facts(g), names)
    out = []
    for name in names:
        info = g.tensors[name]
        out.append(PlannedTensor(name, info.shape, info.ggml_type, chooser.choose(name, info.ggml_type, info.shape)))
    return out, chooser.fallbacks


def _as_f32(g: GGUFFile, t: PlannedTensor) -> np.ndarray:
    """The tensor as float32 rows (n_rows, ne0), as llama.cpp converts it before quantizing."""
    raw = g.tensor(t.name)
    if t.current == GGMLType.F32:
        return np.asarray(raw, dtype=np.float32).reshape(-1, t.shape[-1])
    if not QUANT_INFO[t.current].supported:
        raise QuantizeError(f"tensor '{t.name}' is {t.current.name}, which kettle cannot convert")
    flat = np.ascontiguousarray(raw).view(np.uint8)
    return dequantize(flat, t.current, (int(np.prod(t.shape[:-1])), t.shape[-1]))


def _copy_metadata(g: GGUFFile, writer: object, ft: FileType) -> None:
    import gguf

    w: gguf.GGUFWriter = writer  # type: ignore[assignment]
    w.kv_data[0].clear()  # the writer put general.architecture first; keep the input's order instead
    for key, value in g.metadata.items():
        if key in _DROPPED:
            continue
        vtype, etype = g.value_types[key]
        if vtype == ValueType.ARRAY:
            if etype == ValueType.ARRAY or len(value) == 0:
                raise QuantizeError(f"{g.path}: metadata '{key}' is an empty or nested array, which the writer cannot copy")
            items = value.tolist() if isinstance(value, np.ndarray) else list(value)
            w.add_key_value(key, items, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType(int(etype)))
        else:
            w.add_key_value(key, value, gguf.GGUFValueType(int(vtype)))
    w.add_key_value("general.quantization_version", QUANTIZATION_VERSION, gguf.GGUFValueType.UINT32)
    w.add_key_value("general.file_type", ft.ftype, gguf.GGUFValueType.UINT32)


def quantize_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], type_name: str, *,
                  allow_requantize: bool = False, progress: Callable[[str], None] | None = None) -> list[PlannedTensor]:
    """Write ``dst``: ``src`` quantized to llama-quantize's ``type_name`` (``Q4_K_M``, ``q8_0``, ...).

    Refuses (``QuantizeError``) an input with quantized tensors that would be
    re-encoded, unless ``allow_requantize``. Returns the plan that was written.
    """
    import gguf

    ft = file_type(type_name)
    src, dst = Path(src), Path(dst)
    with GGUFFile(src) as g:
        tensors, fallbacks = plan(g, ft)
        requant = [t for t in tensors if t.current != t.target and t.current not in _FLOATS]
        if requant and not allow_requantize:
            raise QuantizeError(
                f"{src}: tensor '{requant[0].name}' is already {requant[0].current.name}; requantizing loses "
                "quality (quantize the F32/F16/BF16 original instead, or pass --allow-requantize)"
            )
        for message in fallbacks:
            if progress is not None:
                progress(f"warning: {message}")
        w = gguf.GGUFWriter(path=None, arch=g.architecture)
        w.data_alignment = g.alignment
        _copy_metadata(g, w, ft)
        for t in tensors:
            rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
            nbytes = rows * row_nbytes(t.target, t.shape[-1])
            w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), nbytes, raw_dtype=gguf.GGMLQuantizationType(int(t.target)))
        partial = dst.with_name(dst.name + ".partial")
        try:
            w.write_header_to_file(path=partial)
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for i, t in enumerate(tensors, 1):
                shape = "x".join(str(d) for d in reversed(t.shape))
                if progress is not None:
                    how = f"{t.current.name} -> {t.target.name}" if t.current != t.target else f"{t.current.name} (copied)"
                    progress(f"[{i:4d}/{len(tensors):4d}] {t.name:<36s} [{shape}] {how}")
                if t.current == t.target:
                    data = np.ascontiguousarray(g.tensor(t.name)).view(np.uint8).reshape(-1)
                else:
                    data = np.asarray(quantize(_as_f32(g, t), t.target)).view(np.uint8).reshape(-1)
                w.write_tensor_data(data)
            w.close()
            os.replace(partial, dst)
        except BaseException:
            w.close()
            partial.unlink(missing_ok=True)
            raise
    return tensors
