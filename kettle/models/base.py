"""What every architecture shares: weight declarations, the binder, hyper-parameters.

An architecture file declares its weights by their GGUF names beside the layer
that owns them (``W("blk.{i}.attn_q.weight", ("n_head * head_dim", "n_embd"))``),
with shapes written in terms of hyper-parameters. ``bind_weights`` checks the
file against the declarations and reports every missing, unexpected or
mis-shaped tensor in one ``WeightError``.
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


def meta_value(gguf: GGUFFile, key: str, kind: type, default: Any = None) -> Any:
    """A metadata value of the expected kind, or ``default`` if absent."""
    value = gguf.get(key)
    if value is None:
        if default is None:
            raise UnsupportedModel(f"{gguf.path}: required metadata '{key}' is missing")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, np.ndarray):
        return value  # per-layer arrays (e.g. head counts) are checked by the caller
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UnsupportedModel(f"{gguf.path}: metadata '{key}' should be {kind.__name__}, is {type(value).__name__}")
    return value


def decoder_dims(gguf: GGUFFile, arch: str) -> dict[str, int]:
    """The sizes every decoder declares under ``{arch}.*``, named as
    ``TransformerConfig`` names them (and as weight shapes refer to them)."""
    key = lambda name: f"{arch}.{name}"  # noqa: E731
    n_embd = meta_value(gguf, key("embedding_length"), int)
    n_head = meta_value(gguf, key("attention.head_count"), int)
    embd = gguf.tensors.get("token_embd.weight")
    return {
        "n_vocab": embd.shape[0] if embd is not None else 0,  # a missing embedding is reported by the binder
        "n_embd": n_embd,
        "n_layer": meta_value(gguf, key("block_count"), int),
        "n_head": n_head,
        "n_kv_head": meta_value(gguf, key("attention.head_count_kv"), int, n_head),
        "head_dim": meta_value(gguf, key("attention.key_length"), int, n_embd // n_head),
        "n_ff": meta_value(gguf, key("feed_forward_length"), int),
    }


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
    if len(info.shape) != 2:
        raise UnsupportedModel(f"tensor '{name}' has {len(info.shape)} dimensions; only matrices and vectors are used")
    raw = gguf.tensor(name)
    if raw.dtype != np.uint8:
        raw = raw.view(np.uint8).reshape(info.shape[0], -1)
    return QuantMatrix(raw, info.ggml_type, info.shape)
