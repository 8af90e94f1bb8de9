"""Stored chat completions, as OpenAI serves them (ollama has none).

``POST /v1/chat/completions`` with ``store: true`` keeps the completion and its request
messages; then, under ``/v1/chat/completions``:

* ``GET`` lists them (``model``, ``metadata[key]=value`` filters, ``after``, ``limit`` 1-100,
  ``order`` asc / desc), ``GET /{id}`` reads one, ``POST /{id}`` with ``{"metadata": {...}}``
  replaces its metadata, ``DELETE /{id}`` forgets it, ``GET /{id}/messages`` lists the
  request's messages (``after``, ``limit``, ``order``).

They live in the model store, ``<KETTLE_MODELS>/completions/<id>.json``, one file each,
written atomically: at most ``KETTLE_MAX_STORED_COMPLETIONS`` (the oldest go first) of at most
``MAX_BYTES`` each (a larger one is answered but not kept). An id is used as a file name only
when it matches ``ID`` exactly, so a request cannot name a path. ``metadata`` follows
OpenAI's bounds: up to 16 string pairs, keys up to 64 characters, values up to 512.
The routes are in ``openai_routes``; this module is the keeping.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kettle.server.wire import RequestError, bad_value

ID = re.compile(r"chatcmpl-[0-9a-f]{24}")
MAX_BYTES = 1 << 20
MAX_METADATA, MAX_KEY, MAX_VALUE = 16, 64, 512


def check_metadata(value: Any, where: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA:
        raise bad_value(where, f"an object of at most {MAX_METADATA} string pairs", value)
    for key, v in value.items():
        if len(key) > MAX_KEY or not isinstance(v, str) or len(v) > MAX_VALUE:
            raise RequestError(f"invalid value for '{where}.{key[:MAX_KEY]}': keys are strings of at most {MAX_KEY} "
                               f"characters, values strings of at most {MAX_VALUE}", field=where)
    return dict(value)


class StoredCompletions:
    def __init__(self, directory: Path, limit: int) -> None:
        self.dir, self.limit = directory, max(limit, 0)
        self._lock = threading.Lock()

    def _path(self, cid: str) -> Path:
        if not isinstance(cid, str) or not ID.fullmatch(cid):
            raise RequestError(f"No chat completion found with id '{str(cid)[:80]}'", 404)
        return self.dir / f"{cid}.json"

    def _records(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in self.dir.iterdir():
            if ID.fullmatch(path.stem) and path.suffix == ".json":
                try:
                    out.append(json.loads(path.read_bytes()[:MAX_BYTES + 1]))
                except (OSError, ValueError):
                    continue  # a damaged file is skipped, never fatal
        return sorted(out, key=lambda r: r["seq"])

    def _write(self, path: Path, record: dict[str, Any]) -> None:
        data = json.dumps(record, ensure_ascii=False).encode()
        tmp = path.with_suffix(f".tmp{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def put(self, completion: dict[str, Any], messages: list[dict[str, Any]], metadata: dict[str, str]) -> bool:
        """Keep ``completion`` (answered with ``messages``); False when too large to keep."""
        record = {"seq": time.time_ns(), "completion": {**completion, "metadata": metadata},
                  "messages": [{"id": f"{completion['id']}-{i}", **m} for i, m in enumerate(messages)]}
        if len(json.dumps(record, ensure_ascii=False).encode()) > MAX_BYTES or not self.limit:
            return False
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write(self._path(completion["id"]), record)
            records = self._records()
            for old in records[: max(len(records) - self.limit, 0)]:
                self._path(old["completion"]["id"]).unlink(missing_ok=True)
        return True

    def _get(self, cid: str) -> dict[str, Any]:
        path = self._path(cid)
        try:
            return json.loads(path.read_bytes())
        except (OSError, ValueError):
            raise RequestError(f"No chat completion found with id '{cid}'", 404) from None

    def get(self, cid: str) -> dict[str, Any]:
        return self._get(cid)["completion"]

    def update(self, cid: str, metadata: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            record = self._get(cid)
            record["completion"]["metadata"] = metadata
            self._write(self._path(cid), record)
        return record["completion"]

    def delete(self, cid: str) -> None:
        with self._lock:
            path = self._path(cid)
            if not path.is_file():
                raise RequestError(f"No chat completion found with id '{cid}'", 404)
            path.unlink()

    def messages(self, cid: str) -> list[dict[str, Any]]:
        return self._get(cid)["messages"]

    def list(self, model: str | None, metadata: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            records = self._records()
        return [r["completion"] for r in records
                if (model is None or r["completion"].get("model") == model)
                and all(r["completion"].get("metadata", {}).get(k) == v for k, v in metadata.items())]


def page(items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """OpenAI's list page of ``items`` (oldest first) for ``after``, ``limit``, ``order``."""
    order = query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise bad_value("order", "'asc' or 'desc'", order)
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise bad_value("limit", "an integer from 1 to 100", query.get("limit"))
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after is not None:
        ids = [i["id"] for i in ordered]
        if after not in ids:
            raise RequestError(f"invalid value for 'after': no item with id '{after[:80]}'", field="after")
        ordered = ordered[ids.index(after) + 1:]
    data = ordered[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}


class Streamed:
    """The completion a stream of ``chat.completion.chunk`` objects adds up to, for keeping."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.last: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            self.text.append(delta.get("content") or "")
            self.calls.extend(delta.get("tool_calls") or [])
        if chunk.get("choices"):
            self.last = chunk

    def completion(self, usage: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.last is None:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.calls:
            message["tool_calls"] = self.calls
        choice = self.last["choices"][0]
        return {**{k: v for k, v in self.last.items() if k != "choices"}, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": choice.get("finish_reason"),
                             "logprobs": choice.get("logprobs")}], "usage": usage}
