"""``kettle convert`` on Llama, Mistral, Qwen2 and Qwen3 checkpoints, against transformers.

The checkpoints are tiny and random (``decoder_case.py`` rebuilds them from a
seed); transformers' logits on them and the Hugging Face tokenizer's ids are
the committed ``decoders/reference.npz`` (``make_decoder_reference.py``), so the
tests need no torch. Agreement: the same top-1 token at >= 95% of positions and
logits within 2% of each row's largest magnitude (f32 output: within 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import kettle
from kettle.api import Model, ModelSpec
from kettle.convert import convert
from kettle.errors import ConvertError, ModelfileError
from kettle.gguf import GGMLType, GGUFFile
from kettle.options import LoadOptions
from tests.convert.decoder_case import FAMILIES, IDS, REFERENCE, TEXTS, write_checkpoint

REF = np.load(REFERENCE)


@pytest.fixture(autouse=True)
def _f32_kv_cache(monkeypatch):
    """The tolerances below are for an f32 KV cache, whatever the default becomes."""
    monkeypatch.setenv("KETTLE_KV_CACHE_TYPE", "f32")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {family: write_checkpoint(root / family, family) for family in FAMILIES}


def _model(path: Path) -> Model:
    return Model(ModelSpec(path), LoadOptions(num_ctx=64))


# every family runs (rope_freqs, Llama 3.1's rope scaling, and qwen3 included)
PENDING: dict[str, str] = {}
RUNNABLE = [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=PENDING[f])) if f in PENDING else f
            for f in FAMILIES]


@pytest.mark.parametrize("family", RUNNABLE)
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_logits_match_transformers(folders, tmp_path, family, outtype):
    out = convert(folders[family], tmp_path / "m.gguf", outtype=outtype)
    model = _model(out)
    try:
        mine = model.logits(IDS)
    finally:
        model.close()
    ref = REF[f"{family}/logits"]
    rel = np.abs(mine - ref).max(1) / np.abs(ref).max(1)
    same_top = np.mean(mine.argmax(1) == ref.argmax(1))
    if outtype == "f32":
        assert rel.max() < 1e-4, rel.max()
    elif outtype == "f16":
        assert same_top >= 0.95 and rel.max() <= 0.02, (same_top, rel.max())
    else:  # 8-bit weights of a tiny random model: the quantization error itself is ~3% of a row's largest logit
        assert same_top >= 0.9 and rel.max() <= 0.06, (same_top, rel.max())


@pytest.mark.parametrize("family", [f if f != "qwen3" else RUNNABLE[-1] for f in FAMILIES])
def test_tokenizer_and_metadata(folders, tmp_path, family):
    out = convert(folders[family], tmp_path / "m.gguf", outtype="f16")
    with GGUFFile(out) as f:
        arch = f.architecture
        assert arch == ("llama" if family == "mistral" else FAMILIES[family]["model_type"])
        assert f.get("tokenizer.ggml.model") == "gpt2"
        assert f.get("tokenizer.ggml.pre") == ("llama-bpe" if FAMILIES[family]["tokenizer"] == "llama3" else "qwen2")
        template = json.loads((folders[family] / "tokenizer_config.json").read_text())["chat_template"]
        assert f.get("tokenizer.chat_template") == template
        assert f.tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.F16
        assert f.tensors["blk.0.attn_norm.weight"].ggml_type == GGMLType.F32
        assert ("output.weight" in f.tensors) == (not FAMILIES[family]["tie_word_embeddings"])
        assert ("rope_freqs.weight" in f.tensors) == (family == "llama")
    model = _model(out)
    try:
        for i, text in enumerate(TEXTS):
            assert model.tokenize(text) == REF[f"{family}/text{i}"].tolist(), text
            assert model.detokenize(model.tokenize(text, add_special=False)) == text
    finally:
        model.close()


def test_q8_0_is_kettles_quantizer(folders, tmp_path):
    from kettle.quant import quantize

    out = convert(folders["qwen2"], tmp_path / "m.gguf", outtype="q8_0")
    ref = convert(folders["qwen2"], tmp_path / "f.gguf", outtype="f32")
    with GGUFFile(out) as q, GGUFFile(ref) as f:
        assert q.tensors["blk.1.ffn_down.weight"].ggml_type == GGMLType.Q8_0
        values = np.asarray(f.tensor("blk.1.ffn_down.weight"))
        np.testing.assert_array_equal(np.asarray(q.tensor("blk.1.ffn_down.weight")).reshape(-1),
                                      quantize(values, GGMLType.Q8_0).reshape(-1))


def test_llama3_rope_factors(folders, tmp_path):
    """rope_freqs.weight as llama.cpp's converter computes it (Llama 3.1's wavelength bands)."""
    out = convert(folders["llama"], tmp_path / "m.gguf", outtype="f32")
    with GGUFFile(out) as f:
        factors = np.array(f.tensor("rope_freqs.weight"))  # a copy: the view dies with the file
    assert factors.shape == (8,)  # head_dim 16 / 2
    assert factors[0] == 1.0 and factors[-1] == 8.0  # high frequencies untouched, low ones scaled by 8
    assert np.all(np.diff(factors) >= 0)


@pytest.mark.parametrize("edit, fragment", [
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"hidden_size": -64}, "hidden_size"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope type"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers"),
    ({"vocab_size": 100}, "outside"),
])
def test_bad_configs_are_refused(folders, tmp_path, edit, fragment):
    import shutil

    folder = shutil.copytree(folders["llama"], tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(edit)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConvertError, match=fragment):
        convert(folder, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_unknown_pre_tokenizer_is_refused(folders, tmp_path):
    import shutil

    folder = shutil.copytree(folders["qwen2"], tmp_path / "hf")
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ConvertError, match="pre-tokenizer is not one kettle knows"):
        convert(folder, tmp_path / "m.gguf")


def test_create_from_a_checkpoint_folder(folders, tmp_path):
    """``FROM ./hf-dir`` (ollama's safetensors import): converted to F16 first, in-process and
    through a server (the CLI converts, then uploads the GGUF)."""
    import shutil

    from kettle.cli.http_backend import HttpBackend
    from kettle.modelfile import create_model, parse
    from kettle.store import Store
    from tests.store.live_server import live_server

    project = tmp_path / "project"
    shutil.copytree(folders["qwen2"], project / "qwen-hf")
    direct = convert(project / "qwen-hf", tmp_path / "direct.gguf", outtype="f16")
    store = Store(tmp_path / "store")
    events: list[str] = []
    create_model(store, "qwen-tiny", "FROM ./qwen-hf\nSYSTEM hi\n", project, progress=events.append)
    assert "converting qwen-hf" in events
    stored = store.resolve("qwen-tiny")
    assert stored.model_path.read_bytes() == direct.read_bytes()
    assert stored.details.family == "qwen2" and stored.system == "hi"
    assert not [p for p in (tmp_path / "store" / "blobs").iterdir() if not p.name.startswith("sha256-")]
    with live_server(tmp_path / "served") as server:
        backend = HttpBackend(server.url)
        try:
            backend.create("qwen-served", parse("FROM ./qwen-hf\n"), project, lambda event: None)
        finally:
            backend.close()
        served = Store(tmp_path / "served", cleanup=False).resolve("qwen-served")
        assert served.model_path.read_bytes() == direct.read_bytes()
    # a broken folder is refused with the line and the reason; nothing is stored
    (project / "broken").mkdir()
    (project / "broken" / "config.json").write_text("{}")
    with pytest.raises(ModelfileError, match="no model.safetensors") as e:
        create_model(store, "broken", "FROM ./broken\n", project)
    assert e.value.line == 1 and not store.exists("broken")


def _peft_adapter(folder: Path, cfg_weights: dict, rank: int = 4, alpha: float = 8.0, rslora: bool = False):
    """A PEFT LoRA folder on every projection of the checkpoint; returns (A, B) by module name."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(5)
    pairs, tensors = {}, {}
    for name, w in cfg_weights.items():
        if w.ndim != 2 or not name.startswith("model.layers.") or "_proj" not in name:
            continue
        module = name.removesuffix(".weight")
        a = (rng.standard_normal((rank, w.shape[1])) / np.sqrt(w.shape[1])).astype(np.float32)
        b = (rng.standard_normal((w.shape[0], rank)) * 0.3 / np.sqrt(rank)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
        pairs[module] = (a, b)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "use_rslora": rslora,
         "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}))
    return pairs


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_adapter_converted_on_create_equals_merged_weights(folders, tmp_path, rslora):
    """ADAPTER ./peft-dir: converted for the base (llama arch: lora_b rows permuted like q/k);
    kettle's result equals the checkpoint with the adapter merged in, converted."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from kettle.modelfile import create_model
    from kettle.store import Store

    project = tmp_path / "project"
    base = shutil.copytree(folders["mistral"], project / "base")
    weights = load_file(str(base / "model.safetensors"))
    pairs = _peft_adapter(project / "lora", weights, rslora=rslora)
    scale = 8.0 / (np.sqrt(4) if rslora else 4)
    merged = shutil.copytree(base, tmp_path / "merged")
    save_file({k: (v + scale * (pairs[k[:-7]][1] @ pairs[k[:-7]][0]) if k[:-7] in pairs else v).astype(np.float32)
               for k, v in weights.items()}, str(merged / "model.safetensors"))
    convert(base, project / "base.gguf", outtype="f32")
    store = Store(tmp_path / "store")
    create_model(store, "m", "FROM ./base.gguf\nADAPTER ./lora\n", project)
    stored = store.resolve("m")
    model = Model(ModelSpec(stored.model_path, adapters=stored.adapters), LoadOptions(num_ctx=64))
    reference = _model(convert(merged, tmp_path / "merged.gguf", outtype="f32"))
    try:
        mine, ref = model.logits(IDS), reference.logits(IDS)
    finally:
        model.close()
        reference.close()
    np.testing.assert_allclose(mine, ref, atol=1e-4 * np.abs(ref).max())


def test_bad_peft_adapters_are_refused(folders, tmp_path):
    import shutil

    from safetensors.numpy import load_file

    from kettle.modelfile import create_model
    from kettle.store import Store

    project = tmp_path / "project"
    base = shutil.copytree(folders["qwen2"], project / "base")
    convert(base, project / "base.gguf", outtype="f16")
    _peft_adapter(project / "lora", load_file(str(base / "model.safetensors")))
    cfg = json.loads((project / "lora" / "adapter_config.json").read_text())
    store = Store(tmp_path / "store")
    for edit, fragment in (({"r": 0}, "'r' is 0"), ({"lora_alpha": "big"}, "lora_alpha"),
                           ({"peft_type": "IA3"}, "not LORA")):
        (project / "lora" / "adapter_config.json").write_text(json.dumps({**cfg, **edit}))
        with pytest.raises(ModelfileError, match=fragment) as e:
            create_model(store, "m", "FROM ./base.gguf\nADAPTER ./lora\n", project)
        assert e.value.line == 2 and not store.exists("m")
    assert not [p for p in (tmp_path / "store" / "blobs").iterdir() if not p.name.startswith("sha256-")]


@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_gemma3_logits_match_transformers(tmp_path, outtype):
    """Gemma 3: norms with 1 + w folded in, local sliding-window layers (window 4 < 20 tokens) and a
    global sixth layer, a SentencePiece tokenizer.model."""
    from tests.convert.decoder_case import GEMMA3_IDS, write_gemma3_checkpoint

    out = convert(write_gemma3_checkpoint(tmp_path / "hf"), tmp_path / "m.gguf", outtype=outtype)
    model = _model(out)
    try:
        mine = model.logits(GEMMA3_IDS)
    finally:
        model.close()
    ref = REF["gemma3/logits"]
    rel = np.abs(mine - ref).max(1) / np.abs(ref).max(1)
    assert rel.max() < (1e-4 if outtype == "f32" else 0.02), rel.max()
    assert np.mean(mine.argmax(1) == ref.argmax(1)) >= 0.95


def test_sentencepiece_vocabulary_round_trips(tmp_path):
    """tokenizer.model -> tokenizer.ggml.*: the same tokens, scores and types, the same ids for text as
    a GGUF written with that vocabulary directly; special ids and the template from tokenizer_config."""
    from tests.convert.decoder_case import spm_pieces, write_gemma3_checkpoint
    from tests.gguf_factory import tiny_model

    out = convert(write_gemma3_checkpoint(tmp_path / "hf"), tmp_path / "m.gguf", outtype="f16")
    pieces = spm_pieces()
    with GGUFFile(out) as f:
        assert f.get("tokenizer.ggml.model") == "llama" and f.get("tokenizer.ggml.add_space_prefix") is False
        assert list(f.get("tokenizer.ggml.tokens")) == [p[0] for p in pieces]
        np.testing.assert_array_equal(f.get("tokenizer.ggml.scores"), np.array([p[1] for p in pieces], np.float32))
        assert list(f.get("tokenizer.ggml.token_type")) == [p[2] for p in pieces]
        assert (f.get("tokenizer.ggml.bos_token_id"), f.get("tokenizer.ggml.eos_token_id")) == (1, 2)
        assert "<start_of_turn>" in f.get("tokenizer.chat_template")
        assert f.get("gemma3.attention.sliding_window") == 4
    direct = tiny_model(tmp_path / "direct.gguf", arch="gemma3", vocab=True, n_vocab=128,
                        meta={"tokenizer.ggml.add_space_prefix": False})
    a, b = _model(out), _model(direct)
    try:
        for text in ("hello world", "abc  xyz q", "zebra"):
            assert a.tokenize(text) == b.tokenize(text)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("edit, fragment", [
    ({"query_pre_attn_scalar": 168}, "query_pre_attn_scalar"),
    ({"final_logit_softcapping": 30.0}, "soft-capping"),
    ({"sliding_window_pattern": 2}, "sliding_window_pattern"),
    ({"rope_local_base_freq": 20000.0}, "rope base"),
])
def test_gemma3_configs_kettle_would_run_differently_are_refused(tmp_path, edit, fragment):
    from tests.convert.decoder_case import write_gemma3_checkpoint

    folder = write_gemma3_checkpoint(tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **edit}))
    with pytest.raises(ConvertError, match=fragment):
        convert(folder, tmp_path / "m.gguf")


def test_a_broken_tokenizer_model_is_refused(tmp_path):
    from tests.convert.decoder_case import write_gemma3_checkpoint

    folder = write_gemma3_checkpoint(tmp_path / "hf")
    data = (folder / "tokenizer.model").read_bytes()
    for bad, fragment in ((data[: len(data) // 2], "runs past the end|truncated"), (b"\x0f" * 64, "wire type"),
                          (b"", "no pieces")):
        (folder / "tokenizer.model").write_bytes(bad)
        with pytest.raises(ConvertError, match=fragment):
            convert(folder, tmp_path / "m.gguf")
