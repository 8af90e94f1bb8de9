"""The decoder-only transformer block every supported architecture is made of.

Architecture files (``llama.py``, ``gemma3.py``) read their hyper-parameters,
declare their weights, and describe their differences with a
``TransformerConfig``; this module runs the step. A step takes a batch of
tokens from any number of sequences (``slots`` picks each token's KV-cache
row), writes their keys and values, and returns logits (or final hidden
states) for the rows asked for.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kettle.models.base import W, BoundWeights
from kettle.quant import MatmulGroup
from kettle.ops import (
    RopeStyle,
    add_inplace,
    attention,
    gelu_tanh_mul,
    rms_norm,
    rms_norm_heads,
    rope_inplace,
    rope_table,
    scale_inplace,
    silu_mul,
)


# The weights every block has; architecture files add their own.
CORE_WEIGHTS = (
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("output_norm.weight", ("n_embd",)),
    W("output.weight", ("n_vocab", "n_embd"), tied="token_embd.weight"),
    W("blk.{i}.attn_norm.weight", ("n_embd",)),
    W("blk.{i}.attn_q.weight", ("n_head * head_dim", "n_embd")),
    W("blk.{i}.attn_k.weight", ("n_kv_head * head_dim", "n_embd")),
    W("blk.{i}.attn_v.weight", ("n_kv_head * head_dim", "n_embd")),
    W("blk.{i}.attn_output.weight", ("n_embd", "n_head * head_dim")),
    W("blk.{i}.ffn_norm.weight", ("n_embd",)),
    W("blk.{i}.ffn_gate.weight", ("n_ff", "n_embd")),
    W("blk.{i}.ffn_up.weight", ("n_ff", "n_embd")),
    W("blk.{i}.ffn_down.weight", ("n_embd", "n_ff")),
)


class Activation(enum.Enum):
    SILU = "silu"  # SwiGLU (llama)
    GELU_TANH = "gelu_tanh"  # GeGLU (gemma)


@dataclass(frozen=True)
class LayerConfig:
    window: int  # sliding-window size in tokens; 0 = attends to the whole context
    rope_base: float


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
    eps: float  # rms-norm epsilon
    rope_style: RopeStyle
    layers: tuple[LayerConfig, ...]
    activation: Activation
    attn_scale: float  # applied to q.k
    embd_scale: float = 1.0  # gemma multiplies embeddings by sqrt(n_embd)
    qk_norm: bool = False  # per-head rms norm of q and k (gemma3)
    post_norms: bool = False  # norms after attention and after the ffn (gemma2/3)
    context_length: int = 2048  # what the model was trained for

    @property
    def kv_width(self) -> int:
        return self.n_kv_head * self.head_dim


class KVStore(Protocol):
    """What the model needs of the KV cache: per-layer arrays and a writer."""

    def layer(self, layer: int) -> tuple[np.ndarray, np.ndarray]: ...  # k, v: (n_slots, n_kv, n_ctx, hd)

    def put(self, layer: int, slots: np.ndarray, positions: np.ndarray, k: np.ndarray, v: np.ndarray) -> None: ...


class Transformer:
    """A loaded model: config + bound weights; ``forward`` runs one batched step."""

    def __init__(self, config: TransformerConfig, weights: BoundWeights) -> None:
        self.config = config
        self.weights = weights
        w = weights
        self.token_embd = w["token_embd.weight"]  # QuantMatrix (n_vocab, n_embd)
        self.output = w["output.weight"]  # QuantMatrix (n_vocab, n_embd), often tied
        self.output_norm = w["output_norm.weight"]  # (n_embd,)
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
        tables = {base: rope_table(positions, cfg.n_rot, base) for base in {lc.rope_base for lc in cfg.layers}}
        for block in self.blocks:
            block(x, tables[block.layer.rope_base], positions, slots, cache)
        x = np.ascontiguousarray(x[out_rows])  # (m, n_embd)
        x = rms_norm(x, self.output_norm, cfg.eps)
        if hidden:
            return x
        return self.output.matmul(x)  # (m, n_vocab)


class _Block:
    """One decoder layer: attention then feed-forward, each with a residual."""

    def __init__(self, cfg: TransformerConfig, w: BoundWeights, i: int) -> None:
        p = f"blk.{i}."
        self.cfg = cfg
        self.index = i
        self.layer = cfg.layers[i]
        self.attn_norm = w[p + "attn_norm.weight"]
        self.wq, self.wk, self.wv = w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"]
        self.qkv = MatmulGroup((self.wq, self.wk, self.wv))
        self.bq, self.bk, self.bv = w.get(p + "attn_q.bias"), w.get(p + "attn_k.bias"), w.get(p + "attn_v.bias")
        self.wo = w[p + "attn_output.weight"]
        self.q_norm = w.get(p + "attn_q_norm.weight")
        self.k_norm = w.get(p + "attn_k_norm.weight")
        self.post_attn_norm = w.get(p + "post_attention_norm.weight")
        self.ffn_norm = w[p + "ffn_norm.weight"]
        self.w_gate, self.w_up, self.w_down = w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"], w[p + "ffn_down.weight"]
        self.gate_up = MatmulGroup((self.w_gate, self.w_up))
        self.post_ffn_norm = w.get(p + "post_ffw_norm.weight")
        self.act = silu_mul if cfg.activation == Activation.SILU else gelu_tanh_mul

    def __call__(self, x: np.ndarray, rope: tuple[np.ndarray, np.ndarray], positions: np.ndarray,
                 slots: np.ndarray, cache: KVStore) -> None:
        cfg = self.cfg
        n = x.shape[0]
        h = rms_norm(x, self.attn_norm, cfg.eps)  # (n, n_embd)
        q, k, v = self.qkv(h)  # (n, n_head * hd), 2 x (n, n_kv * hd)
        if self.bq is not None:
            q += self.bq
        if self.bk is not None:
            k += self.bk
        if self.bv is not None:
            v += self.bv
        if cfg.qk_norm:
            rms_norm_heads(q, self.q_norm, cfg.eps)
            rms_norm_heads(k, self.k_norm, cfg.eps)
        rope_inplace(q, rope, cfg.n_head, cfg.head_dim, cfg.rope_style)
        rope_inplace(k, rope, cfg.n_kv_head, cfg.head_dim, cfg.rope_style)
        cache.put(self.index, slots, positions, k, v)
        k_cache, v_cache = cache.layer(self.index)
        att = np.empty((n, cfg.n_head, cfg.head_dim), dtype=np.float32)
        attention(
            q.reshape(n, cfg.n_head, cfg.head_dim), k_cache, v_cache, slots, positions,
            self.layer.window, cfg.attn_scale, att,
        )
        o = self.wo.matmul(att.reshape(n, cfg.n_head * cfg.head_dim))  # (n, n_embd)
        if self.post_attn_norm is not None:
            o = rms_norm(o, self.post_attn_norm, cfg.eps)
        add_inplace(x, o)

        h = rms_norm(x, self.ffn_norm, cfg.eps)
        gate, up = self.gate_up(h)  # 2 x (n, n_ff)
        self.act(gate, up)
        d = self.w_down.matmul(gate)  # (n, n_embd)
        if self.post_ffn_norm is not None:
            d = rms_norm(d, self.post_ffn_norm, cfg.eps)
        add_inplace(x, d)


def default_attn_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
