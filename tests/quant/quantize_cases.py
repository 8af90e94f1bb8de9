"""The models and types of the quantize byte-identity test, shared by the test and the fixture generator.

Each model is a deterministic random tiny llama (``tests.gguf_factory``; numpy's
default_rng is the same on every machine): 256-wide rows so every K-quant applies,
8 layers so the layer-position rules of the mixes differ, one model with F16
weights, and one 96 wide, where the K-quants fall back to 32-element types.
"""

from __future__ import annotations

from pathlib import Path

from tests.gguf_factory import tiny_model

MODELS = {
    "llama256_f32": {"qtype": "F32", "seed": 1, "n_embd": 256, "n_head": 4, "n_kv_head": 1, "n_ff": 512, "n_layer": 8},
    "llama256_f16": {"qtype": "F16", "seed": 2, "n_embd": 256, "n_head": 4, "n_kv_head": 4, "n_ff": 256, "n_layer": 4},
    "llama96_f32": {"qtype": "F32", "seed": 3, "n_embd": 96, "n_head": 2, "n_kv_head": 2, "n_ff": 160, "n_layer": 2},
}
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
         "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"]
# llama.cpp's LLAMA_FTYPE_* of each name (for the generator)
FTYPES = {"F32": 0, "F16": 1, "BF16": 32, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q8_0": 7, "Q2_K": 10,
          "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}


def make_model(directory: Path, name: str) -> Path:
    return tiny_model(directory / f"{name}.gguf", "llama", vocab=True, **MODELS[name])


def digests(path: Path) -> dict:
    """{"file": sha256 of the whole file, "order": tensor names in file order,
    "tensors": {name: [type name, sha256 of its bytes]}}."""
    import hashlib

    import numpy as np

    from kettle.gguf import GGUFFile

    with GGUFFile(path) as g:
        tensors = {}
        for name, info in g.tensors.items():
            data = np.ascontiguousarray(g.tensor(name)).view(np.uint8)
            tensors[name] = [info.ggml_type.name, hashlib.sha256(data.tobytes()).hexdigest()]
    return {"file": hashlib.sha256(path.read_bytes()).hexdigest(), "order": list(tensors), "tensors": tensors}
