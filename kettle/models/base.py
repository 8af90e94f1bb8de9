"""What every architecture shares: weight declarations, the binder, hyper-parameters.

An architecture file declares its weights by their GGUF names beside the layer
that owns them (``W("blk.{i}.attn_q.weight", ("n_head * head_dim", "n_embd"))``),
with shapes written in terms of hyper-parameters. ``bind_weights`` checks the
file against the declarations and reports every missing, unexpected or
mis-shaped tensor in one ``WeightError``. The hyper-parameters themselves are
read and checked in ``hparams.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kettle.errors import UnsupportedModel, WeightError
from kettle.gguf import GGMLType, GGUFFile
from kettle.quant import QuantMatrix

# Norm vectors and biases are small: read them as float32 arrays.
_VECTOR_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)


@dataclass(frozen=True)
class W:
    """One weight: its GGUF name (``{i}`` = layer index), shape in math order
    (rows, cols) as expressions over hyper-parameter names, and whether it may
    be absent (``optional``) or falls back to another tensor (``tied``)."""

    name: str
    shape: tuple[str, ...]
    optional: bool = False
    tied: str | None = None


def _eval_shape(shape: tuple[str, ...], hp: dict[str, int]) -> tuple[int, ...]:
    dims = []
    for expr in shape:
        value = 1
        for factor in expr.split("*"):
            factor = factor.strip()
            value *= int(factor) if factor.isdigit() else hp[factor]
        dims.append(value)
    return tuple(dims)


@dataclass
class BoundWeights:
    """The weights of one model: matrices stay quantized, vectors are float32 views."""

    tensors: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.tensors[name]

    def get(self, name: str) -> Any:
        return self.tensors.get(name)


def bind_weights(gguf: GGUFFile, specs: list[W], n_layer: int, hp: dict[str, int]) -> BoundWeights:
    """Bind the declared weights to the file's tensors, checking names and shapes.

    Raises ``WeightError`` listing every problem at once.
    """
    problems: list[str] = []
    bound = BoundWeights()
    expected_names: set[str] = set()
    for spec in specs:
        names = [spec.name.format(i=i) for i in range(n_layer)] if "{i}" in spec.name else [spec.name]
        shape = _eval_shape(spec.shape, hp)
        for name in names:
            expected_names.add(name)
            info = gguf.tensors.get(name)
            if info is None:
                if spec.tied is not None:
                    continue  # resolved below
                if not spec.optional:
                    problems.append(f"missing tensor '{name}' (expected shape {shape})")
                continue
            if info.shape != shape:
                problems.append(f"tensor '{name}' has shape {info.shape}, expected {shape}")
                continue
            try:
                bound.tensors[name] = _load_tensor(gguf, name)
            except UnsupportedModel as e:
                problems.append(str(e))
    for spec in specs:
        if spec.tied is not None and spec.name not in bound.tensors and spec.tied in bound.tensors:
            bound.tensors[spec.name] = bound.tensors[spec.tied]
    unexpected = sorted(set(gguf.tensors) - expected_names)
    if unexpected:
        shown = ", ".join(unexpected[:10]) + (f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else "")
        problems.append(f"unexpected tensors: {shown}")
    if problems:
        raise WeightError(f"{gguf.path}: the weights do not match the architecture:\n  " + "\n  ".join(problems))
    return bound


def _load_tensor(gguf: GGUFFile, name: str) -> Any:
    info = gguf.tensors[name]
    if len(info.shape) == 1:
        if info.ggml_type not in _VECTOR_TYPES:
            raise UnsupportedModel(f"tensor '{name}': vectors of type {info.ggml_type.name} are not supported")
        raw = gguf.tensor(name)
        if info.ggml_type == GGMLType.F32:
            return raw
        from kettle.quant import dequantize

        return dequantize(raw.view(np.uint8).reshape(1, -1), info.ggml_type, info.shape)
    if len(info.shape) not in (2, 3):
        raise UnsupportedModel(f"tensor '{name}' has {len(info.shape)} dimensions; only experts, matrices and "
                               "vectors are used")
    raw = gguf.tensor(name)
    rows = int(np.prod(info.shape[:-1]))
    if raw.dtype != np.uint8 or raw.ndim != 2:
        raw = raw.view(np.uint8).reshape(rows, -1)
    if len(info.shape) == 3:
        return Experts(raw, info.ggml_type, info.shape)
    return QuantMatrix(raw, info.ggml_type, info.shape)


class Experts:
    """A mixture-of-experts weight: ``n_expert`` matrices of (rows, cols) stored as one
    3-D tensor (llama.cpp's ``ffn_*_exps``; math shape (n_expert, rows, cols)). Each
    expert is a ``QuantMatrix`` over its own rows of the file: a token's forward pass
    reads the matrices of the experts its router chose, and no others."""

    def __init__(self, raw: np.ndarray, ggml_type: int, shape: tuple[int, int, int]) -> None:
        n_expert, rows, cols = shape  # raw: (n_expert * rows, row_nbytes) uint8
        self.shape = tuple(shape)
        self.experts = tuple(QuantMatrix(raw[e * rows:(e + 1) * rows], ggml_type, (rows, cols))
                             for e in range(n_expert))
        self.ggml_type = self.experts[0].ggml_type if self.experts else GGMLType(ggml_type)
        self.nbytes = sum(m.nbytes for m in self.experts)

    def __len__(self) -> int:
        return len(self.experts)

    def __getitem__(self, e: int) -> QuantMatrix:
        return self.experts[e]
