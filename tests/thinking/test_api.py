"""``think`` in the Python API: ``Model.chat(think=...)`` splits the answer into
``chunk.thinking`` and ``chunk.text`` as the server does (same template as
tests/server/test_thinking.py, set on the loaded model)."""

from __future__ import annotations

import pytest

import kettle
from kettle.errors import CapabilityError
from tests.server.test_thinking import QUESTION, TEMPLATE, _prompt

OPTIONS = {"temperature": 0, "num_predict": 10}


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = kettle.load(smollm2_path)
    yield m
    m.close()


def test_chat_thinking_comes_in_chunk_thinking(model) -> None:
    plain_prompts = model.prompts
    try:
        model.prompts = plain_prompts.with_template(TEMPLATE)
        written = model.generate(_prompt(True), **OPTIONS).text()
        chunks = list(model.chat([{"role": "user", "content": QUESTION}], think=True, **OPTIONS))
        assert "".join(c.thinking for c in chunks) == written.lstrip()
        assert "".join(c.text for c in chunks) == ""
        answer = model.chat([{"role": "user", "content": QUESTION}], think=False, **OPTIONS)
        assert answer.text() == model.generate(_prompt(False), **OPTIONS).text()
    finally:
        model.prompts = plain_prompts
    with pytest.raises(CapabilityError, match="does not support thinking"):
        model.chat([{"role": "user", "content": "hi"}], think=True)
    assert all(c.thinking == "" for c in model.chat([{"role": "user", "content": "hi"}], num_predict=3))
