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

A key llama.cpp requires of an architecture is required here too (an error
naming it); a key llama.cpp defaults takes llama.cpp's default (the first
architectures, llama, qwen2 and gemma3, keep kettle's older defaults for the
epsilon and the context); a key that is present but unusable is an error,
never a silent default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kettle.errors import MetadataError
from kettle.gguf import GGUFFile
from kettle.ops import Rope

if TYPE_CHECKING:
    from kettle.models.transformer import MoEConfig


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
    experts: int = 1 << 10  # largest today: 256-384
    rope_scale: float = 1e4  # rope.scaling.factor (real ones: 2-64)
    multiplier: float = 1e4  # granite's scales, soft-caps, attention factors


ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")  # llama.cpp's names
YARN_BETA_FAST, YARN_BETA_SLOW = 32.0, 1.0  # llama.cpp's defaults (the archs kettle runs read no keys for them)


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

    def string(self, name: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        """One of ``choices``; ``default`` where the key is absent."""
        value = self._raw(name, default)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            raise MetadataError(self.gguf.path, self.key(name), _short(value), f"one of {', '.join(choices)}")
        return value

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        value = self._raw(name, default)
        if value is None:
            return default
        if not isinstance(value, (bool, np.bool_)):
            raise MetadataError(self.gguf.path, self.key(name), _short(value), "true or false")
        return bool(value)

    def rope_dims(self, head_dim: int, *, partial: bool) -> int:
        """``rope.dimension_count`` (default the head size); archs whose llama.cpp graph
        rotates whole heads (``partial=False``) refuse any other value."""
        n_rot = self.int("rope.dimension_count", 0, LIMITS.head_dim, head_dim)
        if not partial and n_rot != head_dim:
            raise MetadataError(self.gguf.path, self.key("rope.dimension_count"), n_rot,
                                f"the head size {head_dim} (this architecture rotates whole heads)")
        return n_rot

    def rope(self, context_length: int, *, longrope: bool = False, base_default: float = 10000.0) -> Rope:
        """The rope of the full-attention layers: ``rope.freq_base`` and the scaling keys, as
        llama.cpp reads them (llama_model::load_hparams, llama_context's yarn set-up):

        - ``rope.scaling.type``: none, linear (the default), yarn, longrope;
        - ``rope.scaling.factor`` (older files: ``rope.scale_linear``); 0 or absent: 1;
        - ``rope.scaling.attn_factor`` (default 1), ``rope.scaling.original_context_length``
          (default ``context_length``).

        Frequency factors come from tensors: ``rope_freqs.weight`` where the file has it
        (Llama 3.1+), ``rope_factors_short/long.weight`` with longrope (or ``longrope``:
        phi3, whose converter writes the factors without a type).
        """
        base = self.rope_base(base_default)
        kind = self.string("rope.scaling.type", ROPE_SCALING_TYPES, "linear")
        factor_key = "rope.scaling.factor" if self.gguf.get(self.key("rope.scaling.factor")) is not None \
            else "rope.scale_linear"
        factor = self.float(factor_key, 0.0, LIMITS.rope_scale, 0.0)
        factor = 1.0 if factor == 0.0 or kind == "none" else factor
        attn = self.float("rope.scaling.attn_factor", 0.0, LIMITS.multiplier, 1.0, open_lo=True)
        n_ctx_orig = self.int("rope.scaling.original_context_length", 1, LIMITS.context, context_length)
        freq_scale = 1.0 / factor
        ext_factor = 0.0
        if kind == "yarn":
            if factor < 1.0:
                raise MetadataError(self.gguf.path, self.key(factor_key), factor,
                                    "a factor of at least 1 (YaRN extends a context; it cannot shrink one)")
            ext_factor = 1.0
            # llama_context: mscale(factor) / (1 + 0.1 ln factor), which rope_yarn multiplies back
            mscale = 1.0 + 0.1 * math.log(factor) if factor > 1.0 else 1.0
            attn *= mscale / (1.0 + 0.1 * math.log(factor))
        names = self.gguf.tensors
        long_rope = longrope or kind == "longrope"
        if long_rope:
            short = "rope_factors_short.weight" if "rope_factors_short.weight" in names else None
            long_ = "rope_factors_long.weight" if "rope_factors_long.weight" in names else None
            return Rope(base, freq_scale, ext_factor, attn, n_ctx_orig, YARN_BETA_FAST, YARN_BETA_SLOW,
                        factors=short, long_factors=long_)
        freqs = "rope_freqs.weight" if "rope_freqs.weight" in names else None
        return Rope(base, freq_scale, ext_factor, attn, n_ctx_orig, YARN_BETA_FAST, YARN_BETA_SLOW, factors=freqs)

    def decoder_dims(self, n_ff_default: Any = _MISSING) -> dict[str, int]:
        """The sizes every decoder declares, named as ``TransformerConfig`` names them
        (and as weight shapes refer to them), each range-checked (``n_ff_default``: the
        feed-forward width where the key is absent; mixtures of experts may omit it)."""
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
            "n_ff": self.per_layer_int("feed_forward_length", n_layer, 1, LIMITS.ff, n_ff_default),
        }

    def moe(self, *, norm_weights: bool, shared: bool, n_ff: int, n_ff_exp: int | None = None) -> MoEConfig:
        """``expert_count``, ``expert_used_count``, ``expert_feed_forward_length`` (all required;
        ``n_ff_exp`` given: the experts' width, not read: Mixtral's are ``feed_forward_length``),
        and with ``shared`` the shared expert's ``expert_shared_feed_forward_length`` (default
        ``n_ff``, as llama.cpp's qwen2moe)."""
        from kettle.models.transformer import MoEConfig

        n_layer = self.int("block_count", 1, LIMITS.layers)
        n_expert = self.int("expert_count", 1, LIMITS.experts)
        used = self.per_layer_int("expert_used_count", n_layer, 1, n_expert)
        if n_ff_exp is None:
            n_ff_exp = self.per_layer_int("expert_feed_forward_length", n_layer, 1, LIMITS.ff)
        n_ff_shexp = self.int("expert_shared_feed_forward_length", 1, LIMITS.ff, n_ff) if shared else 0
        return MoEConfig(n_expert, used, n_ff_exp, norm_weights, n_ff_shexp, shared_gate=shared)

    def swa_pattern(self, n_layer: int, period: int) -> tuple[bool, ...]:
        """Which layers use the sliding window: ``attention.sliding_window_pattern`` as a
        per-layer bool array, or a period n (layer i slides unless i % n == n - 1; 0: all),
        ``period`` where absent (llama.cpp's set_swa_pattern)."""
        name = "attention.sliding_window_pattern"
        value = self._raw(name, None)
        if isinstance(value, np.ndarray) and value.dtype == np.bool_:
            if value.shape != (n_layer,):
                raise MetadataError(self.gguf.path, self.key(name), _short(value),
                                    f"{n_layer} booleans (one per layer)")
            return tuple(bool(v) for v in value)
        n = self.int(name, 0, LIMITS.layers, period)
        return tuple(n == 0 or i % n < n - 1 for i in range(n_layer))

    def context_length(self, default: Any = _MISSING) -> int:
        """``context_length``; required unless a default is given (llama.cpp requires it;
        kettle's first architectures take a default)."""
        return self.int("context_length", 1, LIMITS.context, default)

    def rms_eps(self, default: Any = _MISSING) -> float:
        """``attention.layer_norm_rms_epsilon``; required unless a default is given (llama.cpp
        requires it of every RMS-norm architecture; kettle's first three take a default)."""
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
        if lc.rope is not None:
            _check_rope(gguf, arch, lc.rope)
    for name in ("attn_scale", "embd_scale", "eps", "residual_scale", "logit_scale"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise MetadataError(gguf.path, f"{arch} {name}", value, "a positive finite number")
    for name in ("attn_softcap", "final_softcap"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and 0 <= value <= LIMITS.multiplier):
            raise MetadataError(gguf.path, f"{arch} {name}", value, f"a number from 0 to {LIMITS.multiplier:g}")
    if cfg.moe is not None:
        m = cfg.moe
        if not 1 <= m.n_expert_used <= m.n_expert <= LIMITS.experts:
            raise MetadataError(gguf.path, key("expert_used_count"), m.n_expert_used,
                                f"an integer from 1 to expert_count {m.n_expert}")


def _check_rope(gguf: GGUFFile, arch: str, rope: Rope) -> None:
    if not (math.isfinite(rope.base) and rope.base > (1.0 if rope.ext_factor else 0.0)):
        raise MetadataError(gguf.path, f"{arch}.rope.freq_base", rope.base,
                            "a finite number greater than 1 (YaRN)" if rope.ext_factor else "a positive number")
    if not (math.isfinite(rope.freq_scale) and rope.freq_scale > 0):
        raise MetadataError(gguf.path, f"{arch}.rope.scaling.factor", rope.freq_scale, "a positive number")
    if not (math.isfinite(rope.attn_factor) and 0 < rope.attn_factor <= LIMITS.multiplier):
        raise MetadataError(gguf.path, f"{arch}.rope.scaling.attn_factor", rope.attn_factor,
                            f"a number greater than 0 and at most {LIMITS.multiplier:g}")
    if (rope.ext_factor or rope.long_factors) and not 1 <= rope.n_ctx_orig <= LIMITS.context:
        raise MetadataError(gguf.path, f"{arch}.rope.scaling.original_context_length", rope.n_ctx_orig,
                            f"an integer from 1 to {LIMITS.context}")


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
