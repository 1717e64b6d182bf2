"""Log formats, and records written by a thread of their own."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from runtime.observability.logs import JsonFormatter, LocalQueueHandler, configure_logging


def record(message: str, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("chutebox.access", logging.INFO, __file__, 1, message, None, None)
    entry.fields = fields
    return entry


def test_json_lines_carry_the_records_fields() -> None:
    line = json.loads(JsonFormatter().format(record("hello", status=200, chute="tiny")))
    assert line["message"] == "hello" and line["level"] == "info"
    assert (line["status"], line["chute"]) == (200, "tiny")
    assert line["time"].endswith("+00:00")


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield stream
    for handler in root.handlers:
        if isinstance(handler, LocalQueueHandler) and handler.listener is not None:
            handler.listener.stop()
    root.handlers[:], root.level = saved


def flushed(stream: io.StringIO) -> list[str]:
    """The lines written once the writer thread has taken every record queued."""
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, LocalQueueHandler) and handler.listener is not None
    handler.listener.stop()  # returns once the queue is drained
    return stream.getvalue().splitlines()


def test_records_are_written_by_the_thread_with_their_arguments_as_they_were(
    stderr: io.StringIO,
) -> None:
    configure_logging("info", "text", stderr)
    values = ["before"]
    logging.getLogger("chutebox.test").info("value %s", values)
    values[0] = "after"  # changed before the thread formats the record
    [line] = flushed(stderr)
    assert line.endswith("INFO    chutebox.test: value ['before']")


def test_json_lines_keep_the_exception_as_a_field(stderr: io.StringIO) -> None:
    configure_logging("info", "json", stderr)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("chutebox.test").exception("failed %d", 3)
    [line] = flushed(stderr)
    entry = json.loads(line)
    assert entry["message"] == "failed 3" and entry["level"] == "error"
    assert "ValueError: boom" in entry["exception"]


def test_the_level_set_holds(stderr: io.StringIO) -> None:
    configure_logging("warning", "text", stderr)
    logging.getLogger("chutebox.test").info("quiet")
    logging.getLogger("chutebox.test").warning("loud")
    lines = flushed(stderr)
    assert len(lines) == 1 and lines[0].endswith("chutebox.test: loud")
