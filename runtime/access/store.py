"""Usage kept in SQLite: one row per key, chute and minute, added to as requests end.

WAL mode, so a reader (the usage routes, another process) never blocks the writer. The
connection is used from one worker thread at a time (the meter's lock), off the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL,
    chute TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    images INTEGER NOT NULL DEFAULT 0,
    steps INTEGER NOT NULL DEFAULT 0,
    compute_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (key, chute, minute)
)
"""


@dataclass
class Counts:
    """What requests used, summed."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    images: int = 0
    steps: int = 0
    compute_seconds: float = 0.0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["compute_seconds"] = round(self.compute_seconds, 3)
        return out


COLUMNS = tuple(f.name for f in fields(Counts))
# (key, chute, minute as Unix seconds at its start)
Slot = tuple[str, str, int]


class UsageStore:
    """The usage table in the SQLite file at `path` (its folder made if missing)."""

    def __init__(self, path: Path) -> None:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)

    def add(self, rows: Mapping[Slot, Counts]) -> None:
        """Add each slot's counts to what the table holds, in one transaction."""
        names = ", ".join(COLUMNS)
        marks = ", ".join("?" * (3 + len(COLUMNS)))
        updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in COLUMNS)
        sql = (
            f"INSERT INTO usage (key, chute, minute, {names}) VALUES ({marks}) "
            f"ON CONFLICT (key, chute, minute) DO UPDATE SET {updates}"
        )
        with self.db:  # one transaction
            self.db.execute("BEGIN")
            self.db.executemany(sql, [(*slot, *astuple(c)) for slot, c in rows.items()])

    def requests_since(self, start: int) -> dict[tuple[str, str], int]:
        """Requests per (key, chute) from the minute `start` on."""
        rows = self.db.execute(
            "SELECT key, chute, SUM(requests) FROM usage WHERE minute >= ? GROUP BY key, chute",
            (start,),
        )
        return {(key, chute): int(n) for key, chute, n in rows}

    def by_day(self, key: str, chutes: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The key's usage per chute and UTC day, oldest first."""
        sums = ", ".join(f"SUM({c})" for c in COLUMNS)
        rows = self.db.execute(
            f"SELECT chute, date(minute, 'unixepoch') AS day, {sums} FROM usage "
            "WHERE key = ? GROUP BY chute, day ORDER BY day, chute",
            (key,),
        )
        wanted = set(chutes) if chutes is not None else None
        out = []
        for chute, day, *values in rows:
            if wanted is None or chute in wanted:
                counts = Counts(*values)
                out.append({"chute": chute, "date": day, **counts.as_dict()})
        return out

    def close(self) -> None:
        self.db.close()
