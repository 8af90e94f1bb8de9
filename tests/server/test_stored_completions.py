"""Stored chat completions (``store: true``) through the real ``openai`` SDK's resources
against a real ``kettle serve``, and the keeping's bounds on their own."""

from __future__ import annotations

import openai
import pytest

from kettle.server.stored_completions import MAX_BYTES, StoredCompletions, check_metadata, page
from kettle.server.wire import RequestError
from tests.server.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def sdk(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


@pytest.mark.slow
def test_store_retrieve_update_list_delete(sdk: openai.OpenAI) -> None:
    made = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0, store=True,
                                       metadata={"run": "a"})
    streamed = list(sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0,
                                                store=True, stream=True, metadata={"run": "b"}))
    not_kept = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, temperature=0)

    got = sdk.chat.completions.retrieve(made.id)
    assert got.choices[0].message.content == made.choices[0].message.content and got.metadata == {"run": "a"}
    kept_stream = sdk.chat.completions.retrieve(streamed[0].id)
    assert kept_stream.choices[0].message.content == made.choices[0].message.content  # greedy: the same text
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.retrieve(not_kept.id)

    assert sdk.chat.completions.update(made.id, metadata={"run": "c"}).metadata == {"run": "c"}
    ids = [c.id for c in sdk.chat.completions.list(model=MODEL)]
    assert made.id in ids and streamed[0].id in ids and ids.index(made.id) < ids.index(streamed[0].id)
    assert [c.id for c in sdk.chat.completions.list(metadata={"run": "c"})] == [made.id]
    first = sdk.chat.completions.list(limit=1, order="desc")
    assert len(first.data) == 1 and first.has_more

    msgs = sdk.chat.completions.messages.list(made.id)
    assert [m.content for m in msgs.data] == ["Name a colour."]

    assert sdk.chat.completions.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.retrieve("../../manifests")  # never a path
    with pytest.raises(openai.BadRequestError) as e:
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, store=True,
                                    metadata={"k": "v" * 513})
    assert e.value.body["param"] == "metadata"


def _completion(i: int) -> dict:
    return {"id": f"chatcmpl-{i:024x}", "object": "chat.completion", "model": "m", "choices": []}


def test_keeping_is_bounded_and_oldest_go_first(tmp_path) -> None:
    kept = StoredCompletions(tmp_path / "completions", limit=3)
    for i in range(5):
        assert kept.put(_completion(i), [{"role": "user", "content": "x"}], {})
    assert [c["id"] for c in kept.list(None, {})] == [_completion(i)["id"] for i in (2, 3, 4)]
    assert not kept.put(_completion(9), [{"role": "user", "content": "x" * MAX_BYTES}], {})  # too large: not kept
    assert len(list((tmp_path / "completions").iterdir())) == 3
    (tmp_path / "completions" / f"{_completion(3)['id']}.json").write_text("{not json")  # damaged: skipped
    assert [c["id"] for c in kept.list(None, {})] == [_completion(i)["id"] for i in (2, 4)]
    for bad in ("../x", "chatcmpl-" + "0" * 23, "chatcmpl-" + "G" * 24):
        with pytest.raises(RequestError) as e:
            kept.get(bad)
        assert e.value.status == 404


@pytest.mark.parametrize("metadata", [{str(i): "v" for i in range(17)}, {"k" * 65: "v"}, {"k": 1}, ["x"]])
def test_metadata_bounds(metadata) -> None:
    with pytest.raises(RequestError):
        check_metadata(metadata)


def test_page() -> None:
    items = [{"id": str(i)} for i in range(5)]
    assert page(items, {"limit": "2", "after": "1"}) == {"object": "list", "data": [{"id": "2"}, {"id": "3"}],
                                                         "first_id": "2", "last_id": "3", "has_more": True}
    for bad in ({"limit": "0"}, {"limit": "x"}, {"order": "up"}, {"after": "nope"}):
        with pytest.raises(RequestError):
            page(items, bad)
