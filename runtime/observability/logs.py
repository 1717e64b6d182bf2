"""Logging set-up, done once by the CLI: plain text lines or one JSON object per line.

Records are written off the event loop: every logger's records go to a queue (the standard
library's `QueueHandler`) and one thread (a `QueueListener`) formats and writes them, so a
slow terminal or a full pipe never stalls a request.
"""

from __future__ import annotations

import atexit
import copy
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class LogWriter(QueueListener):
    """The thread that formats and writes queued records; stopping it twice is harmless (it is
    stopped at exit, and earlier when logging is configured again)."""

    running = False

    def start(self) -> None:
        super().start()
        self.running = True

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self.running:
            self.running = False
            super().stop()


class LocalQueueHandler(QueueHandler):
    """A QueueHandler for a queue read in this process.

    The standard one formats the message and the traceback into the record's text and drops
    the exception, since its queue may lead to another process. Here the arguments are merged
    (they may change before the thread formats them) and the exception stays, for the
    formatter to write where it writes it (the JSON format: a field of its own).
    """

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.listener: LogWriter | None = None

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Every logger's records to `stream` (standard error), in `fmt`, from `level` up."""
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    writer = logging.StreamHandler(stream or sys.stderr)
    writer.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:  # configured again (tests): the previous thread ends first
        if isinstance(old, LocalQueueHandler) and old.listener is not None:
            old.listener.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = LocalQueueHandler(records)
    handler.listener = LogWriter(records, writer, respect_handler_level=True)
    handler.listener.start()
    # What is queued when the process exits is still written.
    atexit.register(handler.listener.stop)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers carry handlers of their own unless told otherwise; route them here.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
