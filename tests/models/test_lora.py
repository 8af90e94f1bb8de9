"""LoRA adapters (llama.cpp's GGUF format) applied beside the base weights.

Against llama.cpp's own ``--lora`` logits (``tests/models/lora/oracle.npz``, made by
``python -m tests.models.lora.make_oracle``), against kettle's merged-weights
result, and end to end through a Modelfile's ADAPTER; bad adapters are refused
with errors that name the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kettle
from kettle.api import ModelSpec
from kettle.errors import MetadataError, ModelfileError, WeightError
from kettle.models.lora import LoraAdapter
from kettle.modelfile import create_model
from kettle.options import LoadOptions
from kettle.store import Store
from tests.gguf_factory import write_gguf
from tests.models.lora.case import ALPHA, IDS, RANK, adapter_metadata, adapter_tensors, base_parts, write_case

ORACLE = Path(__file__).parent / "lora" / "oracle.npz"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("lora"))


def _logits(path: Path, adapters: tuple[Path, ...] = ()) -> np.ndarray:
    model = kettle.api.Model(ModelSpec(path, adapters=adapters), LoadOptions(num_ctx=64))
    try:
        return model.logits(IDS)
    finally:
        model.close()


def _agree(mine: np.ndarray, ref: np.ndarray) -> None:
    same_top = np.mean(mine.argmax(1) == ref.argmax(1))
    worst = np.max(np.abs(mine - ref).max(1) / np.abs(ref).max(1))
    assert same_top >= 0.95 and worst <= 0.02, (same_top, worst)


@pytest.fixture(autouse=True)
def _f32_cache(monkeypatch):
    """The oracle bound (2%) is met with float32 keys and values; f16's rounding adds ~0.2%."""
    monkeypatch.setenv("KETTLE_KV_CACHE_TYPE", "f32")


def test_matches_llama_cpp_with_and_without_the_adapter(case):
    base, adapter = case
    oracle = np.load(ORACLE)
    assert oracle["ids"].tolist() == IDS
    _agree(_logits(base), oracle["base"])
    _agree(_logits(base, (adapter,)), oracle["adapted"])
    # the adapter matters: llama.cpp's two results differ, and so do kettle's
    assert np.abs(oracle["adapted"] - oracle["base"]).max() > 0.1


def test_equals_the_merged_weights(tmp_path):
    meta, tensors = base_parts("F32")
    tensors.setdefault("output.weight", tensors["token_embd.weight"])
    lora = adapter_tensors(tensors)
    base = write_gguf(tmp_path / "base.gguf", meta, tensors)
    adapter = write_gguf(tmp_path / "adapter.gguf", adapter_metadata(), lora)
    scale = ALPHA / RANK
    merged = dict(tensors)
    for name in {k.rsplit(".lora_", 1)[0] for k in lora}:
        a, b = lora[name + ".lora_a"].astype(np.float32), lora[name + ".lora_b"].astype(np.float32)
        merged[name] = (tensors[name] + scale * (b @ a)).astype(np.float32)
    merged_path = write_gguf(tmp_path / "merged.gguf", meta, merged)
    mine, ref = _logits(base, (adapter,)), _logits(merged_path)
    np.testing.assert_allclose(mine, ref, atol=1e-4 * np.abs(ref).max())
    assert np.abs(mine - _logits(base)).max() > 0.1


def test_two_adapters_add_up(tmp_path, good_tensors):
    # an F32 base: no int8 activations, whose rounding would amplify last-bit differences
    base, adapter = write_case(tmp_path, "F32")
    double = write_gguf(tmp_path / "double.gguf", adapter_metadata(**{"adapter.lora.alpha": 2 * ALPHA}), good_tensors)
    twice, doubled = _logits(base, (adapter, adapter)), _logits(base, (double,))
    np.testing.assert_allclose(twice, doubled, atol=1e-4 * np.abs(doubled).max())
    assert np.abs(twice - _logits(base, (adapter,))).max() > 0.1


def test_modelfile_adapter_is_applied(tmp_path, case):
    base, adapter = case
    folder = tmp_path / "mf"
    folder.mkdir()
    (folder / "base.gguf").write_bytes(base.read_bytes())
    (folder / "lora.gguf").write_bytes(adapter.read_bytes())
    store = Store(tmp_path / "store")
    create_model(store, "tiny-lora", "FROM ./base.gguf\nADAPTER ./lora.gguf\n", folder)
    create_model(store, "tiny-plain", "FROM ./base.gguf\n", folder)
    adapted = kettle.api.Model(kettle.api.resolve("tiny-lora", store), LoadOptions(num_ctx=64))
    try:
        assert adapted.spec.adapters, "the stored model lists its adapter"
        np.testing.assert_array_equal(adapted.logits(IDS), _logits(base, (adapter,)))
    finally:
        adapted.close()
    plain = kettle.api.Model(kettle.api.resolve("tiny-plain", store), LoadOptions(num_ctx=64))
    try:
        np.testing.assert_array_equal(plain.logits(IDS), _logits(base))
    finally:
        plain.close()


# -- bad adapters ------------------------------------------------------------------


def _bad(tmp_path: Path, meta: dict, tensors: dict) -> Path:
    return write_gguf(tmp_path / "bad.gguf", meta, tensors)


@pytest.fixture(scope="module")
def good_tensors():
    _, tensors = base_parts()
    tensors.setdefault("output.weight", tensors["token_embd.weight"])
    return adapter_tensors(tensors)


@pytest.mark.parametrize("override, key", [
    ({"general.type": "model"}, "general.type"),
    ({"general.type": None}, "general.type"),
    ({"general.architecture": "gemma3"}, "general.architecture"),
    ({"adapter.type": "control_vector"}, "adapter.type"),
    ({"adapter.lora.alpha": float("nan")}, "adapter.lora.alpha"),
])
def test_bad_metadata_names_the_key(tmp_path, good_tensors, override, key):
    path = _bad(tmp_path, adapter_metadata(**override), good_tensors)
    with pytest.raises(MetadataError, match=key.replace(".", r"\.")):
        LoraAdapter.open(path, "llama")


def test_bad_tensors_are_all_reported(tmp_path, good_tensors):
    t = dict(good_tensors)
    del t["blk.0.attn_q.weight.lora_b"]  # half a pair
    t["blk.1.attn_k.weight.lora_b"] = np.zeros((32, RANK + 1), np.float16)  # ranks disagree
    t["blk.2.attn_v.weight.delta"] = np.zeros((4, 4), np.float32)  # unknown suffix
    with pytest.raises(WeightError) as e:
        LoraAdapter.open(_bad(tmp_path, adapter_metadata(), t), "llama")
    text = str(e.value)
    assert "blk.0.attn_q.weight.lora_b' is missing" in text
    assert "rank" in text and "blk.1.attn_k.weight" in text
    assert "blk.2.attn_v.weight.delta" in text


def test_adapter_for_another_size_is_refused_at_create_and_load(tmp_path, case, good_tensors):
    base, _ = case
    t = dict(good_tensors)
    t["blk.0.ffn_up.weight.lora_a"] = np.zeros((RANK, 32), np.float16)  # base's ffn_up takes 64 columns
    t["blk.9.ffn_up.weight.lora_a"] = np.zeros((RANK, 64), np.float16)  # no layer 9
    t["blk.9.ffn_up.weight.lora_b"] = np.zeros((128, RANK), np.float16)
    folder = tmp_path / "mf"
    folder.mkdir()
    (folder / "base.gguf").write_bytes(base.read_bytes())
    bad = _bad(folder, adapter_metadata(), t)
    store = Store(tmp_path / "store")
    with pytest.raises(ModelfileError, match="blk.0.ffn_up.weight") as e:
        create_model(store, "broken", f"FROM ./base.gguf\nADAPTER ./{bad.name}\n", folder)
    assert "blk.9.ffn_up.weight" in str(e.value) and e.value.line == 2
    assert store.list_models() == [] and not any((tmp_path / "store").rglob("sha256-*"))
    with pytest.raises(WeightError, match="another model"):
        _logits(base, (bad,))


def test_a_model_file_is_not_an_adapter(tmp_path, case):
    base, _ = case
    folder = tmp_path / "mf"
    folder.mkdir()
    (folder / "base.gguf").write_bytes(base.read_bytes())
    with pytest.raises(ModelfileError, match="general.type"):
        create_model(Store(tmp_path / "store"), "x", "FROM ./base.gguf\nADAPTER ./base.gguf\n", folder)


@pytest.mark.slow
def test_served_model_with_an_adapter(tmp_path, case):
    """/api/create with ``adapters`` through a real ``kettle serve``; /api/generate uses the adapter."""
    import hashlib

    from tests.store.live_server import live_server

    base, adapter = case
    body = {"prompt": "abc def", "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 8, "seed": 1}}
    expected = {}
    for name, adapters in (("plain", ()), ("adapted", (adapter,))):
        model = kettle.api.Model(ModelSpec(base, adapters=adapters), LoadOptions(num_ctx=256))
        try:
            expected[name] = model.generate(body["prompt"], temperature=0, num_predict=8, seed=1).text()
        finally:
            model.close()
    assert expected["plain"] != expected["adapted"]
    digests = {p: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in (base, adapter)}
    with live_server(tmp_path / "store") as server, server.client() as c:
        for path, digest in digests.items():
            assert c.post(f"/api/blobs/{digest}", content=path.read_bytes()).status_code == 201
        files = {"files": {"base.gguf": digests[base]}, "stream": False}
        assert c.post("/api/create", json={"model": "plain", **files}).status_code == 200
        r = c.post("/api/create", json={"model": "adapted", **files, "adapters": {"lora.gguf": digests[adapter]}})
        assert r.status_code == 200, r.text
        for name in ("plain", "adapted"):
            r = c.post("/api/generate", json={"model": name, **body})
            assert r.status_code == 200, r.text
            assert r.json()["response"] == expected[name]
        # an adapter that does not fit is refused at create, with the reason
        bad = c.post("/api/create", json={"model": "bad", **files, "adapters": {"x.gguf": digests[base]}})
        assert bad.status_code == 400 and "general.type" in bad.json()["error"]
