"""The bidirectional encoder block of the embedding models (``bert``, ``nomic-bert``).

What the architecture files (``bert.py``, ``nomic_bert.py``) share, computed as
llama.cpp's ``src/models/bert.cpp`` graph does it:

    x = token_embd[ids] + token_types[0] (+ position_embd[pos])     # token types are all 0
    x = LayerNorm(x)                                                  # token_embd_norm
    per layer (post-norm):
        q, k, v = x Wq + bq, x Wk + bk, x Wv + bv   (or one fused attn_qkv)
        q, k = rope(q), rope(k)                     (nomic-bert: rotary, NEOX pairs)
        x = LayerNorm(x + softmax(q k^T / sqrt(hd)) v Wo + bo)       # attn_output_norm
        x = LayerNorm(x + FFN(x))                                    # layer_output_norm
            FFN: GELU(x Wup + bup) Wdown + bdown (bert) or (silu(x Wgate) * x Wup) Wdown (nomic)

Every token attends to every token of its own text (no mask, no KV cache). The
last hidden states are pooled as ``{arch}.pooling_type`` says (mean, the first
token, the last token) and L2-normalised, as ollama returns embeddings.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from kettle.errors import MetadataError
from kettle.gguf import GGUFFile
from kettle.models.base import W, BoundWeights
from kettle.models.hparams import LIMITS, HParams
from kettle.ops import RopeStyle, gelu_tanh, layer_norm, rope_inplace, rope_table, silu_mul
from kettle.quant import MatmulGroup

# The weights every encoder has; the architecture files add attention and position weights.
CORE_WEIGHTS = (
    W("token_embd.weight", ("n_vocab", "n_embd")),
    W("token_types.weight", ("n_token_types", "n_embd"), optional=True),
    W("token_embd_norm.weight", ("n_embd",)),
    W("token_embd_norm.bias", ("n_embd",)),
    W("blk.{i}.attn_output.weight", ("n_embd", "n_embd")),
    W("blk.{i}.attn_output.bias", ("n_embd",), optional=True),
    W("blk.{i}.attn_output_norm.weight", ("n_embd",)),
    W("blk.{i}.attn_output_norm.bias", ("n_embd",)),
    W("blk.{i}.ffn_up.weight", ("n_ff", "n_embd")),
    W("blk.{i}.ffn_down.weight", ("n_embd", "n_ff")),
    W("blk.{i}.layer_output_norm.weight", ("n_embd",)),
    W("blk.{i}.layer_output_norm.bias", ("n_embd",)),
)

KEY_TOKEN_TYPE_COUNT = "tokenizer.ggml.token_type_count"
QUERY_BLOCK = 256  # queries per attention block, at most
BLOCK_FLOATS = 1 << 23  # a block's attention scores, or its rows of feed-forward activations (32 MiB)
ACTIVATION_ROWS = 12  # (n, n_embd) float32 arrays alive at once in a layer, at most (x, q, k, v, att, ...)


def scratch_bytes(cfg: EncoderConfig, n_ctx: int) -> int:
    """What embedding one text of ``n_ctx`` tokens allocates, at most (the load refuses more
    than the memory free): the per-token activations plus one block of scores and one of
    feed-forward rows (the blocks are sized to ``BLOCK_FLOATS``, see ``_rows_per_block``)."""
    return 4 * (ACTIVATION_ROWS * n_ctx * cfg.n_embd + 3 * BLOCK_FLOATS + 3 * cfg.n_ff + cfg.n_head * n_ctx)


def _rows_per_block(width: int, most: int) -> int:
    """Rows of ``width`` floats that fit in ``BLOCK_FLOATS`` (at least 1, at most ``most``)."""
    return max(1, min(most, BLOCK_FLOATS // max(1, width)))


class Pooling(enum.IntEnum):
    """``{arch}.pooling_type`` (llama.cpp's ``llama_pooling_type``)."""

    NONE = 0
    MEAN = 1
    CLS = 2
    LAST = 3
    RANK = 4


POOLINGS = (Pooling.MEAN, Pooling.CLS, Pooling.LAST)  # the ones that give one vector per text


class FeedForward(enum.Enum):
    GELU = "gelu"  # up (+bias) -> GELU -> down (+bias): bert
    SWIGLU = "swiglu"  # silu(gate) * up -> down: nomic-bert


@dataclass(frozen=True)
class EncoderConfig:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    head_dim: int
    n_ff: int
    n_token_types: int  # rows of token_types.weight (only row 0 is used: every token is "sentence A")
    eps: float  # layer-norm epsilon
    pooling: Pooling
    feed_forward: FeedForward
    context_length: int  # trained positions (bert: rows of position_embd.weight)
    n_rot: int = 0  # rotary dimensions per head (0: absolute position embeddings instead)
    rope_base: float = 10000.0

    @property
    def n_kv_head(self) -> int:
        return self.n_head


def read_encoder_config(gguf: GGUFFile, feed_forward: FeedForward, *, rotary: bool) -> EncoderConfig:
    """The hyper-parameters every encoder reads, typed and range-checked (``hparams.py``)."""
    arch = gguf.architecture
    hp = HParams(gguf, arch)
    dims = hp.decoder_dims()
    if dims["n_kv_head"] != dims["n_head"]:
        raise MetadataError(gguf.path, hp.key("attention.head_count_kv"), dims["n_kv_head"],
                            f"equal to head_count {dims['n_head']} (encoders have no grouped-query attention)")
    if dims["n_head"] * dims["head_dim"] != dims["n_embd"]:
        raise MetadataError(gguf.path, hp.key("attention.key_length"), dims["head_dim"],
                            f"embedding_length / head_count = {dims['n_embd'] // dims['n_head']}")
    raw = gguf.get(KEY_TOKEN_TYPE_COUNT)
    if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, np.integer)) or not 1 <= raw <= 1024:
        raise MetadataError(gguf.path, KEY_TOKEN_TYPE_COUNT, raw,
                            "an integer from 1 to 1024 (llama.cpp needs the token type count of a BERT model)")
    pooling_value = hp.int("pooling_type", 0, max(Pooling))
    pooling = Pooling(pooling_value)
    if pooling not in POOLINGS:
        raise MetadataError(gguf.path, hp.key("pooling_type"), pooling_value,
                            "1 (mean), 2 (cls) or 3 (last): kettle serves one embedding per text")
    causal = gguf.get(hp.key("attention.causal"))
    if causal is not None and (not isinstance(causal, (bool, np.bool_)) or bool(causal)):
        raise MetadataError(gguf.path, hp.key("attention.causal"), causal, "false (an encoder attends both ways)")
    n_rot, rope_base = 0, 10000.0
    if rotary:
        n_rot = hp.int("rope.dimension_count", 2, LIMITS.head_dim, dims["head_dim"])
        if n_rot % 2 or n_rot > dims["head_dim"]:
            raise MetadataError(gguf.path, hp.key("rope.dimension_count"), n_rot,
                                f"an even number from 2 to the head size {dims['head_dim']}")
        rope_base = hp.rope_base(10000.0)
    return EncoderConfig(
        arch=arch, **{k: v for k, v in dims.items() if k != "n_kv_head"},
        n_token_types=int(raw),
        eps=hp.float("attention.layer_norm_epsilon", 0.0, 1.0, open_lo=True),
        pooling=pooling, feed_forward=feed_forward,
        context_length=hp.int("context_length", 1, LIMITS.context),
        n_rot=n_rot, rope_base=rope_base,
    )


def weight_dims(cfg: EncoderConfig) -> dict[str, int]:
    """The names weight shapes refer to."""
    return {
        "n_vocab": cfg.n_vocab, "n_embd": cfg.n_embd, "n_ff": cfg.n_ff, "n_token_types": cfg.n_token_types,
        "context_length": cfg.context_length,
    }


class Encoder:
    """A loaded embedding model: config + bound weights; ``embed`` runs one text."""

    def __init__(self, config: EncoderConfig, weights: BoundWeights) -> None:
        self.config = config
        self.weights = weights
        w = weights
        self.token_embd = w["token_embd.weight"]  # QuantMatrix (n_vocab, n_embd)
        types = w.get("token_types.weight")  # QuantMatrix (n_token_types, n_embd) or None
        self.type_row0 = types.get_rows(np.zeros(1, dtype=np.int64))[0] if types is not None else None  # (n_embd,)
        self.position_embd = w.get("position_embd.weight")  # QuantMatrix (context_length, n_embd): bert
        self.norm_w, self.norm_b = w["token_embd_norm.weight"], w["token_embd_norm.bias"]  # (n_embd,)
        self.blocks = [_Block(config, w, i) for i in range(config.n_layer)]

    def hidden(self, ids: np.ndarray) -> np.ndarray:
        """ids (n,) int -> the last layer's hidden states (n, n_embd) float32."""
        cfg = self.config
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n = ids.shape[0]
        if n > cfg.context_length:
            raise ValueError(f"{n} tokens exceed the {cfg.context_length} positions of the model")
        x = self.token_embd.get_rows(ids)  # (n, n_embd)
        if self.type_row0 is not None:
            x += self.type_row0
        if self.position_embd is not None:
            x += self.position_embd.get_rows(np.arange(n, dtype=np.int64))
        x = layer_norm(x, self.norm_w, self.norm_b, cfg.eps)
        rope = rope_table(np.arange(n, dtype=np.int32), cfg.n_rot, cfg.rope_base) if cfg.n_rot else None
        for block in self.blocks:
            x = block(x, rope)
        return x

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """ids (n >= 1,) -> the pooled, L2-normalised embedding (n_embd,) float32."""
        h = self.hidden(ids)  # (n, n_embd)
        pooling = self.config.pooling
        if pooling is Pooling.MEAN:
            v = h.astype(np.float64).mean(axis=0)
        elif pooling is Pooling.CLS:
            v = h[0].astype(np.float64)
        else:
            v = h[-1].astype(np.float64)
        norm = np.linalg.norm(v)
        return (v / norm if norm > 0 else v).astype(np.float32)


class _Block:
    """One post-norm encoder layer."""

    def __init__(self, cfg: EncoderConfig, w: BoundWeights, i: int) -> None:
        p = f"blk.{i}."
        self.cfg = cfg
        self.wqkv = w.get(p + "attn_qkv.weight")  # (3 * n_embd, n_embd) fused, or None
        self.bqkv = w.get(p + "attn_qkv.bias")
        self.wq, self.wk, self.wv = w.get(p + "attn_q.weight"), w.get(p + "attn_k.weight"), w.get(p + "attn_v.weight")
        self.bq, self.bk, self.bv = w.get(p + "attn_q.bias"), w.get(p + "attn_k.bias"), w.get(p + "attn_v.bias")
        self.q_k_v = MatmulGroup((self.wq, self.wk, self.wv)) if self.wqkv is None else None  # one kernel call
        self.wo, self.bo = w[p + "attn_output.weight"], w.get(p + "attn_output.bias")
        self.attn_norm = (w[p + "attn_output_norm.weight"], w[p + "attn_output_norm.bias"])
        self.w_up, self.b_up = w[p + "ffn_up.weight"], w.get(p + "ffn_up.bias")
        self.w_gate = w.get(p + "ffn_gate.weight")
        self.w_down, self.b_down = w[p + "ffn_down.weight"], w.get(p + "ffn_down.bias")
        self.out_norm = (w[p + "layer_output_norm.weight"], w[p + "layer_output_norm.bias"])

    def _qkv(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.cfg.n_embd
        if self.wqkv is not None:
            qkv = self.wqkv.matmul(x)  # (n, 3 * n_embd)
            if self.bqkv is not None:
                qkv += self.bqkv
            return (np.ascontiguousarray(qkv[:, :d]), np.ascontiguousarray(qkv[:, d:2 * d]),
                    np.ascontiguousarray(qkv[:, 2 * d:]))
        q, k, v = self.q_k_v(x)  # 3 x (n, n_embd)
        for t, b in ((q, self.bq), (k, self.bk), (v, self.bv)):
            if b is not None:
                t += b
        return q, k, v

    def __call__(self, x: np.ndarray, rope: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        cfg = self.cfg
        n, H, hd = x.shape[0], cfg.n_head, cfg.head_dim
        q, k, v = self._qkv(x)
        if rope is not None:
            rope_inplace(q, rope, H, hd, RopeStyle.NEOX)
            rope_inplace(k, rope, H, hd, RopeStyle.NEOX)
        att = _attention(q.reshape(n, H, hd), k.reshape(n, H, hd), v.reshape(n, H, hd), 1.0 / math.sqrt(hd))
        o = self.wo.matmul(att.reshape(n, H * hd))  # (n, n_embd)
        if self.bo is not None:
            o += self.bo
        o += x
        x = layer_norm(o, *self.attn_norm, cfg.eps)

        d = np.empty_like(x)  # (n, n_embd)
        step = _rows_per_block(2 * cfg.n_ff, n)
        for lo in range(0, n, step):  # rows of (n, n_ff) activations a block at a time
            d[lo:lo + step] = self._ffn(np.ascontiguousarray(x[lo:lo + step]))
        d += x
        return layer_norm(d, *self.out_norm, cfg.eps)

    def _ffn(self, x: np.ndarray) -> np.ndarray:
        """x (m, n_embd) -> (m, n_embd)."""
        up = self.w_up.matmul(x)  # (m, n_ff)
        if self.cfg.feed_forward is FeedForward.GELU:
            if self.b_up is not None:
                up += self.b_up
            h = gelu_tanh(up)
        else:
            h = silu_mul(self.w_gate.matmul(x), up)  # silu(gate) * up
        d = self.w_down.matmul(h)  # (m, n_embd)
        if self.b_down is not None:
            d += self.b_down
        return d


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Full (bidirectional) attention: q, k, v (n, H, hd) -> (n, H, hd), softmax in float32
    over all n keys, queries in blocks of at most ``QUERY_BLOCK`` (and ``BLOCK_FLOATS`` scores)."""
    n, H = q.shape[0], q.shape[1]
    block = _rows_per_block(H * n, QUERY_BLOCK)
    qh = np.ascontiguousarray(q.transpose(1, 0, 2))  # (H, n, hd)
    kt = np.ascontiguousarray(k.transpose(1, 2, 0))  # (H, hd, n)
    vh = np.ascontiguousarray(v.transpose(1, 0, 2))  # (H, n, hd)
    out = np.empty_like(qh)  # (H, n, hd)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        s = np.matmul(qh[:, lo:hi], kt) * np.float32(scale)  # (H, m, n)
        s -= s.max(axis=2, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=2, keepdims=True)
        out[:, lo:hi] = np.matmul(s, vh)
    return np.ascontiguousarray(out.transpose(1, 0, 2))
