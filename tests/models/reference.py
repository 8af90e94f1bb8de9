"""A plain numpy forward pass (no cache, no kernels) over dequantized weights.

Written from the architecture's definition, independently of kettle's ops, as
a check on them: every expert is computed densely and masked, attention is one
matrix of scores. Slow; for tiny models only.
"""

from __future__ import annotations

import math

import numpy as np

from kettle.models.transformer import Activation, FeedForward, Norm, QKNorm, Transformer
from kettle.ops import RopeStyle


def _w(x):
    return x.dequantize() if hasattr(x, "dequantize") else np.asarray(x, dtype=np.float32)


def _rms(x, w, eps):
    return x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + eps).astype(np.float32) * w


def _norm(cfg, x, w, b):
    if cfg.norm is Norm.LAYER:
        x64 = x.astype(np.float64)
        c = x64 - x64.mean(-1, keepdims=True)
        return (c / np.sqrt((c * c).mean(-1, keepdims=True) + cfg.eps)).astype(np.float32) * w + b
    return _rms(x, w, cfg.eps)


def _angles(pos, n_rot, rope, factors):
    """(n, half) angles and the cos/sin magnitude, from the YaRN paper's definitions."""
    half = n_rot // 2
    i = np.arange(half)
    freq = rope.base ** (-2.0 * i / n_rot) / (factors if factors is not None else 1.0)
    extrap = pos[:, None].astype(np.float64) * freq[None, :]
    interp = extrap * rope.freq_scale
    m = rope.attn_factor
    if rope.ext_factor:
        def corr(beta):
            return n_rot * math.log(rope.n_ctx_orig / (beta * 2 * math.pi)) / (2 * math.log(rope.base))
        lo, hi = max(0, math.floor(corr(rope.beta_fast))), min(n_rot - 1, math.ceil(corr(rope.beta_slow)))
        ramp = (1 - np.clip((i - lo) / max(0.001, hi - lo), 0, 1)) * rope.ext_factor
        interp = interp * (1 - ramp) + extrap * ramp
        m *= 1 + 0.1 * math.log(1 / rope.freq_scale)
    return interp, m


def _rope(x, pos, n_rot, rope, factors, style):  # x (n, heads, hd)
    x = x.copy()
    half = n_rot // 2
    ang, m = _angles(pos, n_rot, rope, factors)
    c, s = (np.cos(ang) * m)[:, None, :], (np.sin(ang) * m)[:, None, :]
    if style == RopeStyle.NEOX:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half], x[..., half:n_rot] = a * c - b * s, a * s + b * c
    else:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2], x[..., 1:n_rot:2] = a * c - b * s, a * s + b * c
    return x


def _act(cfg, g):
    if cfg.activation == Activation.SILU:
        return g / (1 + np.exp(-g))
    return 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3)))


def _b(v):
    return v if v is not None else 0


def _ffn(cfg, blk, h):
    if cfg.feed_forward is FeedForward.EXPERTS:
        return _experts(cfg, blk.ffn, h)
    if cfg.feed_forward is FeedForward.PLAIN:
        return _act(cfg, h @ _w(blk.w_up).T + _b(blk.b_up)) @ _w(blk.w_down).T + _b(blk.b_down)
    if cfg.feed_forward is FeedForward.FUSED:
        both = h @ _w(blk.w_up).T
        g, u = both[:, :cfg.n_ff], both[:, cfg.n_ff:]
    else:
        g, u = h @ _w(blk.w_gate).T + _b(blk.b_gate), h @ _w(blk.w_up).T + _b(blk.b_up)
    return (_act(cfg, g) * u) @ _w(blk.w_down).T + _b(blk.b_down)


def _experts(cfg, moe_ffn, h):
    moe = cfg.moe
    logits = h.astype(np.float64) @ _w(moe_ffn.router).T.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top = np.argsort(-p, axis=1)[:, :moe.n_expert_used]
    mask = np.zeros_like(p)
    np.put_along_axis(mask, top, 1.0, axis=1)
    wts = p * mask
    if moe.norm_weights:
        wts /= wts.sum(1, keepdims=True)
    out = np.zeros_like(h)
    for e in range(moe.n_expert):  # every expert, densely, weighted by 0 where not chosen
        g, u = h @ _w(moe_ffn.gate_up[e].mats[0]).T, h @ _w(moe_ffn.gate_up[e].mats[1]).T
        out += wts[:, e:e + 1] * ((_act(cfg, g) * u) @ _w(moe_ffn.down[e]).T)
    if moe_ffn.shared is not None:
        group, down = moe_ffn.shared
        y = (_act(cfg, h @ _w(group.mats[0]).T) * (h @ _w(group.mats[1]).T)) @ _w(down).T
        if moe_ffn.shared_gate is not None:
            y = y / (1 + np.exp(-(h @ moe_ffn.shared_gate)))[:, None]
        out += y
    return out


def reference_logits(model: Transformer, ids: list[int], n_ctx: int = 64) -> np.ndarray:
    """Logits of ``ids`` at positions 0.. (``n_ctx``: the context a LongRoPE model runs in)."""
    cfg = model.config
    n = len(ids)
    pos = np.arange(n)
    x = _w(model.token_embd)[ids] * cfg.embd_scale
    for i, blk in enumerate(model.blocks):
        layer = cfg.layers[i]
        h = _norm(cfg, x, blk.attn_norm, blk.attn_norm_b) if cfg.pre_norms else x
        if cfg.fused_qkv:
            qkv = h @ _w(blk.wqkv).T + _b(blk.bqkv)
            a, b = cfg.n_head * cfg.head_dim, cfg.n_head * cfg.head_dim + cfg.kv_width
            q, k, v = qkv[:, :a], qkv[:, a:b], qkv[:, b:]
        else:
            q = h @ _w(blk.wq).T + _b(blk.bq)
            k = h @ _w(blk.wk).T + _b(blk.bk)
            v = h @ _w(blk.wv).T + _b(blk.bv)
        if cfg.qk_norm is QKNorm.FULL:
            q, k = _rms(q, blk.q_norm, cfg.eps), _rms(k, blk.k_norm, cfg.eps)
        q = q.reshape(n, cfg.n_head, cfg.head_dim)
        k = k.reshape(n, cfg.n_kv_head, cfg.head_dim)
        v = v.reshape(n, cfg.n_kv_head, cfg.head_dim)
        if cfg.qk_norm is QKNorm.HEAD:
            q, k = _rms(q, blk.q_norm, cfg.eps), _rms(k, blk.k_norm, cfg.eps)
        if layer.rope is not None:
            factors = model.rope_factors.get(layer.rope.factor_name(n_ctx))
            q = _rope(q, pos, cfg.n_rot, layer.rope, factors, cfg.rope_style)
            k = _rope(k, pos, cfg.n_rot, layer.rope, factors, cfg.rope_style)
        group = cfg.n_head // cfg.n_kv_head
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) * cfg.attn_scale
        if cfg.attn_softcap:
            scores = cfg.attn_softcap * np.tanh(scores / cfg.attn_softcap)
        mask = pos[None, :] > pos[:, None]
        if layer.window:
            mask |= pos[None, :] <= pos[:, None] - layer.window
        scores[:, mask] = -np.inf
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", p, v).reshape(n, -1)
        o = att @ _w(blk.wo).T + _b(blk.bo)
        if blk.post_attn_norm is not None:
            o = _rms(o, blk.post_attn_norm, cfg.eps)
        x = x + cfg.residual_scale * o
        h = _norm(cfg, x, blk.ffn_norm, blk.ffn_norm_b) if cfg.pre_norms else x
        d = _ffn(cfg, blk, h)
        if blk.post_ffn_norm is not None:
            d = _rms(d, blk.post_ffn_norm, cfg.eps)
        x = x + cfg.residual_scale * d
    x = _norm(cfg, x, model.output_norm, model.output_norm_b)
    logits = (x @ _w(model.output).T) * cfg.logit_scale
    if cfg.final_softcap:
        logits = cfg.final_softcap * np.tanh(logits / cfg.final_softcap)
    return logits.astype(np.float32)
