"""kettle against llama.cpp's own outputs on the two bundled models.

The oracle files (tests/oracle/, copied from the project's shared reference)
were produced by llama.cpp; see tests/oracle/README.md for how.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import kettle
from kettle.perplexity import chunks, perplexity

MODELS = ["smollm2-135m-q4_1", "gemma3-270m-q4_k_m"]
TOLERANCE = 0.5  # logits: a different top token must be within this of llama.cpp's


@pytest.fixture(scope="module", params=MODELS)
def case(request, smollm2_path, gemma3_path, oracle_dir):
    path = smollm2_path if request.param.startswith("smollm2") else gemma3_path
    model = kettle.load(path, num_ctx=2048)
    yield model, oracle_dir / request.param
    model.close()


def _oracle(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


def _agrees(row: np.ndarray, ref_id: int) -> bool:
    mine = int(np.argmax(row))
    return mine == ref_id or row[ref_id] >= row[mine] - TOLERANCE


def test_logits_at_every_position(case, record_property):
    model, folder = case
    worst = 0.0
    for prompt in _oracle(folder, "logits")["prompts"]:
        lg = model.logits(prompt["ids"])
        for i, pos in enumerate(prompt["positions"]):
            top = pos["top"]
            assert _agrees(lg[i], top[0][0]), (prompt["ids"], i)
            worst = max(worst, max(abs(float(lg[i][t]) - l) for t, l in top))
            # log-softmax normaliser within a tolerance too
            m = lg[i].astype(np.float64).max()
            lse = m + math.log(np.exp(lg[i].astype(np.float64) - m).sum())
            assert abs(lse - pos["logsumexp"]) < 1.0
    record_property("max_top10_logit_diff", worst)
    print(f"\nlargest |kettle - llama.cpp| over the top-10 logits: {worst:.4f}")
    assert worst < 1.5


def test_greedy_teacher_forced(case, record_property):
    model, folder = case
    agree = total = 0
    prefix_lengths = []
    for prompt in _oracle(folder, "greedy")["prompts"]:
        p, g = prompt["prompt_ids"], prompt["generated_ids"]
        ids = p + g
        lg = model.logits(ids[:-1])
        first_divergence = None
        for j in range(len(g)):
            row = lg[len(p) - 1 + j]
            agree += _agrees(row, g[j])
            total += 1
            if first_divergence is None and int(np.argmax(row)) != g[j]:
                first_divergence = j
        prefix_lengths.append(len(g) if first_divergence is None else first_divergence)
    print(f"\nteacher-forced agreement {agree}/{total}; exact greedy prefix per prompt {prefix_lengths}")
    record_property("teacher_forced_agreement", agree / total)
    assert agree / total >= 0.98


def test_free_running_greedy_starts_like_llama_cpp(case):
    model, folder = case
    prompt = _oracle(folder, "greedy")["prompts"][0]
    stream = model.generate_ids(prompt["prompt_ids"], temperature=0, num_predict=8)
    got = [t for chunk in stream for t in chunk.token_ids]
    assert got[:4] == prompt["generated_ids"][:4]


@pytest.mark.slow
def test_perplexity_within_one_percent(case):
    model, folder = case
    ref = _oracle(folder, "perplexity")["c_api_recomputation"]
    text = (folder.parent / "texts" / "gpl3-first-14000.txt").read_text()
    if text.endswith("\n"):
        text = text[:-1]
    ids = model.tokenize(text, add_special=True, parse_special=False)
    assert ids == ref["text_ids"]
    parts = chunks(ids, ref["n_ctx"], ref["n_chunks"], model.tokenizer.bos_id if ref["add_bos"] else None)
    ppl = perplexity(model.logits, parts, ref["first_scored_position"])
    print(f"\nperplexity kettle {ppl:.4f} vs llama.cpp {ref['ppl']:.4f}")
    assert abs(ppl / ref["ppl"] - 1) < 0.01


def test_embeddings(case):
    model, folder = case
    data = _oracle(folder, "embeddings")
    items = data["items"]
    vecs = model.embed([it["text"] for it in items])
    for it, v in zip(items, vecs):
        assert model.tokenize(it["text"], add_special=True, parse_special=True) == it["tokens_add_special_parse_special"]
        assert v.shape == (it["dim"],)
        assert abs(np.linalg.norm(v) - 1) < 1e-4
        np.testing.assert_allclose(v[:8], it["normalized_first8"], atol=0.02)
    for c in data["cosine_similarities_raw"]:
        assert abs(float(vecs[c["i"]] @ vecs[c["j"]]) - c["cosine"]) < 0.02
