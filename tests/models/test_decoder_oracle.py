"""Every decoder architecture against llama.cpp: the tiny random models of
``decoder_factory`` (rebuilt from their seeds) give the logits llama.cpp gave
(``oracle/decoders.npz``, made by ``python -m tests.models.oracle_gen``): the
same top-1 token at >= 95% of positions, every logit within 2% of its row's
largest magnitude.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kettle.engine.runner import Runner
from kettle.gguf import GGUFFile
from kettle.models import load_model
from tests.models.decoder_factory import ORACLE_MODELS, tiny_decoder

ORACLE = np.load(Path(__file__).parent / "oracle" / "decoders.npz")


def kettle_logits(path: Path, ids: list[int], n_ctx: int) -> np.ndarray:
    with GGUFFile(path) as f:
        model = load_model(f)
        runner = Runner(model, n_ctx=n_ctx)
        n = len(ids)
        return runner.forward(ids, range(n), [0] * n, outputs=range(n))


@pytest.mark.parametrize("name", sorted(ORACLE_MODELS))
def test_logits_agree_with_llama_cpp(name, tmp_path):
    ids = ORACLE[f"{name}/ids"].tolist()
    want = ORACLE[f"{name}/logits"].astype(np.float32)
    got = kettle_logits(tiny_decoder(tmp_path / f"{name}.gguf", name), ids, int(ORACLE[f"{name}/n_ctx"]))
    rel = np.abs(got - want).max(axis=1) / np.abs(want).max(axis=1)  # per position
    same_top = np.mean(got.argmax(axis=1) == want.argmax(axis=1))
    assert same_top >= 0.95 and rel.max() <= 0.02, (same_top, rel.max())


def test_the_oracle_covers_every_model():
    assert {k.split("/")[0] for k in ORACLE.files if "/" in k} == set(ORACLE_MODELS)
