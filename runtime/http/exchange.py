"""One request and its reply on a client connection: the ASGI `receive` and `send`.

What uvicorn's HTTP/1.1 cycle does, in fewer system calls and less Python per request —
the relay routes are short requests where the server's own share is most of the gateway's
cost (issue 18's profile: a reply written as head then body was two `write`s, each a trip
through the kernel's TCP stack; an `asyncio.Event` per request; a timer armed and
cancelled per reply for the keep-alive timeout; two regular expressions per header):

- the reply's head waits for its first body piece and leaves in the same write; when no
  piece follows in this turn of the event loop (a stream whose first event is still being
  computed), the head goes out on its own at the next turn, so a client still sees the
  status as soon as it is decided. One callback per turn writes all such heads
  (`HeldHeads`): a callback per reply cost ~6 µs of a relayed request's CPU;
- headers are checked for characters that would end a header early, once per reply over
  all of them, not per header; the server's own (date, server) are encoded once a second
  (`default_head`), not per reply;
- `receive` waits on a future made only when it must wait;
- the keep-alive timeout is a deadline the connection's sweep checks
  (`runtime.http.guard`), not a timer per reply;
- an app may ask to be told when the client leaves, through the ASGI extension
  `DISCONNECT` in the scope (`scope["extensions"][DISCONNECT]["watch"](callback)`), instead
  of keeping a task waiting in `receive` (runtime.api.relay.reply uses it when it is there);
- an app whose reply body is known when it starts may send it as one message, `{"type":
  RESPONSE, "status", "headers", "body"}` (the extension `RESPONSE` in the scope says the
  server takes it): what `http.response.start` and one final `http.response.body` do, in
  one `send` and one pass over the reply. A middleware that wraps `send` without knowing
  that message must take RESPONSE out of the extensions it passes on (chutebox's own app
  uses it only from its outermost layer, runtime.api.routes).

Otherwise it behaves as uvicorn's cycle does: `Expect: 100-continue`, HEAD, chunked
replies when no length is given, `Connection: close`, a 500 when the app fails before
replying and a closed connection when it fails after, flow control on slow readers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

# What uvicorn refuses in header names (controls, separators) and values (controls but tab),
# as translation tables: a byte allowed becomes NUL, a byte refused becomes 0x01, which `find`
# then finds. One pass in C per reply (a regular expression's search took twice the time,
# and `translate` deleting the allowed bytes first built a table of its own per call). The
# names are checked joined by NUL, which the name table lets pass (a NUL within a name shows
# in the count of them).
_NAME_TABLE = bytes(
    0 if c == 0 or (c > 0x20 and c != 0x7F and c not in b'()<>@,;:[]={}\\"') else 1
    for c in range(256)
)
_VALUE_TABLE = bytes(0 if c == 0x09 or (c >= 0x20 and c != 0x7F) else 1 for c in range(256))
_SERVER_ERROR = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]
_NO_BODY_STATUS = (204, 304)
# The ASGI extensions this server offers: a callback when the client leaves mid-request,
# and a whole reply in one message.
DISCONNECT = "chutebox.disconnect"
RESPONSE = "chutebox.response"
# A body up to this size is joined to its head (a copy); a larger one is written beside it.
_JOIN = 65536
_NAME, _VALUE = itemgetter(0), itemgetter(1)


class Exchange:
    """The ASGI side of one HTTP/1.1 request: its body as it arrives, its reply as sent.

    The protocol feeds it (`feed`, `complete`, `lost`) and learns when the reply is done
    through `on_response`.
    """

    # Slots: attribute stores and reads on an instance dict cost a reply ~1 µs more (the
    # dict's shared keys are lost when instances set attributes in different orders).
    __slots__ = (
        "scope", "transport", "flow", "loop", "default_head", "on_response", "log",
        "body", "more_body", "pending", "waiter", "disconnected", "keep_alive",
        "waiting_for_100_continue", "response_started", "response_complete", "chunked",
        "remaining", "head", "heads", "departure", "buffered", "task",
    )  # fmt: skip

    def __init__(
        self,
        scope: dict[str, Any],
        transport: asyncio.Transport,
        flow: FlowControl,
        loop: asyncio.AbstractEventLoop,
        heads: HeldHeads,
        default_head: bytes,
        keep_alive: bool,
        expect_100_continue: bool,
        on_response: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.loop = loop
        # The server's own header lines (`default_head`), encoded.
        self.default_head = default_head
        self.on_response = on_response
        self.log = log
        # The request body not yet received by the app, and whether more is coming.
        self.body: list[bytes] = []
        self.buffered = 0  # bytes in `body`
        self.more_body = True
        # Something for `receive` to see (body, its end, a disconnect) since it last looked.
        self.pending = False
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        # Body bytes the reply's Content-Length still promises (when not chunked).
        self.remaining = 0
        # The reply's head, written with its first body piece or at the loop's next turn.
        self.head: bytes | None = None
        self.heads = heads
        # What the app asked to hear when the client leaves (the DISCONNECT extension).
        self.departure = Departure()
        # The task running `run`, while it runs (set by the server that started it).
        self.task: asyncio.Task[None] | None = None
        scope["extensions"] = {DISCONNECT: {"watch": self.departure.watch}, RESPONSE: {}}

    # fed by the protocol
    def feed(self, data: bytes) -> None:
        self.body.append(data)
        self.buffered += len(data)
        self._wake()

    def complete(self) -> None:
        self.more_body = False
        self._wake()

    def lost(self) -> None:
        if not self.response_complete:
            self.disconnected = True
            self.departure.left()
        self._wake()

    def _wake(self) -> None:
        self.pending = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # running the app
    async def run(self, app: Any, tasks: set[asyncio.Task[None]] | None = None) -> None:
        """Run `app` for this request. `tasks`: the server's running requests, which hold
        this one's `task` until the app is done (taken out here, not by a done-callback:
        that is one more callback through the event loop per request)."""
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self._close()
        else:
            if result is not None:
                self.log.error("ASGI callable should return None, but returned '%s'.", result)
                self._close()
            elif not self.response_started and not self.disconnected:
                self.log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                self.log.error("ASGI callable returned without completing response.")
                self._close()
        finally:
            self.on_response = _nothing
            if tasks is not None:
                tasks.discard(self.task)
                self.task = None  # the task holds this exchange: no cycle left behind

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": _SERVER_ERROR})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    def _close(self) -> None:
        self.flush_head()
        self.transport.close()

    # the ASGI interface
    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            if not self.pending:
                self.waiter = self.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self.pending = False
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        self.body, self.buffered = [], 0
        return {"type": "http.request", "body": data, "more_body": self.more_body}

    async def send(self, message: dict[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind == "http.response.start":
                self._start(message["status"], message.get("headers", ()))
                self.heads.hold(self)
            elif kind == RESPONSE:
                self._start(message["status"], message.get("headers", ()))
                self._body(message.get("body", b""), False)
            else:
                raise RuntimeError(f"Expected ASGI message 'http.response.start', got '{kind}'.")
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', got '{kind}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )

    def _start(self, status: int, headers: Any) -> None:
        # Split, checked, lower-cased and joined by C loops (map, join, translate), not Python
        # ones: a reply's head has ten-odd headers, written thousands of times a second.
        values = list(map(_VALUE, headers))
        names = _checked_names(list(map(_NAME, headers)), values)
        length = None
        chunked = close_sent = False
        if b"transfer-encoding" in names:
            chunked = values[names.index(b"transfer-encoding")].lower() == b"chunked"
        if b"content-length" in names and not chunked:
            length = int(values[names.index(b"content-length")])
        if b"connection" in names:
            close_sent = any(b"close" in _tokens(values[i])
                             for i, name in enumerate(names) if name == b"connection")  # fmt: skip
            self.keep_alive = self.keep_alive and not close_sent
        lines = [STATUS_LINE[status], self.default_head]
        if names:  # (not strict: the two lists come from the same pairs)
            lines += (b"\r\n".join(map(b": ".join, zip(names, values, strict=False))), b"\r\n")
        # Started once the head is known good: an app that sent a bad one still gets its 500.
        self.response_started = True
        self.waiting_for_100_continue = False
        if not self.keep_alive and not close_sent:
            lines.append(b"connection: close\r\n")
        if length is None and not chunked:
            if self.scope["method"] != "HEAD" and status not in _NO_BODY_STATUS:
                chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.chunked = chunked
        self.remaining = length or 0
        self.head = b"".join(lines)

    def flush_head(self) -> None:
        """Write the reply's head if it is still waiting for a body piece."""
        if self.head is not None:
            head, self.head = self.head, None
            if not self.transport.is_closing():
                self.transport.write(head)

    def _body(self, body: bytes, more_body: bool) -> None:
        if self.scope["method"] == "HEAD":
            self.remaining, data = 0, b""
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            data = body
        head = self.head
        if head is not None:
            self.head = None
            if len(data) <= _JOIN:
                self.transport.write(head + data)
            else:  # not copied: the transport writes both from where they are
                self.transport.writelines((head, data))
        elif data:
            self.transport.write(data)
        if not more_body:
            if self.remaining != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self._wake()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


class HeldHeads:
    """Reply heads still waiting for their first body piece, written at the event loop's
    next turn by one callback for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[Exchange] = []

    def hold(self, exchange: Exchange) -> None:
        if not self.waiting:
            self.loop.call_soon(self._flush)
        self.waiting.append(exchange)

    def _flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for exchange in waiting:
            exchange.flush_head()


class Departure:
    """The DISCONNECT extension's end of an exchange: the app's callback for the client
    leaving. Separate from the exchange, which the scope must not reach: the scope holds
    this, and a scope reaching back to its exchange would be a reference cycle per request,
    freed only by the garbage collector's pauses."""

    __slots__ = ("callback", "gone")

    def __init__(self) -> None:
        self.callback: Callable[[], None] | None = None
        self.gone = False

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` if the client leaves before the reply is complete (None: stop);
        at once if it already left."""
        self.callback = callback
        if callback is not None and self.gone:
            callback()

    def left(self) -> None:
        self.gone = True
        if self.callback is not None:
            self.callback()


def default_head(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The server's own header lines (uvicorn's `default_headers`: date, server), encoded."""
    values = [value for _, value in headers]
    names = _checked_names([name for name, _ in headers], values)
    return b"".join(b"%s: %s\r\n" % pair for pair in zip(names, values, strict=True))


def _checked_names(names: list[bytes], values: list[bytes]) -> list[bytes]:
    """The names lower-cased, once all of them and the values are checked (at once, not per
    header): what would end a header early or break its name is refused (RuntimeError)."""
    if not names:
        return names
    joined = b"\0".join(names)
    lowered = joined.lower()  # the same bytes allowed: only A-Z change
    # `find`, not `in`: `in` first tries its operand as an integer, raising (and clearing) a
    # TypeError inside CPython each time.
    if lowered.translate(_NAME_TABLE).find(b"\1") >= 0 or lowered.count(b"\0") != len(names) - 1:
        raise RuntimeError("Invalid HTTP header name.")
    if b"".join(values).translate(_VALUE_TABLE).find(b"\1") >= 0:
        raise RuntimeError("Invalid HTTP header value.")
    return names if lowered == joined else lowered.split(b"\0")


def _nothing() -> None:
    pass


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip() for token in value.lower().split(b",")]
