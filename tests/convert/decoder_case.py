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
GEMMA3_IDS = [1, 30, 4, 57, 100, 12, 8, 77, 3, 45, 64, 120, 9, 31, 88, 2, 50, 19, 70, 110]  # past the window of 4

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


GEMMA3_LAYERS, GEMMA3_HEAD_DIM, GEMMA3_WINDOW = 6, 32, 4


def gemma3_config(n_vocab: int) -> dict[str, Any]:
    return {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": N_EMBD,
        "num_attention_heads": N_HEAD, "num_key_value_heads": N_KV, "head_dim": GEMMA3_HEAD_DIM,
        "query_pre_attn_scalar": GEMMA3_HEAD_DIM, "intermediate_size": N_FF, "num_hidden_layers": GEMMA3_LAYERS,
        "vocab_size": n_vocab, "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6, "sliding_window": GEMMA3_WINDOW, "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }


def gemma3_weights(cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hd = GEMMA3_HEAD_DIM

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:  # Gemma stores weight - 1
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(cfg["vocab_size"], N_EMBD), "model.norm.weight": norm(N_EMBD)}
    for i in range(GEMMA3_LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(N_EMBD)
        w[p + "self_attn.q_proj.weight"] = mat(N_HEAD * hd, N_EMBD)
        w[p + "self_attn.k_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.v_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.o_proj.weight"] = mat(N_EMBD, N_HEAD * hd)
        w[p + "self_attn.q_norm.weight"] = norm(hd)
        w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(N_EMBD)
        w[p + "pre_feedforward_layernorm.weight"] = norm(N_EMBD)
        w[p + "post_feedforward_layernorm.weight"] = norm(N_EMBD)
        w[p + "mlp.gate_proj.weight"] = mat(N_FF, N_EMBD)
        w[p + "mlp.up_proj.weight"] = mat(N_FF, N_EMBD)
        w[p + "mlp.down_proj.weight"] = mat(N_EMBD, N_FF)
    return w


def spm_pieces() -> list[tuple[str, float, int]]:
    """A small SentencePiece vocabulary: tests/gguf_factory's tiny_vocab (pieces, scores, types)."""
    from tests.gguf_factory import tiny_vocab

    v = tiny_vocab(128)
    return list(zip(v["tokenizer.ggml.tokens"], v["tokenizer.ggml.scores"], v["tokenizer.ggml.token_type"],
                    strict=True))


def write_gemma3_checkpoint(folder: Path) -> Path:
    from safetensors.numpy import save_file

    from kettle.convert.spm import write_model_proto

    folder.mkdir(parents=True, exist_ok=True)
    pieces = spm_pieces()
    cfg = gemma3_config(len(pieces))
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file(gemma3_weights(cfg), str(folder / "model.safetensors"))
    (folder / "tokenizer.model").write_bytes(write_model_proto(pieces))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "chat_template": "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                         "{{ m['content'] }}<end_of_turn>\n{% endfor %}"}))
    return folder


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
