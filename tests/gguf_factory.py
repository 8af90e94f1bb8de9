"""Tiny GGUF files made in the tests (written with gguf-py, the reference writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np


class Typed:
    """A metadata value written with an explicit GGUF type (``Typed(-4, "INT32")``)."""

    def __init__(self, value: Any, vtype: str, sub_type: str | None = None) -> None:
        self.value, self.vtype, self.sub_type = value, vtype, sub_type


class _Writer(gguf.GGUFWriter):
    """gguf-py's writer, which also writes empty arrays (it refuses them; files may have them)."""

    def _pack_val(self, val: Any, vtype: Any, add_vtype: bool, sub_type: Any = None) -> bytes:
        if vtype == gguf.GGUFValueType.ARRAY and len(val) == 0:
            head = self._pack("I", vtype) if add_vtype else b""
            return head + self._pack("I", sub_type or gguf.GGUFValueType.INT32) + self._pack("Q", 0)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


def write_gguf(path: Path, metadata: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """``tensors`` values: a float32/float16 array, or ``(raw uint8 (rows, row_bytes), GGMLType)``.

    Metadata: bools, ints (uint32; negative ones int64), floats (float32), strings, lists
    and arrays; a ``Typed`` value for any other GGUF type.
    """
    arch = metadata.get("general.architecture", "llama")
    w = _Writer(str(path), arch)
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        if isinstance(value, Typed):
            sub = gguf.GGUFValueType[value.sub_type] if value.sub_type else None
            w.add_key_value(key, value.value, gguf.GGUFValueType[value.vtype], sub_type=sub)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int) and value < 0:
            w.add_int64(key, value)
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


def tiny_vocab(n_vocab: int) -> dict[str, Any]:
    """SentencePiece metadata of ``n_vocab`` (>= 64) tokens: <unk>, <s>, </s>, the
    pieces of lowercase words, then byte tokens <0x00>, <0x01>, ... (byte fallback
    for whatever the pieces lack; with fewer than 256 some bytes cannot be encoded)."""
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"\u2581{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    n_bytes = n_vocab - 3 - len(pieces)
    tokens = ["<unk>", "<s>", "</s>"] + pieces + [f"<0x{b:02X}>" for b in range(n_bytes)]
    types = [2, 3, 3] + [1] * len(pieces) + [6] * n_bytes
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0, 0.0, 0.0] + [-float(i) for i in range(len(pieces))] + [0.0] * n_bytes,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
    }


def tiny_model(path: Path, arch: str = "llama", qtype: str = "Q8_0", seed: int = 0, *,
               meta: dict[str, Any] | None = None, vocab: bool = False, **hp: int) -> Path:
    """A randomly initialised model of ``arch`` (llama, qwen2, gemma3) with small dims.

    ``meta`` overrides or adds metadata keys (a value of None removes one); ``vocab``
    adds a tokenizer (``tiny_vocab``), so ``kettle.load`` takes the file."""
    return write_gguf(path, *tiny_model_parts(arch, qtype, seed, meta=meta, vocab=vocab, **hp))


def tiny_model_parts(arch: str = "llama", qtype: str = "Q8_0", seed: int = 0, *,
                     meta: dict[str, Any] | None = None, vocab: bool = False,
                     **hp: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tiny_model``'s metadata and tensors, before writing (for tests that change them)."""
    rng = np.random.default_rng(seed)
    n_vocab = hp.get("n_vocab", 96)
    n_embd = hp.get("n_embd", 64)
    n_head = hp.get("n_head", 4)
    n_kv = hp.get("n_kv_head", 2)
    head_dim = hp.get("head_dim", 32 if arch == "gemma3" else n_embd // n_head)
    n_ff = hp.get("n_ff", 128)
    n_layer = hp.get("n_layer", 3 if arch != "gemma3" else 6)
    metadata: dict[str, Any] = {
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
    if arch == "gemma3" or "head_dim" in hp:
        metadata[f"{arch}.attention.key_length"] = head_dim
        metadata[f"{arch}.attention.value_length"] = head_dim
    if arch == "gemma3":
        metadata["gemma3.attention.sliding_window"] = hp.get("window", 8)
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
    if vocab:
        metadata.update(tiny_vocab(n_vocab))
    for key, value in (meta or {}).items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    return metadata, t
