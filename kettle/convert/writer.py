"""Writing the converted GGUF: tensors streamed one at a time through gguf's ``GGUFWriter``.

``OutType`` is ``--outtype``: every matrix is stored as that type, and vectors
(norms, biases) stay F32 as llama.cpp's converter keeps them; with ``q8_0`` a
matrix whose rows are not whole 32-value blocks is stored as F16. The tensors'
headers are written first (their sizes are known from the shapes), then each
tensor is read from the checkpoint, converted and written before the next is
read, so a model is never in memory twice.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kettle.errors import ConvertError
from kettle.quant import QK, GGMLType, quantize, row_nbytes


class OutType(enum.Enum):
    F32 = "f32"
    F16 = "f16"
    BF16 = "bf16"
    Q8_0 = "q8_0"


# --outtype -> (matrix type, general.file_type as llama.cpp numbers it: LLAMA_FTYPE_*)
_TYPES = {
    OutType.F32: (GGMLType.F32, 0),
    OutType.F16: (GGMLType.F16, 1),
    OutType.BF16: (GGMLType.BF16, 32),
    OutType.Q8_0: (GGMLType.Q8_0, 7),
}


def file_type(outtype: OutType) -> int:
    return _TYPES[outtype][1]


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: its GGUF name, shape in math order (rows, cols), and how to read it."""

    name: str
    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]  # -> float32 array of ``shape``
    keep_f32: bool = False  # stored as F32 whatever --outtype says (llama.cpp adds BERT's token_types as f32)


def storage_type(shape: tuple[int, ...], outtype: OutType, keep_f32: bool = False) -> GGMLType:
    if len(shape) == 1 or keep_f32:
        return GGMLType.F32
    matrix_type = _TYPES[outtype][0]
    if matrix_type == GGMLType.Q8_0 and shape[-1] % QK:
        return GGMLType.F16
    return matrix_type


def _encode(values: np.ndarray, ggml_type: GGMLType) -> np.ndarray:
    if ggml_type == GGMLType.F32:
        return np.ascontiguousarray(values, dtype=np.float32)
    if ggml_type == GGMLType.F16:
        return np.ascontiguousarray(values, dtype=np.float16)
    return quantize(values.reshape(-1, values.shape[-1]), ggml_type)  # (rows, bytes per row) uint8


def write_gguf(writer: object, out: Path, plans: list[TensorPlan], outtype: OutType,
               progress: Callable[[str], None] | None = None) -> None:
    """Write ``plans`` (after the metadata already added to ``writer``) to ``out``; a failed
    write leaves no partial file."""
    import gguf

    w: gguf.GGUFWriter = writer  # type: ignore[assignment]
    kinds = []
    for plan in plans:
        kind = storage_type(plan.shape, outtype, plan.keep_f32)
        rows = int(np.prod(plan.shape[:-1])) if len(plan.shape) > 1 else 1
        nbytes = rows * row_nbytes(kind, plan.shape[-1])
        if kind in (GGMLType.F32, GGMLType.F16):
            dtype = np.float32 if kind == GGMLType.F32 else np.float16
            w.add_tensor_info(plan.name, plan.shape, np.dtype(dtype), nbytes)
        else:
            w.add_tensor_info(plan.name, plan.shape, np.dtype(np.float32), nbytes,
                              raw_dtype=gguf.GGMLQuantizationType(int(kind)))
        kinds.append(kind)
    partial = out.with_name(out.name + ".partial")
    try:
        w.write_header_to_file(path=partial)
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for plan, kind in zip(plans, kinds, strict=True):
            values = plan.read()
            if values.shape != plan.shape:
                raise ConvertError(f"tensor {plan.name}: read shape {values.shape}, planned {plan.shape}")
            if progress is not None:
                progress(f"{plan.name} {kind.name} {'x'.join(map(str, plan.shape))}")
            w.write_tensor_data(_encode(values, kind))
        w.close()
        os.replace(partial, out)
    except BaseException:
        w.close()
        partial.unlink(missing_ok=True)
        raise
