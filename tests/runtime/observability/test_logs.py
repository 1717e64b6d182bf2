"""Log formats and the access log's batched writes."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from runtime.observability.logs import TEXT_FORMAT, BatchingHandler, JsonFormatter, TextFormatter


def record(message: str, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("chutebox.access", logging.INFO, __file__, 1, message, None, None)
    entry.fields = fields
    return entry


def test_json_lines_carry_the_records_fields() -> None:
    line = json.loads(JsonFormatter().format(record("hello", status=200, chute="tiny")))
    assert line["message"] == "hello" and line["level"] == "info"
    assert (line["status"], line["chute"]) == (200, "tiny")
    assert line["time"].endswith("+00:00")


def test_batches_are_written_when_full_or_when_the_interval_ends() -> None:
    async def scenario() -> list[str]:
        stream = io.StringIO()
        handler = BatchingHandler(stream, capacity=3, interval=0.05)
        seen = []
        for i in range(4):
            handler.handle(record(f"line {i}"))
            seen.append(stream.getvalue())
        await asyncio.sleep(0.2)  # the fourth line waits for the timer
        seen.append(stream.getvalue())
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == seen[1] == ""  # nothing written per line
    assert seen[2] == "line 0\nline 1\nline 2\n" == seen[3]
    assert seen[4].endswith("line 3\n")


def test_lines_handed_over_formatted_wait_for_a_full_batch_too() -> None:
    # The access log formats its entries in batches of its own
    # (runtime/observability/access.py); the handler still writes once per `capacity` lines,
    # or when its interval ends.
    async def scenario() -> list[str]:
        stream = io.StringIO()
        handler = BatchingHandler(stream, capacity=4, interval=0.05)
        seen = []
        for batch in (["a", "b"], ["c", "d", "e"], ["f"]):
            handler.add_lines(batch)
            seen.append(stream.getvalue())
        await asyncio.sleep(0.2)
        seen.append(stream.getvalue())
        return seen

    assert asyncio.run(scenario()) == [
        "",
        "a\nb\nc\nd\ne\n",
        "a\nb\nc\nd\ne\n",
        "a\nb\nc\nd\ne\nf\n",
    ]


def test_without_an_event_loop_lines_go_out_at_once() -> None:
    stream = io.StringIO()
    BatchingHandler(stream).handle(record("alone"))
    assert stream.getvalue() == "alone\n"


def test_text_lines_read_as_loggings_own_formatter_writes_them() -> None:
    ours, reference = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    # Within one second (the cached date part), across seconds, and back again.
    for created in (1700000000.0, 1700000000.9995, 1700000001.0004, 1700000000.5, 1800000000.25):
        entry = record("hello")
        entry.created, entry.msecs = created, (created - int(created)) * 1000
        assert ours.format(entry) == reference.format(entry)
