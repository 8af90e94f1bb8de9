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


def gemma3_weights(cfg: dict[str, Any], seed: int = 0, qk_norm: bool = True) -> dict[str, np.ndarray]:
    """Gemma 3's tensors (``qk_norm=False``: Gemma 2's, the same block without the q/k norms)."""
    rng = np.random.default_rng(seed)
    hd = cfg["head_dim"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:  # Gemma stores weight - 1
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(cfg["vocab_size"], N_EMBD), "model.norm.weight": norm(N_EMBD)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(N_EMBD)
        w[p + "self_attn.q_proj.weight"] = mat(N_HEAD * hd, N_EMBD)
        w[p + "self_attn.k_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.v_proj.weight"] = mat(N_KV * hd, N_EMBD)
        w[p + "self_attn.o_proj.weight"] = mat(N_EMBD, N_HEAD * hd)
        if qk_norm:
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


GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                  "{{ m['content'] }}<end_of_turn>\n{% endfor %}")
PHI3_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}<|assistant|>\n"


def write_spm_files(folder: Path, template: str) -> None:
    """tokenizer.model (``spm_pieces``) and a tokenizer_config.json with the special tokens and ``template``."""
    from kettle.convert.spm import write_model_proto

    (folder / "tokenizer.model").write_bytes(write_model_proto(spm_pieces()))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
        "chat_template": template}))


def write_gemma3_checkpoint(folder: Path) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = gemma3_config(len(spm_pieces()))
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file(gemma3_weights(cfg), str(folder / "model.safetensors"))
    write_spm_files(folder, GEMMA_TEMPLATE)
    return folder


# Gemma 2: layers 0 and 2 slide over 4 positions, 1 and 3 attend globally; soft-caps small enough to bite
GEMMA2_LAYERS, GEMMA2_ATTN_CAP, GEMMA2_FINAL_CAP = 4, 2.0, 3.0


def gemma2_config(n_vocab: int) -> dict[str, Any]:
    return {
        **gemma3_config(n_vocab), "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
        "num_hidden_layers": GEMMA2_LAYERS, "rope_theta": 10000.0, "attn_logit_softcapping": GEMMA2_ATTN_CAP,
        "final_logit_softcapping": GEMMA2_FINAL_CAP, "rope_local_base_freq": None,
    }


def write_gemma2_checkpoint(folder: Path) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in gemma2_config(len(spm_pieces())).items() if v is not None}
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file(gemma3_weights(cfg, seed=2, qk_norm=False), str(folder / "model.safetensors"))
    write_spm_files(folder, GEMMA_TEMPLATE)
    return folder


# Phi-3: "phi3" as Phi-3-mini (SentencePiece, lm_head, plain rope, a window longer than the test),
# "phi4" as Phi-4-mini (GPT2Tokenizer BPE, tied, half of each head rotated, LongRoPE past an original
# context of 16 < len(IDS), so transformers and kettle both take the long factors)
PHI3_WINDOW, PHI4_ORIG_CTX = 64, 16
PHI4_LONG, PHI4_SHORT = [1.0, 1.7, 3.1, 5.3], [1.0, 1.05, 1.2, 1.4]


def phi3_config(variant: str, n_vocab: int) -> dict[str, Any]:
    cfg = {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": N_EMBD,
        "num_attention_heads": N_HEAD, "num_key_value_heads": N_KV, "intermediate_size": N_FF,
        "num_hidden_layers": N_LAYER, "vocab_size": n_vocab, "hidden_act": "silu", "max_position_embeddings": 256,
        "original_max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": PHI3_WINDOW, "tie_word_embeddings": False, "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }
    if variant == "phi4":
        cfg.update({"tie_word_embeddings": True, "partial_rotary_factor": 0.5, "sliding_window": None,
                    "original_max_position_embeddings": PHI4_ORIG_CTX, "rope_theta": 250000.0,
                    "rope_scaling": {"type": "longrope", "long_factor": PHI4_LONG, "short_factor": PHI4_SHORT},
                    "bos_token_id": 317, "eos_token_id": 317, "pad_token_id": 317})
    return cfg


def phi3_weights(cfg: dict[str, Any], seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hd = N_EMBD // N_HEAD

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(cfg["vocab_size"], N_EMBD), "model.norm.weight": norm(N_EMBD)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(cfg["vocab_size"], N_EMBD)
    for i in range(N_LAYER):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(N_EMBD)
        w[p + "self_attn.qkv_proj.weight"] = mat((N_HEAD + 2 * N_KV) * hd, N_EMBD)
        w[p + "self_attn.o_proj.weight"] = mat(N_EMBD, N_HEAD * hd)
        w[p + "post_attention_layernorm.weight"] = norm(N_EMBD)
        w[p + "mlp.gate_up_proj.weight"] = mat(2 * N_FF, N_EMBD)
        w[p + "mlp.down_proj.weight"] = mat(N_EMBD, N_FF)
    return w


def write_phi3_checkpoint(folder: Path, variant: str = "phi3") -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if variant == "phi4":
        for f in (HERE / "qwen2").iterdir():
            shutil.copy(f, folder / f.name)
        tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**tok_cfg, "tokenizer_class": "GPT2Tokenizer"}))
        cfg = phi3_config(variant, n_vocab("qwen2"))
    else:
        write_spm_files(folder, PHI3_TEMPLATE)
        cfg = phi3_config(variant, len(spm_pieces()))
    (folder / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}, indent=1))
    save_file(phi3_weights(cfg), str(folder / "model.safetensors"))
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
