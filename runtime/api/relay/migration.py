"""Moving a chat or completions request off an engine that died under it.

When the connection to the engine closes after the request reached it — the engine was
killed, crashed, or restarted — the request goes to another ready replica, or waits
(`migration_wait`) for one (its own, restarted), up to `migration_limit` times per request.
A whole reply, or a stream whose client has no event yet, is asked again as it was. A stream
the client is reading goes on where it was (`runtime.protocol.continuation`): the client
sees one stream, no text repeated or lost, and one usage counting the whole.

Only a closed connection moves a request: an engine that answers an error, or is silent past
the read timeout, is alive, and its answer (or 502) stands.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from runtime.api.operation import Operation
from runtime.api.record import RequestRecord
from runtime.fleet.backend import CHAT, COMPLETIONS
from runtime.fleet.chutes import Chute, Lease
from runtime.http.engine_client import EngineClosed, UpstreamBroken, UpstreamResponse
from runtime.observability.metrics import Metrics
from runtime.observability.usage import Usage
from runtime.protocol import fastjson
from runtime.protocol.continuation import (
    CONTINUE_PATH,
    TOKEN_IDS,
    Transcript,
    continuable,
    strip_ids,
    wants_usage,
)

log = logging.getLogger("chutebox.app")
Resend = Callable[[str, bytes], Awaitable[UpstreamResponse]]


@dataclass(frozen=True)
class MigrationPlan:
    """How one request may move: at most `limit` times, waiting up to `wait` seconds for a
    ready replica each time. `resume`: a stream continued mid-way; `strip`: the token ids
    that makes possible were asked for by the gateway, not the client."""

    limit: int
    wait: float
    chat: bool
    body: dict[str, Any]
    resume: bool
    strip: bool


def plan_migration(chute: Chute, op: Operation, body: dict[str, Any]) -> MigrationPlan | None:
    """The request's plan (None: it never moves), asking `body` for token ids where its
    stream can be continued."""
    limit = chute.settings.migration_limit
    if limit == 0 or op.capability not in (CHAT, COMPLETIONS):
        return None
    if not body.get("stream"):  # asked again whole: the same plan for every such request
        return _whole_reply(limit, chute.settings.migration_wait, op.capability == CHAT)
    resume = continuable(body) and _returns_ids(chute, op.path)
    strip = resume and not body.get(TOKEN_IDS)
    if resume:
        body[TOKEN_IDS] = True
    chat = op.capability == CHAT
    return MigrationPlan(limit, chute.settings.migration_wait, chat, body, resume, strip)


@functools.cache
def _whole_reply(limit: int, wait: float, chat: bool) -> MigrationPlan:
    return MigrationPlan(limit, wait, chat, {}, resume=False, strip=False)


def _returns_ids(chute: Chute, path: str) -> bool:
    """The engine returns token ids on this route and takes them as a completions prompt
    (what it publishes says so; an engine that published nothing is not asked)."""
    if chute.fields is None:
        return False
    for route in (path, CONTINUE_PATH):
        known = chute.fields.known(route)
        if known is None or TOKEN_IDS not in known:
            return False
    return True


class Migration:
    """One request's moves: how many so far, and the stream that makes them."""

    def __init__(
        self,
        plan: MigrationPlan,
        lease: Lease,
        record: RequestRecord,
        path: str,
        metrics: Metrics | None,
    ) -> None:
        self.plan = plan
        self.lease = lease
        self.record = record
        self.path = path
        self.metrics = metrics
        self.moves = 0
        # What the client received, token ids kept (when resumable).
        self.sent = bytearray()

    def may_move(self) -> bool:
        return self.moves < self.plan.limit

    async def move(self, reason: str) -> None:
        """Leave the replica that broke off the request for a ready one (waiting for one)."""
        self.moves += 1
        self.record.migrations = self.moves
        chute, replica = self.lease.chute.name, self.lease.replica.index
        log.warning(
            "[%s/%d] %s; request %s moves to another replica (%d of %d)",
            chute,
            replica,
            reason,
            self.record.invocation_id,
            self.moves,
            self.plan.limit,
        )
        if self.metrics is not None:
            self.metrics.migrated(chute)
        await self.lease.relocate(reason, self.plan.wait)

    async def events(
        self, first: UpstreamResponse, again: bytes, resend: Resend
    ) -> AsyncIterator[bytes]:
        """The stream's events for the client, whole events only, from `first` and, when its
        engine dies, from the replicas it moves to, asked by `resend(path, body)`. `again`:
        the request as first sent."""
        plan = self.plan
        sent = self.sent
        transcript: Transcript | None = None
        current, forwarded = first, False
        try:
            while True:
                pending = b""
                try:
                    async for chunk in current.iter_chunks():
                        data = pending + chunk if pending else chunk
                        cut = data.rfind(b"\n\n") + 2
                        if cut < 2:  # no event complete yet
                            pending = data
                            continue
                        ready, pending = data[:cut], data[cut:]
                        if transcript is not None:
                            ready = transcript.translate(ready, wants_usage(plan.body))
                        if plan.resume:
                            sent += ready
                        forwarded = True
                        yield strip_ids(ready) if plan.strip else ready
                    if pending:
                        yield pending
                    return
                except EngineClosed as exc:
                    if not forwarded:  # the client has nothing yet: ask again as it was
                        current = await self._again(current, first, exc, resend, self.path, again)
                        continue
                    transcript = Transcript.read(bytes(sent), plan.chat) if plan.resume else None
                    if transcript is None or not transcript.can_continue():
                        raise
                    body = None if transcript.finished else transcript.continuation(plan.body)
                    if body is None:  # nothing is left to generate
                        end = transcript.ending(wants_usage(plan.body))
                        yield strip_ids(end) if plan.strip else end
                        return
                    current = await self._again(
                        current, first, exc, resend, CONTINUE_PATH, fastjson.dumps(body)
                    )
        finally:
            if current is not first:
                current.close()

    def relayed(self) -> Usage | None:
        """The usage of a stream its client left: its prompt, and the tokens relayed (None
        when the engine was not asked for token ids)."""
        if not self.sent:
            return None
        transcript = Transcript.read(bytes(self.sent), self.plan.chat)
        if transcript.prompt_ids is None:
            return None
        return Usage(len(transcript.prompt_ids), len(transcript.generated))

    async def _again(
        self,
        current: UpstreamResponse,
        first: UpstreamResponse,
        error: EngineClosed,
        resend: Resend,
        path: str,
        body: bytes,
    ) -> UpstreamResponse:
        if not self.may_move():
            raise error
        if current is not first:
            current.close()
        await self.move(f"the engine broke off the stream: {error}")
        response = await resend(path, body)
        if response.status >= 400:
            reply = await response.read()
            response.release()
            raise UpstreamBroken(
                f"the replica it moved to refused it: HTTP {response.status} {reply[:200]!r}"
            )
        return response
