"""Tiny GGUF files made in the tests (written with gguf-py, the reference writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np


def write_gguf(path: Path, metadata: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """``tensors`` values: a float32/float16 array, or ``(raw uint8 (rows, row_bytes), GGMLType)``."""
    arch = metadata.get("general.architecture", "llama")
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, list(value))
    for name, value in tensors.items():
        if isinstance(value, tuple):
            raw, ggml_type = value
            w.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType(int(ggml_type)))
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _matrix(rng: np.random.Generator, rows: int, cols: int, qtype: Any) -> Any:
    x = (rng.standard_normal((rows, cols)) * 0.5 / np.sqrt(cols)).astype(np.float32)
    if qtype in ("F32", None):
        return x
    from kettle.quant import GGMLType, quantize

    t = GGMLType[qtype]
    return (quantize(x, t), t)


def tiny_model(path: Path, arch: str = "llama", qtype: str = "Q8_0", seed: int = 0, **hp: int) -> Path:
    """A randomly initialised model of ``arch`` (llama, qwen2, gemma3) with small dims."""
    rng = np.random.default_rng(seed)
    n_vocab = hp.get("n_vocab", 96)
    n_embd = hp.get("n_embd", 64)
    n_head = hp.get("n_head", 4)
    n_kv = hp.get("n_kv_head", 2)
    head_dim = hp.get("head_dim", 32 if arch == "gemma3" else n_embd // n_head)
    n_ff = hp.get("n_ff", 128)
    n_layer = hp.get("n_layer", 3 if arch != "gemma3" else 6)
    meta: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.embedding_length": n_embd,
        f"{arch}.block_count": n_layer,
        f"{arch}.feed_forward_length": n_ff,
        f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_kv,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{arch}.context_length": 256,
        f"{arch}.rope.freq_base": 10000.0,
    }
    if arch == "gemma3":
        meta["gemma3.attention.key_length"] = head_dim
        meta["gemma3.attention.value_length"] = head_dim
        meta["gemma3.attention.sliding_window"] = hp.get("window", 8)
    norm = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    t: dict[str, Any] = {
        "token_embd.weight": _matrix(rng, n_vocab, n_embd, qtype),
        "output_norm.weight": norm(n_embd),
    }
    for i in range(n_layer):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = norm(n_embd)
        t[p + "attn_q.weight"] = _matrix(rng, n_head * head_dim, n_embd, qtype)
        t[p + "attn_k.weight"] = _matrix(rng, n_kv * head_dim, n_embd, qtype)
        t[p + "attn_v.weight"] = _matrix(rng, n_kv * head_dim, n_embd, qtype)
        t[p + "attn_output.weight"] = _matrix(rng, n_embd, n_head * head_dim, qtype)
        t[p + "ffn_norm.weight"] = norm(n_embd)
        t[p + "ffn_gate.weight"] = _matrix(rng, n_ff, n_embd, qtype)
        t[p + "ffn_up.weight"] = _matrix(rng, n_ff, n_embd, qtype)
        t[p + "ffn_down.weight"] = _matrix(rng, n_embd, n_ff, qtype)
        if arch == "qwen2":
            for w, n in (("q", n_head), ("k", n_kv), ("v", n_kv)):
                t[p + f"attn_{w}.bias"] = (0.1 * rng.standard_normal(n * head_dim)).astype(np.float32)
        if arch == "gemma3":
            t[p + "attn_q_norm.weight"] = norm(head_dim)
            t[p + "attn_k_norm.weight"] = norm(head_dim)
            t[p + "post_attention_norm.weight"] = norm(n_embd)
            t[p + "post_ffw_norm.weight"] = norm(n_embd)
    if arch == "qwen2":
        t["output.weight"] = _matrix(rng, n_vocab, n_embd, qtype)  # untied
    return write_gguf(path, meta, t)
