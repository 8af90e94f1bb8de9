"""One harness over every architecture, on tiny generated models.

kettle promises the same logits at any concurrency, so these comparisons are
exact (bit for bit), not approximate: cache == no cache, chunked prefill ==
full prefill, a batch of 3 sequences == 3 single runs. A plain numpy forward
on the dequantized weights checks that the kernels compute the right thing.
"""

from __future__ import annotations

import numpy as np
import pytest

from kettle.engine.runner import Runner
from kettle.gguf import GGUFFile
from kettle.models import load_model
from kettle.quant import GGMLType, select
from tests.gguf_factory import tiny_model
from tests.models.decoder_factory import MODELS, tiny_decoder
from tests.models.reference import reference_logits

CASES = [("llama", "Q8_0"), ("llama", "Q4_1"), ("qwen2", "Q4_0"), ("gemma3", "Q8_0"), ("gemma3", "Q4_K"), ("llama", "Q6_K")]
# every decoder_factory case (each architecture and rope/window/expert variant): its own weights
CASES += [(name, "factory") for name in MODELS]
# K-quant rows are whole 256-element super-blocks: those models get wider dims.
K_QUANT_DIMS = {"n_embd": 256, "n_ff": 256, "n_head": 4, "n_kv_head": 2, "head_dim": 64}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def model(request, tmp_path_factory):
    arch, qtype = request.param
    dims = K_QUANT_DIMS if qtype.endswith("_K") else {}
    if qtype == "factory":
        path = tiny_decoder(tmp_path_factory.mktemp(arch) / "m.gguf", arch)
    else:
        path = tiny_model(tmp_path_factory.mktemp(arch) / "m.gguf", arch=arch, qtype=qtype, **dims)
    f = GGUFFile(path)
    yield load_model(f)


def _ids(seed: int, n: int, vocab: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def _all_logits(model, ids, n_batch=512):
    r = Runner(model, n_ctx=64, n_batch=n_batch)
    n = len(ids)
    return r.forward(ids, range(n), [0] * n, outputs=range(n))


def _stepwise_logits(model, ids):
    r = Runner(model, n_ctx=64)
    return np.concatenate([r.forward([t], [i], [0]) for i, t in enumerate(ids)])


def test_matches_numpy_reference(model, request):
    ids = _ids(1, 20, model.config.n_vocab)
    got = _all_logits(model, ids)
    want = reference_logits(model, ids)
    err = np.abs(got - want).max() / (np.abs(want).max() + 1e-6)
    # SIMD kernels quantize activations to int8 blocks (as llama.cpp does): about 1e-2 on these random models.
    name = request.node.callspec.params["model"][1]
    arch = request.node.callspec.params["model"][0]
    qtype = GGMLType[MODELS[arch][1].get("qtype", "F32") if name == "factory" else name]
    assert err < (2e-3 if select(qtype).name == "portable" else 6e-2), err


def test_cache_equals_no_cache(model):
    ids = _ids(2, 45, model.config.n_vocab)  # past the vector widths of every loop
    np.testing.assert_array_equal(_stepwise_logits(model, ids), _all_logits(model, ids))


@pytest.mark.parametrize("n_batch", [1, 3, 7])
def test_chunked_prefill_equals_full(model, n_batch):
    ids = _ids(3, 41, model.config.n_vocab)
    np.testing.assert_array_equal(_all_logits(model, ids, n_batch=n_batch), _all_logits(model, ids))


def test_batch_of_three_equals_singles(model):
    prompts = [_ids(10 + s, n, model.config.n_vocab) for s, n in enumerate((5, 9, 3))]
    singles = [_stepwise_logits(model, p) for p in prompts]
    r = Runner(model, n_ctx=64, n_slots=3)
    # Prefill all three prompts in one call, then decode them together.
    got = [[] for _ in prompts]
    first = [p[:2] for p in prompts]
    toks = sum(first, [])
    pos = sum([list(range(len(f))) for f in first], [])
    seq = sum([[s] * len(f) for s, f in enumerate(first)], [])
    lg = r.forward(toks, pos, seq, outputs=range(len(toks)))
    for row, s in zip(lg, seq):
        got[s].append(row)
    for i in range(2, max(map(len, prompts))):
        live = [s for s, p in enumerate(prompts) if i < len(p)]
        lg = r.forward([prompts[s][i] for s in live], [i] * len(live), live)
        for row, s in zip(lg, live):
            got[s].append(row)
    for s in range(3):
        np.testing.assert_array_equal(np.stack(got[s]), singles[s])


def test_hidden_states_shape(model):
    r = Runner(model, n_ctx=64)
    h = r.forward([1, 2, 3], [0, 1, 2], [0, 0, 0], outputs=[0, 1, 2], hidden=True)
    assert h.shape == (3, model.config.n_embd)
