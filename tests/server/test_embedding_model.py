"""A real embedding model behind a real ``kettle serve``: all-MiniLM-L6-v2, converted with
``kettle convert`` and created from a blob with the ollama client, then used by the ollama
and OpenAI clients, LangChain's OllamaEmbeddings with Chroma (examples/rag_langchain_chroma.py)
and chromadb's own Ollama embedding function. Embeddings equal sentence-transformers'
(the committed reference, cosine >= 0.999); asked to generate, it answers ollama's 400.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

from kettle.convert import convert
from tests.convert.minilm import TEXTS, extract
from tests.convert.test_convert import REFERENCE
from tests.server.conftest import REPO, Server, start_server

pytestmark = pytest.mark.slow
EMBED = "all-minilm"
CHAT = "smollm2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("minilm")
    gguf = convert(extract(tmp), tmp / "all-minilm.gguf", "f16")
    running = start_server(tmp_path_factory.mktemp("kettle-store"))
    try:
        client = ollama.Client(host=running.server.url)
        client.create(model=EMBED, files={"model.gguf": client.create_blob(gguf)})
        yield running.server
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


def _check(vectors: list[list[float]], rows: slice = slice(None)) -> None:
    got = np.asarray(vectors, dtype=np.float64)
    want = np.asarray(REFERENCE["embeddings"], dtype=np.float64)[rows]
    assert got.shape == want.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.999, cos


def test_embed_endpoints_equal_sentence_transformers(client: ollama.Client, server: Server) -> None:
    out = client.embed(model=EMBED, input=TEXTS)
    _check(out.embeddings)
    assert out.prompt_eval_count == sum(len(ids) for ids in REFERENCE["ids"])
    _check([client.embeddings(model=EMBED, prompt=TEXTS[0]).embedding], slice(0, 1))
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="kettle")
    _check([d.embedding for d in oa.embeddings.create(model=EMBED, input=TEXTS[:3]).data], slice(0, 3))
    assert len(client.embed(model=EMBED, input=TEXTS[0], dimensions=32).embeddings[0]) == 32


def test_show_lists_embedding_only(client: ollama.Client) -> None:
    shown = client.show(EMBED)
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo["general.architecture"] == "bert" and shown.modelinfo["bert.pooling_type"] == 1
    assert shown.details.family == "bert"


def test_generate_and_chat_get_ollamas_400(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/api/generate", json={"model": EMBED, "prompt": "hi"})
        assert (r.status_code, r.json()) == (400, {"error": f'"{EMBED}" does not support generate'})
        r = c.post("/api/chat", json={"model": EMBED, "messages": [{"role": "user", "content": "hi"}]})
        assert (r.status_code, r.json()) == (400, {"error": f'"{EMBED}" does not support chat'})
        r = c.post("/v1/chat/completions", json={"model": EMBED, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "does not support chat" in r.json()["error"]["message"]
        r = c.post("/api/generate", json={"model": EMBED, "keep_alive": 0})  # unloading (ollama stop) still works
        assert r.status_code == 200 and r.json()["done_reason"] == "unload"
        assert c.post("/api/embed", json={"model": EMBED, "input": "still serving"}).status_code == 200


def test_langchain_chroma_rag_example(server: Server) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KETTLE_")},
           "KETTLE_URL": server.url, "PYTHONPATH": str(REPO), "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "rag_langchain_chroma.py"),
                           "Which planet is called the red planet?"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:] + "\n--- server log ---\n" + server.tail()[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("retrieved: mars: "), proc.stdout
    assert lines[1].startswith("answer: ") and "mars" in lines[1].lower(), proc.stdout


def test_chromadb_embedding_function(server: Server) -> None:
    import chromadb
    from chromadb.utils.embedding_functions import OllamaEmbeddingFunction

    db = chromadb.EphemeralClient()
    collection = db.create_collection("minilm", embedding_function=OllamaEmbeddingFunction(url=server.url,
                                                                                          model_name=EMBED))
    collection.add(ids=[str(i) for i in range(len(TEXTS))], documents=TEXTS)
    hits = collection.query(query_texts=["Where are embeddings stored and searched?"], n_results=1)
    assert hits["documents"][0] == [TEXTS[7]]  # "Chroma stores embeddings and finds the nearest documents..."
