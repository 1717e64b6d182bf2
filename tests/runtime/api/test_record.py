"""The request's record: its headers read once, as a dict, the first value of a name kept."""

from __future__ import annotations

from typing import Any

from runtime.api.record import RECORD, InvocationIds, RequestRecord


def test_headers_are_read_once_and_a_repeated_name_keeps_its_first_value() -> None:
    pairs = [(b"x-request-id", b"first"), (b"host", b"h"), (b"x-request-id", b"second")]
    # ASGI allows any iterable of pairs; what the app reads after the record must still be there.
    scope: dict[str, Any] = {"headers": iter(pairs)}
    record = RequestRecord.begin(scope, None)
    assert record.headers == {b"x-request-id": b"first", b"host": b"h"} and record.repeated
    assert scope["headers"] == pairs and scope[RECORD] is record

    single = RequestRecord.begin({"headers": [(b"host", b"h")]}, None)
    assert single.headers == {b"host": b"h"} and not single.repeated
    assert len(single.invocation_id) == 32 and single.invocation_id != record.invocation_id


def test_ids_from_a_batch_are_32_hex_digits_and_differ_across_batches() -> None:
    ids = InvocationIds(batch=4)
    seen = [ids.next() for _ in range(10)]  # two batches and some of a third
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in seen)
    assert len(set(seen)) == 10
    record = RequestRecord.begin({"headers": []}, None, ids)
    assert len(record.invocation_id) == 32 and record.invocation_id not in seen
