"""The HTTP client the gateway uses to reach engines on loopback.

aiohttp rather than httpx: on this path the client is the largest single cost of a relay, and
aiohttp's is several times cheaper per request (see issue 11's measurements).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from runtime.chutes import Endpoint
from runtime.errors import UpstreamError


@dataclass(frozen=True)
class UpstreamTimeouts:
    """Seconds to connect to an engine, and the longest silence mid-reply (None: no limit)."""

    connect: float = 10.0
    read: float | None = 900.0


class Upstream:
    """One pooled client session for every engine; created and closed in the lifespan."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @classmethod
    def create(cls, timeouts: UpstreamTimeouts | None = None) -> Upstream:
        timeouts = timeouts or UpstreamTimeouts()
        connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
        # No total limit: a long generation is not a fault; silence is (sock_read).
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )  # fmt: skip
        # auto_decompress off: bodies are relayed byte for byte.
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=["User-Agent"],
        )
        return cls(session)

    async def close(self) -> None:
        await self.session.close()

    async def send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Start a request; the caller reads and releases the response."""
        merged = {**endpoint.headers(), **(headers or {})}
        if body is not None:
            merged.setdefault("Content-Type", "application/json")
        try:
            return await self.session.request(
                method, endpoint.base_url + path, data=body, headers=merged
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"the engine did not answer: {type(exc).__name__}") from exc
