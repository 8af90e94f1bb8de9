"""llama-quantize's file types and the per-tensor type each chooses (llama.cpp ``src/llama-quant.cpp``).

A file type (``Q4_K_M``) names a default tensor type (Q4_K) and, for the
``_S``/``_M``/``_L`` mixes, rules that give some tensors more bits: the output
matrix (and a tied token embedding) Q6_K, ``attn_v`` and ``ffn_down`` by layer
position, ``attn_output``. Only 2-D and 3-D ``*weight`` tensors that are not
norms are quantized; a row that is not a whole number of blocks falls back to a
32-block type, then F16. Tensors are visited in llama.cpp's order (non-layer
tensors first, then by layer number, by name within each) because the
``attn_v`` rules count the tensors seen so far.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kettle.errors import InvalidParameter
from kettle.quant.types import QUANT_INFO, GGMLType

T = GGMLType


@dataclass(frozen=True)
class FileType:
    name: str  # llama-quantize's name
    ftype: int  # general.file_type (LLAMA_FTYPE_*)
    default: GGMLType


FILE_TYPES: dict[str, FileType] = {
    ft.name: ft
    for ft in (
        FileType("F32", 0, T.F32), FileType("F16", 1, T.F16), FileType("BF16", 32, T.BF16),
        FileType("Q4_0", 2, T.Q4_0), FileType("Q4_1", 3, T.Q4_1), FileType("Q5_0", 8, T.Q5_0),
        FileType("Q5_1", 9, T.Q5_1), FileType("Q8_0", 7, T.Q8_0), FileType("Q2_K", 10, T.Q2_K),
        FileType("Q3_K_S", 11, T.Q3_K), FileType("Q3_K_M", 12, T.Q3_K), FileType("Q3_K_L", 13, T.Q3_K),
        FileType("Q4_K_S", 14, T.Q4_K), FileType("Q4_K_M", 15, T.Q4_K), FileType("Q5_K_S", 16, T.Q5_K),
        FileType("Q5_K_M", 17, T.Q5_K), FileType("Q6_K", 18, T.Q6_K),
    )
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # as llama-quantize has them


def file_type(name: str) -> FileType:
    """A llama-quantize type name (any case: ``q4_K_M`` as ollama writes it) -> ``FileType``."""
    key = str(name).strip().upper()
    key = ALIASES.get(key, key)
    ft = FILE_TYPES.get(key)
    if ft is None:
        names = ", ".join([*FILE_TYPES, *ALIASES])
        raise InvalidParameter("quantize", name, f"unknown quantization type (one of: {names})")
    return ft


_BLK = re.compile(r"^blk\.(-?\d+)\.")


def layer_of(name: str) -> int:
    """``blk.N.`` -> N, else -1 (sscanf("blk.%d.") as llama.cpp's tensor order uses it)."""
    m = _BLK.match(name)
    return int(m.group(1)) if m else -1


def llama_order(names: list[str]) -> list[str]:
    """Tensor names in llama.cpp's weights_map order: by layer (non-layer first), then bytewise by name."""
    return sorted(names, key=lambda n: (layer_of(n), n.encode()))


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for part, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                      ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                      ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if part in name:
            return cat  # attn_qkv and attn_kv_b take attn_v's rules (category_is_attn_v)
    return "other"


_NOT_QUANTIZED = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                  "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "time_mix_", "attn_rel_b.weight",
                  ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger")


def allows_quantization(name: str, n_dims: int) -> bool:
    """tensor_allows_quantization: 2-D/3-D ``*weight`` tensors, not norms, routers, position/token-type tables."""
    if n_dims < 2 or not name.endswith("weight"):
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(part in name for part in _NOT_QUANTIZED)


@dataclass(frozen=True)
class ModelFacts:
    """What the rules read from the model's metadata."""

    arch: str
    n_layer: int
    n_gqa: int  # n_head / n_head_kv (0 when unknown)
    n_expert: int
    is_70b: bool


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _cdiv(a: int, b: int) -> int:
    """C's int division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


class TypeChooser:
    """llama_tensor_get_type for one file: call ``choose`` for each tensor in ``llama_order``."""

    def __init__(self, ft: FileType, facts: ModelFacts, names: list[str]) -> None:
        self.ft, self.facts = ft, facts
        cats = [category(n) for n in names]
        self.n_attention_wv = cats.count("attn_v")
        self.tied = "output" not in cats
        self.i_attention_wv = 0
        self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.fallbacks: list[str] = []

    def _layer(self, counter: int, name: str) -> tuple[int, int]:
        n_layer = self.facts.n_layer
        if self.facts.n_expert > 1:
            i = layer_of(name)
            if not 0 <= i < n_layer:
                raise InvalidParameter("tensor", name, f"layer not in [0, {n_layer})")
            return i, n_layer
        return counter, n_layer

    def _mix(self, new: GGMLType, name: str, ne0: int, cat: str) -> GGMLType:
        ft, f = self.ft.name, self.facts
        falcon = f.arch == "falcon"
        if cat == "output" or (self.tied and cat == "token_embd"):
            if falcon or ne0 % QUANT_INFO[new].block_size:
                return T.Q8_0
            return new if new == T.Q8_0 else T.Q6_K
        if cat == "token_embd":
            return new
        return self._mix_layers(new, name, cat, ft, f, falcon)

    def _mix_layers(self, new: GGMLType, name: str, cat: str, ft: str, f: ModelFacts, falcon: bool) -> GGMLType:
        if cat == "attn_v":
            i = self.i_attention_wv
            if ft == "Q2_K":
                new = T.Q4_K if f.n_gqa >= 4 else T.Q3_K
            elif ft == "Q3_K_M":
                new = T.Q5_K if i < 2 else T.Q4_K
            elif ft == "Q3_K_L":
                new = T.Q5_K
            elif ft in ("Q4_K_M", "Q5_K_M") and _more_bits(i, self.n_attention_wv):
                new = T.Q6_K
            elif ft == "Q4_K_S" and i < 4:
                new = T.Q5_K
            if f.is_70b and new in (T.Q3_K, T.Q4_K):
                new = T.Q5_K
            if f.n_expert == 8:
                new = T.Q8_0
            self.i_attention_wv += 1
        elif cat == "attn_k":
            if f.n_expert == 8:
                new = T.Q8_0
        elif cat == "ffn_down":
            i, n = self._layer(self.i_ffn_down, name)
            if ft == "Q2_K":
                new = T.Q3_K
            elif ft == "Q3_K_M":
                new = T.Q5_K if i < _cdiv(n, 16) else (T.Q4_K if not falcon or _more_bits(i, n) else T.Q3_K)
            elif ft == "Q3_K_L":
                new = T.Q4_K if falcon else T.Q5_K
            elif ft == "Q4_K_M":
                if falcon:
                    new = T.Q6_K if i < _cdiv(n, 16) else (T.Q5_K if _more_bits(i, n) else T.Q4_K)
                elif _more_bits(i, n):
                    new = T.Q6_K
            elif ft == "Q5_K_M" and _more_bits(i, n):
                new = T.Q6_K
            elif ft == "Q4_K_S" and not falcon and i < _cdiv(n, 8):
                new = T.Q5_K
            self.i_ffn_down += 1
        elif cat == "attn_output":
            if not falcon:
                if f.n_expert == 8:
                    if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                        new = T.Q5_K
                else:
                    new = {"Q2_K": T.Q3_K, "Q3_K_M": T.Q4_K, "Q3_K_L": T.Q5_K}.get(ft, new)
            elif ft == "Q3_K_L":
                new = T.Q4_K
        elif cat == "ffn_gate":
            self._layer(self.i_ffn_gate, name)
            self.i_ffn_gate += 1
        elif cat == "ffn_up":
            self._layer(self.i_ffn_up, name)
            self.i_ffn_up += 1
        return new

    def choose(self, name: str, current: GGMLType, shape: tuple[int, ...]) -> GGMLType:
        """The type ``name`` (numpy-order ``shape``, now of type ``current``) is stored as."""
        if not allows_quantization(name, len(shape)):
            return current
        new = self.ft.default
        if new in (T.F32, T.F16, T.BF16):
            return new
        ne0 = shape[-1]
        new = self._mix(new, name, ne0, category(name))
        return self._fallback(name, ne0, new)

    def _fallback(self, name: str, ne0: int, new: GGMLType) -> GGMLType:
        if ne0 % QUANT_INFO[new].block_size == 0:
            return new
        out = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}.get(new, new)
        if ne0 % QUANT_INFO[out].block_size:
            out = T.F16
        self.fallbacks.append(f"{name}: {ne0} columns are not whole {new.name} blocks, stored as {out.name}")
        return out
