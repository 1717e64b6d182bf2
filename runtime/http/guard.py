"""Client connections, bounded: uvicorn's HTTP/1.1 protocol with the limits it lacks.

uvicorn closes idle keep-alive connections, but a connection that sends half a request header
and then nothing stays open forever, as does one whose body stalls, and nothing caps how many
connections the gateway holds: a few thousand such clients exhaust its file descriptors while
costing their sender nothing. Here, per connection:

- the request's headers must all arrive within `header_timeout` of the connection opening (or
  of the request's first byte, on a reused connection), else 408 and close;
- a request body may pause at most `body_timeout` between two pieces, else 408 (if no reply
  started yet) and close, which the app sees as the client leaving;
- past `max_connections` open connections, a new one is answered 503 at once and closed;
- a keep-alive connection idle for uvicorn's `timeout_keep_alive` is closed.

Deadlines are plain numbers on each connection, checked by one sweep per server every
`SWEEP` seconds, not a timer armed and cancelled per request: on the relay path a request then
costs two clock reads. A timeout fires up to `SWEEP` seconds late.

Each request's ASGI side is an `Exchange` (runtime.http.exchange), in place of uvicorn's cycle.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from urllib.parse import unquote

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runtime.http.exchange import Exchange, HeldHeads, default_head

SWEEP = 0.25
# What uvicorn's ProxyHeadersMiddleware reads; a request without them passes it unchanged.
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
# The request header names the protocol itself acts on.
_SPECIAL = FORWARDED | {b"expect"}
_NAME = itemgetter(0)


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
    """HttpToolsProtocol with header and body timeouts, a cap on open connections, and an
    `Exchange` per request.

    `limits` and the sweeper are set on a subclass per server (`guarded_protocol`): uvicorn
    builds one protocol object per connection from the class alone.
    """

    limits = ConnectionLimits()
    sweeper: _Sweeper | None = None
    heads: HeldHeads | None = None
    # uvicorn's default headers (a new list each second: the date) and their encoding.
    default_head: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")
    cycle: Exchange | None  # type: ignore[assignment]
    pipeline: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the headers must be in (None: not waiting for headers).
        self._headers_by: float | None = None
        # While a body is being read: when its last piece came (None: not reading a body).
        self._body_since: float | None = None
        # Since when the connection has been idle between requests (None: not idle).
        self._idle_since: float | None = None
        # uvicorn wraps the app in ProxyHeadersMiddleware (its `proxy_headers` option), which
        # changes only requests that carry X-Forwarded-* headers: the others skip that layer
        # (a coroutine and a scan of every header per request).
        app = self.app
        self._unproxied = app.app if isinstance(app, ProxyHeadersMiddleware) else app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        if cls.sweeper is None or cls.sweeper.loop is not self.loop:
            # One of each per server and loop, made with the first connection.
            cls.sweeper = _Sweeper(self.connections, self.loop)
            cls.heads = HeldHeads(self.loop)
        assert cls.heads is not None
        self._held = cls.heads
        if len(self.connections) > self.limits.max_connections:
            message = (f"the gateway holds its most open connections "
                       f"({self.limits.max_connections}); try again shortly")  # fmt: skip
            reply = _reply(503, "Service Unavailable", "service_unavailable_error",
                           "too_many_connections", message)  # fmt: skip
            self.transport.write(reply)
            self.transport.close()
            return
        cls.sweeper.ensure_running()
        self._headers_by = self.loop.time() + self.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.cycle is not None:
            self.cycle.lost()
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_by is None:  # a reused connection's next request: its own clock
            self._headers_by = self.loop.time() + self.limits.header_timeout

    def on_header(self, name: bytes, value: bytes) -> None:
        # The parser calls this once per header: it only collects them. What uvicorn's own
        # looks for (Expect) and what the proxy layer reads are found once all are in, by a
        # C loop over the names (`_special`): two Python calls per header cost more.
        self.headers.append((name.lower(), value))

    def _special(self) -> bool:
        """Whether the request carries X-Forwarded-* (noting `Expect: 100-continue`)."""
        headers = self.headers
        if _SPECIAL.isdisjoint(map(_NAME, headers)):
            return False
        self.expect_100_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in headers
        )
        return not FORWARDED.isdisjoint(map(_NAME, headers))

    def on_headers_complete(self) -> None:
        self._headers_by = None
        forwarded = self._special()
        parser = self.parser
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        root = self.root_path
        scope["path"] = root + path if root else path
        scope["raw_path"] = root.encode("ascii") + url.path if root else url.path
        scope["query_string"] = url.query or b""
        previous = self.cycle
        self.cycle = Exchange(scope, self.transport, self.flow, self.loop, self._held,
                              self._default_head(),
                              http_version != "1.0" and parser.should_keep_alive(),
                              self.expect_100_continue, self.on_response_complete,
                              self.logger)  # fmt: skip
        # The body's clock runs from here; a request without one completes in this same
        # `feed_data`, which stops it again (cheaper than reading the headers to know).
        self._body_since = self.loop.time()
        app = self.app if forwarded else self._unproxied
        if previous is None or previous.response_complete:
            self._start(self.cycle, app)
        else:  # pipelined: it waits for the reply before it
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def _default_head(self) -> bytes:
        headers = self.server_state.default_headers
        cls = type(self)
        if cls.default_head[0] is not headers:
            cls.default_head = (headers, default_head(headers))
        return cls.default_head[1]

    def _start(self, exchange: Exchange, app: Any) -> None:
        exchange.task = task = self.loop.create_task(exchange.run(app, self.tasks))
        self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        self._body_since = self.loop.time()
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle is None:
            return
        if cycle.response_complete:
            return
        cycle.feed(body)
        if cycle.buffered > HIGH_WATER_LIMIT:
            self.flow.pause_reading()

    def on_message_complete(self) -> None:
        self._body_since = None
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle is None:
            return
        if not cycle.response_complete:
            cycle.complete()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            exchange, app = self.pipeline.pop()
            self._start(exchange, app)
        else:
            self._idle_since = self.loop.time()

    def check(self, now: float) -> None:
        """Close this connection if it is past a deadline (called by the sweep)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._idle_since is not None:
            if now - self._idle_since >= self.timeout_keep_alive:
                self.transport.close()
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
