"""A plain numpy forward pass (no cache, no kernels) over dequantized weights.

Written from the architecture's definition, independently of kettle's ops, as
a check on them. Slow; for tiny models only.
"""

from __future__ import annotations

import numpy as np

from kettle.models.transformer import Activation, Transformer
from kettle.ops import RopeStyle


def _w(x):
    return x.dequantize() if hasattr(x, "dequantize") else np.asarray(x, dtype=np.float32)


def _rms(x, w, eps):
    return x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + eps).astype(np.float32) * w


def _rope(x, pos, n_rot, base, style):  # x (n, heads, hd)
    x = x.copy()
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half) / n_rot)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # (n, half)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if style == RopeStyle.NEOX:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half], x[..., half:n_rot] = a * c - b * s, a * s + b * c
    else:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2], x[..., 1:n_rot:2] = a * c - b * s, a * s + b * c
    return x


def reference_logits(model: Transformer, ids: list[int]) -> np.ndarray:
    cfg = model.config
    n = len(ids)
    pos = np.arange(n)
    x = _w(model.token_embd)[ids] * cfg.embd_scale
    for i, blk in enumerate(model.blocks):
        layer = cfg.layers[i]
        h = _rms(x, blk.attn_norm, cfg.eps)
        q = h @ _w(blk.wq).T + (blk.bq if blk.bq is not None else 0)
        k = h @ _w(blk.wk).T + (blk.bk if blk.bk is not None else 0)
        v = h @ _w(blk.wv).T + (blk.bv if blk.bv is not None else 0)
        q = q.reshape(n, cfg.n_head, cfg.head_dim)
        k = k.reshape(n, cfg.n_kv_head, cfg.head_dim)
        v = v.reshape(n, cfg.n_kv_head, cfg.head_dim)
        if cfg.qk_norm:
            q, k = _rms(q, blk.q_norm, cfg.eps), _rms(k, blk.k_norm, cfg.eps)
        q = _rope(q, pos, cfg.n_rot, layer.rope_base, cfg.rope_style)
        k = _rope(k, pos, cfg.n_rot, layer.rope_base, cfg.rope_style)
        group = cfg.n_head // cfg.n_kv_head
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) * cfg.attn_scale
        mask = pos[None, :] > pos[:, None]
        if layer.window:
            mask |= pos[None, :] <= pos[:, None] - layer.window
        scores[:, mask] = -np.inf
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", p, v).reshape(n, -1)
        o = att @ _w(blk.wo).T
        if blk.post_attn_norm is not None:
            o = _rms(o, blk.post_attn_norm, cfg.eps)
        x = x + o
        h = _rms(x, blk.ffn_norm, cfg.eps)
        g, u = h @ _w(blk.w_gate).T, h @ _w(blk.w_up).T
        if cfg.activation == Activation.SILU:
            a = g / (1 + np.exp(-g)) * u
        else:
            a = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3))) * u
        d = a @ _w(blk.w_down).T
        if blk.post_ffn_norm is not None:
            d = _rms(d, blk.post_ffn_norm, cfg.eps)
        x = x + d
    x = _rms(x, model.output_norm, cfg.eps)
    return (x @ _w(model.output).T).astype(np.float32)
