"""Anthropic's Messages API (``/v1/messages``) as pure translations onto the ollama handlers' core.

The same shape as ``openai_routes`` (STYLE.md item 15): the request body becomes an
``/api/chat`` body (a pure function), the same ``prepare``/``events``/``collect`` run, and
each ollama response object is translated back. So the ``anthropic`` SDK and LangChain's
``ChatAnthropic`` talk to any kettle model with ``base_url="http://127.0.0.1:11434"``.

Mapping (as ollama's Anthropic compatibility layer does it):

* ``system`` (a string or text blocks) -> a system message first; ``messages[].content``
  (a string or blocks): ``text`` blocks are joined, ``tool_use`` blocks in an assistant turn
  become its ``tool_calls``, each ``tool_result`` block in a user turn becomes a ``tool``
  message (``is_error`` prefixes ``Error: ``), ``thinking`` blocks become ``thinking``;
  ``image`` / ``document`` blocks are refused (kettle's models read no pixels).
* ``max_tokens`` (required, >= 1) -> ``num_predict``; ``temperature``, ``top_p``,
  ``top_k`` -> options (today's SDK sends them only as ``extra_body``); ``stop_sequences``
  -> ``stop``; ``thinking`` ``enabled`` / ``adaptive`` -> ``think: true``, ``disabled`` ->
  ``think: false``; ``output_config.format`` (a JSON schema) -> ``format``.
* ``tools`` (``name``, ``description``, ``input_schema``) -> function tools;
  ``tool_choice`` ``auto`` (default) keeps them, ``none`` hides them, ``any`` forces a call
  to one of them and ``tool`` (with ``name``) to that one (OpenAI's ``required`` and named
  function: decoding is constrained, ``kettle.toolcalls``).
* The answer: ``content`` blocks (``thinking``, ``text``, ``tool_use`` with ``toolu_`` ids),
  ``stop_reason`` ``end_turn`` / ``max_tokens`` / ``tool_use``, ``usage`` with
  ``input_tokens`` (the whole prompt, the cached prefix included),
  ``cache_read_input_tokens`` (the prefix reused from the KV cache) and ``output_tokens``.
  kettle's stop matcher does not say which stop sequence ended the answer, so a stop
  sequence also reads ``end_turn`` with ``stop_sequence: null``.
* ``stream: true``: server-sent events with Anthropic's names: ``message_start``,
  ``content_block_start`` / ``content_block_delta`` (``text_delta``, ``thinking_delta``,
  ``input_json_delta``) / ``content_block_stop`` per block, ``message_delta`` (stop reason,
  output tokens), ``message_stop``; an error mid-stream is an ``error`` event.
* ``/v1/messages/count_tokens``: ``{"input_tokens": N}``, the prompt the same body would
  be given, rendered and tokenized by the model (it is loaded; nothing is generated).

Errors use Anthropic's shape: ``{"type": "error", "error": {"type": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kettle.server.generation import Kind, collect, events
from kettle.server.ollama_routes import prepared
from kettle.server.streaming import JSON, SSE, EventStream, endpoint, log_unexpected, read_json, until_disconnect
from kettle.server.wire import Fields, RequestError, bad_value, public_message, sampling_options, status_of

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 503: "overloaded_error"}
STOP_REASONS = {"length": "max_tokens"}  # every other done_reason ends the turn
THINKING = {"enabled": True, "adaptive": True, "between_tools": True, "disabled": False}  # thinking.type -> think


def anthropic_error(exc: BaseException, status: int) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": public_message(exc)}}


# -- requests: Anthropic -> ollama (pure) ------------------------------------------

def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's ``content`` as a list of typed blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_value(f"{where}.content", "a string or an array of content blocks", content)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_value(f"{where}.content[{j}]", "a content block object with a 'type'", block)
    return content


def _text_of(block_content: Any, where: str) -> str:
    """A ``tool_result``'s content: a string or text blocks, joined."""
    if block_content is None:
        return ""
    parts = []
    for j, block in enumerate(_blocks(block_content, where)):
        if block["type"] != "text" or not isinstance(block.get("text"), str):
            raise bad_value(f"{where}.content[{j}]", "a text block", block.get("type"))
        parts.append(block["text"])
    return "".join(parts)


def _messages(m: Any, i: int) -> list[dict[str, Any]]:
    """One Anthropic message as ollama messages (tool results become ``tool`` messages)."""
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise bad_value(where, "a message object", m)
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise bad_value(f"{where}.role", "'user' or 'assistant'", role)
    out: list[dict[str, Any]] = []
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(m.get("content"), where)):
        at, kind = f"{where}.content[{j}]", block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad_value(f"{at}.text", "a string", block.get("text"))
            text.append(block["text"])
        elif kind == "thinking" and role == "assistant":
            thinking.append(str(block.get("thinking") or ""))
        elif kind == "redacted_thinking" and role == "assistant":
            continue
        elif kind == "tool_use" and role == "assistant":
            name, arguments = block.get("name"), block.get("input", {})
            if not isinstance(name, str) or not name:
                raise bad_value(f"{at}.name", "the tool's name", name)
            if not isinstance(arguments, dict):
                raise bad_value(f"{at}.input", "an object of arguments", arguments)
            calls.append({"function": {"name": name, "arguments": arguments}})
        elif kind == "tool_result" and role == "user":
            result = _text_of(block.get("content"), at)
            out.append({"role": "tool", "content": f"Error: {result}" if block.get("is_error") else result,
                        **({"tool_call_id": block["tool_use_id"]} if isinstance(block.get("tool_use_id"), str) else {})})
        elif kind in ("image", "document"):
            raise RequestError(f"invalid value for '{at}': kettle's models do not read {kind} input", field=at)
        else:
            raise bad_value(f"{at}.type", f"a content block a {role} message may carry", kind)
    if text or thinking or calls or not out:
        msg: dict[str, Any] = {"role": role, "content": "".join(text)}
        if thinking:
            msg["thinking"] = "".join(thinking)
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def _tool_choice(f: Fields) -> Any:
    """Anthropic's ``tool_choice`` as OpenAI's (``kettle.toolcalls`` reads it)."""
    choice = f.object("tool_choice") or {"type": "auto"}
    kind = choice.get("type")
    if kind not in ("auto", "none", "any", "tool"):
        raise bad_value("tool_choice.type", "'auto', 'none', 'any' or 'tool'", kind)
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise bad_value("tool_choice.name", "the name of one of the tools", name)
        return {"type": "function", "function": {"name": name}}
    return {"auto": "auto", "none": "none", "any": "required"}[kind]


def _tools(f: Fields) -> list[dict[str, Any]] | None:
    tools = f.list("tools")
    if not tools or _tool_choice(f) == "none":
        return None
    out = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad_value(at, "a tool object", tool)
        name, schema = tool.get("name"), tool.get("input_schema", {"type": "object"})
        if not isinstance(name, str) or not name:
            raise bad_value(f"{at}.name", "the tool's name", name)
        if not isinstance(schema, dict):
            raise bad_value(f"{at}.input_schema", "a JSON schema object", schema)
        out.append({"type": "function", "function": {"name": name, "description": str(tool.get("description") or ""),
                                                     "parameters": schema}})
    return out


def _format(f: Fields) -> Any:
    """``output_config.format`` (``{"type": "json_schema", "schema": ...}``) as ollama's ``format``;
    ``output_config.effort`` is accepted and changes nothing."""
    config = f.object("output_config") or {}
    fmt = Fields(config, "output_config").object("format")
    if fmt is None:
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise bad_value("output_config.format", "{'type': 'json_schema', 'schema': <a JSON schema object>}", fmt)
    return fmt["schema"]


def messages_request(body: dict[str, Any]) -> dict[str, Any]:
    """A ``/v1/messages`` body as an ``/api/chat`` body."""
    f = Fields(body)
    raw = f.list("messages")
    if not raw:
        raise RequestError("messages is required: a non-empty array", field="messages")
    max_tokens = f.int("max_tokens")
    if max_tokens is None or max_tokens < 1:
        raise bad_value("max_tokens", "an integer of at least 1 (it is required)", max_tokens)
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _text_of(system, "system")})
    for i, m in enumerate(raw):
        messages.extend(_messages(m, i))
    options = sampling_options(f, max_tokens, ("temperature", "top_p"), ("top_k",), stop="stop_sequences")
    thinking = f.object("thinking")
    think = None
    if thinking is not None:
        kind = thinking.get("type")
        if kind not in THINKING:
            raise bad_value("thinking.type", " or ".join(map(repr, THINKING)), kind)
        think = THINKING[kind]
    f.object("metadata")
    out = {"model": f.required_str("model"), "messages": messages, "stream": bool(f.bool("stream", False)),
           "options": options, "tools": _tools(f), "tool_choice": _tool_choice(f), "format": _format(f)}
    if think is not None:
        out["think"] = think
    return out


# -- responses: ollama -> Anthropic (pure) -----------------------------------------

def _usage(obj: dict[str, Any], cached: int) -> dict[str, int]:
    return {"input_tokens": obj.get("prompt_eval_count", 0), "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0, "output_tokens": obj.get("eval_count", 0)}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": call["function"]["name"],
            "input": call["function"]["arguments"]}


def _stop_reason(obj: dict[str, Any]) -> str:
    if obj["message"].get("tool_calls"):
        return "tool_use"
    return STOP_REASONS.get(obj.get("done_reason") or "stop", "end_turn")


def message_response(obj: dict[str, Any], mid: str, cached: int) -> dict[str, Any]:
    msg = obj["message"]
    content: list[dict[str, Any]] = []
    if msg.get("thinking"):
        content.append({"type": "thinking", "thinking": msg["thinking"], "signature": ""})
    if msg.get("content") or not msg.get("tool_calls"):
        content.append({"type": "text", "text": msg.get("content", "")})
    content.extend(_tool_use(c) for c in msg.get("tool_calls") or [])
    return {"id": mid, "type": "message", "role": "assistant", "model": obj["model"], "content": content,
            "stop_reason": _stop_reason(obj), "stop_sequence": None, "usage": _usage(obj, cached)}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps({"type": name, **data}, ensure_ascii=False,
                                                           separators=(",", ":")).encode() + b"\n\n"


class _Blocks:
    """The content-block bookkeeping of one streamed message: a block opens when its kind
    of text first arrives and closes when another kind starts or the message ends."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None

    def to(self, kind: str, start: dict[str, Any]) -> list[bytes]:
        out = self.close() if self.open != kind or kind == "tool_use" else []
        if self.open is None:
            self.index += 1
            self.open = kind
            out.append(_event("content_block_start", {"index": self.index, "content_block": start}))
        return out

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [_event("content_block_stop", {"index": self.index})]


async def _stream(objects: AsyncGenerator[dict[str, Any], None], mid: str, p: Any) -> AsyncGenerator[bytes, None]:
    blocks = _Blocks()
    try:
        yield _event("message_start", {"message": {
            "id": mid, "type": "message", "role": "assistant", "model": p.request.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": len(p.prompt_ids), "output_tokens": 0}}})
        async for obj in objects:
            msg = obj["message"]
            if msg.get("thinking"):
                for chunk in blocks.to("thinking", {"type": "thinking", "thinking": "", "signature": ""}):
                    yield chunk
                yield _event("content_block_delta", {"index": blocks.index,
                                                     "delta": {"type": "thinking_delta", "thinking": msg["thinking"]}})
            if msg.get("content"):
                for chunk in blocks.to("text", {"type": "text", "text": ""}):
                    yield chunk
                yield _event("content_block_delta", {"index": blocks.index,
                                                     "delta": {"type": "text_delta", "text": msg["content"]}})
            for call in msg.get("tool_calls") or []:
                use = _tool_use(call)
                for chunk in blocks.to("tool_use", {**use, "input": {}}):
                    yield chunk
                yield _event("content_block_delta", {"index": blocks.index, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(use["input"], ensure_ascii=False)}})
            if obj.get("done"):
                if blocks.index < 0:  # an empty answer still has one (empty) text block
                    for chunk in blocks.to("text", {"type": "text", "text": ""}):
                        yield chunk
                for chunk in blocks.close():
                    yield chunk
                usage = _usage(obj, p.stats.prompt_cached_count if p.stats is not None else 0)
                yield _event("message_delta", {"delta": {"stop_reason": _stop_reason(obj), "stop_sequence": None},
                                               "usage": usage})
                yield _event("message_stop", {})
    except Exception as exc:  # noqa: BLE001 - reported in the stream
        log_unexpected(exc)
        yield _event("error", {"error": anthropic_error(exc, status_of(exc))["error"]})
    finally:
        await objects.aclose()


# -- routes ------------------------------------------------------------------------

@endpoint(anthropic_error)
async def messages(request: Request) -> Response:
    p = await prepared(request, messages_request(await read_json(request)), Kind.CHAT)
    mid = f"msg_{uuid.uuid4().hex[:24]}"
    if p.request.stream:
        return EventStream(_stream(events(p), mid, p), SSE)
    obj = await until_disconnect(request, collect(p), lambda: None)
    return JSON(message_response(obj, mid, p.stats.prompt_cached_count if p.stats is not None else 0))


@endpoint(anthropic_error)
async def count_tokens(request: Request) -> Response:
    body = await read_json(request)
    chat = messages_request({**body, "max_tokens": 1, "stream": False})
    p = await prepared(request, chat, Kind.CHAT)
    if p.lease is not None:
        p.lease.release()
    return JSON({"input_tokens": len(p.prompt_ids)})


ROUTES = [
    Route("/v1/messages", messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
