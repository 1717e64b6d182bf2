"""Client connections, bounded: uvicorn's HTTP/1.1 protocol with the limits it lacks.

uvicorn closes idle keep-alive connections, but a connection that sends half a request header
and then nothing stays open forever, as does one whose body stalls, and nothing caps how many
connections the gateway holds: a few thousand such clients exhaust its file descriptors while
costing their sender nothing. Here, per connection:

- the request's headers must all arrive within `header_timeout` of the connection opening (or
  of the request's first byte, on a reused connection), else 408 and close;
- a request body may pause at most `body_timeout` between two pieces, else 408 (if no reply
  started yet) and close, which the app sees as the client leaving;
- past `max_connections` open connections, a new one is answered 503 at once and closed
  (uvicorn's `limit_concurrency` answers in plain text, not in the gateway's error envelope).

Everything else is uvicorn's own protocol and request cycle; the subclass only adds the
deadlines, through the parser callbacks it calls `super()` from. It relies on those callbacks'
names, so pyproject.toml pins uvicorn to the releases it was tested with.

Deadlines are plain numbers on each connection, checked by one sweep per server every
`SWEEP` seconds, not a timer armed and cancelled per request: on the relay path a request then
costs two clock reads. A timeout fires up to `SWEEP` seconds late.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP = 0.25


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on each client connection and on how many are open."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096


def _reply(status: int, reason: str, kind: str, code: str, message: str) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": code}
    body = json.dumps({"error": error, "detail": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    extra = "retry-after: 1\r\n" if status == 503 else ""
    return (head + extra + "\r\n").encode() + body


class _Sweeper:
    """Checks every open connection's deadline every SWEEP seconds, while any is open."""

    def __init__(self, connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.connections = connections
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None

    def ensure_running(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(SWEEP, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, GuardedHttpProtocol):
                connection.check(now)
        self.handle = self.loop.call_later(SWEEP, self._sweep) if self.connections else None


class GuardedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header and body timeouts and a cap on open connections.

    `limits` and the sweeper are set on a subclass per server (`guarded_protocol`): uvicorn
    builds one protocol object per connection from the class alone.
    """

    limits = ConnectionLimits()
    sweeper: _Sweeper | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the headers must be in (None: not waiting for headers).
        self._headers_by: float | None = None
        # While a body is being read: when its last piece came (None: not reading a body).
        self._body_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            message = (f"the gateway holds its most open connections "
                       f"({self.limits.max_connections}); try again shortly")  # fmt: skip
            reply = _reply(503, "Service Unavailable", "service_unavailable_error",
                           "too_many_connections", message)  # fmt: skip
            self.transport.write(reply)
            self.transport.close()
            return
        cls = type(self)
        if cls.sweeper is None or cls.sweeper.loop is not self.loop:
            cls.sweeper = _Sweeper(self.connections, self.loop)
        cls.sweeper.ensure_running()
        self._headers_by = self.loop.time() + self.limits.header_timeout

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_by is None:  # a reused connection's next request: its own clock
            self._headers_by = self.loop.time() + self.limits.header_timeout

    def on_headers_complete(self) -> None:
        self._headers_by = None
        super().on_headers_complete()
        if self._expects_body():
            self._body_since = self.loop.time()

    def on_body(self, body: bytes) -> None:
        self._body_since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_since = None
        super().on_message_complete()

    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"", b"0")
            if name == b"transfer-encoding":
                return b"chunked" in value.lower()
        return False

    def check(self, now: float) -> None:
        """Close this connection if it is past a deadline (called by the sweep)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._body_since is not None:
            if now - self._body_since < self.limits.body_timeout:
                return
            message = f"the request body stalled for {self.limits.body_timeout:g}s"
        elif self._headers_by is not None and now >= self._headers_by:
            if self.cycle is not None and not self.cycle.response_complete:
                # A pipelined request's headers wait behind a reply still being sent.
                self._headers_by = now + self.limits.header_timeout
                return
            message = f"the request headers did not arrive within {self.limits.header_timeout:g}s"
        else:
            return
        self._headers_by = self._body_since = None
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(
                _reply(408, "Request Timeout", "invalid_request_error", "request_timeout", message)
            )
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn should use (its `http=` option) for these limits."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
