"""LoRA adapters in llama.cpp's GGUF format, applied beside the base weights.

An adapter file (as llama.cpp's ``convert_lora_to_gguf.py`` writes it) has
``general.type = "adapter"``, ``general.architecture`` equal to the base
model's, ``adapter.type = "lora"``, ``adapter.lora.alpha`` (0 or absent: no
alpha scaling), and for each adapted matrix ``W`` two tensors
``<W name>.lora_a`` (math shape (rank, cols)) and ``<W name>.lora_b``
((rows, rank)). Norm vectors (``*_norm.weight``) may appear and are ignored,
as llama.cpp ignores them.

``apply_adapters`` wraps each adapted matrix in a ``LoraMatrix``: the model
computes ``W x + scale * B (A x)`` with ``scale = s * alpha / rank`` (``s`` the
adapter's scale, 1.0 for a Modelfile's ADAPTER; ``scale = s`` when alpha is 0),
as llama.cpp's ``--lora`` does, without touching W's blocks. Everything is
checked before any kernel runs: the names must be the base model's matrices,
the shapes must fit them, the rank must be in bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from kettle.errors import GGUFError, MetadataError, WeightError
from kettle.gguf import GGUFFile
from kettle.models.base import BoundWeights
from kettle.models.transformer import Transformer
from kettle.quant import LoraMatrix, QuantMatrix

SUFFIX_A, SUFFIX_B = ".lora_a", ".lora_b"
IGNORED_SUFFIX = "_norm.weight"  # llama.cpp skips adapted norm vectors too
MAX_RANK = 1 << 14
EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"


@dataclass
class LoraAdapter:
    """One open adapter file: its pairs, by the base tensor's name."""

    path: Path
    gguf: GGUFFile
    alpha: float
    pairs: dict[str, tuple[QuantMatrix, QuantMatrix]]  # W name -> (A (rank, cols), B (rows, rank))

    @classmethod
    def open(cls, path: str | Path, arch: str | None) -> LoraAdapter:
        """Read and check ``path`` for a base model of architecture ``arch`` (None: any)."""
        gguf = GGUFFile(path)
        try:
            return cls(Path(path), gguf, _alpha(gguf, arch), _pairs(gguf))
        except BaseException:
            gguf.close()
            raise

    def scale(self, rank: int, adapter_scale: float = 1.0) -> float:
        return adapter_scale * self.alpha / rank if self.alpha else adapter_scale

    def close(self) -> None:
        self.gguf.close()


def _alpha(gguf: GGUFFile, arch: str | None) -> float:
    kind = gguf.get("general.type")
    if kind != "adapter":
        raise MetadataError(gguf.path, "general.type", kind, '"adapter" (this is not a LoRA adapter file)')
    if arch is not None and gguf.get("general.architecture") != arch:
        raise MetadataError(gguf.path, "general.architecture", gguf.get("general.architecture"),
                            f'"{arch}", the base model\'s architecture (an adapter for another model?)')
    if gguf.get("adapter.type") != "lora":
        raise MetadataError(gguf.path, "adapter.type", gguf.get("adapter.type"), '"lora"')
    alpha = gguf.get("adapter.lora.alpha", 0.0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or abs(alpha) > 1e6:
        raise MetadataError(gguf.path, "adapter.lora.alpha", alpha, "a finite number (0: no alpha scaling)")
    return float(alpha)


def _pairs(gguf: GGUFFile) -> dict[str, tuple[QuantMatrix, QuantMatrix]]:
    halves: dict[str, dict[str, QuantMatrix]] = {}
    problems: list[str] = []
    for name, info in gguf.tensors.items():
        if name.endswith(IGNORED_SUFFIX):
            continue
        suffix = SUFFIX_A if name.endswith(SUFFIX_A) else SUFFIX_B if name.endswith(SUFFIX_B) else None
        if suffix is None:
            problems.append(f"tensor '{name}' is neither '<weight>.lora_a' nor '<weight>.lora_b'")
            continue
        if len(info.shape) != 2:
            problems.append(f"tensor '{name}' has {len(info.shape)} dimensions, expected a matrix")
            continue
        try:
            matrix = QuantMatrix(gguf.tensor(name).view("uint8"), info.ggml_type, info.shape)
        except (WeightError, GGUFError) as e:
            problems.append(f"tensor '{name}': {e}")
            continue
        except Exception as e:  # UnsupportedModel: a type kettle cannot multiply by
            problems.append(f"tensor '{name}': {e}")
            continue
        halves.setdefault(name.removesuffix(suffix), {})[suffix] = matrix
    pairs: dict[str, tuple[QuantMatrix, QuantMatrix]] = {}
    for base, half in halves.items():
        if SUFFIX_A not in half or SUFFIX_B not in half:
            missing = SUFFIX_B if SUFFIX_A in half else SUFFIX_A
            problems.append(f"'{base}{missing}' is missing (each adapted weight needs lora_a and lora_b)")
            continue
        a, b = half[SUFFIX_A], half[SUFFIX_B]
        if a.rows != b.cols:
            problems.append(f"'{base}': lora_a has rank {a.rows} but lora_b has rank {b.cols} "
                            "(lora_a must be stored transposed, as llama.cpp's converter writes it)")
        elif not 0 < a.rows <= MAX_RANK:
            problems.append(f"'{base}': rank {a.rows} is outside 1..{MAX_RANK}")
        else:
            pairs[base] = (a, b)
    if problems:
        raise WeightError(f"{gguf.path}: not a usable LoRA adapter:\n  " + "\n  ".join(problems))
    if not pairs:
        raise WeightError(f"{gguf.path}: the adapter has no lora_a/lora_b tensor pairs")
    return pairs


def _fit_problems(adapter: LoraAdapter, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What keeps ``adapter`` from fitting a model whose matrices have ``shapes`` (rows, cols)."""
    problems = []
    for name, (a, b) in adapter.pairs.items():
        shape = shapes.get(name)
        if name == EMBEDDING:
            problems.append(f"{adapter.path}: '{name}': adapting the token embeddings is not supported")
        elif shape is None or len(shape) != 2:
            problems.append(f"{adapter.path}: '{name}' is not a matrix of the base model")
        elif (b.rows, a.cols) != tuple(shape):
            problems.append(f"{adapter.path}: '{name}' adapts a ({b.rows}, {a.cols}) matrix but the base's "
                            f"is {tuple(shape)} (an adapter for another model or size?)")
    return problems


def check_adapter(adapter_path: str | Path, model_path: str | Path) -> None:
    """Raise (``MetadataError``, ``WeightError``) unless the adapter file fits the model file;
    reads metadata and tensor shapes only (``kettle create`` checks ADAPTERs with it)."""
    with GGUFFile(model_path) as base:
        shapes = {name: info.shape for name, info in base.tensors.items()}
        shapes.setdefault(OUTPUT, shapes.get(EMBEDDING, ()))  # a tied output is the embedding matrix
        adapter = LoraAdapter.open(adapter_path, base.architecture)
    try:
        problems = _fit_problems(adapter, shapes)
    finally:
        adapter.close()
    if problems:
        raise WeightError("the adapter does not fit the model:\n  " + "\n  ".join(problems))


def apply_adapters(model: Transformer, adapters: list[LoraAdapter], scales: list[float] | None = None) -> Transformer:
    """``model`` with every adapter's pairs beside its matrices (a new model object;
    the base's weights are shared, not copied). Raises ``WeightError`` listing
    every adapted tensor the base lacks or does not fit."""
    if not adapters:
        return model
    scales = scales or [1.0] * len(adapters)
    tensors = dict(model.weights.tensors)
    shapes = {name: t.shape for name, t in tensors.items() if isinstance(t, (QuantMatrix, LoraMatrix))}
    problems = [p for adapter in adapters for p in _fit_problems(adapter, shapes)]
    if problems:
        raise WeightError("the adapters do not fit the model:\n  " + "\n  ".join(problems))
    for adapter, s in zip(adapters, scales, strict=True):
        for name, (a, b) in adapter.pairs.items():
            base = tensors[name]
            delta = (a, b, adapter.scale(a.rows, s))
            if isinstance(base, LoraMatrix):
                tensors[name] = LoraMatrix(base.base, [*base.deltas, delta])
            else:
                tensors[name] = LoraMatrix(base, [delta])
    return type(model)(model.config, BoundWeights(tensors))
