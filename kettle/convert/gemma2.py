"""Gemma 2 checkpoints (``Gemma2ForCausalLM``) -> arch ``gemma2``.

As llama.cpp's converter: every RMS norm weight gets Gemma's ``1 +`` folded in
(``Gemma2RMSNorm`` multiplies by ``1 + weight``; kettle's gemma2 multiplies by
the stored weight, as llama.cpp's does), four norms per layer (``attn_norm``,
``post_attention_norm``, ``ffn_norm``, ``post_ffw_norm``), no ``lm_head`` (the
output is the token embedding matrix), key/value lengths from ``head_dim``,
``attn_logit_softcapping``, ``final_logit_softcapping`` and the sliding window
as keys, the SentencePiece vocabulary (``spm.py``) with ``add_space_prefix =
false``. The rope base is written too (llama.cpp's converter leaves it to the
runtime's default of 10000, which is what Gemma 2 uses).

kettle's gemma2 computes what Gemma 2 computes where the config is Gemma 2's
own: layers 0, 2, 4, ... slide, one rope for every layer, GeGLU, both
soft-caps, queries scaled by ``1/sqrt(head_dim)`` (the 27B's 46 layers: by
``1/sqrt(hidden_size / num_attention_heads)``), which is what
``query_pre_attn_scalar`` says for the released models. A config that differs
(another scalar, a soft-cap turned off, another layer pattern) is refused
rather than converted into a file that would run differently.
"""

from __future__ import annotations

from typing import Any

from kettle.convert.checkpoint import Checkpoint
from kettle.convert.decoder import _float, _int, gemma_plans, rope_params, weight_name
from kettle.convert.gemma3 import _LAYER as GEMMA3_LAYER
from kettle.convert.spm import spm_vocab
from kettle.convert.writer import TensorPlan
from kettle.errors import ConvertError

ARCH = "gemma2"
SLIDE_EVERY = 2  # kettle/models/gemma2.py: layers 0, 2, 4, ... slide, 1, 3, 5, ... attend globally
LAYERS_OF_27B = 46  # kettle/models/gemma2.py (and llama.cpp) scale the 27B's queries by n_embd / n_head
HF_QUERY_SCALAR = 256  # Gemma2Config's default query_pre_attn_scalar
HF_ATTN_SOFTCAP, HF_FINAL_SOFTCAP = 50.0, 30.0  # Gemma2Config's defaults

_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm"}
_LAYER = {k: v for k, v in GEMMA3_LAYER.items() if k not in ("self_attn.q_norm", "self_attn.k_norm")}


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of a checkpoint tensor; None for one that is dropped (the tied lm_head)."""
    if hf_name == "lm_head.weight":
        return None
    return weight_name(hf_name, "gemma2", _GLOBAL, _LAYER)


def _check(c: dict[str, Any], n_layer: int, n_embd: int, n_head: int, head_dim: int) -> None:
    types = c.get("layer_types")
    expected = ["sliding_attention" if i % SLIDE_EVERY == 0 else "full_attention" for i in range(n_layer)]
    if types is not None and types != expected:
        raise ConvertError("config.json: layer_types is not Gemma 2's pattern (sliding and global layers in turn)")
    scalar = c.get("query_pre_attn_scalar", HF_QUERY_SCALAR)
    kettles, what = ((n_embd // n_head, "hidden_size / num_attention_heads") if n_layer == LAYERS_OF_27B
                     else (head_dim, "head_dim"))
    if scalar != kettles:
        raise ConvertError(f"config.json: query_pre_attn_scalar {scalar!r} is not {kettles} "
                           f"(kettle's gemma2 scales queries by 1/sqrt({what}))")
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if key in c and c[key] is None:
            raise ConvertError(f"config.json: {key} is null; kettle's gemma2 always soft-caps")
    act = c.get("hidden_activation", c.get("hidden_act", "gelu_pytorch_tanh"))
    if act != "gelu_pytorch_tanh":
        raise ConvertError(f"config.json: hidden_activation {act!r} is not tanh GELU")
    if c.get("attention_bias"):
        raise ConvertError("config.json: attention_bias is set; Gemma 2's projections have no biases")
    if c.get("tie_word_embeddings", True) is False:
        raise ConvertError("config.json: tie_word_embeddings is false; kettle's gemma2 (as llama.cpp's) takes "
                           "the output from the token embeddings")


def prepare(ckpt: Checkpoint, writer: Any) -> list[TensorPlan]:
    """Add the metadata to ``writer``; return the tensors to write."""
    c = ckpt.config
    n_embd = _int(c, "hidden_size", 1, 1 << 16)
    n_head = _int(c, "num_attention_heads", 1, 1024)
    n_kv = _int(c, "num_key_value_heads", 1, n_head, n_head)
    head_dim = _int(c, "head_dim", 2, 1024, 256)
    n_layer = _int(c, "num_hidden_layers", 1, 1024)
    n_vocab = _int(c, "vocab_size", 1, 1 << 22)
    if n_head % n_kv:
        raise ConvertError(f"config.json: num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv}")
    if head_dim % 2:
        raise ConvertError(f"config.json: head_dim {head_dim} is odd (rope rotates pairs)")
    _check(c, n_layer, n_embd, n_head, head_dim)
    rope = rope_params(c)
    kind = str(rope.get("rope_type") or "default").lower()
    if kind != "default":
        raise ConvertError(f"config.json: rope type {kind!r} is not converted for gemma2 (Gemma 2 has plain rope)")
    writer.add_context_length(_int(c, "max_position_embeddings", 1, 1 << 24, 8192))
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(_int(c, "intermediate_size", 1, 1 << 20))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(_float(c, "rms_norm_eps", 1e-12, 0.1, 1e-6))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_float(rope, "rope_theta", 1.0, 1e12, 10000.0))
    writer.add_attn_logit_softcapping(_float(c, "attn_logit_softcapping", 1e-6, 1e4, HF_ATTN_SOFTCAP))
    writer.add_final_logit_softcapping(_float(c, "final_logit_softcapping", 1e-6, 1e4, HF_FINAL_SOFTCAP))
    writer.add_sliding_window(_int(c, "sliding_window", 1, 1 << 24, 4096))
    spm_vocab(ckpt, n_vocab).write(writer, add_space_prefix=False)

    return gemma_plans(ckpt, gguf_name)
