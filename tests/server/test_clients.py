"""The real client libraries against a real ``kettle serve``: ollama, LangChain (partner
and community packages), openai, and chromadb's Ollama embedding function.

Greedy decoding (temperature 0) throughout, so a streamed answer must equal the
same request unstreamed, and short ``num_predict`` keeps the run quick.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import ollama
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import smollm2_file
from tests.registry.fake_registry import FakeRegistry, Running
from tests.server.conftest import GREEDY, MODEL, Server

pytestmark = pytest.mark.slow

SHORT = {**GREEDY, "num_predict": 12}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "likes": {"enum": ["tea", "coffee"]},
    },
    "required": ["name", "age", "likes"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url)


# -- the official ollama package ----------------------------------------------------

def test_ollama_generate_streamed_equals_unstreamed(client: ollama.Client) -> None:
    whole = client.generate(model=MODEL, prompt="Name a colour.", options=SHORT)
    parts = list(client.generate(model=MODEL, prompt="Name a colour.", options=SHORT, stream=True))
    assert whole.response and "".join(p.response for p in parts) == whole.response
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    last = parts[-1]
    assert last.done_reason in ("stop", "length") and last.eval_count and last.eval_count <= 12
    assert last.context and last.total_duration and last.eval_duration and last.prompt_eval_duration
    assert last.total_duration >= last.eval_duration
    follow = client.generate(model=MODEL, prompt="And another?", context=last.context, options=SHORT)
    assert follow.response and len(follow.context) > len(last.context)


def test_ollama_chat_streamed_equals_unstreamed(client: ollama.Client) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}]
    whole = client.chat(model=MODEL, messages=messages, options=SHORT)
    parts = list(client.chat(model=MODEL, messages=messages, options=SHORT, stream=True))
    assert whole.message.role == "assistant" and whole.message.content
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].prompt_eval_count is not None and parts[-1].eval_count


def test_ollama_load_and_structured_output(client: ollama.Client) -> None:
    loaded = client.generate(model=MODEL)
    assert loaded.done and loaded.done_reason == "load"
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Describe a person as JSON."}],
                        format=PERSON_SCHEMA, options={**GREEDY, "num_predict": 80})
    jsonschema.validate(json.loads(reply.message.content), PERSON_SCHEMA)
    reply = client.generate(model=MODEL, prompt="Paris as a JSON object with the keys city and country.",
                            format="json", options={**GREEDY, "num_predict": 300})
    assert isinstance(json.loads(reply.response), dict) and reply.done_reason == "stop"  # ended at the value's end


def test_ollama_keep_alive_zero_unloads_and_prefix_is_reused(client: ollama.Client) -> None:
    unloaded = client.generate(model=MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload" and client.ps().models == []
    turn = [{"role": "user", "content": "Tell me about cats."}]
    first = client.chat(model=MODEL, messages=turn, options=SHORT)
    assert first.load_duration and client.ps().models
    second = client.chat(model=MODEL, options=SHORT, messages=[
        *turn, {"role": "assistant", "content": first.message.content}, {"role": "user", "content": "And dogs?"}])
    assert second.load_duration == 0
    # The whole prompt is counted, the first turn's cached prefix included (ollama counts it so);
    # that the prefix is reused, not recomputed, is tests/engine/test_generate.py::test_prefix_reuse.
    assert second.prompt_eval_count > first.prompt_eval_count + first.eval_count - 2


def test_ollama_embed(client: ollama.Client) -> None:
    out = client.embed(model=MODEL, input=["The cat sat.", "Stock markets fell."])
    vectors = np.array(out.embeddings)
    assert vectors.shape == (2, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    alone = client.embed(model=MODEL, input="The cat sat.")
    assert np.allclose(alone.embeddings[0], vectors[0], atol=1e-4)
    legacy = client.embeddings(model=MODEL, prompt="The cat sat.")
    assert np.allclose(legacy.embedding, vectors[0], atol=1e-4)
    assert client.embed(model=MODEL, input=["x"], dimensions=8).embeddings[0].__len__() == 8


def test_ollama_list_show_ps(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert "smollm2:latest" in names
    shown = client.show(MODEL)
    assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1"
    assert shown.modelinfo["general.architecture"] == "llama" and "llama.context_length" in shown.modelinfo
    assert "stop" in shown.parameters and shown.template and "FROM " in shown.modelfile
    assert "completion" in shown.capabilities
    running = client.ps().models
    assert [m.model for m in running] == ["smollm2:latest"]
    assert running[0].context_length == 2048 and running[0].expires_at is not None


def test_ollama_pull_create_copy_delete(client: ollama.Client) -> None:
    statuses = [p.status for p in client.pull(MODEL, stream=True)]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert client.pull(MODEL).status == "success"
    steps = [p.status for p in client.create(model="terse", from_=MODEL, system="Answer in one word.",
                                             parameters={"temperature": 0, "num_predict": 8}, stream=True)]
    assert steps[-1] == "success"
    shown = client.show("terse")
    assert "Answer in one word." in shown.modelfile and "num_predict" in shown.parameters
    assert client.chat(model="terse", messages=[{"role": "user", "content": "Sky colour?"}]).eval_count <= 8
    digest = client.create_blob(smollm2_file())
    client.create(model="fromblob", files={"model.gguf": digest})
    client.copy("terse", "terse2")
    names = {m.model for m in client.list().models}
    assert {"terse:latest", "terse2:latest", "fromblob:latest"} <= names
    for name in ("terse", "terse2", "fromblob"):
        client.delete(name)
    assert not {"terse:latest", "terse2:latest", "fromblob:latest"} & {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("terse")
    assert err.value.status_code == 404
    running = Running(FakeRegistry())  # a registry on 127.0.0.1: the tests reach no network
    try:
        host = running.registry.host
        running.registry.add_model("library", "tiny", "latest", [("application/vnd.ollama.image.model", b"w" * 5000)])
        pulled = [p for p in client.pull(f"{host}/library/tiny", insecure=True, stream=True)]
        assert pulled[-1].status == "success" and any(p.total == 5000 and p.completed == 5000 for p in pulled)
        assert f"{host}/library/tiny:latest" in {m.model for m in client.list().models}
        client.delete(f"{host}/library/tiny")
        with pytest.raises(ollama.ResponseError) as err:
            client.pull(f"{host}/library/no-such-model", insecure=True)
        assert err.value.status_code == 404
    finally:
        running.stop()


# -- LangChain -------------------------------------------------------------------------

def test_langchain_ollama(server: Server) -> None:
    from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM

    chat = ChatOllama(model=MODEL, base_url=server.url, temperature=0, seed=1, num_predict=12)
    answer = chat.invoke("What is the capital of France?")
    streamed = "".join(chunk.content for chunk in chat.stream("What is the capital of France?"))
    assert answer.content and streamed == answer.content
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] <= 12

    class Person(BaseModel):
        name: str
        age: int

    structured = ChatOllama(model=MODEL, base_url=server.url, temperature=0, num_predict=60)
    person = structured.with_structured_output(Person).invoke("Invent a person with a name and an age.")
    assert isinstance(person, Person)
    llm = OllamaLLM(model=MODEL, base_url=server.url, temperature=0, num_predict=8)
    assert llm.invoke("Once upon a time")
    vectors = OllamaEmbeddings(model=MODEL, base_url=server.url).embed_documents(["one", "two"])
    assert len(vectors) == 2 and len(vectors[0]) == 576


def test_langchain_community_seed_snippet(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's snippet: a streaming LLM with a stdout callback, then an embedding."""
    import warnings

    from langchain_core.callbacks import StreamingStdOutCallbackHandler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the community classes are deprecated in favour of langchain-ollama
        from langchain_community.embeddings import OllamaEmbeddings
        from langchain_community.llms import Ollama

        llm = Ollama(base_url=server.url, model=MODEL, temperature=0, num_predict=10,
                     callbacks=[StreamingStdOutCallbackHandler()])
        text = llm.invoke("Why is the sky blue?")
        vector = OllamaEmbeddings(base_url=server.url, model=MODEL).embed_query("Why is the sky blue?")
    assert text and capsys.readouterr().out == text
    assert len(vector) == 576


# -- openai ------------------------------------------------------------------------------

def test_openai_sdk(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    messages = [{"role": "user", "content": "Say something nice."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0, seed=1)
    assert whole.choices[0].message.content and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 10
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0,
                                                 seed=1, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    completion = client.completions.create(model=MODEL, prompt="The sun is", max_tokens=6, temperature=0)
    assert completion.choices[0].text and completion.object == "text_completion"
    emb = client.embeddings.create(model=MODEL, input=["hello", "there"])  # the SDK asks for base64
    assert len(emb.data) == 2 and len(emb.data[1].embedding) == 576
    assert MODEL + ":latest" in [m.id for m in client.models.list()]
    assert client.models.retrieve(MODEL).id == "smollm2:latest"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)
    shaped = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "A person as JSON."}], max_tokens=80, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}},
    )
    jsonschema.validate(json.loads(shaped.choices[0].message.content), PERSON_SCHEMA)


# -- chromadb: the local retrieval app ------------------------------------------------------

def test_chromadb_retrieval_then_answer(server: Server, client: ollama.Client) -> None:
    import chromadb
    from chromadb.utils.embedding_functions import OllamaEmbeddingFunction

    docs = {
        "tea": "Green tea comes from the leaves of the Camellia sinensis plant.",
        "mars": "Mars is the fourth planet from the Sun and is called the red planet.",
        "python": "Python is a programming language created by Guido van Rossum.",
    }
    db = chromadb.EphemeralClient()
    collection = db.create_collection("docs", embedding_function=OllamaEmbeddingFunction(url=server.url, model_name=MODEL))
    collection.add(ids=list(docs), documents=list(docs.values()))
    hits = collection.query(query_texts=["Which planet is red?"], n_results=1)
    assert hits["ids"][0] == ["mars"]
    context = hits["documents"][0][0]
    reply = client.chat(model=MODEL, options={**GREEDY, "num_predict": 20}, messages=[
        {"role": "system", "content": f"Answer from this text: {context}"},
        {"role": "user", "content": "Which planet is called the red planet?"},
    ])
    assert "mars" in reply.message.content.lower()


def test_openai_sdk_deletes_a_model_and_takes_any_64_bit_seed(server: Server) -> None:
    ollama.Client(host=server.url).copy(MODEL, "to-delete")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    deleted = client.models.delete("to-delete")
    assert deleted.deleted and deleted.id == "to-delete"
    assert "to-delete:latest" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.delete("to-delete")
    messages = [{"role": "user", "content": "Hi."}]
    for seed in (-(2**63), -2, 2**63 - 1):
        reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, seed=seed)
        assert reply.choices[0].finish_reason in ("stop", "length")


def test_openai_usage_counts_the_whole_prompt_and_says_what_was_cached(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    messages = [{"role": "user", "content": "Name three rivers of Europe, with one fact about each one of them."}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0, seed=1)
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0, seed=1)
    assert second.usage.prompt_tokens == first.usage.prompt_tokens > 10  # the cached prefix is counted
    assert second.usage.prompt_tokens_details.cached_tokens == second.usage.prompt_tokens - 1  # all but the last
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == first.usage.prompt_tokens
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens - 1


def test_openai_sdk_parameters_are_accepted_or_refused_by_name(server: Server) -> None:
    """The openai SDK's full set of chat parameters: those kettle honours pass; the others get
    400 with OpenAI's error shape naming the parameter, never a generic refusal of the request."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi."}]
    reply = client.chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=3, seed=7, temperature=0, n=1, logprobs=False,
        parallel_tool_calls=False, metadata={"k": "v"}, store=False, tool_choice="none", user="u",
        stream_options=None, response_format={"type": "text"},
    )
    assert reply.choices[0].message.content is not None
    for name, value in [("n", 9), ("top_logprobs", 3), ("logit_bias", {"42": 5}), ("tool_choice", "required")]:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, **{name: value})
        assert err.value.body["param"] == name and err.value.body["type"] == "invalid_request_error", name
    for name, value in [("logprobs", 21), ("n", 9), ("max_tokens", -1)]:
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, prompt="Hi", **{"max_tokens": 2, name: value})
        assert err.value.body["param"] == name, name


def test_health_answers_as_llama_server(server: Server) -> None:
    with server.client() as c:
        r = c.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert c.get("/health", headers={"Host": "evil.example"}).status_code == 403  # the Host guard holds
