"""Which chute, and which of its replicas, holds each response an engine stored.

vLLM keeps the responses it makes (`store`, on by default in OpenAI's API) in the memory of the
one engine process that made them, so `GET /v1/responses/{id}`, its `cancel`, and a request
that continues from it (`previous_response_id`) must reach that same replica. The gateway
learns each id from the reply that carries it and remembers the most recent `capacity`
(least recently used first out): memory stays bounded however many responses are made.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

# The response's own id leads both the reply body and the first stream event's `response`.
_ID = re.compile(rb'"id"\s*:\s*"(resp[_-][A-Za-z0-9_\-]{1,200})"')
CAPACITY = 10_000


@dataclass(frozen=True)
class Holder:
    """The chute that made a response, and the replica whose engine keeps it."""

    chute: str
    replica: int


class StoredResponses:
    """A bounded map from response id to its holder."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._held: OrderedDict[str, Holder] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, data: bytes, holder: Holder) -> None:
        """Note the response id found at the start of `data` (a body or a first event)."""
        match = _ID.search(data, 0, 4096)
        if match is None:
            return
        response_id = match.group(1).decode()
        self._held[response_id] = holder
        self._held.move_to_end(response_id)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)

    def find(self, response_id: str) -> Holder | None:
        holder = self._held.get(response_id)
        if holder is not None:
            self._held.move_to_end(response_id)
        return holder
