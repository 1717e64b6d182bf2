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
from typing import Any

from starlette.types import Scope

from runtime.api.record import RequestRecord
from runtime.observability.logs import BatchingHandler
from runtime.observability.usage import Usage

LOGGER = logging.getLogger("chutebox.access")
_NO_FIELDS: dict[str, Any] = {}  # handed to a formatter that writes none (read, never changed)


# (ended, client, method, path, status, elapsed, chute, invocation id, usage): a plain tuple,
# made in one step (a NamedTuple's constructor is a Python function call per request).
Entry = tuple[float, tuple[str, int] | None, str, str, int, float, str, str, Usage | None]


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
        # Whether the logger takes INFO is asked once a batch, in `flush`.
        self._pending.append((
            time(), scope.get("client"), scope["method"], scope["path"], status, elapsed,
            record.chute or "-", record.invocation_id, record.usage,
        ))  # fmt: skip
        if len(self._pending) >= self.capacity:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log every waiting entry now. chutebox's own handler writes the lines with its next
        write (`capacity` lines or its interval); other handlers are flushed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending or not self.logger.isEnabledFor(logging.INFO):
            return
        own = self._own_handler()
        if own is not None:
            line = own.formatter.line  # type: ignore[union-attr]
            name = self.logger.name
            if getattr(own.formatter, "writes_fields", True):
                own.add_lines([line(e[0], name, _text(e), _fields(e)) for e in pending])
            else:  # the text format writes the message alone: its fields are not made
                own.add_lines([line(e[0], name, _text(e), _NO_FIELDS) for e in pending])
            return
        for entry in pending:
            self.logger.handle(self._record(entry))
        for handler in self.logger.handlers:
            handler.flush()

    def close(self) -> None:
        """Log every waiting entry and write it out: the app stops."""
        self.flush()
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
        message, fields = _text(entry), _fields(entry)
        # A copy of the template, its message final: no args, a "%" in a path stays as it is.
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__.update(self._template.__dict__)
        record.msg, record.fields = message, fields
        # The time the request ended, not the time its batch was written.
        ended = entry[0]
        record.relativeCreated += (ended - record.created) * 1000
        record.created = ended
        record.msecs = (ended - int(ended)) * 1000
        return record


def _text(entry: Entry) -> str:
    """An entry's message."""
    _, client, method, path, status, elapsed, chute, invocation_id, usage = entry
    peer = f"{client[0]}:{client[1]}" if client else "-"
    tokens = f" tokens={usage[0]}+{usage[1]}" if usage is not None else ""
    return (f'{peer} "{method} {path}" {status} {elapsed * 1000:.1f}ms chute={chute}{tokens} '
            f"id={invocation_id}")  # fmt: skip


def _fields(entry: Entry) -> dict[str, Any]:
    """An entry's fields, as the JSON format writes them."""
    _, client, method, path, status, elapsed, chute, invocation_id, usage = entry
    fields: dict[str, Any] = {
        "client": f"{client[0]}:{client[1]}" if client else "-", "method": method,
        "path": path, "status": status, "duration_ms": round(elapsed * 1000, 3),
        "chute": chute, "invocation_id": invocation_id,
    }  # fmt: skip
    if usage is not None:
        fields["prompt_tokens"], fields["completion_tokens"] = usage
    return fields
