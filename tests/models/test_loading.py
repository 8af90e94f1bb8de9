"""Loading errors: unsupported architectures and types, missing or mis-shaped weights."""

from __future__ import annotations

import numpy as np
import pytest

import kettle
from kettle.errors import GGUFError, UnsupportedModel, WeightError
from kettle.gguf import GGUFFile
from kettle.models import load_model
from tests.gguf_factory import tiny_model, write_gguf


def test_unsupported_architecture_lists_supported(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", {"general.architecture": "mamba"}, {"a": np.zeros(32, np.float32)})
    from kettle.models import ARCHITECTURES

    with pytest.raises(UnsupportedModel, match="'mamba'.*supported: " + ", ".join(sorted(ARCHITECTURES))):
        load_model(GGUFFile(path))


def test_every_weight_problem_in_one_error(tmp_path):
    good = GGUFFile(tiny_model(tmp_path / "good.gguf", arch="llama", qtype="F32", n_layer=2))
    tensors = {name: np.array(good.tensor(name)) for name in good.tensors}
    del tensors["blk.0.ffn_up.weight"]
    del tensors["blk.1.attn_norm.weight"]
    tensors["blk.1.ffn_down.weight"] = np.zeros((64, 64), np.float32)  # wrong shape
    tensors["stray.weight"] = np.zeros(32, np.float32)
    meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in good.metadata.items()
            if not k.startswith("general.alignment")}
    bad = GGUFFile(write_gguf(tmp_path / "bad.gguf", meta, tensors))
    with pytest.raises(WeightError) as err:
        load_model(bad)
    msg = str(err.value)
    for needle in ("missing tensor 'blk.0.ffn_up.weight'", "missing tensor 'blk.1.attn_norm.weight'",
                   "'blk.1.ffn_down.weight' has shape (64, 64)", "unexpected tensors: stray.weight"):
        assert needle in msg


def test_unsupported_quant_type_lists_supported(tmp_path):
    import gguf

    meta = {"general.architecture": "llama"}
    raw = np.zeros((4, 66), dtype=np.uint8)  # IQ2_XXS: 256 elements in 66 bytes
    w = gguf.GGUFWriter(str(tmp_path / "iq.gguf"), "llama")
    w.add_tensor("token_embd.weight", raw, raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    f = GGUFFile(tmp_path / "iq.gguf")
    from kettle.quant import QuantMatrix

    with pytest.raises(UnsupportedModel, match="IQ2_XXS.*Q4_K"):
        QuantMatrix(f.tensor("token_embd.weight"), f.tensors["token_embd.weight"].ggml_type, (4, 256))
    del meta


def test_load_rejects_a_non_gguf_file(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("hello")
    with pytest.raises(GGUFError):
        kettle.load(path)
