"""The decoder-only transformer block every supported architecture is made of.

Architecture files (``llama.py``, ``gemma2.py``, ``qwen3moe.py``, ...) read
their hyper-parameters, declare their weights, and describe their differences
with a ``TransformerConfig`` (declared fields, never the architecture's name);
this module runs the step. A step takes a batch of tokens from any number of
sequences (``slots`` picks each token's KV-cache row), writes their keys and
values, and returns logits (or final hidden states) for the rows asked for.

One layer, as llama.cpp's graphs compute it (the fields that switch each part):

    h = norm(x)                                  pre_norms (olmo2 has none); norm: RMS or LayerNorm + bias
    q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)  fused_qkv: one attn_qkv matrix (phi3)
    q, k = qk_norm(q), qk_norm(k)                per head (qwen3, gemma3) or whole vectors (olmo2)
    q, k = rope(q), rope(k)                      per layer: a ``Rope``, or none (smollm3's NoPE layers)
    o = attention(q, K, V) Wo (+bo)              window per layer; attn_softcap (gemma2)
    x += residual_scale * post_norm(o)           post_norms (gemma2/3, olmo2); residual_scale (granite)
    h = norm(x)
    x += residual_scale * post_norm(ffn(h))      feed_forward: gated / fused gate-up / plain / experts
    logits = final_softcap(logit_scale * (norm(x) Wout))
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kettle.errors import WeightError
from kettle.models.base import W, BoundWeights
from kettle.quant import MatmulGroup
from kettle.ops import (
    Rope,
    RopeStyle,
    add_inplace,
    attention,
    gelu_tanh,
    gelu_tanh_mul,
    layer_norm,
    rms_norm,
    rms_norm_heads,
    rope_inplace,
    rope_table,
    scale_inplace,
    silu_mul,
)

# The weights of the llama block; architecture files take what they have and add their own.
EMBEDDING_WEIGHTS = (
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("output_norm.weight", ("n_embd",)),
    W("output.weight", ("n_vocab", "n_embd"), tied="token_embd.weight"),
)
QKV_WEIGHTS = (
    W("blk.{i}.attn_q.weight", ("n_head * head_dim", "n_embd")),
    W("blk.{i}.attn_k.weight", ("n_kv_head * head_dim", "n_embd")),
    W("blk.{i}.attn_v.weight", ("n_kv_head * head_dim", "n_embd")),
)
QKV_BIASES = (
    W("blk.{i}.attn_q.bias", ("n_head * head_dim",), optional=True),
    W("blk.{i}.attn_k.bias", ("n_kv_head * head_dim",), optional=True),
    W("blk.{i}.attn_v.bias", ("n_kv_head * head_dim",), optional=True),
)
ATTN_OUTPUT = (W("blk.{i}.attn_output.weight", ("n_embd", "n_head * head_dim")),)
ATTN_NORM = (W("blk.{i}.attn_norm.weight", ("n_embd",)),)
FFN_NORM = (W("blk.{i}.ffn_norm.weight", ("n_embd",)),)
GATED_FFN = (
    W("blk.{i}.ffn_gate.weight", ("n_ff", "n_embd")),
    W("blk.{i}.ffn_up.weight", ("n_ff", "n_embd")),
    W("blk.{i}.ffn_down.weight", ("n_embd", "n_ff")),
)
HEAD_QK_NORMS = (
    W("blk.{i}.attn_q_norm.weight", ("head_dim",)),
    W("blk.{i}.attn_k_norm.weight", ("head_dim",)),
)
POST_NORMS = (
    W("blk.{i}.post_attention_norm.weight", ("n_embd",)),
    W("blk.{i}.post_ffw_norm.weight", ("n_embd",)),
)
CORE_WEIGHTS = (*EMBEDDING_WEIGHTS, *ATTN_NORM, *QKV_WEIGHTS, *ATTN_OUTPUT, *FFN_NORM, *GATED_FFN)
ROPE_FREQS = "rope_freqs.weight"  # Llama 3.1+ frequency factors (n_rot/2,)
ROPE_FACTORS_SHORT, ROPE_FACTORS_LONG = "rope_factors_short.weight", "rope_factors_long.weight"  # LongRoPE


def rope_factor_weights(layers: tuple[LayerConfig, ...]) -> list[W]:
    """The frequency-factor tensors the layers' ropes name (``HParams.rope`` names only
    those the file has), declared so: a factors tensor no rope uses is unexpected."""
    names = sorted({n for lc in layers if lc.rope is not None for n in (lc.rope.factors, lc.rope.long_factors) if n})
    return [W(name, ("n_rot_half",)) for name in names]


class Activation(enum.Enum):
    SILU = "silu"  # SwiGLU (llama)
    GELU_TANH = "gelu_tanh"  # GeGLU (gemma), GELU (starcoder2)


class Norm(enum.Enum):
    RMS = "rms"  # x / rms(x) * w
    LAYER = "layer"  # (x - mean) / std * w + b (starcoder2)


class QKNorm(enum.Enum):
    NONE = "none"
    HEAD = "head"  # each head normed, weights (head_dim,) (qwen3, gemma3)
    FULL = "full"  # the whole q and k vectors normed, weights (n_head * head_dim,), (n_kv * head_dim,) (olmo2)


class FeedForward(enum.Enum):
    GATED = "gated"  # act(h Wgate) * (h Wup), then Wdown
    FUSED = "fused"  # ffn_up holds [gate; up] (2 n_ff rows) (phi3)
    PLAIN = "plain"  # act(h Wup + bup) Wdown + bdown (starcoder2)
    EXPERTS = "experts"  # a routed mixture of gated experts (moe.py)


@dataclass(frozen=True)
class LayerConfig:
    window: int  # sliding-window size in tokens; 0 = attends to the whole context
    rope: Rope | None  # how the layer rotates q and k; None = no positions at all (NoPE)

    @property
    def rope_base(self) -> float:
        return self.rope.base if self.rope is not None else 0.0


@dataclass(frozen=True)
class MoEConfig:
    n_expert: int  # {arch}.expert_count
    n_expert_used: int  # {arch}.expert_used_count: the top-k the router picks per token
    n_ff_exp: int  # {arch}.expert_feed_forward_length: rows of each expert's gate and up
    norm_weights: bool  # the chosen experts' probabilities renormalised to sum 1 (qwen3moe) or not
    n_ff_shexp: int = 0  # the shared expert's width; 0 = no shared expert
    shared_gate: bool = False  # the shared expert scaled by sigmoid(h . ffn_gate_inp_shexp) (qwen2moe)


@dataclass(frozen=True)
class TransformerConfig:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_kv_head: int
    head_dim: int
    n_ff: int
    n_rot: int  # dimensions of each head that rope rotates
    eps: float  # norm epsilon
    rope_style: RopeStyle
    layers: tuple[LayerConfig, ...]
    activation: Activation
    attn_scale: float  # applied to q.k
    embd_scale: float = 1.0  # gemma multiplies embeddings by sqrt(n_embd); granite by its embedding_scale
    qk_norm: QKNorm = QKNorm.NONE
    post_norms: bool = False  # norms after attention and after the ffn (gemma2/3, olmo2)
    pre_norms: bool = True  # norms before attention and before the ffn (all but olmo2)
    norm: Norm = Norm.RMS
    fused_qkv: bool = False  # one attn_qkv matrix (n_head + 2 n_kv) * head_dim rows (phi3)
    feed_forward: FeedForward = FeedForward.GATED
    moe: MoEConfig | None = None  # the experts, when feed_forward is EXPERTS
    attn_softcap: float = 0.0  # scores capped at +-attn_softcap by tanh (gemma2); 0 = off
    final_softcap: float = 0.0  # logits capped likewise (gemma2); 0 = off
    residual_scale: float = 1.0  # each block's output scaled before its residual add (granite)
    logit_scale: float = 1.0  # logits multiplied by (granite: 1 / logit_scale)
    context_length: int = 2048  # what the model was trained for

    @property
    def kv_width(self) -> int:
        return self.n_kv_head * self.head_dim


class KVStore(Protocol):
    """What the model needs of the KV cache: per-layer arrays, a writer, its positions per slot."""

    n_ctx: int

    # k, v (n_slots, n_kv, n_ctx, hd) in the cache's type, and q8_0's scales (else None)
    def layer(self, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]: ...

    def put(self, layer: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None: ...


def _rope_factors(cfg: TransformerConfig, w: BoundWeights) -> dict[str, np.ndarray]:
    """The frequency-factor vectors the layers' ropes name, checked: finite and positive
    (a zero would divide an angle by zero)."""
    names = {n for lc in cfg.layers if lc.rope is not None for n in (lc.rope.factors, lc.rope.long_factors) if n}
    out = {}
    for name in sorted(names):
        f = w.get(name)
        if f is None or f.shape != (cfg.n_rot // 2,):
            raise WeightError(f"rope factors '{name}' missing or not of shape ({cfg.n_rot // 2},)")
        f = np.asarray(f, dtype=np.float32)
        if not (np.isfinite(f).all() and (f > 0).all() and (f < 1e6).all()):
            raise WeightError(f"rope factors '{name}' must be finite positive numbers below 1e6 "
                              f"(the file's are {f[:4].tolist()}...): the file is damaged; convert it again")
        out[name] = f
    return out


class Transformer:
    """A loaded model: config + bound weights; ``forward`` runs one batched step."""

    def __init__(self, config: TransformerConfig, weights: BoundWeights) -> None:
        self.config = config
        self.weights = weights
        w = weights
        self.token_embd = w["token_embd.weight"]  # QuantMatrix (n_vocab, n_embd)
        self.output = w["output.weight"]  # QuantMatrix (n_vocab, n_embd), often tied
        self.output_norm = w["output_norm.weight"]  # (n_embd,)
        self.output_norm_b = w.get("output_norm.bias")  # (n_embd,) LayerNorm models
        self.rope_factors = _rope_factors(config, w)  # name -> (n_rot/2,)
        self.blocks = [_Block(config, w, i) for i in range(config.n_layer)]

    def forward(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        slots: np.ndarray,
        cache: KVStore,
        out_rows: np.ndarray,
        hidden: bool = False,
    ) -> np.ndarray:
        """tokens, positions, slots (n,) int32; out_rows (m,) indices into the batch.

        Returns logits (m, n_vocab), or the final-normed hidden states (m, n_embd)
        when ``hidden``. Keys and values of all n tokens are written to ``cache``.
        """
        cfg = self.config
        x = self.token_embd.get_rows(tokens)  # (n, n_embd)
        if cfg.embd_scale != 1.0:
            scale_inplace(x, cfg.embd_scale)
        tables: dict[Rope, tuple[np.ndarray, np.ndarray]] = {}
        for lc in cfg.layers:
            if lc.rope is not None and lc.rope not in tables:
                name = lc.rope.factor_name(cache.n_ctx)
                tables[lc.rope] = rope_table(positions, cfg.n_rot, lc.rope, self.rope_factors.get(name))
        for block in self.blocks:
            rope = block.layer.rope
            block(x, tables[rope] if rope is not None else None, positions, slots, cache)
        x = np.ascontiguousarray(x[out_rows])  # (m, n_embd)
        x = _norm(cfg, x, self.output_norm, self.output_norm_b)
        if hidden:
            return x
        logits = self.output.matmul(x)  # (m, n_vocab)
        if cfg.logit_scale != 1.0:
            scale_inplace(logits, cfg.logit_scale)
        if cfg.final_softcap > 0:
            _softcap(logits, cfg.final_softcap)
        return logits


def _norm(cfg: TransformerConfig, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if cfg.norm is Norm.LAYER:
        return layer_norm(x, w, b, cfg.eps)
    return rms_norm(x, w, cfg.eps)


def _softcap(x: np.ndarray, cap: float) -> np.ndarray:
    """x := cap * tanh(x / cap), in place (element-wise: row-independent)."""
    c = np.float32(cap)
    np.multiply(np.tanh(x / c), c, out=x)
    return x


def _add_bias(x: np.ndarray, b: np.ndarray | None) -> None:
    if b is not None:
        x += b


class _Block:
    """One decoder layer: attention then feed-forward, each with a residual."""

    def __init__(self, cfg: TransformerConfig, w: BoundWeights, i: int) -> None:
        p = f"blk.{i}."
        self.cfg = cfg
        self.index = i
        self.layer = cfg.layers[i]
        self.attn_norm, self.attn_norm_b = w.get(p + "attn_norm.weight"), w.get(p + "attn_norm.bias")
        if cfg.fused_qkv:
            self.wqkv = w[p + "attn_qkv.weight"]  # ((n_head + 2 n_kv) * hd, n_embd)
            self.qkv = MatmulGroup((self.wqkv,))
            self.bq = self.bk = self.bv = None
            self.bqkv = w.get(p + "attn_qkv.bias")
        else:
            self.wq, self.wk, self.wv = w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"]
            self.qkv = MatmulGroup((self.wq, self.wk, self.wv))
            self.bq, self.bk, self.bv = w.get(p + "attn_q.bias"), w.get(p + "attn_k.bias"), w.get(p + "attn_v.bias")
            self.bqkv = None
        self.wo, self.bo = w[p + "attn_output.weight"], w.get(p + "attn_output.bias")
        self.q_norm = w.get(p + "attn_q_norm.weight")
        self.k_norm = w.get(p + "attn_k_norm.weight")
        post = cfg.post_norms  # the architecture declares POST_NORMS (required) exactly when it sets this
        if not post and any(w.get(p + n) is not None for n in ("post_attention_norm.weight", "post_ffw_norm.weight")):
            raise WeightError(f"{p}post-norm weights are bound but {cfg.arch} has post_norms off")
        self.post_attn_norm = w[p + "post_attention_norm.weight"] if post else None  # (n_embd,)
        self.ffn_norm, self.ffn_norm_b = w.get(p + "ffn_norm.weight"), w.get(p + "ffn_norm.bias")
        self.post_ffn_norm = w[p + "post_ffw_norm.weight"] if post else None  # (n_embd,)
        self.act = silu_mul if cfg.activation == Activation.SILU else gelu_tanh_mul
        if cfg.feed_forward is FeedForward.EXPERTS:
            from kettle.models.moe import MoEFeedForward

            self.ffn = MoEFeedForward(cfg, w, p, self.act)
        else:
            self.w_gate, self.w_up = w.get(p + "ffn_gate.weight"), w[p + "ffn_up.weight"]
            self.w_down = w[p + "ffn_down.weight"]
            self.b_gate, self.b_up = w.get(p + "ffn_gate.bias"), w.get(p + "ffn_up.bias")
            self.b_down = w.get(p + "ffn_down.bias")
            if cfg.feed_forward is FeedForward.GATED:
                self.gate_up = MatmulGroup((self.w_gate, self.w_up))
            self.ffn = self._dense_ffn

    def _qkv(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        if not cfg.fused_qkv:
            q, k, v = self.qkv(h)  # (n, n_head * hd), 2 x (n, n_kv * hd)
            _add_bias(q, self.bq)
            _add_bias(k, self.bk)
            _add_bias(v, self.bv)
            return q, k, v
        (qkv,) = self.qkv(h)  # (n, (n_head + 2 n_kv) * hd)
        _add_bias(qkv, self.bqkv)
        a, b = cfg.n_head * cfg.head_dim, cfg.n_head * cfg.head_dim + cfg.kv_width
        return (np.ascontiguousarray(qkv[:, :a]), np.ascontiguousarray(qkv[:, a:b]),
                np.ascontiguousarray(qkv[:, b:]))

    def _dense_ffn(self, h: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if cfg.feed_forward is FeedForward.PLAIN:
            up = self.w_up.matmul(h)  # (n, n_ff)
            _add_bias(up, self.b_up)
            a = gelu_tanh(up)  # starcoder2's GELU (the only plain feed-forward)
        else:
            if cfg.feed_forward is FeedForward.FUSED:
                both = self.w_up.matmul(h)  # (n, 2 n_ff): [gate; up]
                gate, up = np.ascontiguousarray(both[:, :cfg.n_ff]), np.ascontiguousarray(both[:, cfg.n_ff:])
            else:
                gate, up = self.gate_up(h)  # 2 x (n, n_ff)
                _add_bias(gate, self.b_gate)
                _add_bias(up, self.b_up)
            a = self.act(gate, up)
        d = self.w_down.matmul(a)  # (n, n_embd)
        _add_bias(d, self.b_down)
        return d

    def _residual(self, x: np.ndarray, o: np.ndarray, post_norm: np.ndarray | None) -> None:
        if post_norm is not None:
            o = rms_norm(o, post_norm, self.cfg.eps)
        if self.cfg.residual_scale != 1.0:
            scale_inplace(o, self.cfg.residual_scale)
        add_inplace(x, o)

    def __call__(self, x: np.ndarray, rope: tuple[np.ndarray, np.ndarray] | None, positions: np.ndarray,
                 slots: np.ndarray, cache: KVStore) -> None:
        cfg = self.cfg
        n = x.shape[0]
        h = _norm(cfg, x, self.attn_norm, self.attn_norm_b) if cfg.pre_norms else x  # (n, n_embd)
        q, k, v = self._qkv(h)
        if cfg.qk_norm is QKNorm.HEAD:
            rms_norm_heads(q, self.q_norm, cfg.eps)
            rms_norm_heads(k, self.k_norm, cfg.eps)
        elif cfg.qk_norm is QKNorm.FULL:
            q, k = rms_norm(q, self.q_norm, cfg.eps), rms_norm(k, self.k_norm, cfg.eps)
        if rope is not None:
            rope_inplace(q, rope, cfg.n_head, cfg.head_dim, cfg.rope_style)
            rope_inplace(k, rope, cfg.n_kv_head, cfg.head_dim, cfg.rope_style)
        cache.put(self.index, slots, positions, k, v)
        k_cache, v_cache, k_scales, v_scales = cache.layer(self.index)
        att = np.empty((n, cfg.n_head, cfg.head_dim), dtype=np.float32)
        attention(
            q.reshape(n, cfg.n_head, cfg.head_dim), k_cache, v_cache, slots, positions,
            self.layer.window, cfg.attn_scale, att, cfg.attn_softcap, k_scales, v_scales,
        )
        o = self.wo.matmul(att.reshape(n, cfg.n_head * cfg.head_dim))  # (n, n_embd)
        _add_bias(o, self.bo)
        self._residual(x, o, self.post_attn_norm)

        h = _norm(cfg, x, self.ffn_norm, self.ffn_norm_b) if cfg.pre_norms else x
        self._residual(x, self.ffn(h), self.post_ffn_norm)


def default_attn_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
