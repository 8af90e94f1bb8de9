"""LangChain's ``ChatOpenAI`` (chat completions and the Responses API) and ``ChatAnthropic``
against a real ``kettle serve``: the answer each gives must be the text ``ChatOllama`` gives
for the same greedy request."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.server.conftest import MODEL, Server

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"
LIMIT = 12


@pytest.fixture(scope="module")
def ollama_answer(server: Server) -> str:
    from langchain_ollama import ChatOllama

    return ChatOllama(model=MODEL, base_url=server.url, temperature=0, num_predict=LIMIT).invoke(QUESTION).content


@pytest.mark.parametrize("responses_api", [False, True])
def test_chat_openai(server: Server, ollama_answer: str, responses_api: bool) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=MODEL, base_url=f"{server.url}/v1", api_key="unused", temperature=0,
                      max_tokens=LIMIT, use_responses_api=responses_api)
    answer = chat.invoke(QUESTION)
    assert answer.text == ollama_answer
    assert "".join(chunk.text for chunk in chat.stream(QUESTION)) == ollama_answer
    assert answer.usage_metadata["output_tokens"] <= LIMIT

    class City(BaseModel):
        name: str

    structured = ChatOpenAI(model=MODEL, base_url=f"{server.url}/v1", api_key="unused", temperature=0,
                            max_tokens=40, use_responses_api=responses_api)
    city = structured.with_structured_output(City, method="json_schema").invoke("Name a city in France.")
    assert isinstance(city, City) and city.name


def test_chat_anthropic(server: Server, ollama_answer: str) -> None:
    from langchain_anthropic import ChatAnthropic

    chat = ChatAnthropic(model=MODEL, base_url=server.url, api_key="unused", temperature=0, max_tokens=LIMIT)
    answer = chat.invoke(QUESTION)
    assert answer.text == ollama_answer
    assert "".join(chunk.text for chunk in chat.stream(QUESTION)) == ollama_answer
    assert answer.usage_metadata["output_tokens"] <= LIMIT
