"""What a key may do, checked where a request meets its chute, and what it used, recorded
when it ends.

`Access.admit` runs once the chute is known and before a slot is asked for: the key's
scope (403), its daily quota for the chute (402), then its requests and tokens per minute
(429). Each check reserves: an admitted request counts against the quota and holds its
estimated tokens in the minute until it ends. `Access.settle` then records what the engine
reported — or gives everything back for a request refused before any work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.access.identity import Identity
from runtime.access.meter import Meter, next_midnight
from runtime.access.store import Counts
from runtime.access.window import RateWindow, Spend
from runtime.config.keys import ANY_CHUTE
from runtime.errors import PaymentRequiredError, PermissionDeniedError


@dataclass
class Ticket:
    """One request's admission: the reservations to settle or give back."""

    who: Identity
    chute: str
    day: int
    spend: Spend | None = None
    settled: bool = False


@dataclass
class Access:
    """The meter, the chutes served, and each limited key's minute."""

    meter: Meter
    chutes: tuple[str, ...]
    clock: Callable[[], float] = time.time
    windows: dict[str, RateWindow] = field(default_factory=dict)

    def admit(self, who: Identity, chute: str, estimate: int) -> Ticket:
        """Admit a request of about `estimate` prompt tokens from `who` to `chute`, or raise
        why not; nothing is reserved when it raises."""
        if not who.may_call(chute):
            raise PermissionDeniedError(f"key {who.name!r} may not call {chute!r}", param="model")
        self._check_quota(who, chute)
        now = self.clock()
        spend = None
        if who.limited:
            spend = self.windows.setdefault(who.name, RateWindow()).admit(who, estimate, now)
        day = self.meter.invoked(who.name, chute)
        return Ticket(who, chute, day, spend)

    def _check_quota(self, who: Identity, chute: str) -> None:
        quota = who.quota(chute)
        if quota is None:
            return
        pool, limit = quota
        used = self.meter.invocations(who.name, self.pool_chutes(who, pool))
        if used >= limit:
            where = f"{chute!r}" if pool != ANY_CHUTE else "its chutes"
            raise PaymentRequiredError(
                f"key {who.name!r} has used its {limit} invocations of {where} today (UTC)",
                reset=next_midnight(self.clock()),
            )

    def pool_chutes(self, who: Identity, pool: str) -> list[str]:
        """The chutes whose calls count against `pool`: itself, or for `"*"` every chute
        without a quota of its own."""
        if pool != ANY_CHUTE:
            return [pool]
        return [c for c in self.chutes if c not in who.quotas]

    def cancel(self, ticket: Ticket) -> None:
        """The request was refused before any work: every reservation is given back."""
        if ticket.settled:
            return
        ticket.settled = True
        self.meter.uninvoked(ticket.who.name, ticket.chute, ticket.day)
        if ticket.spend is not None:
            self.windows[ticket.who.name].cancel(ticket.spend)

    def settle(self, ticket: Ticket, counts: Counts) -> None:
        """The request ended having used `counts`."""
        if ticket.settled:
            return
        ticket.settled = True
        if ticket.spend is not None:
            tokens = counts.input_tokens + counts.output_tokens
            self.windows[ticket.who.name].settle(ticket.spend, tokens, self.clock())
        self.meter.record(ticket.who.name, ticket.chute, counts)

    def quotas(self, who: Identity) -> list[dict[str, Any]]:
        """The key's quotas with today's use, as `/users/me/quotas` lists them."""
        reset = next_midnight(self.clock())
        return [
            {
                "chute_id": pool,
                "quota": limit,
                "used": self.meter.invocations(who.name, self.pool_chutes(who, pool)),
                "quota_reset_timestamp": reset,
            }
            for pool, limit in sorted(who.quotas.items())
        ]

    def quota_usage(self, who: Identity, chute: str) -> dict[str, Any]:
        """`{"quota", "used"}` for a chute (or `"me"`: the `"*"` pool), as Chutes answers."""
        quota = who.quota(chute) if chute != "me" else who.quota(ANY_CHUTE)
        if quota is None:
            used = self.meter.invocations(who.name, None if chute == "me" else [chute])
            return {"quota": "unlimited", "used": used}
        pool, limit = quota
        return {
            "quota": limit,
            "used": self.meter.invocations(who.name, self.pool_chutes(who, pool)),
        }
