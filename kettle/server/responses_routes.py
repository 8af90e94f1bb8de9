"""OpenAI's Responses API (``/v1/responses``) as translations onto the chat core, and the
conversations it keeps.

The same shape as ``openai_routes`` (STYLE.md item 15): the body becomes an ``/api/chat``
body, the same ``prepare``/``events``/``collect`` run, each ollama object is translated back.

* ``input``: a string (one user message) or a list of items: messages (``role`` user /
  assistant / system / developer, ``content`` a string or ``input_text`` / ``output_text``
  parts), ``function_call`` items (an earlier call of the model) and
  ``function_call_output`` items (a tool's result, a ``tool`` message). ``instructions``: a
  system message first (not carried to follow-ups, as OpenAI does). ``input_image`` and
  ``input_file`` parts are refused.
* ``max_output_tokens`` (>= 1), ``temperature``, ``top_p``; ``text.format`` ``json_schema`` /
  ``json_object`` -> ``format``; ``reasoning.effort`` -> ``think``; ``tools`` (function tools)
  with ``tool_choice`` ``auto`` / ``none`` / ``required`` / ``{"type": "function", "name"}``
  (a forced call: ``kettle.toolcalls``).
* The answer: ``output`` items (``reasoning`` when the model thought, a ``message`` with one
  ``output_text`` part, ``function_call`` items), ``status`` ``completed`` or ``incomplete``
  (``incomplete_details.reason: max_output_tokens``), ``usage`` (``input_tokens`` the whole
  prompt, ``input_tokens_details.cached_tokens`` the part reused from the KV cache).
* **Stateful**: with ``store`` (the default, as OpenAI's) the conversation is kept under the
  response's id; ``previous_response_id`` continues it. kettle keeps it in memory (the newest
  ``conversations.KEEP_COUNT`` conversations of at most ``KEEP_CHARS`` characters each; a restart forgets
  them) and the follow-up's prompt starts with the same tokens, so a slot's KV cache holding
  them is reused and the history is not read again (``cached_tokens`` says how much).
  ``GET`` / ``DELETE /v1/responses/{id}`` read and forget one.
* ``stream: true``: server-sent events named as OpenAI's (``response.created``,
  ``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
  ``response.output_text.delta`` / ``.done``, ``response.content_part.done``,
  ``response.function_call_arguments.delta`` / ``.done``, ``response.output_item.done``,
  ``response.completed``), each with its ``sequence_number``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kettle.server.conversations import Conversations, Kept
from kettle.server.generation import Kind, collect, events
from kettle.server.ollama_routes import prepared
from kettle.server.openai_routes import openai_error
from kettle.server.streaming import JSON, SSE, EventStream, endpoint, log_unexpected, read_json, until_disconnect
from kettle.server.tools import openai_arguments
from kettle.server.wire import Fields, RequestError, bad_value, sampling_options, status_of

EFFORTS = {"minimal": False, "none": False, "low": "low", "medium": "medium", "high": "high"}


def conversations_of(request: Request) -> Conversations:
    return request.app.state.kettle.conversations


# -- requests: Responses -> ollama (pure) -------------------------------------------

def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_value(f"{where}.content", "a string or an array of content parts", content)
    parts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif kind in ("input_image", "input_file", "input_audio"):
            raise RequestError(f"invalid value for '{at}': kettle's models do not read {kind[6:]} input", field=at)
        else:
            raise bad_value(at, "an input_text or output_text part", part)
    return "".join(parts)


def _items(value: Any) -> list[dict[str, Any]]:
    """``input`` as ollama messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise bad_value("input", "a string or a non-empty array of input items", value)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_value(at, "an input item object", item)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise bad_value(f"{at}.role", "'user', 'assistant', 'system' or 'developer'", role)
            out.append({"role": "system" if role == "developer" else role, "content": _content(item.get("content"), at)})
        elif kind == "function_call":
            name, args = item.get("name"), item.get("arguments", "{}")
            if not isinstance(name, str) or not name:
                raise bad_value(f"{at}.name", "the function's name", name)
            call = {"function": {"name": name, "arguments": openai_arguments(args, f"{at}.arguments")}}
            if out and out[-1]["role"] == "assistant" and not out[-1]["content"]:
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                raise bad_value(f"{at}.output", "a string", output)
            msg = {"role": "tool", "content": output}
            if isinstance(item.get("call_id"), str):
                msg["tool_call_id"] = item["call_id"]
            out.append(msg)
        elif kind == "reasoning":
            continue  # an earlier answer's reasoning is not shown to the model again
        else:
            raise bad_value(f"{at}.type", "'message', 'function_call' or 'function_call_output'", kind)
    return out


def _tool_choice(f: Fields) -> Any:
    """``tool_choice`` for ``/api/chat`` (``kettle.toolcalls`` reads the Responses API's flat
    ``{"type": "function", "name": ...}`` too); ``auto`` and ``none`` are settled here."""
    choice = f.obj.get("tool_choice")
    return None if choice in (None, "auto", "none") else choice


def _tools(f: Fields) -> list[dict[str, Any]] | None:
    choice = f.obj.get("tool_choice")
    tools = f.list("tools")
    if not tools or choice == "none":
        return None
    out = []
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad_value(f"{at}.type", "'function' (kettle runs no built-in tools)",
                            tool.get("type") if isinstance(tool, dict) else tool)
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise bad_value(f"{at}.name", "the function's name", tool.get("name"))
        out.append({"type": "function", "function": {
            "name": tool["name"], "description": str(tool.get("description") or ""),
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}})
    return out


def _format(f: Fields) -> Any:
    fmt = Fields(f.object("text") or {}, "text").object("format")
    if fmt is None or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return "json"
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    raise bad_value("text.format", "{'type': 'text' | 'json_object' | 'json_schema', 'schema': ...}", fmt)


def _think(f: Fields) -> Any:
    effort = Fields(f.object("reasoning") or {}, "reasoning").str("effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        raise bad_value("reasoning.effort", " or ".join(map(repr, EFFORTS)), effort)
    return EFFORTS[effort]


def responses_request(body: dict[str, Any], history: tuple[dict[str, Any], ...] = ()) -> tuple[dict[str, Any], list]:
    """A ``/v1/responses`` body (after the ``history`` of its ``previous_response_id``) as an
    ``/api/chat`` body, and the conversation to keep (history and input, no instructions)."""
    f = Fields(body)
    turns = [*history, *_items(body.get("input"))]
    instructions = f.str("instructions")
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + turns
    limit = f.int("max_output_tokens")
    if limit is not None and limit < 1:
        raise bad_value("max_output_tokens", "an integer of at least 1", limit)
    options = sampling_options(f, limit, ("temperature", "top_p"), stop=None)
    if f.int("top_logprobs"):
        raise RequestError("unsupported value for 'top_logprobs': not returned on /v1/responses; leave it out",
                           field="top_logprobs")
    f.object("metadata")
    out = {"model": f.required_str("model"), "messages": messages, "stream": bool(f.bool("stream", False)),
           "options": options, "format": _format(f), "tools": _tools(f),
           "tool_choice": _tool_choice(f)}
    think = _think(f)
    if think is not None:
        out["think"] = think
    return out, turns


# -- responses: ollama -> Responses (pure) ------------------------------------------

def _message_item(text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    call_id = call.get("id") or f"call_{uuid.uuid4().hex[:12]}"
    return {"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}", "call_id": call_id,
            "name": call["function"]["name"], "arguments": json.dumps(call["function"]["arguments"]), "status": status}


def _reasoning_item(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex[:24]}", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def response_object(rid: str, created: int, body: dict[str, Any], obj: dict[str, Any] | None,
                    output: list[dict[str, Any]], cached: int) -> dict[str, Any]:
    """The Response; ``obj`` None while in progress."""
    f = Fields(body)
    done = obj is not None
    incomplete = done and obj.get("done_reason") == "length"
    prompt, completion = (obj.get("prompt_eval_count", 0), obj.get("eval_count", 0)) if done else (0, 0)
    return {
        "id": rid, "object": "response", "created_at": created, "model": body.get("model"),
        "status": ("incomplete" if incomplete else "completed") if done else "in_progress",
        "error": None, "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": f.str("instructions"), "metadata": f.object("metadata") or {},
        "max_output_tokens": f.int("max_output_tokens"), "output": output,
        "parallel_tool_calls": bool(f.bool("parallel_tool_calls", True)),
        "previous_response_id": f.str("previous_response_id"), "reasoning": f.object("reasoning"),
        "store": bool(f.bool("store", True)), "temperature": f.number("temperature"), "top_p": f.number("top_p"),
        "text": f.object("text") or {"format": {"type": "text"}}, "tool_choice": f.obj.get("tool_choice") or "auto",
        "tools": f.list("tools") or [], "truncation": "disabled",
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": prompt + completion} if done else None,
    }


def output_items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    msg = obj["message"]
    items = [_reasoning_item(msg["thinking"])] if msg.get("thinking") else []
    if msg.get("content") or not msg.get("tool_calls"):
        items.append(_message_item(msg.get("content", "")))
    items.extend(_call_item(c) for c in msg.get("tool_calls") or [])
    return items


def _answer_message(obj: dict[str, Any]) -> dict[str, Any]:
    msg = {"role": "assistant", "content": obj["message"].get("content", "")}
    if obj["message"].get("tool_calls"):
        msg["tool_calls"] = [{"function": c["function"]} for c in obj["message"]["tool_calls"]]
    return msg


# -- routes ------------------------------------------------------------------------

class _Events:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, name: str, data: dict[str, Any]) -> bytes:
        payload = {"type": name, "sequence_number": self.n, **data}
        self.n += 1
        return f"event: {name}\ndata: ".encode() + json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":")).encode() + b"\n\n"


async def _stream(objects: AsyncGenerator[dict[str, Any], None], p: Any, rid: str, created: int,
                  body: dict[str, Any], finish: Any) -> AsyncGenerator[bytes, None]:
    ev = _Events()
    text: list[str] = []
    thoughts: list[str] = []
    message = _message_item("", "in_progress")
    reasoning = _reasoning_item("")  # output item 0 when the model thinks (its thinking comes first)
    output: list[dict[str, Any]] = []

    def end_reasoning() -> list[bytes]:
        """Close the reasoning item, once, when the answer moves on from thinking."""
        if not thoughts or output:
            return []
        whole = "".join(thoughts)
        item = {**reasoning, "content": [{"type": "reasoning_text", "text": whole}]}
        output.append(item)
        return [ev("response.reasoning_text.done", {"item_id": reasoning["id"], "output_index": 0,
                                                    "content_index": 0, "text": whole}),
                ev("response.output_item.done", {"output_index": 0, "item": item})]

    try:
        start = response_object(rid, created, body, None, [], 0)
        yield ev("response.created", {"response": start})
        yield ev("response.in_progress", {"response": start})
        async for obj in objects:
            thinking = obj["message"].get("thinking") or ""
            if thinking and not text:
                if not thoughts:
                    yield ev("response.output_item.added", {"output_index": 0, "item": reasoning})
                thoughts.append(thinking)
                yield ev("response.reasoning_text.delta", {"item_id": reasoning["id"], "output_index": 0,
                                                           "content_index": 0, "delta": thinking})
            piece = obj["message"].get("content") or ""
            at = 1 if thoughts else 0  # the message's output index
            if piece:
                if not text:
                    for event in end_reasoning():
                        yield event
                    yield ev("response.output_item.added", {"output_index": at, "item": message})
                    yield ev("response.content_part.added", {"item_id": message["id"], "output_index": at,
                                                             "content_index": 0, "part": message["content"][0]})
                text.append(piece)
                yield ev("response.output_text.delta", {"item_id": message["id"], "output_index": at,
                                                        "content_index": 0, "delta": piece, "logprobs": []})
            if not obj.get("done"):
                continue
            for event in end_reasoning():
                yield event
            if text:
                whole = "".join(text)
                done_item = {**message, "status": "completed",
                             "content": [{**message["content"][0], "text": whole}]}
                yield ev("response.output_text.done", {"item_id": message["id"], "output_index": at,
                                                       "content_index": 0, "text": whole, "logprobs": []})
                yield ev("response.content_part.done", {"item_id": message["id"], "output_index": at,
                                                        "content_index": 0, "part": done_item["content"][0]})
                yield ev("response.output_item.done", {"output_index": at, "item": done_item})
                output.append(done_item)
            for call in obj["message"].get("tool_calls") or []:
                index, item = len(output), _call_item(call)
                yield ev("response.output_item.added", {"output_index": index, "item": {**item, "arguments": "",
                                                                                        "status": "in_progress"}})
                yield ev("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": index,
                                                                    "delta": item["arguments"]})
                yield ev("response.function_call_arguments.done", {"item_id": item["id"], "output_index": index,
                                                                   "name": item["name"], "arguments": item["arguments"]})
                yield ev("response.output_item.done", {"output_index": index, "item": item})
                output.append(item)
            if not text and not obj["message"].get("tool_calls"):
                output.append(_message_item(""))  # an answer always has a message, if empty
            final = finish(obj, output)
            name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
            yield ev(name, {"response": final})
    except Exception as exc:  # noqa: BLE001 - reported in the stream
        log_unexpected(exc)
        err = openai_error(exc, status_of(exc))["error"]
        yield ev("error", {"code": err["type"], "message": err["message"], "param": err["param"]})
    finally:
        await objects.aclose()


@endpoint(openai_error)
async def create(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    kept = conversations_of(request)
    previous = f.str("previous_response_id")
    history = kept.get(previous).messages if previous else ()
    chat, turns = responses_request(body, history)
    p = await prepared(request, chat, Kind.CHAT)
    rid, created = f"resp_{uuid.uuid4().hex[:24]}", int(time.time())

    def finish(obj: dict[str, Any], output: list[dict[str, Any]]) -> dict[str, Any]:
        cached = p.stats.prompt_cached_count if p.stats is not None else 0
        out = response_object(rid, created, body, obj, output, cached)
        if out["store"]:
            kept.put(rid, Kept(chat["model"], (*turns, _answer_message(obj)), out))
        return out

    if p.request.stream:
        return EventStream(_stream(events(p), p, rid, created, body, finish), SSE)
    obj = await until_disconnect(request, collect(p), lambda: None)
    return JSON(finish(obj, output_items(obj)))


@endpoint(openai_error)
async def one(request: Request) -> Response:
    kept = conversations_of(request)
    rid = request.path_params["rid"]
    if request.method == "DELETE":
        kept.delete(rid)
        return JSON({"id": rid, "object": "response", "deleted": True})
    return JSON(kept.get(rid).response)


ROUTES = [
    Route("/v1/responses", create, methods=["POST"]),
    Route("/v1/responses/{rid}", one, methods=["GET", "DELETE"]),
]
