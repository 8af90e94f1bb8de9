"""The embedding models (``bert``, ``nomic-bert``) against llama.cpp, on tiny random-weight files.

``fixtures/encoder_oracle.json`` holds llama.cpp's token ids and embeddings of the
models ``encoder_factory`` rebuilds from their seeds (``make_encoder_oracle.py``
regenerates it). Ids must be equal; embeddings agree to cosine >= 0.999.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import kettle
from kettle.errors import CapabilityError, ContextOverflow, GGUFError, MetadataError, TokenizerError, WeightError
from kettle.models import Encoder
from tests.gguf_factory import write_gguf
from tests.models.encoder_factory import MODELS, TEXTS, encoder_parts, tiny_encoder

ORACLE = json.loads((Path(__file__).parent / "fixtures" / "encoder_oracle.json").read_text())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("encoders")
    loaded = {name: kettle.load(tiny_encoder(tmp / f"{name}.gguf", name)) for name in MODELS}
    yield loaded
    for m in loaded.values():
        m.close()


def test_the_oracle_covers_every_model_and_text():
    assert ORACLE["texts"] == TEXTS
    assert set(ORACLE["models"]) == set(MODELS)


@pytest.mark.parametrize("name", list(MODELS))
def test_token_ids_equal_llama_cpp(models, name):
    model = models[name]
    for text, row in zip(TEXTS, ORACLE["models"][name], strict=True):
        assert model.tokenize(text, add_special=True, parse_special=False) == row["ids"], text


@pytest.mark.parametrize("name", list(MODELS))
def test_embeddings_equal_llama_cpp(models, name):
    model = models[name]
    got = model.embed(TEXTS)  # (n, n_embd), normalised
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for text, v, row in zip(TEXTS, got, ORACLE["models"][name], strict=True):
        want = np.asarray(row["embedding"], dtype=np.float64)
        cos = float(v @ want / np.linalg.norm(want))
        assert cos >= 0.999, (text, cos)


def test_poolings_differ(models):
    """mean, CLS and last-token pooling read different rows (the oracle agrees on each)."""
    text = TEXTS[1]
    mean, cls_ = models["bert-mean"].embed(text)[0], models["bert-cls-f16"].embed(text)[0]
    assert abs(float(mean @ cls_)) < 0.99
    assert models["nomic-bert-last"].transformer.config.pooling.name == "LAST"


def test_texts_are_embedded_alone(models):
    """A text's embedding does not depend on the texts embedded with it."""
    m = models["nomic-bert-mean"]
    together = m.embed(TEXTS[:3])
    alone = np.stack([m.embed(t)[0] for t in TEXTS[:3]])
    assert np.array_equal(together, alone)


def test_an_embedding_model_does_not_generate(models):
    m = models["bert-mean"]
    assert m.embedding_only
    with pytest.raises(CapabilityError, match="does not support generate"):
        m.generate("hello")
    with pytest.raises(CapabilityError, match="does not support chat"):
        m.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(CapabilityError):
        m.logits([1, 2, 3])


def test_a_text_longer_than_the_positions_is_cut_or_refused(models):
    m = models["bert-mean"]  # 128 trained positions
    long = " ".join(["cat"] * 300)
    assert m.n_ctx == 128
    with pytest.raises(ContextOverflow):
        m.embed(long)
    v = m.embed(long, truncate=True)
    assert np.isclose(np.linalg.norm(v), 1.0)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_weight_changes_the_embedding(tmp_path, name):
    """Each tensor of the file is read: scaling any one of them moves the embedding."""
    meta, tensors = encoder_parts(name)
    base = kettle.load(write_gguf(tmp_path / "base.gguf", meta, tensors))
    want = base.embed(TEXTS[2])[0]
    base.close()
    for tname in sorted(tensors):
        if tname.endswith("attn_k.bias"):
            continue  # adds q.b_k to every score of a query alike: softmax cancels it (llama.cpp adds it too)
        changed = dict(tensors)
        t = tensors[tname]
        changed[tname] = (t.astype(np.float32) * 1.5 + 0.25).astype(t.dtype)
        m = kettle.load(write_gguf(tmp_path / "changed.gguf", meta, changed))
        got = m.embed(TEXTS[2])[0]
        m.close()
        assert not np.allclose(got, want, atol=1e-6), f"{tname} is never read"


def _load_parts(tmp_path, meta, tensors):
    return kettle.load(write_gguf(tmp_path / "m.gguf", meta, tensors))


@pytest.mark.parametrize(("key", "value", "match"), [
    ("{arch}.pooling_type", None, "pooling_type' is missing"),
    ("{arch}.pooling_type", 0, "1 \\(mean\\), 2 \\(cls\\) or 3 \\(last\\)"),
    ("{arch}.pooling_type", 4, "1 \\(mean\\)"),
    ("{arch}.pooling_type", 9, "an integer from 0 to 4"),
    ("{arch}.attention.causal", True, "false"),
    ("{arch}.attention.layer_norm_epsilon", None, "layer_norm_epsilon' is missing"),
    ("{arch}.attention.layer_norm_epsilon", -1.0, "greater than 0"),
    ("{arch}.attention.head_count", 5, "divisor of embedding_length|embedding_length / head_count"),
    ("{arch}.context_length", None, "context_length' is missing"),
    ("tokenizer.ggml.token_type_count", None, "token type count"),
    ("tokenizer.ggml.token_type_count", 0, "token type count"),
])
@pytest.mark.parametrize("name", ["bert-mean", "nomic-bert-mean"])
def test_hostile_metadata_is_refused_naming_the_key(tmp_path, name, key, value, match):
    meta, tensors = encoder_parts(name)
    key = key.format(arch=meta["general.architecture"])
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    with pytest.raises((MetadataError, WeightError)) as e:
        _load_parts(tmp_path, meta, tensors)
    assert e.type is MetadataError, str(e.value)
    assert key in str(e.value) and re.search(match, str(e.value)), str(e.value)


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    meta, tensors = encoder_parts("bert-mean")
    del tensors["position_embd.weight"]
    tensors["blk.0.ffn_gate.weight"] = np.zeros((96, 64), np.float32)  # nomic's, not bert's
    with pytest.raises(WeightError) as e:
        _load_parts(tmp_path, meta, tensors)
    assert "missing tensor 'position_embd.weight'" in str(e.value)
    assert "unexpected tensors: blk.0.ffn_gate.weight" in str(e.value)


def test_a_wordpiece_vocabulary_needs_its_special_tokens(tmp_path):
    from kettle.tokenizer import Tokenizer

    small = {"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["[CLS]", "[UNK]"] + [f"\u2581t{i}" for i in range(40)],
             "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.unknown_token_id": 1,
             "tokenizer.ggml.seperator_token_id": 10**6}  # out of range, and the default 102 is beyond 42 tokens
    with pytest.raises(TokenizerError, match="SEP token id"):
        Tokenizer.from_metadata(small)
    assert Tokenizer.from_metadata({**small, "tokenizer.ggml.seperator_token_id": 0}).encode("t3 t7") == [0, 5, 9, 0]
    meta, tensors = encoder_parts("bert-mean")
    meta["tokenizer.ggml.normalizer.lowercase"] = "yes"
    with pytest.raises(GGUFError, match="normalizer.lowercase must be a bool"):
        _load_parts(tmp_path, meta, tensors)


def test_loaded_model_is_an_encoder(models):
    assert isinstance(models["bert-mean"].transformer, Encoder)
    assert "arch=bert" in repr(models["bert-mean"])



def test_blocked_attention_and_feed_forward_equal_whole(models, monkeypatch):
    """Queries and feed-forward rows go in blocks sized to a memory budget; the blocks change nothing."""
    import kettle.models.encoder as encoder

    m = models["nomic-bert-mean"]
    text = TEXTS[6]  # ~100 tokens
    whole = m.embed(text)[0]
    monkeypatch.setattr(encoder, "BLOCK_FLOATS", 4 * 96)  # 2 feed-forward rows, 1 query of 4 heads at a time
    assert np.allclose(m.embed(text)[0], whole, atol=1e-6)


def test_a_context_whose_buffers_do_not_fit_is_refused_at_load(tmp_path, monkeypatch):
    from kettle.engine import encoding
    from kettle.errors import InsufficientMemory

    meta, tensors = encoder_parts("nomic-bert-mean")
    meta["nomic-bert.context_length"] = 1 << 24  # rotary: no position table bounds it
    path = write_gguf(tmp_path / "m.gguf", meta, tensors)
    monkeypatch.setattr(encoding, "available_memory", lambda: 8 << 30)
    with pytest.raises(InsufficientMemory, match="num_ctx=16777216"):
        kettle.load(path, num_ctx=1 << 24)  # 12 x 2^24 x 64 floats of activations: 48 GiB
    kettle.load(path, num_ctx=4096).close()
