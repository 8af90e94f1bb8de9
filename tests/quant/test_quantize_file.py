"""kettle quantize against llama.cpp: every output tensor byte-identical (sha256 fixtures), hostile input refused."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from kettle.errors import GGUFError, InvalidParameter
from kettle.gguf import GGUFFile
from kettle.quant.file import QuantizeError, quantize_file
from tests.quant.quantize_cases import MODELS, TYPES, digests, make_model

ORACLE = json.loads(Path(__file__).with_name("quantize_oracle.json").read_text())["models"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("quantize")
    return {name: make_model(d, name) for name in MODELS}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("qtype", TYPES)
def test_quantized_bytes_equal_llama_cpp(models, tmp_path, model, qtype):
    out = tmp_path / "out.gguf"
    quantize_file(models[model], out, qtype)
    ours, theirs = digests(out), ORACLE[model][qtype]
    assert ours["order"] == theirs["order"]  # llama.cpp's tensor order
    for name, (ggml_type, digest) in theirs["tensors"].items():
        assert ours["tensors"][name] == [ggml_type, digest], name
    assert ours["file"] == theirs["file"]  # the metadata too: the whole file is the same


def test_metadata_and_file_type(models, tmp_path):
    out = tmp_path / "q.gguf"
    quantize_file(models["llama256_f32"], out, "q4_K_M")  # ollama's spelling
    with GGUFFile(models["llama256_f32"]) as src, GGUFFile(out) as dst:
        assert list(dst.metadata)[-2:] == ["general.quantization_version", "general.file_type"]
        assert dst.metadata["general.file_type"] == 15 and dst.metadata["general.quantization_version"] == 2
        for key, value in src.metadata.items():
            np.testing.assert_equal(dst.metadata[key], value)


def test_requantize_refused_unless_allowed(models, tmp_path):
    q8 = tmp_path / "q8.gguf"
    quantize_file(models["llama256_f32"], q8, "Q8_0")
    with pytest.raises(QuantizeError, match="already Q8_0.*--allow-requantize"):
        quantize_file(q8, tmp_path / "q4.gguf", "Q4_0")
    assert not (tmp_path / "q4.gguf").exists() and not (tmp_path / "q4.gguf.partial").exists()
    quantize_file(q8, tmp_path / "q4.gguf", "Q4_0", allow_requantize=True)
    with GGUFFile(tmp_path / "q4.gguf") as g:
        assert g.tensors["blk.0.attn_q.weight"].ggml_type.name == "Q4_0"


def test_unknown_type(models, tmp_path):
    with pytest.raises(InvalidParameter, match="unknown quantization type"):
        quantize_file(models["llama96_f32"], tmp_path / "x.gguf", "Q7_K")


def test_hostile_offsets_are_refused(models, tmp_path):
    """A tensor whose offset points past the end of the file is refused before any read."""
    data = bytearray(models["llama96_f32"].read_bytes())
    with GGUFFile(models["llama96_f32"]) as g:
        name = next(iter(g.tensors))
        rel = g.tensors[name].offset - g.data_offset
    marker = name.encode()
    at = data.index(struct.pack("<Q", len(marker)) + marker) + 8 + len(marker)
    n_dims = struct.unpack_from("<I", data, at)[0]
    off_at = at + 4 + 8 * n_dims + 4
    assert struct.unpack_from("<Q", data, off_at)[0] == rel
    struct.pack_into("<Q", data, off_at, 1 << 40)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="past the end of the file"):
        quantize_file(bad, tmp_path / "out.gguf", "Q4_0")
    assert not (tmp_path / "out.gguf").exists()


def test_create_with_quantize_runs_the_quantized_model(models, tmp_path):
    """create -q (in-process, as the CLI and /api/create do it): the model layer is the quantized file,
    byte-identical with llama.cpp's, and the model answers."""
    import kettle
    from kettle.modelfile import create_model
    from kettle.store import Store

    store = Store(tmp_path / "store")
    statuses: list[str] = []
    create_model(store, "mini:q4", f"FROM {models['llama256_f32']}\n", tmp_path, progress=statuses.append,
                 quantize="q4_K_M")
    assert any(s.startswith("quantizing") and s.endswith("model to Q4_K_M") for s in statuses), statuses
    assert statuses[-1] == "success"
    want = ORACLE["llama256_f32"]["Q4_K_M"]["file"]  # blobs are named by their sha256
    layer_path = store.blob_path("sha256:" + want)
    assert layer_path.is_file()
    f32 = hashlib.sha256(models["llama256_f32"].read_bytes()).hexdigest()
    assert not store.blob_path("sha256:" + f32).exists()  # the unquantized copy is not kept
    model = kettle.load(str(layer_path))
    assert len(model.generate("a b", num_predict=3, temperature=0).text()) >= 0
    with pytest.raises(InvalidParameter):
        create_model(store, "mini:bad", f"FROM {models['llama256_f32']}\n", tmp_path, quantize="q9")


def test_cli_quantize(models, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli.gguf"
    r = subprocess.run([sys.executable, "-m", "kettle", "quantize", str(models["llama96_f32"]), str(out), "Q6_K"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "F32 -> Q8_0" in r.stderr and "(copied)" in r.stderr  # progress lines; 96 columns fall back
    assert digests(out)["file"] == ORACLE["llama96_f32"]["Q6_K"]["file"]
