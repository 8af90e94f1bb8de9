"""One validated set of hyper-parameters per model, read before any kernel runs.

GGUF metadata is untrusted: a head count, layer count or rope size that
disagrees with the tensors would send a numba kernel (which checks no bounds)
outside its buffers. So an architecture reads every hyper-parameter it uses
through ``HParams`` (each key once, typed, range-checked against ``LIMITS``,
an error naming the key, the value and what was expected) and hands the
finished ``TransformerConfig`` to ``check_config``, which cross-checks the
values against each other (heads divisible, rope within the head). The
binder (``base.bind_weights``) then checks every tensor's shape against the
same values, so the kernels' sizes all come from one checked description.

A key that is absent takes the architecture's documented default; a key that
is present but unusable is an error, never a silent default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kettle.errors import MetadataError
from kettle.gguf import GGUFFile


@dataclass(frozen=True)
class Limits:
    """Sane maxima (real models sit far below every one)."""

    layers: int = 1024
    heads: int = 1024
    head_dim: int = 1024
    embd: int = 1 << 16  # largest models today: 16384-25600 wide
    ff: int = 1 << 20
    vocab: int = 1 << 22  # largest vocabularies today: ~262k
    context: int = 1 << 24


LIMITS = Limits()

_MISSING = object()


class HParams:
    """Typed, bounded reads of ``{arch}.*`` metadata keys (names relative to the arch)."""

    def __init__(self, gguf: GGUFFile, arch: str) -> None:
        self.gguf = gguf
        self.arch = arch

    def key(self, name: str) -> str:
        return f"{self.arch}.{name}"

    def _raw(self, name: str, default: Any) -> Any:
        value = self.gguf.get(self.key(name))
        if value is None and default is _MISSING:
            raise MetadataError(self.gguf.path, self.key(name), None, "a value (the key is required)")
        return value

    def int(self, name: str, lo: int, hi: int, default: Any = _MISSING) -> int:
        """An integer in ``lo..hi``; ``default`` where the key is absent."""
        value = self._raw(name, default)
        if value is None:
            return default
        return self._int_value(name, value, lo, hi)

    def _int_value(self, name: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise MetadataError(self.gguf.path, self.key(name), value, f"an integer from {lo} to {hi}")
        value = int(value)
        if not lo <= value <= hi:
            raise MetadataError(self.gguf.path, self.key(name), value, f"an integer from {lo} to {hi}")
        return value

    def per_layer_int(self, name: str, n_layer: int, lo: int, hi: int, default: Any = _MISSING) -> int:
        """An integer that files may also store as one value per layer (llama.cpp allows
        arrays for head counts); kettle runs one value for every layer, so an array must
        have ``n_layer`` equal entries."""
        value = self._raw(name, default)
        if value is None:
            return default
        if isinstance(value, np.ndarray):
            if value.ndim != 1 or value.shape[0] != n_layer or not np.issubdtype(value.dtype, np.integer):
                raise MetadataError(self.gguf.path, self.key(name), _short(value),
                                    f"an integer, or an array of {n_layer} integers (one per layer)")
            if value.size and (value != value[0]).any():
                raise MetadataError(self.gguf.path, self.key(name), _short(value),
                                    "the same value for every layer (per-layer sizes are not supported)")
            value = value[0]
        return self._int_value(name, value, lo, hi)

    def float(self, name: str, lo: float, hi: float, default: Any = _MISSING, *, open_lo: bool = False) -> float:
        """A finite number in ``lo..hi`` (``open_lo``: strictly above ``lo``)."""
        value = self._raw(name, default)
        if value is None:
            return default
        expected = f"a number {'greater than' if open_lo else 'at least'} {lo:g} and at most {hi:g}"
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise MetadataError(self.gguf.path, self.key(name), value, expected)
        value = float(value)
        if not math.isfinite(value) or value > hi or value < lo or (open_lo and value == lo):
            raise MetadataError(self.gguf.path, self.key(name), value, expected)
        return value

    def decoder_dims(self) -> dict[str, int]:
        """The sizes every decoder declares, named as ``TransformerConfig`` names them
        (and as weight shapes refer to them), each range-checked."""
        n_layer = self.int("block_count", 1, LIMITS.layers)
        n_embd = self.int("embedding_length", 1, LIMITS.embd)
        n_head = self.per_layer_int("attention.head_count", n_layer, 1, LIMITS.heads)
        n_kv_head = self.per_layer_int("attention.head_count_kv", n_layer, 1, LIMITS.heads, n_head)
        if n_embd % n_head and self.gguf.get(self.key("attention.key_length")) is None:
            raise MetadataError(self.gguf.path, self.key("attention.head_count"), n_head,
                                f"a divisor of embedding_length {n_embd} (or a key_length in the file)")
        head_dim = self.int("attention.key_length", 1, LIMITS.head_dim, n_embd // n_head)
        value_dim = self.int("attention.value_length", 1, LIMITS.head_dim, head_dim)
        if value_dim != head_dim:
            raise MetadataError(self.gguf.path, self.key("attention.value_length"), value_dim,
                                f"equal to key_length {head_dim}")
        embd = self.gguf.tensors.get("token_embd.weight")
        n_vocab = embd.shape[0] if embd is not None and len(embd.shape) == 2 else 1  # the binder reports a bad one
        if n_vocab > LIMITS.vocab:
            raise MetadataError(self.gguf.path, "token_embd.weight rows", n_vocab, f"at most {LIMITS.vocab} tokens")
        return {
            "n_vocab": n_vocab,
            "n_embd": n_embd,
            "n_layer": n_layer,
            "n_head": n_head,
            "n_kv_head": n_kv_head,
            "head_dim": head_dim,
            "n_ff": self.int("feed_forward_length", 1, LIMITS.ff),
        }

    def context_length(self, default: int) -> int:
        return self.int("context_length", 1, LIMITS.context, default)

    def rms_eps(self, default: float) -> float:
        return self.float("attention.layer_norm_rms_epsilon", 0.0, 1.0, default, open_lo=True)

    def rope_base(self, default: float) -> float:
        return self.float("rope.freq_base", 0.0, 1e12, default, open_lo=True)


def check_config(gguf: GGUFFile, cfg: Any) -> None:
    """Cross-check a finished ``TransformerConfig``: what the kernels index by must agree.

    Raises ``MetadataError`` naming the key of the first value that does not fit.
    """
    arch = cfg.arch
    key = lambda name: f"{arch}.{name}"  # noqa: E731
    if cfg.n_kv_head > cfg.n_head or cfg.n_head % cfg.n_kv_head:
        raise MetadataError(gguf.path, key("attention.head_count_kv"), cfg.n_kv_head,
                            f"a divisor of head_count {cfg.n_head}")
    if not 2 <= cfg.n_rot <= cfg.head_dim or cfg.n_rot % 2:
        raise MetadataError(gguf.path, key("rope.dimension_count"), cfg.n_rot,
                            f"an even number from 2 to the head size {cfg.head_dim}")
    if len(cfg.layers) != cfg.n_layer:
        raise MetadataError(gguf.path, key("block_count"), cfg.n_layer, f"{len(cfg.layers)} layer descriptions")
    for lc in cfg.layers:
        if not 0 <= lc.window <= LIMITS.context:
            raise MetadataError(gguf.path, key("attention.sliding_window"), lc.window,
                                f"an integer from 0 to {LIMITS.context}")
        if not (math.isfinite(lc.rope_base) and lc.rope_base > 0):
            raise MetadataError(gguf.path, key("rope.freq_base"), lc.rope_base, "a positive number")
    for name in ("attn_scale", "embd_scale", "eps"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise MetadataError(gguf.path, f"{arch} {name}", value, "a positive finite number")


def _short(value: Any) -> Any:
    """A value fit for an error message (long arrays and strings cut)."""
    if isinstance(value, np.ndarray):
        items = value[:8].tolist()
        return f"array{items}{' ...' if value.size > 8 else ''} (length {value.size})"
    if isinstance(value, (list, tuple)):
        return f"array of {len(value)} items"
    if isinstance(value, str) and len(value) > 80:
        return value[:80] + "..."
    return value
