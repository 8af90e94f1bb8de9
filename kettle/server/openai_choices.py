"""``n`` choices, ``echo`` and logprobs for the OpenAI routes (``openai_routes``).

A request for ``n`` choices is ``n`` prepared generations on the same handlers' core, one per
choice (each its own lease; choice ``i`` seeded ``seed + i``), run together: ``merged`` gives
their streams' objects as they come, each with its choice's index. Logprobs arrive in ollama's
shape (``generation.logprobs_json``) and leave in OpenAI's: chat's ``{"content": [...],
"refusal": null}`` and ``/v1/completions``' ``tokens`` / ``token_logprobs`` / ``top_logprobs`` /
``text_offset``. ``echo`` with logprobs scores the prompt's tokens too (``Scoring`` asks the
engine for ``prompt_logprobs``; the first token has no score, as OpenAI writes it);
``max_tokens: 0`` generates nothing (with echo and logprobs: one token, dropped, on the way to
the scores).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from kettle.engine.batch import Chunk
from kettle.server.generation import Kind, collect, events, logprobs_json
from kettle.server.ollama_routes import prepared


@dataclass(frozen=True)
class Choices:
    """What a ``/v1`` body asks beyond one ollama request."""

    n: int = 1  # independent choices, each its own generation (with a seed, choice i uses seed + i)
    echo: str | None = None  # /v1/completions ``echo``: the prompt, written before the answer
    score_prompt: bool = False  # echo with logprobs: the prompt's tokens are scored too
    generate: bool = True  # False: ``max_tokens: 0`` (the answer is empty, or only the echo)


def nth_choice(body: dict[str, Any], i: int) -> dict[str, Any]:
    """The ollama body of choice ``i``: a fixed seed moves on by ``i`` (within 64 bits), so
    sampled choices differ and each is reproducible; -1 (random) stays."""
    seed = body["options"].get("seed")
    if i == 0 or seed is None or seed == -1:
        return body
    return {**body, "options": {**body["options"], "seed": (seed + i + 2**63) % 2**64 - 2**63}}


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """ollama's logprobs entries (``token``, ``logprob``, ``bytes``, ``top_logprobs``) as a chat
    choice's ``logprobs``; None when none were asked for."""
    if entries is None:
        return None
    return {"content": [{"token": e["token"], "logprob": e["logprob"], "bytes": e["bytes"],
                         "top_logprobs": e.get("top_logprobs") or []} for e in entries], "refusal": None}


def completion_logprobs(entries: list[dict[str, Any]] | None, start: int = 0) -> dict[str, Any] | None:
    """ollama's logprobs entries as a ``/v1/completions`` choice's ``logprobs``: ``tokens``,
    ``token_logprobs``, ``top_logprobs`` (token -> logprob) and ``text_offset`` (each token's
    first character in the choice's text, counted from ``start``). An unscored first prompt
    token (``logprob`` None) has None in both lists, as OpenAI writes it."""
    if entries is None:
        return None
    offsets, at = [], start
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [None if e["logprob"] is None else {t["token"]: t["logprob"]
                                                               for t in e.get("top_logprobs") or []}
                             for e in entries],
            "text_offset": offsets}


def prompt_logprobs(tokenizer: Any, prompt: str, ids: list[int], scores: list[Any]) -> list[dict[str, Any]]:
    """The engine's prompt scores (a ``TokenLogprob`` per token, None for the first) as ollama
    logprobs entries, one per token of the ``prompt`` text: a BOS the tokenizer added is left
    out (the first text token then has its score after the BOS)."""
    bos = tokenizer.bos_id
    start = 1 if ids and ids[0] == bos and not prompt.startswith(_piece(tokenizer, ids[0])) else 0
    out: list[dict[str, Any]] = []
    for token, score in zip(ids[start:], scores[start:]):
        if score is None:
            raw = tokenizer.token_to_piece(token)
            out.append({"token": raw.decode("utf-8", "replace"), "logprob": None, "bytes": list(raw)})
        else:
            out.extend(logprobs_json(tokenizer, [score]))
    return out


def _piece(tokenizer: Any, token: int) -> str:
    return tokenizer.token_to_piece(token).decode("utf-8", "replace")


class Scoring:
    """A lease whose generations also score their prompt (``SamplingParams.prompt_logprobs``):
    each engine event goes on to the sink ``events`` gave, and the prompt scores the last one
    carries are kept in ``scores``. Everything else is the lease's."""

    def __init__(self, lease: Any) -> None:
        self.lease = lease
        self.scores: list[Any] = []

    def submit(self, prompt_ids: list[int], params: Any, sink: Any, **kw: Any) -> Any:
        def keep(event: Any) -> None:
            if isinstance(event, Chunk) and event.prompt_logprobs is not None:
                self.scores = event.prompt_logprobs
            sink(event)
        return self.lease.submit(prompt_ids, dataclasses.replace(params, prompt_logprobs=True), keep, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lease, name)


async def prepare_all(request: Request, bodies: list[dict[str, Any]], kind: Kind, score_prompt: bool) -> list[Any]:
    """One prepared generation per choice (each holds its own lease; all released on an error)."""
    ps: list[Any] = []
    try:
        for body in bodies:
            p = await prepared(request, body, kind)
            if score_prompt and p.lease is not None and p.params is not None:
                p.lease = Scoring(p.lease)
            ps.append(p)
    except BaseException:
        release_all(ps)
        raise
    return ps


def release_all(ps: list[Any]) -> None:
    """Release every choice's lease (again: a no-op for one ``events`` already released, and
    the guard for a choice whose stream never started)."""
    for p in ps:
        if p.lease is not None:
            p.lease.release()


async def merged(streams: list[AsyncGenerator[dict[str, Any], None]]) -> AsyncGenerator[tuple[int, dict[str, Any]], None]:
    """The objects of the choices' streams as they come, each with its choice's index."""
    if len(streams) == 1:
        try:
            async for obj in streams[0]:
                yield 0, obj
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None, Exception | None]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncGenerator[dict[str, Any], None]) -> None:
        try:
            async for obj in stream:
                await queue.put((i, obj, None))
            await queue.put((i, None, None))
        except Exception as exc:  # noqa: BLE001 - raised by the merged stream
            await queue.put((i, None, exc))
        finally:
            await stream.aclose()

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            i, obj, exc = await queue.get()
            if exc is not None:
                raise exc
            if obj is None:
                left -= 1
            else:
                yield i, obj
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def completion_final(p: Any, plan: Choices) -> dict[str, Any]:
    """A completion choice's whole ollama object, the echoed prompt (and its scores) first;
    with ``max_tokens: 0`` nothing generated is kept (and without scores nothing is run)."""
    if plan.generate or plan.score_prompt:
        obj = await collect(p)
    else:
        if p.lease is not None:
            p.lease.release()
        obj = {"model": p.request.model, "response": "", "done": True, "done_reason": "length",
               "prompt_eval_count": len(p.prompt_ids), "eval_count": 0}
    if not plan.generate:
        obj.update(response="", done_reason="length", eval_count=0)
        if p.request.logprobs is not None:
            obj["logprobs"] = []
    if isinstance(p.lease, Scoring) and plan.echo is not None:
        scored = prompt_logprobs(p.lease.model.tokenizer, plan.echo, p.prompt_ids, p.lease.scores)
        obj["logprobs"] = scored + (obj.get("logprobs") or [])
    if plan.echo is not None:
        obj["response"] = plan.echo + obj["response"]
    return obj


async def completion_objects(p: Any, plan: Choices) -> AsyncGenerator[dict[str, Any], None]:
    """A completion choice's stream: the echo, then the answer's pieces. With the prompt's
    scores (which the engine gives at the end) or ``max_tokens: 0``, one object: the whole choice."""
    if plan.score_prompt or not plan.generate:
        yield await completion_final(p, plan)
        return
    if plan.echo:
        yield {"model": p.request.model, "response": plan.echo, "done": False}
    stream = events(p)
    try:
        async for obj in stream:
            yield obj
    finally:
        await stream.aclose()
