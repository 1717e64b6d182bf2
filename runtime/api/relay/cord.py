"""Relaying a custom chute's cord call: what the SDK answered, as it answered it.

A cord's reply is the chute's own contract — JSON, text, image or audio bytes, a stream of any
media type, or the SDK's own error bodies (`{"detail": "Invalid input parameters"}`) — so its
status, type and body pass through unchanged, streamed as the runner writes them. Around it
the gateway keeps what it keeps for every engine: the admission slot and its headers, the
client leaving cancels the call (the engine connection closes, and the SDK cancels the user's
code at its next await), and the stop of the gateway ends it.
"""

from __future__ import annotations

import asyncio
from time import perf_counter

from starlette.types import Receive, Scope, Send

from runtime.api.record import RequestRecord
from runtime.api.relay.reply import (
    RELAYED_HEADERS,
    WATCH_AFTER,
    ClientDisconnected,
    run_until_disconnect,
    send_on_lease,
)
from runtime.errors import GatewayStoppingError
from runtime.fleet.chutes import ChuteSet, Lease
from runtime.http.engine_client import Upstream, UpstreamBroken
from runtime.observability.metrics import Metrics


class CordCall:
    """One call of a cord, sent to the chute's runner and relayed verbatim."""

    def __init__(
        self,
        upstream: Upstream,
        lease: Lease,
        method: str,
        path: str,
        body: bytes | None,
        *,
        record: RequestRecord,
        chutes: ChuteSet,
        metrics: Metrics | None = None,
    ) -> None:
        self.upstream = upstream
        self.lease = lease
        self.method = method
        self.path = path
        self.body = body
        self.record = record
        self.chutes = chutes
        self.metrics = metrics
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.chutes.relays.add(task)
        try:
            if self.chutes.stopping:
                raise GatewayStoppingError()
            await run_until_disconnect(receive, self._relay(send), WATCH_AFTER)
        except ClientDisconnected:
            self.record.disconnected = True
            if self.metrics is not None:
                self.metrics.disconnected(self.record.chute, self.path)
        except asyncio.CancelledError:
            if not self.chutes.stopping:
                raise
            task.uncancel()  # the gateway stops now: end this reply cleanly
            if not self._started:
                raise GatewayStoppingError() from None
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.chutes.relays.discard(task)
            self.lease.release()

    async def _relay(self, send: Send) -> None:
        asked = perf_counter()
        response = await send_on_lease(self.upstream, self.lease, self.method, self.path,
                                       self.body)  # fmt: skip
        complete = False
        try:
            self.record.engine_wait = perf_counter() - asked
            headers = [(name.encode(), response.headers[name].encode())
                       for name in ("content-type", *RELAYED_HEADERS)
                       if name in response.headers]  # fmt: skip
            headers += self.lease.chute.admission.raw_headers()
            whole = response.complete()
            if whole is not None:
                headers.append((b"content-length", b"%d" % len(whole)))
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})  # fmt: skip
            self._started = True
            if whole is not None:
                await send({"type": "http.response.body", "body": whole})
            else:
                first = True
                try:
                    async for chunk in response.iter_chunks():
                        if first:
                            self.record.ttft, first = perf_counter() - self.record.started, False
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})  # fmt: skip
                except UpstreamBroken:
                    return  # the client sees the reply end early; the connection closes
                await send({"type": "http.response.body", "body": b""})
            complete = True
        finally:
            if complete:
                response.release()
            else:
                response.close()
