"""Requests and tokens per minute, per key: a sliding window of the last sixty seconds.

A request takes its place when admitted, holding the tokens its prompt is estimated at; when
it ends, its place is settled to what the engine reported (prompt and output). So the limit
holds across concurrent requests — each one in flight counts — and what a minute holds is
what was used, not what was guessed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from runtime.access.identity import Identity
from runtime.errors import RateLimitedError

WINDOW = 60.0


@dataclass(eq=False)
class Spend:
    """One request's place in a window."""

    at: float
    tokens: int


class RateWindow:
    """One key's requests and tokens over the last minute."""

    def __init__(self) -> None:
        self.spends: deque[Spend] = deque()
        self.tokens = 0

    def _expire(self, now: float) -> None:
        while self.spends and self.spends[0].at <= now - WINDOW:
            self.tokens -= self.spends.popleft().tokens

    def admit(self, who: Identity, estimate: int, now: float) -> Spend:
        """A place for a request of about `estimate` tokens, or RateLimitedError with how
        long until one frees."""
        self._expire(now)
        if who.rpm is not None and len(self.spends) >= who.rpm:
            wait = self.spends[len(self.spends) - who.rpm].at + WINDOW - now
            raise _limited(f"key {who.name!r} is over its {who.rpm} requests per minute", wait)
        if who.tpm is not None and self.tokens + estimate > who.tpm:
            if estimate > who.tpm:
                raise _limited(
                    f"this request's prompt (about {estimate} tokens) is over key "
                    f"{who.name!r}'s {who.tpm} tokens per minute by itself",
                    WINDOW,
                )
            raise _limited(
                f"key {who.name!r} is over its {who.tpm} tokens per minute",
                self._wait_for(who.tpm - estimate, now),
            )
        spend = Spend(now, estimate)
        self.spends.append(spend)
        self.tokens += estimate
        return spend

    def _wait_for(self, room: int, now: float) -> float:
        """Seconds until the window holds at most `room` tokens."""
        held = self.tokens
        for spend in self.spends:
            held -= spend.tokens
            if held <= room:
                return spend.at + WINDOW - now
        return WINDOW

    def settle(self, spend: Spend, tokens: int, now: float) -> None:
        """The request used `tokens`: its place holds them (if still in the window)."""
        self._expire(now)
        if spend.at > now - WINDOW:
            self.tokens += tokens - spend.tokens
        spend.tokens = tokens

    def cancel(self, spend: Spend) -> None:
        """The request was refused before any work: its place is given back."""
        try:
            self.spends.remove(spend)
        except ValueError:  # already out of the window
            return
        self.tokens -= spend.tokens


def _limited(message: str, wait: float) -> RateLimitedError:
    seconds = max(1, math.ceil(wait))
    return RateLimitedError(message, headers={"Retry-After": str(seconds)})
