"""``dimensions`` on /api/embed and /v1/embeddings: the vector cut to its first N values and
renormalized to length 1, as ollama does (``normalize(embedding[:dimensions])``)."""

from __future__ import annotations

import numpy as np

from tests.server.conftest import MODEL, Server


def test_dimensions_cut_and_renormalize_on_both_apis(server: Server) -> None:
    with server.client() as c:
        full = c.post("/api/embed", json={"model": MODEL, "input": "the kettle boils"})
        assert full.status_code == 200, full.text
        vector = np.asarray(full.json()["embeddings"][0])
        expected = vector[:8] / np.linalg.norm(vector[:8])
        ollama = c.post("/api/embed", json={"model": MODEL, "input": "the kettle boils", "dimensions": 8})
        openai = c.post("/v1/embeddings", json={"model": MODEL, "input": "the kettle boils", "dimensions": 8})
        assert ollama.status_code == 200 and openai.status_code == 200, (ollama.text, openai.text)
    for got in (np.asarray(ollama.json()["embeddings"][0]), np.asarray(openai.json()["data"][0]["embedding"])):
        assert got.shape == (8,)
        assert abs(np.linalg.norm(got) - 1.0) < 1e-5
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5 and len(vector) > 8


LONG = "steam " * 3000  # more tokens than the server's 2048-token context


def test_truncate_false_names_the_long_input_and_true_cuts_it(server: Server) -> None:
    with server.client() as c:
        refused = c.post("/api/embed", json={"model": MODEL, "input": ["short", LONG], "truncate": False})
        assert refused.status_code == 400, refused.text
        assert "input[1]" in refused.json()["error"] and "2048" in refused.json()["error"]
        cut = c.post("/api/embed", json={"model": MODEL, "input": ["short", LONG]})  # truncate: true by default
        assert cut.status_code == 200, cut.text
        assert len(cut.json()["embeddings"]) == 2 and cut.json()["prompt_eval_count"] > 2048
        v1 = c.post("/v1/embeddings", json={"model": MODEL, "input": LONG})  # OpenAI's API always cuts
        assert v1.status_code == 200, v1.text
