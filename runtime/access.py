"""The access log: one line per request, made in batches away from the request's own path.

A request only notes what it was (a tuple); the log records are made, formatted and written
for many requests at once — when `capacity` are waiting, or `interval` seconds after the
first, and when the app stops. Made one by one on the relay path, each line cost about a
tenth of a relayed request's CPU (bench/proxy.py). A line keeps the time its request ended.
The records go through the `chutebox.access` logger as usual: its level, handlers, format and
filters apply.
"""

from __future__ import annotations

import asyncio
import logging
from time import time
from typing import Any, NamedTuple

from starlette.types import Scope

from runtime.logs import BatchingHandler
from runtime.record import RequestRecord
from runtime.usage import Usage

LOGGER = logging.getLogger("chutebox.access")


class Entry(NamedTuple):
    ended: float
    client: tuple[str, int] | None
    method: str
    path: str
    status: int
    elapsed: float
    chute: str
    invocation_id: str
    usage: Usage | None


class AccessLog:
    """Collects an entry per answered request and logs them to `chutebox.access` in batches."""

    def __init__(
        self, logger: logging.Logger = LOGGER, capacity: int = 16, interval: float = 0.2
    ) -> None:
        self.logger = logger
        self.capacity = capacity
        self.interval = interval
        self._pending: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None
        # Every record differs only in its message, time and fields: each starts as a copy
        # of this one (LogRecord's constructor looks up the thread, process and file name).
        self._template = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "", (), None)

    def add(self, scope: Scope, record: RequestRecord, status: int, elapsed: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self._pending.append(Entry(
            time(), scope.get("client"), scope["method"], scope["path"], status, elapsed,
            record.chute or "-", record.invocation_id, record.usage,
        ))  # fmt: skip
        if len(self._pending) >= self.capacity:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log every waiting entry now, then flush the logger's handlers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        own = self._own_handler()
        if own is not None:
            lines = own.formatter.line  # type: ignore[union-attr]
            # The text format writes the message alone: its fields are not made.
            with_fields = getattr(own.formatter, "writes_fields", True)
            name = self.logger.name
            own.add_lines([lines(e.ended, name, *_message(e, with_fields)) for e in pending])
            return
        for entry in pending:
            self.logger.handle(self._record(entry))
        for handler in self.logger.handlers:
            handler.flush()

    def _own_handler(self) -> BatchingHandler | None:
        """The handler `configure_logging` set, when it is the only one and nothing filters:
        then its formatter makes the lines straight from the entries, with what a record
        would have given it (a record per line cost most of the log's share of a request)."""
        handlers = self.logger.handlers
        if len(handlers) != 1 or self.logger.filters or self.logger.propagate:
            return None
        handler = handlers[0]
        if not isinstance(handler, BatchingHandler) or handler.filters:
            return None
        if not hasattr(handler.formatter, "line") or handler.level > logging.INFO:
            return None
        return handler

    def _record(self, entry: Entry) -> logging.LogRecord:
        message, fields = _message(entry)
        # A copy of the template, its message final: no args, a "%" in a path stays as it is.
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__.update(self._template.__dict__)
        record.msg, record.fields = message, fields
        # The time the request ended, not the time its batch was written.
        record.relativeCreated += (entry.ended - record.created) * 1000
        record.created = entry.ended
        record.msecs = (entry.ended - int(entry.ended)) * 1000
        return record


def _message(entry: Entry, with_fields: bool = True) -> tuple[str, dict[str, Any]]:
    """An entry's line and its fields (what the JSON format writes; empty without
    `with_fields`)."""
    peer = f"{entry.client[0]}:{entry.client[1]}" if entry.client else "-"
    fields: dict[str, Any] = {}
    if with_fields:
        fields = {
            "client": peer, "method": entry.method, "path": entry.path, "status": entry.status,
            "duration_ms": round(entry.elapsed * 1000, 3), "chute": entry.chute,
            "invocation_id": entry.invocation_id,
        }  # fmt: skip
    tokens = ""
    if entry.usage is not None:
        if with_fields:
            fields["prompt_tokens"] = entry.usage.prompt_tokens
            fields["completion_tokens"] = entry.usage.completion_tokens
        tokens = f" tokens={entry.usage.prompt_tokens}+{entry.usage.completion_tokens}"
    message = (f'{peer} "{entry.method} {entry.path}" {entry.status} '
               f"{entry.elapsed * 1000:.1f}ms chute={entry.chute}{tokens} "
               f"id={entry.invocation_id}")  # fmt: skip
    return message, fields
