"""Tiny Hugging Face decoder checkpoints, rebuilt the same from a seed, for the convert tests.

``write_checkpoint(folder, family)`` writes config.json, model.safetensors (random
weights from numpy's seeded generator: the same bytes on every machine) and the
family's committed tokenizer files (``decoders/<tokenizer>/``: a small byte-level
BPE trained with the ``tokenizers`` package, pre-tokenized as Llama 3 or as
Qwen2). ``make_decoder_reference.py`` runs transformers on the same folders;
its logits are ``decoders/reference.npz``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent / "decoders"
REFERENCE = HERE / "reference.npz"
TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps over 13 lazy dogs!",
         "  spaces\tand\nnewlines  ", "I've been told he'll come; we're sure."]
IDS = [3, 17, 99, 250, 7, 42, 180, 311, 64, 5, 128, 77, 201, 33, 150, 9, 260, 18, 90, 300]

N_EMBD, N_HEAD, N_KV, N_FF, N_LAYER = 64, 4, 2, 128, 2

FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "tokenizer": "llama3",
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64},
        "tie_word_embeddings": False,
    },
    "mistral": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "tokenizer": "llama3",
                "tie_word_embeddings": False, "sliding_window": None},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "tokenizer": "qwen2",
              "tie_word_embeddings": True},
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "tokenizer": "qwen2",
              "tie_word_embeddings": True, "head_dim": 32},
}


def config(family: str, n_vocab: int) -> dict[str, Any]:
    spec = {k: v for k, v in FAMILIES[family].items() if k != "tokenizer"}
    return {
        **spec, "hidden_size": N_EMBD, "num_attention_heads": N_HEAD, "num_key_value_heads": N_KV,
        "intermediate_size": N_FF, "num_hidden_layers": N_LAYER, "vocab_size": n_vocab, "hidden_act": "silu",
        "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "float32",
        "bos_token_id": 0, "eos_token_id": 1,
    }


def weights(family: str, cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hd = cfg.get("head_dim", N_EMBD // N_HEAD)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    n_vocab = cfg["vocab_size"]
    w = {"model.embed_tokens.weight": mat(n_vocab, N_EMBD), "model.norm.weight": norm(N_EMBD)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(n_vocab, N_EMBD)
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(N_EMBD)
        w[p + "self_attn.q_proj.weight"] = mat(N_HEAD * hd, N_EMBD)
        w[p + "self_attn.k_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.v_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.o_proj.weight"] = mat(N_EMBD, N_HEAD * hd)
        if family == "qwen2":
            for name, rows in (("q", N_HEAD * hd), ("k", N_KV * hd), ("v", N_KV * hd)):
                w[p + f"self_attn.{name}_proj.bias"] = (0.1 * rng.standard_normal(rows)).astype(np.float32)
        if family == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(N_EMBD)
        w[p + "mlp.gate_proj.weight"] = mat(N_FF, N_EMBD)
        w[p + "mlp.up_proj.weight"] = mat(N_FF, N_EMBD)
        w[p + "mlp.down_proj.weight"] = mat(N_EMBD, N_FF)
    return w


def tokenizer_dir(family: str) -> Path:
    return HERE / FAMILIES[family]["tokenizer"]


def n_vocab(family: str) -> int:
    tj = json.loads((tokenizer_dir(family) / "tokenizer.json").read_text())
    return len(tj["model"]["vocab"]) + len(tj["added_tokens"])


def write_checkpoint(folder: Path, family: str) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = config(family, n_vocab(family))
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file(weights(family, cfg), str(folder / "model.safetensors"))
    for f in tokenizer_dir(family).iterdir():
        shutil.copy(f, folder / f.name)
    return folder
