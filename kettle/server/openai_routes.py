"""OpenAI's API as pure translations onto the ollama handlers' core (STYLE.md item 15).

Each endpoint is: translate the request body into an ollama request body (a pure
function), run the same ``prepare``/``events``/``collect`` or ``embed_core`` as
the ollama routes, translate each ollama response object back (pure functions).
Streams are server-sent events ending with ``data: [DONE]``; with
``stream_options.include_usage`` a last chunk carries ``usage``. Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

Mapping (as ollama's ``openai/openai.go``): ``max_tokens`` /
``max_completion_tokens`` -> ``num_predict``; ``temperature``, ``top_p``, ``seed``,
``stop``, ``frequency_penalty``, ``presence_penalty`` -> options;
``response_format`` ``json_object`` -> ``format: "json"`` and ``json_schema`` ->
``format: <schema>``; content-part arrays are joined text (image parts refused);
``tools`` and ``tool_choice`` pass through (``kettle.toolcalls``: ``none`` hides the tools,
``required`` or a named function forces one call) and ``tool_calls`` come back with
JSON-string arguments. Chat's ``logprobs: true`` / ``top_logprobs`` and completions'
``logprobs: N`` become the ollama body's ``logprobs`` / ``top_logprobs``; ``n``, ``echo`` and
``max_tokens: 0`` (completions) are ``openai_choices``' business. ``echo`` sends the prompt
``raw`` (no template), so the echoed text is what the model read and scored.
``reasoning_effort`` (``none``, ``minimal``, ``low``, ``medium``, ``high``, ``xhigh``; or
ollama's ``reasoning: {"effort"}``) -> ``think`` (``none`` off, ``minimal`` low, ``xhigh``
max); a thinking model's thinking comes back as ``reasoning_content`` and ``reasoning`` on
the message and on stream deltas, and is read back from an assistant message's either.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kettle.errors import InvalidParameter
from kettle.sampling.logprobs import MAX_TOP_LOGPROBS
from kettle.server.generation import Kind, collect, events
from kettle.server.ollama_routes import embed_core, state_of
from kettle.server.openai_choices import (
    Choices, chat_logprobs, completion_final, completion_logprobs, completion_objects, merged, nth_choice,
    prepare_all, release_all,
)
from kettle.server.store_routes import remove_model
from kettle.server.stored_completions import Streamed, check_metadata, page
from kettle.server.streaming import (
    JSON, SSE, SSE_DONE, EventStream, endpoint, log_unexpected, read_json, sse_event, until_disconnect,
)
from kettle.server.tools import openai_arguments
from kettle.server.wire import Fields, RequestError, bad_value, public_message, sampling_options, status_of

FINGERPRINT = "fp_kettle"
ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error",
               503: "server_busy"}
# reasoning_effort -> think: "none" turns thinking off; the others are levels (kettle.thinking.LEVELS)
REASONING_EFFORT = {"none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "max"}
MAX_CHOICES = 8  # the most choices (``n``) one request may ask for: each is its own generation
FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop", "cancel": "stop",
          "shutdown": "stop"}


def openai_error(exc: BaseException, status: int) -> dict[str, Any]:
    param = exc.field if isinstance(exc, RequestError) else exc.name if isinstance(exc, InvalidParameter) else None
    return {"error": {"message": public_message(exc), "type": ERROR_TYPES.get(status, "api_error"),
                      "param": param, "code": None}}


# -- requests: OpenAI -> ollama (pure) ---------------------------------------------

def _options(f: Fields, least: int = 1) -> dict[str, Any]:
    """``least``: the smallest ``max_tokens`` accepted (0 on ``/v1/completions``, where 0 is
    never passed on: see ``Choices.generate``)."""
    for name in ("max_tokens", "max_completion_tokens"):
        n = f.int(name)
        if n is not None and n < least:
            raise RequestError(f"invalid value for {name!r}: expected an integer of at least {least}, got {n}",
                               field=name)
    limit = f.int("max_completion_tokens", f.int("max_tokens"))
    return sampling_options(f, limit or None, ("temperature", "top_p", "frequency_penalty", "presence_penalty"),
                            ("seed",))


def _format(f: Fields) -> Any:
    rf = f.object("response_format")
    if rf is None or rf.get("type") in (None, "text"):
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        spec = rf.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be a JSON schema object")
        return schema
    raise RequestError(f"unsupported response_format type {rf.get('type')!r}")


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "image_url":
                raise RequestError("this model does not support image input")
            else:
                raise RequestError(f"invalid content part in {where}")
        return "".join(parts)
    raise RequestError(f"invalid value for {where}.content: expected a string or an array of parts")


def _message(m: Any, i: int) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise RequestError(f"invalid value for 'messages[{i}]': expected an object")
    role = m.get("role")
    out: dict[str, Any] = {"role": "system" if role == "developer" else role,
                           "content": _text(m.get("content"), f"messages[{i}]")}
    calls = []
    raw_calls = m.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        raise bad_value(f"messages[{i}].tool_calls", "an array of tool calls", raw_calls)
    for j, call in enumerate(raw_calls or []):
        at = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(call, dict):
            raise bad_value(at, "a tool call object", call)
        fn = Fields(call, at).object("function")
        if fn is None:
            raise bad_value(f"{at}.function", "an object with the function's name and arguments", None)
        calls.append({"function": {"name": fn.get("name"),
                                   "arguments": openai_arguments(fn.get("arguments"), f"{at}.function.arguments")}})
    if calls:
        out["tool_calls"] = calls
    reasoning = m.get("reasoning_content", m.get("reasoning"))
    if isinstance(reasoning, str) and reasoning and role == "assistant":
        out["thinking"] = reasoning  # an earlier answer's thinking, for templates that show it
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    if m.get("name") and role == "tool":
        out["tool_name"] = m["name"]
    return out


def _unsupported(name: str, why: str) -> RequestError:
    return RequestError(f"unsupported value for {name!r}: {why}", field=name)


def _count(f: Fields, name: str, lo: int, hi: int) -> int | None:
    n = f.int(name)
    if n is not None and not lo <= n <= hi:
        raise RequestError(f"invalid value for {name!r}: expected an integer from {lo} to {hi}, got {n}", field=name)
    return n


def _logprobs(f: Fields, chat: bool) -> dict[str, Any]:
    """``logprobs`` (chat: a boolean, with ``top_logprobs`` alternatives; completions: the number
    of alternatives) as the ollama body's ``logprobs`` / ``top_logprobs`` fields."""
    if chat:
        top = _count(f, "top_logprobs", 0, MAX_TOP_LOGPROBS)
        if not f.bool("logprobs", False):
            if top:
                raise _unsupported("top_logprobs", "it needs logprobs=true")
            return {}
        return {"logprobs": True, "top_logprobs": top or 0}
    top = _count(f, "logprobs", 0, MAX_TOP_LOGPROBS)
    return {} if top is None else {"logprobs": True, "top_logprobs": top}


def _check_common(f: Fields, chat: bool = True) -> None:
    """The parameters kettle accepts only in part, each refused by name (OpenAI's error shape,
    ``param`` set); ``metadata``, ``user``, ``service_tier``, ``parallel_tool_calls`` and
    ``store: false`` are accepted and change nothing."""
    if (_count(f, "n", 1, MAX_CHOICES) or 1) > 1 and f.bool("store", False):
        raise _unsupported("n", "a stored completion has one choice; send n=1 with store=true")
    bias = f.object("logit_bias")
    if bias:
        raise _unsupported("logit_bias", "token biases are not supported; leave it out")
    if f.bool("store", False) and not chat:
        raise _unsupported("store", "only chat completions are stored; send store=false or leave it out")
    f.bool("parallel_tool_calls", True)
    check_metadata(f.obj.get("metadata"))


def _think(f: Fields) -> dict[str, Any]:
    """``reasoning_effort`` (or ollama's ``reasoning: {"effort"}``) as the ollama body's ``think``."""
    effort = f.obj.get("reasoning_effort")
    name = "reasoning_effort"
    if effort is None:
        reasoning = f.object("reasoning")
        effort, name = (reasoning or {}).get("effort"), "reasoning.effort"
    if effort is None:
        return {}
    if effort not in REASONING_EFFORT:
        raise bad_value(name, " or ".join(map(repr, REASONING_EFFORT)), effort)
    return {"think": REASONING_EFFORT[effort]}


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A ``/v1/chat/completions`` body as an ``/api/chat`` body."""
    f = Fields(body)
    messages = f.list("messages")
    if not messages:
        raise RequestError("messages is required")
    _check_common(f)
    return {**_think(f),
        "model": f.required_str("model"), "messages": [_message(m, i) for i, m in enumerate(messages)],
        "stream": bool(f.bool("stream", False)), "options": _options(f), "format": _format(f),
        "tools": f.list("tools"), "tool_choice": f.obj.get("tool_choice"), **_logprobs(f, chat=True),
    }


def completion_request(body: dict[str, Any]) -> dict[str, Any]:
    """A ``/v1/completions`` body as an ``/api/generate`` body."""
    f = Fields(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("invalid value for 'prompt': expected a string")
    _check_common(f, chat=False)
    out = {"model": f.required_str("model"), "prompt": prompt, "suffix": f.str("suffix"),
           "stream": bool(f.bool("stream", False)), "options": _options(f, least=0), **_logprobs(f, chat=False)}
    if f.bool("echo", False):
        if out["suffix"]:
            raise _unsupported("echo", "a prompt with a suffix is not echoed; leave one of them out")
        out["raw"] = True  # the echoed text is what the model read and scored, as OpenAI's completions
    plan = completion_choices(body)
    if not plan.generate and plan.score_prompt:
        out["options"]["num_predict"] = 1  # the prompt is scored on the way to one token, then dropped
    return out


def chat_choices(body: dict[str, Any]) -> Choices:
    return Choices(n=Fields(body).int("n") or 1)


def completion_choices(body: dict[str, Any]) -> Choices:
    f = Fields(body)
    echo = f.bool("echo", False)
    prompt = body.get("prompt")
    text = (prompt[0] if isinstance(prompt, list) else prompt) if echo else None
    return Choices(n=f.int("n") or 1, echo=text, score_prompt=bool(echo and f.int("logprobs") is not None),
                   generate=f.int("max_tokens") != 0)


# -- responses: ollama -> OpenAI (pure) ---------------------------------------------

def _usage(obj: dict[str, Any], *more: dict[str, Any]) -> dict[str, int]:
    """The usage of the final objects of a request's choices: the prompt counted once, the
    completion tokens summed."""
    prompt, completion = obj.get("prompt_eval_count", 0), sum(o.get("eval_count", 0) for o in (obj, *more))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"index": i, "id": c["id"], "type": "function",
             "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}}
            for i, c in enumerate(calls)]


def _finish(obj: dict[str, Any]) -> str | None:
    if not obj.get("done"):
        return None
    if obj.get("message", {}).get("tool_calls"):
        return "tool_calls"
    return FINISH.get(obj.get("done_reason") or "stop", "stop")


def _reasoning(message: dict[str, Any], out: dict[str, Any]) -> None:
    """A thinking model's thinking as ``reasoning_content`` (llama-server's and DeepSeek's name)
    and ``reasoning`` (ollama's), which different clients read."""
    if message.get("thinking"):
        out["reasoning_content"] = out["reasoning"] = message["thinking"]


def chat_response(obj: dict[str, Any], cid: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": obj["message"]["content"]}
    _reasoning(obj["message"], message)
    if obj["message"].get("tool_calls"):
        message["tool_calls"] = _tool_calls(obj["message"]["tool_calls"])
    return {"id": cid, "object": "chat.completion", "created": created, "model": obj["model"],
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(obj),
                         "logprobs": chat_logprobs(obj.get("logprobs"))}],
            "usage": _usage(obj)}


def combined(outs: list[dict[str, Any]], finals: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-choice responses of a request's ``n`` choices as one response: the choices in
    order (``index`` 0..n-1) and the usage of all of them (``finals``: their ollama objects)."""
    return {**outs[0], "choices": [{**o["choices"][0], "index": i} for i, o in enumerate(outs)],
            "usage": _usage(*finals)}


def chat_chunk(obj: dict[str, Any], cid: str, created: int, first: bool) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    delta["content"] = obj["message"]["content"]
    _reasoning(obj["message"], delta)
    if obj["message"].get("tool_calls"):
        delta["tool_calls"] = _tool_calls(obj["message"]["tool_calls"])
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": obj["model"],
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "finish_reason": _finish(obj),
                         "logprobs": chat_logprobs(obj.get("logprobs"))}]}


def completion_response(obj: dict[str, Any], cid: str, created: int, chunk: bool, offset: int = 0) -> dict[str, Any]:
    """``offset``: characters of the choice's text before this object's (a stream's earlier chunks)."""
    out = {"id": cid, "object": "text_completion", "created": created, "model": obj["model"],
           "system_fingerprint": FINGERPRINT,
           "choices": [{"text": obj["response"], "index": 0, "logprobs": completion_logprobs(obj.get("logprobs"), offset),
                        "finish_reason": _finish(obj)}]}
    if not chunk:
        out["usage"] = _usage(obj)
    return out


def usage_chunk(finals: list[dict[str, Any]], cid: str, created: int, kind: str) -> dict[str, Any]:
    return {"id": cid, "object": kind, "created": created, "model": finals[0]["model"],
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": _usage(*finals)}


def embeddings_response(obj: dict[str, Any], encoding: str) -> dict[str, Any]:
    def encode(vector: list[float]) -> Any:
        if encoding == "base64":
            return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        return vector

    n = obj.get("prompt_eval_count", 0)
    return {"object": "list", "model": obj["model"],
            "data": [{"object": "embedding", "embedding": encode(v), "index": i} for i, v in enumerate(obj["embeddings"])],
            "usage": {"prompt_tokens": n, "total_tokens": n}}


def model_object(tag: dict[str, Any]) -> dict[str, Any]:
    name = tag["model"]
    owner = name.split("/")[-2] if "/" in name else "library"
    created = calendar.timegm(time.strptime(tag["modified_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


# -- routes ------------------------------------------------------------------------

async def _sse(objects: AsyncGenerator[tuple[int, dict[str, Any]], None], ps: list[Any], translate: Any,
               usage: Any) -> AsyncGenerator[bytes, None]:
    """SSE events of the choices' translated objects (each chunk with its choice's ``index``),
    the optional usage chunk once every choice is done, then ``[DONE]``."""
    started: set[int] = set()
    finals: dict[int, dict[str, Any]] = {}
    try:
        async for i, obj in objects:
            out = translate(obj, i, i not in started)
            for choice in out["choices"]:
                choice["index"] = i
            started.add(i)
            yield sse_event(out)
            if obj.get("done"):
                finals[i] = obj
                if len(finals) == len(ps) and usage is not None:
                    yield sse_event(usage([finals[j] for j in range(len(ps))]))
    except Exception as exc:  # noqa: BLE001 - reported in the stream
        log_unexpected(exc)
        yield sse_event(openai_error(exc, status_of(exc)))
    finally:
        await objects.aclose()
        release_all(ps)
    yield SSE_DONE


async def _run(request: Request, body: dict[str, Any], ollama_body: dict[str, Any], kind: Kind, plan: Choices,
               object_name: str, respond: Any, chunk: Any, objects: Any, final: Any, keep: Any = None) -> Response:
    """Each of ``plan.n`` choices is prepared, then run as ``objects(p)`` (a stream of ollama
    objects) or ``final(p)`` (the whole one); ``respond(obj, cid, created)`` and
    ``chunk(obj, cid, created, first, i)`` translate them. ``keep``: called with the whole
    completion (``store: true``, one choice)."""
    stream_options = Fields(body).object("stream_options") or {}
    ps = await prepare_all(request, [nth_choice(ollama_body, i) for i in range(plan.n)], kind, plan.score_prompt)
    p = ps[0]
    cid, created = f"{object_name}-{uuid.uuid4().hex[:24]}", int(time.time())
    if p.request.stream and keep is not None:
        streamed, plain = Streamed(), chunk

        def chunk(obj: dict[str, Any], cid: str, created: int, first: bool, i: int) -> dict[str, Any]:
            out = plain(obj, cid, created, first, i)
            streamed.add(out)
            if obj.get("done"):
                keep(streamed.completion(_cached({"usage": _usage(obj)}, p)["usage"]))
            return out
    if p.request.stream:
        chunk_object = "chat.completion.chunk" if kind is Kind.CHAT else "text_completion"
        usage = ((lambda finals: _cached(usage_chunk(finals, cid, created, chunk_object), p))
                 if stream_options.get("include_usage") else None)
        return EventStream(_sse(merged([objects(q) for q in ps]), ps,
                                lambda obj, i, first: chunk(obj, cid, created, first, i), usage), SSE)
    try:
        finals = await until_disconnect(request, asyncio.gather(*(final(q) for q in ps)), lambda: None)
    finally:
        release_all(ps)
    outs = [respond(obj, cid, created) for obj in finals]
    out = _cached(outs[0] if len(outs) == 1 else combined(outs, finals), p)
    if keep is not None:
        await state_of(request).blocking(keep, out)
    return JSON(out)


def _cached(out: dict[str, Any], p: Any) -> dict[str, Any]:
    """``usage.prompt_tokens_details.cached_tokens``: the prompt prefix reused from the KV cache."""
    if "usage" in out and p.stats is not None:
        out["usage"]["prompt_tokens_details"] = {"cached_tokens": p.stats.prompt_cached_count}
    return out


@endpoint(openai_error)
async def chat_completions(request: Request) -> Response:
    body = await read_json(request)
    chat = chat_request(body)
    keep = None
    if Fields(body).bool("store", False):
        stored, metadata = state_of(request).completions, check_metadata(body.get("metadata"))

        def keep(completion: dict[str, Any]) -> None:
            stored.put(completion, body["messages"], metadata)
    return await _run(request, body, chat, Kind.CHAT, chat_choices(body), "chatcmpl", chat_response,
                      lambda obj, cid, created, first, i: chat_chunk(obj, cid, created, first), events, collect, keep)


# -- stored chat completions (store: true; kept by kettle.server.stored_completions) ---------

@endpoint(openai_error)
async def stored_list(request: Request) -> Response:
    q = request.query_params
    metadata = {k[len("metadata["):-1]: v for k, v in q.items() if k.startswith("metadata[") and k.endswith("]")}
    state = state_of(request)
    return JSON(page(await state.blocking(state.completions.list, q.get("model"), metadata), q))


@endpoint(openai_error)
async def stored_one(request: Request) -> Response:
    state, cid = state_of(request), request.path_params["cid"]
    if request.method == "DELETE":
        await state.blocking(state.completions.delete, cid)
        return JSON({"object": "chat.completion.deleted", "id": cid, "deleted": True})
    if request.method == "POST":
        body = await read_json(request)
        if "metadata" not in body:
            raise RequestError("metadata is required: the object that replaces the completion's metadata",
                               field="metadata")
        return JSON(await state.blocking(state.completions.update, cid, check_metadata(body["metadata"])))
    return JSON(await state.blocking(state.completions.get, cid))


@endpoint(openai_error)
async def stored_messages(request: Request) -> Response:
    state = state_of(request)
    return JSON(page(await state.blocking(state.completions.messages, request.path_params["cid"]),
                     request.query_params))


@endpoint(openai_error)
async def completions(request: Request) -> Response:
    body = await read_json(request)
    ollama_body, plan = completion_request(body), completion_choices(body)
    offsets: dict[int, int] = {}  # per choice: characters of its text the stream's logprobs covered

    def chunk(obj: dict[str, Any], cid: str, created: int, first: bool, i: int) -> dict[str, Any]:
        out = completion_response(obj, cid, created, chunk=True, offset=offsets.get(i, 0))
        logprobs = out["choices"][0]["logprobs"]
        if logprobs is not None:
            offsets[i] = offsets.get(i, 0) + sum(len(t) for t in logprobs["tokens"])
        return out
    return await _run(
        request, body, ollama_body, Kind.GENERATE, plan, "cmpl",
        lambda obj, cid, created: completion_response(obj, cid, created, chunk=False), chunk,
        lambda p: completion_objects(p, plan), lambda p: completion_final(p, plan),
    )


@endpoint(openai_error)
async def embeddings(request: Request) -> Response:
    body = await read_json(request)
    f = Fields(body)
    texts = f.str_list("input")
    if not texts:
        raise RequestError("input is required: a string or an array of strings")
    encoding = f.str("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError("encoding_format must be 'float' or 'base64'")
    obj = await embed_core(request, f.required_str("model"), texts, dimensions=f.int("dimensions"))
    return JSON(embeddings_response(obj, encoding or "float"))


@endpoint(openai_error)
async def models(request: Request) -> Response:
    state = state_of(request)
    tags = await state.blocking(state.catalog.tags)
    return JSON({"object": "list", "data": [model_object(t) for t in tags["models"]]})


@endpoint(openai_error)
async def model(request: Request) -> Response:
    state = state_of(request)
    wanted = request.path_params["model"]
    tags = await state.blocking(state.catalog.tags)
    for t in tags["models"]:
        if t["model"] == wanted or t["model"] == f"{wanted}:latest":
            if request.method == "DELETE":  # as /api/delete does
                await remove_model(state, t["model"])
                return JSON({"id": wanted, "object": "model", "deleted": True})
            return JSON(model_object(t))
    raise RequestError(f"The model '{wanted}' does not exist", 404)


ROUTES = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/chat/completions", stored_list, methods=["GET"]),
    Route("/v1/chat/completions/{cid}", stored_one, methods=["GET", "POST", "DELETE"]),
    Route("/v1/chat/completions/{cid}/messages", stored_messages, methods=["GET"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/v1/models/{model:path}", model, methods=["GET", "DELETE"]),
]
