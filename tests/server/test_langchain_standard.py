"""LangChain's standard chat-model integration tests (the ``langchain-tests`` package) for
``ChatOllama`` (``/api/chat``) and ``ChatOpenAI`` (``/v1/chat/completions``) against a real
``kettle serve`` with the bundled smollm2.

The capability flags say what kettle does: tools, ``tool_choice`` (``ChatOpenAI`` only:
langchain-ollama's ``bind_tools`` drops ``tool_choice`` before it reaches the server),
structured output and JSON mode through constrained decoding, usage metadata; no images,
audio or PDFs. A standard test that a 135M model fails on the *content* of its answer (a
wrong argument, an empty reply) is overridden as ``xfail`` (non-strict) with its reason, as
``langchain-tests`` asks; every protocol check runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from tests.server.conftest import MODEL, Server

pytest.importorskip("langchain_tests")

from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests as Standard

# The async standard tests run on pytest-asyncio (a langchain-tests dependency), on one loop
# per module (ChatOpenAI keeps its async HTTP client between tests). The mark reaches the sync
# tests too, where pytest-asyncio only warns.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio':pytest.PytestWarning")]
LIMIT = 64  # tokens per answer: enough for the structured-output jokes, short enough to run


def weak(reason: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The standard test ``base``, expected to fail (not strictly) because of what smollm2
    answers, not how kettle answers; langchain-tests accepts an override with an xfail reason."""
    def override(base: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(base):
            @functools.wraps(base)
            async def test(self: Any, *args: Any, **kwargs: Any) -> None:
                await base(self, *args, **kwargs)
        else:
            @functools.wraps(base)
            def test(self: Any, *args: Any, **kwargs: Any) -> None:
                base(self, *args, **kwargs)
        return pytest.mark.xfail(reason=f"smollm2 (135M): {reason}", strict=False)(test)
    return override


RAMBLES = "greedy, it repeats itself inside the joke's first string until the token limit"
UNFORCED = "does not call the tool unless the call is forced"
DROPPED = "langchain-ollama drops tool_choice, and smollm2 " + UNFORCED


class KettleStandard(Standard):
    """The capabilities kettle has; the server's url reaches ``chat_model_params`` through an
    autouse fixture."""

    url = ""

    @pytest.fixture(autouse=True)
    def _kettle(self, server: Server) -> None:
        type(self).url = server.url

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # one chat model is bundled

    test_structured_output = weak(RAMBLES)(Standard.test_structured_output)
    test_structured_output_async = weak(RAMBLES)(Standard.test_structured_output_async)
    test_structured_output_optional_param = weak(RAMBLES)(Standard.test_structured_output_optional_param)
    test_structured_output_pydantic_2_v1 = weak(RAMBLES)(Standard.test_structured_output_pydantic_2_v1)
    test_json_mode = weak("json mode constrains to any object: it nests 'setup' in itself")(Standard.test_json_mode)
    test_agent_loop = weak(UNFORCED)(Standard.test_agent_loop)


class TestChatOllama(KettleStandard):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        from langchain_ollama import ChatOllama

        return ChatOllama

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": MODEL, "base_url": self.url, "temperature": 0, "seed": 1, "num_predict": LIMIT}

    @property
    def has_tool_choice(self) -> bool:
        return False  # langchain-ollama drops tool_choice (kettle's /api/chat would honour it)

    test_tool_calling = weak(DROPPED)(Standard.test_tool_calling)
    test_tool_calling_async = weak(DROPPED)(Standard.test_tool_calling_async)
    test_tool_calling_with_no_arguments = weak(DROPPED)(Standard.test_tool_calling_with_no_arguments)
    test_bind_runnables_as_tools = weak(DROPPED)(Standard.test_bind_runnables_as_tools)
    test_unicode_tool_call_integration = weak(DROPPED)(Standard.test_unicode_tool_call_integration)


class TestChatOpenAI(KettleStandard):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": MODEL, "base_url": f"{self.url}/v1", "api_key": "unused", "temperature": 0,
                "seed": 1, "max_tokens": LIMIT, "timeout": 120, "max_retries": 0, "stream_usage": True}

    @property
    def has_tool_choice(self) -> bool:
        return True  # "any" is "required", a name the named function: kettle constrains the call
