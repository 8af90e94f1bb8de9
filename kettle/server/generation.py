"""The one engine path behind ``/api/generate``, ``/api/chat`` and (translated) the
OpenAI completions: request object in, ollama-shaped response objects out.

``prepare`` does everything that can fail with a proper HTTP status before a
response starts: read and type the fields, resolve the model (404), check the
options (400), take a lease on the loaded model (503 when the queue is full),
render and tokenize the prompt (400 when it cannot fit the context), compile the
``format`` into a grammar. ``events`` then submits the prompt to the scheduler
and yields one object per piece of text and a final one with ``done``,
``done_reason``, the counts and nanosecond durations (and ``context`` for
generate); its ``finally`` releases the lease, which cancels the sequence if the
client went away. ``collect`` gathers the same into one object (``stream: false``).
When the server shuts down (``state.Shutdown``) a running generation ends at the
engine's next step with ``done_reason: "shutdown"``, and one still waiting for the
model gets 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from kettle.engine.scheduler import Lease, parse_keep_alive
from kettle.errors import Cancelled, ServerBusy
from kettle.options import parse_options
from kettle.request import Kind, Prompt, PromptRequest, build_prompt
from kettle.sampling import SamplingParams
from kettle.sampling.logprobs import check_top
from kettle.server.models import Resolved, now_rfc3339
from kettle.server.state import ServerState, Shutdown
from kettle.server.tools import ToolCallFilter, check_tool_calls, check_tools
from kettle.server.wire import Fields, RequestError
from kettle.thinking import Think, ThinkSplitter, parse_think

MESSAGE_TEXT_FIELDS = ("content", "thinking", "tool_name", "tool_call_id")
SHUTDOWN = "shutdown"  # done_reason of a generation the server's shutdown ended


class LoadOnly(enum.Enum):
    """A request with nothing to generate only loads (or unloads) the model."""

    LOAD = "load"
    UNLOAD = "unload"


@dataclass
class Request:
    """A typed /api/generate or /api/chat request."""

    kind: Kind
    model: str
    options: dict[str, Any] | None
    keep_alive: float | None
    fmt: Any
    stream: bool
    prompt: str = ""
    suffix: str = ""
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None  # kettle's extension of /api/chat: OpenAI's values (kettle.toolcalls)
    truncate: bool = True
    logprobs: int | None = None  # ``logprobs: true``: the alternatives per token (``top_logprobs``, 0..20)
    think: Think | None = None  # None: not set (a thinking model thinks)
    shift: bool = True  # shift the context window when the answer fills it (ollama's ``shift``)

    @property
    def load_only(self) -> LoadOnly | None:
        empty = (not self.prompt and not self.suffix and self.template is None and self.system is None
                 if self.kind is Kind.GENERATE else not self.messages)
        if not empty:
            return None
        return LoadOnly.UNLOAD if self.keep_alive == 0 else LoadOnly.LOAD


def parse_request(body: dict[str, Any], kind: Kind, max_prompt: int) -> Request:
    f = Fields(body)
    fmt = body.get("format")
    if fmt is not None and not isinstance(fmt, (str, dict)):
        raise RequestError("invalid value for 'format': expected \"json\" or a JSON schema object")
    if body.get("images"):
        raise RequestError(f"\"{body.get('model')}\" does not support image input")
    ka = body.get("keep_alive")
    req = Request(
        kind=kind, model=f.required_str("model"), options=f.object("options"),
        keep_alive=None if ka is None else parse_keep_alive(ka), fmt=fmt, stream=bool(f.bool("stream", True)),
        truncate=bool(f.bool("truncate", True)), think=parse_think(body.get("think")),
        shift=bool(f.bool("shift", True)),
    )
    top = f.int("top_logprobs")
    if top is not None:
        check_top(top)
    if f.bool("logprobs", False):
        req.logprobs = top or 0
    if kind is Kind.GENERATE:
        req.prompt = f.str("prompt", "", max_prompt) or ""
        req.suffix = f.str("suffix", "", max_prompt) or ""
        req.system = f.str("system", None, max_prompt)
        req.template = f.str("template", None, max_prompt)
        req.context = f.int_list("context")
        req.raw = bool(f.bool("raw", False))
    else:
        req.messages = [_message(m, i, max_prompt) for i, m in enumerate(f.list("messages") or [])]
        tools = body.get("tools")
        if tools is not None:
            req.tools = check_tools(tools) or None
        req.tool_choice = body.get("tool_choice")
    return req


def _message(m: Any, i: int, max_prompt: int) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise RequestError(f"invalid value for 'messages[{i}]': expected an object")
    f = Fields(m, f"messages[{i}]")
    out: dict[str, Any] = {"role": f.required_str("role"), "content": f.str("content", "", max_prompt)}
    for name in MESSAGE_TEXT_FIELDS[1:]:
        value = f.str(name, None, max_prompt)
        if value is not None:
            out[name] = value
    calls = m.get("tool_calls")
    if calls is not None:
        checked = check_tool_calls(calls, f.path("tool_calls"))
        if checked:
            out["tool_calls"] = checked
    if m.get("images"):
        raise RequestError("this model does not support image input")
    return out


@dataclass
class Prepared:
    request: Request
    name: str  # the stored model's name
    lease: Lease | None
    started: int  # perf_counter_ns at arrival
    prompt_ids: list[int] = dataclasses.field(default_factory=list)
    params: SamplingParams | None = None
    constraint: Callable[[], Any] | None = None
    splitter: Callable[[], ThinkSplitter | None] = lambda: None  # a thinking model's answer splitter
    shutdown: Shutdown | None = None  # ends the generation when the server stops
    stats: Any = None  # the engine's Stats once the generation is done (prompt_cached_count for /v1 usage)
    metrics: Any = None  # the server's Metrics (kettle.server.metrics): counts the tokens in _final


def prompt_request(req: Request) -> PromptRequest:
    """The server's typed request as the request layer's (``kettle.request``)."""
    return PromptRequest(
        req.kind, prompt=req.prompt, suffix=req.suffix, system=req.system, template=req.template,
        context=req.context, raw=req.raw, messages=req.messages, tools=req.tools, tool_choice=req.tool_choice,
        truncate=req.truncate, shift=req.shift, options=req.options, format=req.fmt, think=req.think,
        model=req.model,
    )


def _build(model: Any, req: Request, resolved: Resolved) -> Prompt:
    """The prompt for the engine (runs in a worker thread)."""
    built = build_prompt(model.prompts, model.n_ctx, prompt_request(req))
    if req.logprobs is not None:
        built.params = dataclasses.replace(built.params, logprobs=req.logprobs)
    return built


def _piece_json(tokenizer: Any, token: int) -> tuple[str, list[int]]:
    raw = tokenizer.token_to_piece(token)
    return raw.decode("utf-8", "replace"), list(raw)


def logprobs_json(tokenizer: Any, entries: list[Any]) -> list[dict[str, Any]]:
    """The engine's ``TokenLogprob``s as ollama writes them: ``token``, ``logprob``, ``bytes``,
    ``top_logprobs`` (each ``token``, ``logprob``, ``bytes``)."""
    out = []
    for e in entries:
        text, raw = _piece_json(tokenizer, e.token)
        item: dict[str, Any] = {"token": text, "logprob": e.logprob, "bytes": raw}
        if e.top:
            item["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": b}
                                    for t, b, lp in ((*_piece_json(tokenizer, i), lp) for i, lp in e.top)]
        out.append(item)
    return out


async def prepare(state: ServerState, req: Request, cancel: threading.Event) -> Prepared:
    """See the module docstring. ``cancel``: set (with ``wake_waiters``) if the client goes."""
    started = time.perf_counter_ns()
    resolved: Resolved = await state.blocking(state.catalog.resolve, req.model)
    load = state.catalog.load_options(resolved.spec, req.options)
    parse_options(req.options, base=resolved.spec.params)  # sampling options: 400 now, not mid-stream
    if req.load_only is LoadOnly.UNLOAD:
        state.scheduler.unload(resolved.name)
        return Prepared(req, resolved.name, None, started)
    if "completion" not in await state.blocking(state.catalog.capabilities, resolved):
        raise RequestError(f'"{req.model}" does not support {req.kind.value}')  # ollama's words, 400
    unregister = state.shutdown.register(state.cancel_waiter(cancel))
    try:
        lease = await state.blocking(state.scheduler.acquire, resolved.name, resolved.spec, load, req.keep_alive, cancel)
    except Cancelled:
        if state.shutdown.started.is_set():
            raise ServerBusy("the server is shutting down") from None
        raise
    finally:
        unregister()
    try:
        p = Prepared(req, resolved.name, lease, started, shutdown=state.shutdown, metrics=state.metrics)
        if req.load_only is None:
            built = await state.blocking(_build, lease.model, req, resolved)
            p.prompt_ids, p.params, p.constraint, p.splitter = built.ids, built.params, built.constraint, built.splitter
        return p
    except BaseException:
        lease.release()
        raise


def _head(p: Prepared) -> dict[str, Any]:
    return {"model": p.request.model, "created_at": now_rfc3339()}


def _piece(p: Prepared, text: str, thinking: str = "") -> dict[str, Any]:
    """One streamed object; ``thinking`` (a thinking model's reasoning) only when there is some."""
    if p.request.kind is Kind.CHAT:
        message = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        return {**_head(p), "message": message, "done": False}
    out = {**_head(p), "response": text, "done": False}
    if thinking:
        out["thinking"] = thinking
    return out


def _final(p: Prepared, text: str, done_reason: str, stats: Any, context: list[int] | None,
           tool_calls: list[dict[str, Any]], thinking: str = "") -> dict[str, Any]:
    out = _piece(p, text, thinking)
    if tool_calls:
        out["message"]["tool_calls"] = tool_calls
    out["done"] = True
    out["done_reason"] = done_reason
    if stats is not None:
        p.stats = stats
        if p.metrics is not None:
            p.metrics.record(p.name, stats)
        load_ns = p.lease.load_duration if p.lease is not None else 0
        out.update(
            total_duration=time.perf_counter_ns() - p.started, load_duration=load_ns,
            prompt_eval_count=stats.prompt_eval_count, prompt_eval_duration=stats.prompt_eval_duration,
            eval_count=stats.eval_count, eval_duration=stats.eval_duration,
        )
        if p.request.kind is Kind.GENERATE and not p.request.raw and context is not None:
            out["context"] = context
    return out


class _Mailbox:
    """Events from the model's worker thread to one event loop, one wake-up for a batch.

    A batched step makes an event for every sequence at once; waking the loop
    once for all of them (not once each) leaves the cores to the next step.
    """

    _by_loop: dict[asyncio.AbstractEventLoop, _Mailbox] = {}
    _create = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[Any], Any]] = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        with cls._create:
            for old in [lp for lp in cls._by_loop if lp.is_closed()]:
                del cls._by_loop[old]
            if loop not in cls._by_loop:
                cls._by_loop[loop] = cls(loop)
            return cls._by_loop[loop]

    def post(self, queue: asyncio.Queue[Any], event: Any) -> None:
        """From any thread: put ``event`` on ``queue`` soon (never blocks)."""
        with self._lock:
            self._items.append((queue, event))
            if len(self._items) > 1:
                return  # a drain is already on its way
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass  # the event loop is closed: the server is shutting down

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for queue, event in items:
            queue.put_nowait(event)


async def events(p: Prepared) -> AsyncGenerator[dict[str, Any], None]:
    """The response objects of a prepared request (see module doc); raises a request's error."""
    try:
        if p.lease is None or p.request.load_only is not None:
            reason = p.request.load_only or LoadOnly.LOAD
            yield _final(p, "", reason.value, None, None, [])
            return
        queue: asyncio.Queue[Any] = asyncio.Queue()
        mailbox = _Mailbox.of(asyncio.get_running_loop())

        def sink(event: Any) -> None:
            mailbox.post(queue, event)

        tools = ToolCallFilter(p.request.tools or (), p.request.tool_choice)
        split = p.splitter()

        def answer(text: str, done: bool) -> tuple[str, str]:
            """(thinking, content) of the next generated text; ``done``: with what was held."""
            if split is None:
                return "", text
            thinking, content = split.feed(text)
            if done:
                more_thinking, more_content = split.finish()
                thinking, content = thinking + more_thinking, content + more_content
            return thinking, content
        want_logprobs = p.request.logprobs is not None
        held_logprobs: list[dict[str, Any]] = []  # of tokens whose text is not yet sent

        def with_logprobs(obj: dict[str, Any], event: Any) -> dict[str, Any]:
            if want_logprobs:
                held_logprobs.extend(logprobs_json(p.lease.model.tokenizer, getattr(event, "logprobs", None) or []))
                obj["logprobs"] = list(held_logprobs)
                held_logprobs.clear()
            return obj
        ticket = p.lease.submit(p.prompt_ids, p.params, sink, constraint=p.constraint() if p.constraint else None)
        unregister = p.shutdown.register(ticket.cancel) if p.shutdown is not None else None
        try:
            while True:
                event = await queue.get()
                stopping = p.shutdown is not None and p.shutdown.started.is_set()
                if isinstance(event, Cancelled) and stopping:  # cancelled before it had a slot
                    thinking, content = answer("", True)
                    held, calls = tools.finish()
                    yield _final(p, tools.feed(content) + held, SHUTDOWN, None, None, calls, thinking)
                    return
                if isinstance(event, BaseException):
                    raise event
                thinking, content = answer(event.text, event.done)
                text = tools.feed(content)
                if event.done:
                    held, calls = tools.finish()
                    reason = SHUTDOWN if stopping and event.done_reason == "cancel" else event.done_reason or "stop"
                    yield with_logprobs(_final(p, text + held, reason, event.stats, event.context, calls, thinking),
                                        event)
                    return
                if text or thinking:
                    yield with_logprobs(_piece(p, text, thinking), event)
                elif want_logprobs:
                    held_logprobs.extend(logprobs_json(p.lease.model.tokenizer, event.logprobs or []))
        finally:
            if unregister is not None:
                unregister()
    finally:
        if p.lease is not None:
            p.lease.release()


async def collect(p: Prepared) -> dict[str, Any]:
    """The whole response as one object (``stream: false``)."""
    texts: list[str] = []
    thoughts: list[str] = []
    logprobs: list[dict[str, Any]] = []
    stream = events(p)
    try:
        async for obj in stream:
            chat = p.request.kind is Kind.CHAT
            body = obj["message"] if chat else obj
            texts.append(body["content"] if chat else body["response"])
            thoughts.append(body.get("thinking", ""))
            logprobs.extend(obj.get("logprobs") or [])
            if obj["done"]:
                if p.request.logprobs is not None:
                    obj["logprobs"] = logprobs
                body["content" if chat else "response"] = "".join(texts)
                if any(thoughts):
                    body["thinking"] = "".join(thoughts)
                return obj
    finally:
        await stream.aclose()
    raise RuntimeError("the stream ended without a final object")
