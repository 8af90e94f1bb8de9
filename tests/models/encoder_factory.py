"""Tiny random-weight embedding models (``bert``, ``nomic-bert``), the same bytes from the same seed.

``tiny_encoder(path, arch, seed=...)`` writes a GGUF with a small WordPiece
vocabulary (phantom-space form, as llama.cpp's converter writes BERT vocabularies)
and random weights; ``make_encoder_oracle.py`` runs these files through
llama.cpp, and ``test_encoders.py`` compares kettle with what it recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.gguf_factory import write_gguf

PHANTOM = "\u2581"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, all CONTROL
WORDS = ["the", "a", "cat", "sat", "on", "mat", "dog", "ran", "in", "park", "hello", "world", "is", "it",
         "embedding", "model", "kettle", "tea", "hot", "water", "cafe", "naive", "##s", "##ing", "##ed"]
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ["é", "ü", "中", "文"]
PUNCT = list(".,!?;:'\"()-") + ["$", "%", "&"]

DIMS = {"n_embd": 64, "n_head": 4, "n_ff": 96, "n_layer": 2}


def wordpiece_tokens() -> tuple[list[str], list[int]]:
    """(tokens, token types): the specials, whole words and characters with ``▁``, continuations without."""
    tokens = list(SPECIALS)
    for w in WORDS:
        tokens.append(w[2:] if w.startswith("##") else PHANTOM + w)
    for c in CHARS:
        tokens.append(PHANTOM + c)
        tokens.append(c)
    for p in PUNCT:
        tokens.append(PHANTOM + p)
    seen: set[str] = set()
    unique = [t for t in tokens if not (t in seen or seen.add(t))]
    types = [3 if t in SPECIALS else 1 for t in unique]
    return unique, types


def _norm(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return ((1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32), (0.1 * rng.standard_normal(n)).astype(np.float32))


def _mat(rng: np.random.Generator, rows: int, cols: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)


def encoder_metadata(arch: str, n_vocab: int, *, pooling: int, lowercase: bool | None, n_ctx: int,
                     dims: dict[str, int] | None = None) -> dict[str, Any]:
    d = dims or DIMS
    meta: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": f"tiny-{arch}",
        f"{arch}.context_length": n_ctx,
        f"{arch}.embedding_length": d["n_embd"],
        f"{arch}.feed_forward_length": d["n_ff"],
        f"{arch}.block_count": d["n_layer"],
        f"{arch}.attention.head_count": d["n_head"],
        f"{arch}.attention.layer_norm_epsilon": 1e-12,
        f"{arch}.attention.causal": False,
        f"{arch}.pooling_type": pooling,
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.token_type_count": 2,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 3,
        "tokenizer.ggml.seperator_token_id": 3,
        "tokenizer.ggml.cls_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 1,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.mask_token_id": 4,
    }
    if lowercase is not None:  # None: no key (files converted before llama.cpp wrote it)
        meta["tokenizer.ggml.normalizer.lowercase"] = lowercase
    if arch == "nomic-bert":
        meta[f"{arch}.rope.freq_base"] = 1000.0
    return meta


def encoder_tensors(arch: str, n_vocab: int, n_ctx: int, seed: int, *, f16: bool = False, qkv_bias: bool = False,
                    dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = dims or DIMS
    e, f = d["n_embd"], d["n_ff"]
    t: dict[str, np.ndarray] = {
        "token_embd.weight": _mat(rng, n_vocab, e, 8.0),
        "token_types.weight": _mat(rng, 2, e, 8.0),
    }
    if arch == "bert":
        t["position_embd.weight"] = _mat(rng, n_ctx, e, 8.0)
    t["token_embd_norm.weight"], t["token_embd_norm.bias"] = _norm(rng, e)
    for i in range(d["n_layer"]):
        p = f"blk.{i}."
        if arch == "bert":
            for x in ("q", "k", "v"):
                t[p + f"attn_{x}.weight"] = _mat(rng, e, e, 2.0)
                t[p + f"attn_{x}.bias"] = (0.1 * rng.standard_normal(e)).astype(np.float32)
        else:
            t[p + "attn_qkv.weight"] = _mat(rng, 3 * e, e, 2.0)
            if qkv_bias:
                t[p + "attn_qkv.bias"] = (0.1 * rng.standard_normal(3 * e)).astype(np.float32)
        t[p + "attn_output.weight"] = _mat(rng, e, e)
        t[p + "attn_output.bias"] = (0.1 * rng.standard_normal(e)).astype(np.float32)
        t[p + "attn_output_norm.weight"], t[p + "attn_output_norm.bias"] = _norm(rng, e)
        t[p + "ffn_up.weight"] = _mat(rng, f, e, 2.0)
        if arch == "bert":
            t[p + "ffn_up.bias"] = (0.1 * rng.standard_normal(f)).astype(np.float32)
        else:
            t[p + "ffn_gate.weight"] = _mat(rng, f, e, 2.0)
        t[p + "ffn_down.weight"] = _mat(rng, e, f)
        if arch == "bert":
            t[p + "ffn_down.bias"] = (0.1 * rng.standard_normal(e)).astype(np.float32)
        t[p + "layer_output_norm.weight"], t[p + "layer_output_norm.bias"] = _norm(rng, e)
    if f16:
        # token_types stays F32, as llama.cpp's converter keeps it (its graph adds the row as f32)
        t = {k: v.astype(np.float16) if v.ndim == 2 and k != "token_types.weight" else v for k, v in t.items()}
    return t


# name -> (arch, pooling, lowercase (None: no key), f16, seed): the models the oracle covers
MODELS: dict[str, tuple[str, int, bool | None, bool, int]] = {
    "bert-no-normalizer-key": ("bert", 1, None, False, 15),
    "bert-mean": ("bert", 1, True, False, 11),
    "bert-cls-f16": ("bert", 2, False, True, 12),
    "nomic-bert-mean": ("nomic-bert", 1, True, False, 13),
    "nomic-bert-last": ("nomic-bert", 3, False, False, 14),  # with attn_qkv.bias
}
N_CTX = {"bert": 128, "nomic-bert": 2048}


def tiny_encoder(path: Path, name: str) -> Path:
    """Write the model ``name`` of ``MODELS`` to ``path``."""
    meta, tensors = encoder_parts(name)
    return write_gguf(path, meta, tensors)


def encoder_parts(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors) of the model ``name`` of ``MODELS``."""
    arch, pooling, lowercase, f16, seed = MODELS[name]
    tokens, types = wordpiece_tokens()
    meta = encoder_metadata(arch, len(tokens), pooling=pooling, lowercase=lowercase, n_ctx=N_CTX[arch])
    meta["tokenizer.ggml.tokens"] = tokens
    meta["tokenizer.ggml.token_type"] = types
    tensors = encoder_tensors(arch, len(tokens), N_CTX[arch], seed, f16=f16, qkv_bias=name == "nomic-bert-last")
    return meta, tensors


TEXTS = [
    "hello world",
    "The cat sat on the mat.",
    "A dog ran in the park, and it is hot!",
    "Café naïve HELLO Wörld",
    "中文 embedding model 42 $5 & 7%",
    "kettle tea (hot water) - the embedding's model; sat?",
    " ".join(["the cat sat on the mat and the dog ran in the park"] * 8),
    "zzzz qqq xylophone",
]
