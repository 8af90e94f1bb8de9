"""Tiny random-weight decoders of every architecture kettle runs, rebuilt from a seed.

``MODELS`` names each case (an architecture and what it exercises: GQA, rope
factors, YaRN, LongRoPE, sliding windows, soft-caps, experts); ``tiny_decoder``
writes its GGUF with gguf-py. Every weight the architecture declares is
written (optional ones too, unless the case leaves them out), so a test that
perturbs each tensor proves that each declared weight is read. The oracle
generator (``oracle_gen.py``) runs the same files through llama.cpp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.gguf_factory import tiny_vocab, write_gguf

N_VOCAB, N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF = 96, 64, 4, 2, 16, 128

# name -> (arch, options). Options: n_layer, meta (extra keys), rope_freqs, longrope, experts
# (n_expert, used, n_ff_exp), shared (n_ff_shexp), fused, tied, biases, n_rot, qtype; oracle False:
# llama.cpp computes it otherwise, on purpose (see llama.py), so it has no llama.cpp oracle.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama31": ("llama", {"rope_freqs": True, "meta": {"rope.freq_base": 500000.0}}),
    "llama-yarn": ("llama", {"biases": True, "meta": {
        "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0, "rope.scaling.original_context_length": 16}}),
    "llama-linear-f16": ("llama", {"qtype": "F16", "tied": True, "meta": {
        "rope.scaling.type": "linear", "rope.scaling.factor": 2.0}}),
    "mistral-swa": ("llama", {"oracle": False, "meta": {"attention.sliding_window": 8}}),  # llama.cpp: no window
    "mixtral": ("llama", {"experts": (4, 2, N_FF)}),  # Mixtral's experts are feed_forward_length wide
    "qwen2-yarn": ("qwen2", {"biases": True, "meta": {
        "rope.scaling.type": "yarn", "rope.scaling.factor": 2.0, "rope.scaling.original_context_length": 24,
        "rope.freq_base": 1000000.0}}),
    "qwen3": ("qwen3", {"meta": {"rope.freq_base": 1000000.0}}),
    "qwen3moe": ("qwen3moe", {"experts": (6, 2, 32), "meta": {"rope.freq_base": 1000000.0}}),
    "qwen2moe": ("qwen2moe", {"experts": (4, 2, 32), "shared": 64, "biases": True}),
    "qwen3moe-f16": ("qwen3moe", {"experts": (4, 2, 32), "qtype": "F16"}),  # 3-D F16 expert tensors
    "gemma2": ("gemma2", {"n_layer": 4, "tied": True, "meta": {
        "attention.sliding_window": 8, "attn_logit_softcapping": 4.0, "final_logit_softcapping": 2.0}}),
    "gemma3-scaled": ("gemma3", {"n_layer": 6, "tied": True, "meta": {  # Gemma 3 4B+: linear x8 on global layers
        "attention.sliding_window": 8, "rope.freq_base": 1000000.0, "rope.scaling.type": "linear",
        "rope.scaling.factor": 8.0, "final_logit_softcapping": 2.0, "attention.key_length": 16,
        "attention.value_length": 16}}),
    "phi3": ("phi3", {"fused": True, "longrope": True, "n_rot": 12, "meta": {
        "rope.scaling.original_context_length": 32, "rope.scaling.attn_factor": 1.19}}),
    "phi3-short": ("phi3", {"fused": True, "longrope": True, "n_rot": 12, "biases": True, "meta": {
        "rope.scaling.original_context_length": 256, "rope.scaling.attn_factor": 1.19}}),
    "phi3-split": ("phi3", {"meta": {}}),
    "granite": ("granite", {"rope_freqs": True, "biases": True, "meta": {
        "logit_scale": 2.5, "residual_scale": 0.5, "embedding_scale": 3.0, "attention.scale": 0.2}}),
    "olmo2": ("olmo2", {"n_layer": 4, "meta": {"attention.sliding_window": 8}}),
    "starcoder2": ("starcoder2", {"biases": True, "meta": {"attention.layer_norm_epsilon": 1e-5}}),
    "smollm3": ("smollm3", {"n_layer": 4, "meta": {"rope.freq_base": 2000000.0}}),
}


ORACLE_MODELS = [name for name, (_, opts) in MODELS.items() if opts.get("oracle", True)]


def _weight_specs(arch: str, opts: dict[str, Any]) -> list:
    from kettle.models import gemma2, gemma3, granite, llama, olmo2, phi3, qwen2moe, qwen3, qwen3moe, smollm3
    from kettle.models import starcoder2

    table = {
        "llama": llama.MOE_WEIGHTS if opts.get("experts") else llama.WEIGHTS, "qwen2": llama.QWEN2_WEIGHTS,
        "qwen3": qwen3.WEIGHTS, "qwen3moe": qwen3moe.WEIGHTS, "qwen2moe": qwen2moe.WEIGHTS,
        "gemma2": gemma2.WEIGHTS, "gemma3": gemma3.WEIGHTS, "granite": granite.WEIGHTS, "olmo2": olmo2.WEIGHTS,
        "starcoder2": starcoder2.WEIGHTS, "smollm3": smollm3.WEIGHTS,
        "phi3": [*phi3.COMMON, *(phi3.FUSED_QKV if opts.get("fused") else
                                 (*llama.QKV_WEIGHTS, *llama.QKV_BIASES))],
    }
    return table[arch]


def decoder_parts(name: str, seed: int | None = None, qtype: str | None = None,
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, tensors) of ``MODELS[name]``; ``seed`` defaults to one per name; ``qtype``
    overrides the case's matrix type."""
    from kettle.models.base import _eval_shape

    arch, opts = MODELS[name]
    rng = np.random.default_rng(seed if seed is not None else sum(map(ord, name)))
    n_layer = opts.get("n_layer", 2)
    n_rot = opts.get("n_rot", HEAD_DIM)
    meta: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.embedding_length": N_EMBD, f"{arch}.block_count": n_layer,
        f"{arch}.feed_forward_length": N_FF, f"{arch}.attention.head_count": N_HEAD,
        f"{arch}.attention.head_count_kv": N_KV, f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{arch}.context_length": 256, f"{arch}.rope.dimension_count": n_rot,
        **tiny_vocab(N_VOCAB),
    }
    dims = {"n_vocab": N_VOCAB, "n_embd": N_EMBD, "n_head": N_HEAD, "n_kv_head": N_KV, "head_dim": HEAD_DIM,
            "n_ff": N_FF, "n_rot_half": n_rot // 2, "n_qkv": (N_HEAD + 2 * N_KV) * HEAD_DIM}
    if opts.get("experts"):
        n_expert, used, n_ff_exp = opts["experts"]
        meta.update({f"{arch}.expert_count": n_expert, f"{arch}.expert_used_count": used})
        if arch != "llama":
            meta[f"{arch}.expert_feed_forward_length"] = n_ff_exp
        dims.update(n_expert=n_expert, n_ff_exp=n_ff_exp)
    if opts.get("shared"):
        meta[f"{arch}.expert_shared_feed_forward_length"] = opts["shared"]
        dims["n_ff_shexp"] = opts["shared"]
    meta.update({f"{arch}.{k}": v for k, v in opts.get("meta", {}).items()})
    tensors: dict[str, Any] = {}
    for spec in _weight_specs(arch, opts):
        if spec.tied and opts.get("tied"):
            continue
        if spec.optional and not opts.get("biases") and spec.name.endswith(".bias"):
            continue
        names = [spec.name.format(i=i) for i in range(n_layer)] if "{i}" in spec.name else [spec.name]
        shape = _eval_shape(spec.shape, dims)
        for tname in names:
            tensors[tname] = _tensor(rng, tname, shape, qtype or opts.get("qtype"))
    half = n_rot // 2
    if opts.get("rope_freqs"):
        tensors["rope_freqs.weight"] = np.geomspace(1.0, 8.0, half).astype(np.float32)  # Llama 3.1's shape of bands
    if opts.get("longrope"):
        tensors["rope_factors_short.weight"] = np.linspace(1.0, 1.5, half).astype(np.float32)
        tensors["rope_factors_long.weight"] = np.geomspace(1.0, 12.0, half).astype(np.float32)
    return meta, tensors


def _tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...], qtype: str | None) -> Any:
    if len(shape) == 1:
        if "norm" in name:
            return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)  # biases, the shared expert's gate
    x = (rng.standard_normal(shape) * 1.0 / np.sqrt(shape[-1])).astype(np.float32)
    if qtype is None:
        return x
    from kettle.quant import GGMLType, quantize

    t = GGMLType[qtype]
    raw = quantize(x.reshape(-1, shape[-1]), t)  # (rows, row bytes); experts: (n_expert, rows, row bytes)
    return (raw.reshape(*shape[:-1], raw.shape[-1]), t)


def tiny_decoder(path: Path, name: str, seed: int | None = None) -> Path:
    return write_gguf(path, *decoder_parts(name, seed))
