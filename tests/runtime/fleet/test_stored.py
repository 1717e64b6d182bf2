"""The stored-response index: found by the id in a reply, bounded however many are made."""

from __future__ import annotations

import json

from runtime.fleet.stored import Holder, StoredResponses


def body(response_id: str) -> bytes:
    return json.dumps({"id": response_id, "object": "response", "output": []}).encode()


def test_an_id_is_read_from_a_body_or_a_first_stream_event() -> None:
    stored = StoredResponses()
    stored.remember(body("resp_abc123"), Holder("tiny", 1))
    event = b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_x-9"'
    stored.remember(event, Holder("tiny", 0))
    stored.remember(b'{"id": "chatcmpl-1"}', Holder("tiny", 0))  # not a response: ignored
    assert stored.find("resp_abc123") == Holder("tiny", 1)
    assert stored.find("resp_x-9") == Holder("tiny", 0)
    assert len(stored) == 2


def test_a_hundred_thousand_responses_keep_only_the_most_recent_capacity() -> None:
    stored = StoredResponses(capacity=1000)
    stored.remember(body("resp_kept"), Holder("tiny", 0))
    for i in range(100_000):
        if i % 500 == 0:
            assert stored.find("resp_kept") is not None  # used: stays
        stored.remember(body(f"resp_{i}"), Holder("tiny", 0))
    assert len(stored) == 1000
    assert stored.find("resp_0") is None and stored.find("resp_99999") is not None
