"""The access log: one line per answered request, through the `chutebox.access` logger.

Its records are written like any other (off the event loop, `runtime.observability.logs`):
the text format writes the message, the JSON format the message and its `fields`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runtime.observability.usage import Usage

LOGGER = logging.getLogger("chutebox.access")


@dataclass(frozen=True)
class AccessEntry:
    """What an answered request was, as its line names it."""

    client: tuple[str, int] | None
    method: str
    path: str
    status: int
    elapsed: float
    chute: str
    invocation_id: str
    usage: Usage | None = None
    migrations: int = 0
    # The caller's key by name (never the key), when it sent one.
    key: str | None = None
    # Seconds it waited for its on-demand chute to load.
    load_wait: float | None = None

    def message(self) -> str:
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        usage = self.usage
        tokens = f" tokens={usage[0]}+{usage[1]}" if usage is not None else ""
        moved = f" migrated={self.migrations}" if self.migrations else ""
        key = f" key={self.key}" if self.key else ""
        loaded = f" loaded={self.load_wait:.1f}s" if self.load_wait is not None else ""
        return (
            f'{peer} "{self.method} {self.path}" {self.status} {self.elapsed * 1000:.1f}ms '
            f"chute={self.chute or '-'}{tokens}{moved}{loaded}{key} id={self.invocation_id}"
        )

    def fields(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "client": f"{self.client[0]}:{self.client[1]}" if self.client else "-",
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": round(self.elapsed * 1000, 3),
            "chute": self.chute or "-",
            "invocation_id": self.invocation_id,
        }
        if self.usage is not None:
            fields["prompt_tokens"] = self.usage.prompt_tokens
            fields["completion_tokens"] = self.usage.completion_tokens
        if self.migrations:
            fields["migrations"] = self.migrations
        if self.key:
            fields["key"] = self.key
        if self.load_wait is not None:
            fields["load_wait_s"] = round(self.load_wait, 3)
        return fields


class AccessLog:
    """Logs an entry per answered request to `logger` (INFO)."""

    def __init__(self, logger: logging.Logger = LOGGER) -> None:
        self.logger = logger

    def add(self, entry: AccessEntry) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            # The message is final: no arguments, so a "%" in a path stays as it is.
            self.logger.info(entry.message(), extra={"fields": entry.fields()})
