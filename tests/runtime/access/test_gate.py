import asyncio
from pathlib import Path

import pytest

from runtime.access.gate import Access
from runtime.access.identity import Identity
from runtime.access.meter import Meter, next_midnight
from runtime.access.store import Counts, UsageStore
from runtime.errors import PaymentRequiredError, PermissionDeniedError

DAY = 86400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def access(clock: Clock, path: Path = Path(":memory:")) -> Access:
    return Access(Meter(UsageStore(path), clock), ("a", "b", "c"), clock)


def test_quotas_count_per_utc_day_and_reset_at_midnight() -> None:
    clock = Clock(100 * DAY + 3600)
    gate = access(clock)
    who = Identity("k", quotas={"a": 2})
    gate.admit(who, "a", 1)
    gate.admit(who, "a", 1)
    with pytest.raises(PaymentRequiredError) as spent:
        gate.admit(who, "a", 1)
    assert spent.value.details == {"quota_reset_timestamp": next_midnight(clock.now)}
    assert next_midnight(clock.now).endswith("T00:00:00+00:00")
    clock.now = 101 * DAY + 1
    gate.admit(who, "a", 1)


def test_a_cancelled_ticket_gives_its_invocation_back() -> None:
    gate = access(Clock(5 * DAY))
    who = Identity("k", quotas={"*": 1})
    ticket = gate.admit(who, "b", 1)
    gate.cancel(ticket)
    gate.cancel(ticket)  # once only
    ticket = gate.admit(who, "c", 1)
    gate.settle(ticket, Counts(requests=1, input_tokens=5))
    with pytest.raises(PaymentRequiredError):
        gate.admit(who, "a", 1)
    assert gate.quota_usage(who, "me") == {"quota": 1, "used": 1}


def test_scopes_refuse_before_anything_is_reserved() -> None:
    gate = access(Clock(5 * DAY))
    who = Identity("k", chutes=frozenset({"a"}), quotas={"b": 1})
    with pytest.raises(PermissionDeniedError):
        gate.admit(who, "b", 1)
    assert gate.quota_usage(who, "b") == {"quota": 1, "used": 0}


def test_the_day_is_read_back_from_the_store(tmp_path: Path) -> None:
    clock = Clock(7 * DAY + 60)
    first = access(clock, tmp_path / "u.db")
    who = Identity("k", quotas={"a": 2})
    for _ in range(2):
        first.settle(first.admit(who, "a", 1), Counts(requests=1, output_tokens=3))
    asyncio.run(first.meter.close())
    second = access(clock, tmp_path / "u.db")
    with pytest.raises(PaymentRequiredError):
        second.admit(who, "a", 1)
    rows = asyncio.run(second.meter.by_day("k"))
    assert rows == [{"chute": "a", "date": "1970-01-08", **Counts(2, 0, 6).as_dict()}]
    clock.now += DAY  # yesterday's use does not count today
    second.admit(who, "a", 1)
