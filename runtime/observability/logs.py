"""Logging set-up, done once by the CLI: plain text lines or one JSON object per line."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Each millisecond as logging's default_msec_format writes it: a lookup per line, not a format.
_MILLIS = tuple(f"{ms:03d}" for ms in range(1000))


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, its time formatted as logging's default does, the date part once a second."""

    # `line` writes the message alone (runtime.observability.access need not make the fields).
    writes_fields = False

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._stamp = (-1, "")  # one tuple: read and replaced whole, also across threads

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        return f"{self._date(created)},{_MILLIS[int(msecs)]}"  # logging's default_msec_format

    def _date(self, created: float) -> str:
        """The time to the second, formatted once a second."""
        second, stamp = self._stamp
        if int(created) != second:
            stamp = time.strftime(self.default_time_format, self.converter(created))
            self._stamp = (int(created), stamp)
        return stamp

    def line(self, created: float, logger: str, message: str, fields: dict[str, Any]) -> str:
        """What `format` makes of an INFO record with this message, made without one."""
        millis = _MILLIS[int((created - int(created)) * 1000)]
        return f"{self._date(created)},{millis} INFO    {logger}: {message}"


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

    def line(self, created: float, logger: str, message: str, fields: dict[str, Any]) -> str:
        """What `format` makes of an INFO record with this message and fields."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": logger,
            "message": message,
            **fields,
        }
        return orjson.dumps(entry, default=str).decode()


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes its lines in batches: when `capacity` are waiting or `interval` seconds after the
    first, whichever comes first, or when flushed. For the access log, where a write per
    request would be a measurable share of a relayed request; everything else is written at
    once. runtime.observability.access hands it lines formatted in batches of its own
    (`add_lines`) or records (with filters or other handlers, flushing it after each batch
    of those)."""

    def __init__(self, stream: Any, capacity: int = 256, interval: float = 0.2) -> None:
        super().__init__(stream)
        self.capacity = capacity
        self.interval = interval
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        self._write_when_due()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def add_lines(self, lines: list[str]) -> None:
        """Lines already formatted as this handler's formatter would (`line()`), written as
        emitted ones are: a write per `capacity` lines (a write per batch of the access
        log's was a microsecond or two of each request's CPU, on a file)."""
        with self.lock:  # type: ignore[union-attr]
            self.lines.extend(lines)
            self._write_when_due()

    def _write_when_due(self) -> None:
        if len(self.lines) >= self.capacity:
            self._write()
        elif self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop: nothing would flush later
                self._write()
                return
            self.timer = loop.call_later(self.interval, self.flush)

    def _write(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lines:
            self.stream.write("\n".join(self.lines) + "\n")
            self.lines.clear()
        super().flush()


def configure_logging(level: str, fmt: str) -> None:
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    access = logging.getLogger("chutebox.access")
    batching = BatchingHandler(sys.stderr)
    batching.setFormatter(formatter)
    access.handlers[:] = [batching]
    access.propagate = False
    # uvicorn's own loggers carry handlers of their own unless told otherwise; route them here.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
