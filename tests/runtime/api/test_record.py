"""The request's record: its headers read once, as a dict, the first value of a name kept."""

from __future__ import annotations

from typing import Any

from runtime.api.record import RECORD, RequestRecord


def test_headers_are_read_once_and_a_repeated_name_keeps_its_first_value() -> None:
    pairs = [(b"x-request-id", b"first"), (b"host", b"h"), (b"x-request-id", b"second")]
    # ASGI allows any iterable of pairs; what the app reads after the record must still be there.
    scope: dict[str, Any] = {"headers": iter(pairs)}
    record = RequestRecord.begin(scope, None)
    assert record.headers == {b"x-request-id": b"first", b"host": b"h"}
    assert scope["headers"] == pairs and scope[RECORD] is record

    single = RequestRecord.begin({"headers": [(b"host", b"h")]}, None)
    assert single.headers == {b"host": b"h"}
    assert len(single.invocation_id) == 32 and single.invocation_id != record.invocation_id
