"""Per-chute concurrency, as Chutes' `concurrency`: a slot per request in flight."""

from __future__ import annotations

from runtime.errors import CapacityError


class Admission:
    """Counts requests in flight for one chute; over the limit → 429 with `Retry-After`.

    The gateway runs on one event loop, so taking and giving back a slot needs no lock: both
    happen between awaits.
    """

    def __init__(self, limit: int, retry_after: int = 1) -> None:
        self.limit = limit
        self.used = 0
        self.retry_after = retry_after

    def acquire(self) -> None:
        if self.used >= self.limit:
            raise CapacityError(
                "Max concurrency exceeded: this chute is serving "
                f"{self.used} of {self.limit} requests; try again later",
                headers={"Retry-After": str(self.retry_after), **self.headers()},
            )
        self.used += 1

    def release(self) -> None:
        self.used = max(0, self.used - 1)

    def headers(self) -> dict[str, str]:
        return {
            "X-Chutes-Conn-Used": str(self.used),
            "X-Chutes-Conn-Available": str(self.limit - self.used),
            "X-Chutes-Conn-Utilization": f"{self.used / self.limit:.2f}",
        }
