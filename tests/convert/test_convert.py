"""``kettle convert`` on the real all-MiniLM-L6-v2 checkpoint, and on broken checkpoints.

The converted model must tokenize as the Hugging Face tokenizer does and embed
as sentence-transformers does (cosine >= 0.999; the reference is the committed
``fixtures/minilm_reference.json``, made by ``make_minilm_reference.py``, so the
tests need no torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import kettle
from kettle.convert import convert
from kettle.errors import ConvertError
from kettle.gguf import GGMLType, GGUFFile
from tests.convert.minilm import FIXTURE, TEXTS, extract

REFERENCE = json.loads(FIXTURE.read_text())
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory) -> Path:
    return extract(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def converted(minilm_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    paths = {}
    for outtype in ("f32", "f16", "bf16", "q8_0"):
        paths[outtype] = convert(minilm_dir, out / f"minilm-{outtype}.gguf", outtype)
    return paths


def test_reference_is_for_these_texts():
    assert REFERENCE["texts"] == TEXTS


def test_cli_converts_beside_the_folder(minilm_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "kettle", "convert", str(minilm_dir), "--outtype", "q8_0"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = minilm_dir.parent / "all-MiniLM-L6-v2-Q8_0.gguf"
    assert proc.stdout.strip() == str(out) and out.is_file()
    assert "writing blk.5.ffn_down.weight Q8_0 384x1536" in proc.stderr
    assert not list(minilm_dir.parent.glob("*.partial"))


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0"])
def test_embeddings_match_sentence_transformers(converted, outtype):
    model = kettle.load(converted[outtype])
    try:
        assert model.embedding_only
        for text, want in zip(TEXTS, REFERENCE["ids"], strict=True):
            assert model.tokenize(text) == want, text
        got = model.embed(TEXTS)  # (n, 384), normalised
        ref = np.asarray(REFERENCE["embeddings"], dtype=np.float32)
        cos = (got * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= 0.999, dict(zip(TEXTS, cos.round(5)))
        # the geometry the RAG example relies on: a text is nearest to itself, far from the others
        sims = got @ ref.T
        assert (sims.argmax(axis=1) == np.arange(len(TEXTS))).all()
    finally:
        model.close()


def test_metadata_and_types_as_llama_cpp_writes_them(converted):
    with GGUFFile(converted["q8_0"]) as f:
        meta = f.metadata
        assert meta["general.architecture"] == "bert"
        assert meta["bert.pooling_type"] == 1 and meta["bert.attention.causal"] is False
        assert meta["bert.context_length"] == 512 and meta["bert.block_count"] == 6
        assert meta["tokenizer.ggml.model"] == "bert" and meta["tokenizer.ggml.normalizer.lowercase"] is True
        assert "tokenizer.ggml.normalizer.strip_accents" not in meta  # null in tokenizer.json: follows lowercase
        assert meta["tokenizer.ggml.token_type_count"] == 2
        assert meta["tokenizer.ggml.bos_token_id"] == 101 and meta["tokenizer.ggml.seperator_token_id"] == 102
        tokens = meta["tokenizer.ggml.tokens"]
        assert tokens[101] == "[CLS]" and tokens[7592] == "\u2581hello" and tokens[2015] == "s"  # "##s"
        assert f.tensors["token_types.weight"].ggml_type == GGMLType.F32
        assert f.tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.Q8_0
        assert f.tensors["blk.0.attn_q.bias"].ggml_type == GGMLType.F32
        assert not any(name.startswith(("pooler", "cls")) for name in f.tensors)
        assert len(f.tensors) == 5 + 6 * 16


# -- broken checkpoints -------------------------------------------------------------------


def _checkpoint(path: Path, config: dict | None = None, tensors: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config if config is not None else {"architectures": ["BertModel"]}))
    save_file(tensors or {"embeddings.word_embeddings.weight": np.zeros((4, 4), np.float32)},
              str(path / "model.safetensors"))
    return path


def test_not_a_folder(tmp_path):
    with pytest.raises(ConvertError, match="not a folder"):
        convert(tmp_path / "nope")


def test_no_config(tmp_path):
    with pytest.raises(ConvertError, match="no config.json"):
        convert(tmp_path)


def test_unknown_architecture_lists_the_supported(tmp_path):
    from kettle.convert import ARCHITECTURES

    supported = ", ".join(sorted(ARCHITECTURES))
    assert "BertForMaskedLM, BertModel" in supported
    with pytest.raises(ConvertError, match=f"'MambaForCausalLM' cannot be converted .supported: {supported}"):
        convert(_checkpoint(tmp_path / "m", {"architectures": ["MambaForCausalLM"]}))


def test_no_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(ConvertError, match="no model.safetensors"):
        convert(tmp_path)


def test_shards_must_stay_in_the_folder(tmp_path):
    ckpt = _checkpoint(tmp_path / "m")
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../secret.safetensors"}}))
    with pytest.raises(ConvertError, match="not a plain file name"):
        convert(ckpt)


def test_links_must_stay_in_the_folder(tmp_path):
    outside = _checkpoint(tmp_path / "outside")
    ckpt = tmp_path / "m"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"architectures": ["BertModel"]}')
    (ckpt / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(ConvertError, match="link that leads out"):
        convert(ckpt)


def test_malformed_json_is_named(tmp_path):
    ckpt = _checkpoint(tmp_path / "m")
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ConvertError, match="config.json: not valid JSON"):
        convert(ckpt)


def test_bad_outtype(tmp_path):
    with pytest.raises(ConvertError, match="--outtype 'q4_0'"):
        convert(_checkpoint(tmp_path / "m"), outtype="q4_0")


def test_config_values_are_checked(minilm_dir, tmp_path):
    config = json.loads((minilm_dir / "config.json").read_text())
    ckpt = _checkpoint(tmp_path / "m", {**config, "num_attention_heads": 5})
    with pytest.raises(ConvertError, match="not a multiple of num_attention_heads 5"):
        convert(ckpt)
    ckpt = _checkpoint(tmp_path / "n", {**config, "num_hidden_layers": "6"})
    with pytest.raises(ConvertError, match="'num_hidden_layers' is '6'"):
        convert(ckpt)


def test_a_tensor_without_a_place_is_refused(minilm_dir, tmp_path):
    config = json.loads((minilm_dir / "config.json").read_text())
    ckpt = _checkpoint(tmp_path / "m", config, {"encoder.layer.0.crossattention.weight": np.zeros((2, 2), np.float32)})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (ckpt / name).write_bytes((minilm_dir / name).read_bytes())
    with pytest.raises(ConvertError, match="'encoder.layer.0.crossattention.weight' has no place"):
        convert(ckpt, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob("*.partial"))


def test_a_tokenizer_that_is_not_wordpiece(minilm_dir, tmp_path):
    config = json.loads((minilm_dir / "config.json").read_text())
    ckpt = _checkpoint(tmp_path / "m", config)
    (ckpt / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []}}))
    with pytest.raises(ConvertError, match="expected a WordPiece model"):
        convert(ckpt)


def test_cli_convert_create_run_prints_the_embedding(minilm_dir, tmp_path):
    """`kettle convert`, `kettle create` from the GGUF, then `kettle run` prints the embedding as
    JSON (ollama's run of an embedding model); without a text it says what it needs."""
    from tests.cli.conftest import make_runner

    kettle_cli = make_runner(tmp_path / "store", tmp_path)
    out = kettle_cli("convert", str(minilm_dir), "-o", "minilm.gguf")
    assert out.returncode == 0, out.stderr
    (tmp_path / "Modelfile").write_text("FROM ./minilm.gguf\n")
    assert kettle_cli("create", "all-minilm", "-f", "Modelfile").returncode == 0
    shown = kettle_cli("show", "all-minilm")
    assert "embedding" in shown.stdout and "completion" not in shown.stdout, shown.stdout
    run = kettle_cli("run", "all-minilm", TEXTS[0])
    assert run.returncode == 0, run.stderr
    vector = np.asarray(json.loads(run.stdout))
    ref = np.asarray(REFERENCE["embeddings"][0])
    assert vector.shape == (384,) and float(vector @ ref / np.linalg.norm(ref)) >= 0.999
    empty = kettle_cli("run", "all-minilm")
    assert empty.returncode == 1 and "embedding models require input text" in empty.stderr


def test_token_ids_equal_llama_cpp_across_scripts(converted):
    """llama.cpp's ids on the same converted file (fixtures/minilm_llama_ids.json, from
    make_minilm_llama_ids.py): accents, scripts, CJK, emoji, controls, random codepoints."""
    table = json.loads((FIXTURE.parent / "minilm_llama_ids.json").read_text(encoding="utf-8"))["cases"]
    model = kettle.load(converted["f16"])
    try:
        wrong = [(c["text"], model.tokenize(c["text"])) for c in table if model.tokenize(c["text"]) != c["ids"]]
    finally:
        model.close()
    assert not wrong and len(table) > 200, wrong[:3]
