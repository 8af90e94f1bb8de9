"""The conversations ``/v1/responses`` keeps for ``previous_response_id``: in memory, bounded."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from kettle.server.wire import RequestError

KEEP_COUNT = 256  # conversations kept for previous_response_id
KEEP_CHARS = 4 << 20  # characters of one kept conversation (longer ones are not kept)


@dataclass(frozen=True)
class Kept:
    model: str
    messages: tuple[dict[str, Any], ...]  # the whole conversation, the answer included
    response: dict[str, Any]  # the Response object, for GET


class Conversations:
    """The newest ``limit`` conversations by response id (a bounded LRU, thread-safe)."""

    def __init__(self, limit: int = KEEP_COUNT, max_chars: int = KEEP_CHARS) -> None:
        self.limit, self.max_chars = limit, max_chars
        self._items: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, rid: str, kept: Kept) -> bool:
        if sum(len(json.dumps(m, ensure_ascii=False)) for m in kept.messages) > self.max_chars:
            return False
        with self._lock:
            self._items[rid] = kept
            self._items.move_to_end(rid)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return True

    def get(self, rid: str) -> Kept:
        with self._lock:
            kept = self._items.get(rid)
            if kept is not None:
                self._items.move_to_end(rid)
        if kept is None:
            raise RequestError(f"Response with id '{rid}' not found (kettle keeps the newest {self.limit} "
                               "stored responses, in memory)", 404, field="previous_response_id")
        return kept

    def delete(self, rid: str) -> None:
        with self._lock:
            if self._items.pop(rid, None) is None:
                raise RequestError(f"Response with id '{rid}' not found", 404)
