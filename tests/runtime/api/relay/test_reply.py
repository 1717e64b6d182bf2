"""Watching for the client leaving while a relay runs: cancelled work, and no watcher for
work that ends first."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from runtime.api.record import RequestRecord
from runtime.api.relay.reply import (
    KEEPALIVE,
    ClientDisconnected,
    EngineCall,
    StreamRelay,
    run_until_disconnect,
)
from runtime.config.settings import ChuteSettings
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Lease, Replica
from runtime.fleet.registry import load_backend
from runtime.http.engine_client import Endpoint, Upstream
from runtime.observability.usage import Usage
from tests.support.uvicorn_thread import serve_in_thread


class Client:
    """An ASGI receive: the body first, then nothing until `leave()`, then a disconnect."""

    def __init__(self) -> None:
        self.calls = 0
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        self.calls += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.gone.set()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        raise AssertionError(f"nothing is sent to a client that left: {message}")


def test_work_that_ends_before_the_delay_never_starts_a_watcher() -> None:
    async def scenario() -> tuple[str, int]:
        client = Client()
        result = await run_until_disconnect(client.receive, asyncio.sleep(0.01, "done"), 5.0)
        await asyncio.sleep(0)
        return result, client.calls

    assert asyncio.run(scenario()) == ("done", 0)


@pytest.mark.parametrize("after", [0.0, 0.05])
def test_a_client_leaving_cancels_the_work(after: float) -> None:
    async def scenario() -> list[str]:
        client = Client()
        seen: list[str] = []

        async def work() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                seen.append("work cleaned up")

        # Gone before the work started: seen when the watcher starts, `after` seconds on.
        client.leave()
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(run_until_disconnect(client.receive, work(), after), 10)
        seen.append(f"receive called {client.calls}x")
        return seen

    assert asyncio.run(scenario()) == ["work cleaned up", "receive called 1x"]


def test_a_cancel_from_outside_is_not_taken_for_a_disconnect() -> None:
    async def scenario() -> None:
        client = Client()
        task = asyncio.ensure_future(run_until_disconnect(client.receive, asyncio.sleep(30), 0.01))
        await asyncio.sleep(0.05)  # the watcher is waiting by now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


class SilentUpstream:
    """An engine that never answers: the relay waits until it is cancelled."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def send(self, *args: object) -> object:
        try:
            await asyncio.sleep(30)
        finally:
            self.seen.append("engine call cleaned up")
        raise AssertionError("not reached")


def test_a_client_leaving_ends_the_engine_call_and_gives_its_slot_back() -> None:
    async def scenario() -> tuple[list[str], EngineCall, Replica]:
        client = Client()
        upstream = SilentUpstream()
        replica = Replica(0, state=ChuteState.READY, endpoint=Endpoint("http://engine", "k"))
        settings = ChuteSettings(model="m", name="m")
        chute = Chute(settings=settings, backend=load_backend("vllm"), admission=Admission(4),
                      replicas=[replica], phase=ChuteState.STARTING)  # fmt: skip
        record = RequestRecord(None, None, "id", 0.0, chute="m")
        lease = Lease(chute)

        def done() -> None:  # after the call released its lease
            upstream.seen.append(f"done, {replica.outstanding} outstanding")

        call = EngineCall(upstream, lease, "/v1/chat/completions", b"{}",  # type: ignore[arg-type]
                          on_done=done, shutdown=ChuteSet([chute]), record=record)  # fmt: skip
        task = asyncio.ensure_future(call({"type": "http"}, client.receive, client.send))
        client.leave()
        await task  # a client gone is the end of the request, not an error
        return upstream.seen, call, replica

    seen, call, replica = asyncio.run(scenario())
    assert seen == ["engine call cleaned up", "done, 0 outstanding"]
    assert call.record.disconnected and replica.outstanding == 0


REPLY = b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}'


async def engine(scope: Any, receive: Any, send: Any) -> None:
    """An engine answering every request with REPLY, whole."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": REPLY})


def test_a_whole_reply_is_relayed_with_its_length_and_usage() -> None:
    async def scenario(url: str) -> list[MutableMapping[str, Any]]:
        upstream = Upstream.create()
        replica = Replica(0, state=ChuteState.READY, endpoint=Endpoint(url, "k"))
        chute = Chute(settings=ChuteSettings(model="m", name="m"), backend=load_backend("vllm"),
                      admission=Admission(4), replicas=[replica],
                      phase=ChuteState.STARTING)  # fmt: skip
        record = RequestRecord(None, None, "id", 0.0, chute="m")
        call = EngineCall(upstream, Lease(chute), "/v1/chat/completions", b"{}",
                          shutdown=ChuteSet([chute]), record=record)  # fmt: skip
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await call({"type": "http"}, Client().receive, send)
        await upstream.close()
        assert record.usage == Usage(3, 2)
        return sent

    with serve_in_thread(engine) as url:
        sent = asyncio.run(scenario(url))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == REPLY
    assert (b"content-length", b"%d" % len(REPLY)) in sent[0]["headers"]


class SlowEngine:
    """An engine reply whose events come with silences between them (`gaps`, seconds)."""

    def __init__(self, gaps: list[float]) -> None:
        self.gaps = gaps

    async def iter_chunks(self) -> Any:
        for i, gap in enumerate(self.gaps):
            await asyncio.sleep(gap)
            yield b"data: %d\n\n" % i


def test_silences_carry_keepalive_comments_and_none_follow_the_end() -> None:
    # The silences are watched by a timer: a comment in each long enough, none in short ones,
    # nothing sent and nothing left running once the stream has ended.
    async def scenario() -> tuple[list[bytes], list[bytes], int]:
        sent: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["body"])

        relay = StreamRelay(SlowEngine([0.0, 0.35, 0.01]).iter_chunks(), send, None, 0.0, 0.1)
        before = len(asyncio.all_tasks())
        assert await relay.run()
        at_end = list(sent)
        await asyncio.sleep(0.3)
        return at_end, sent, len(asyncio.all_tasks()) - before

    at_end, sent, tasks_left = asyncio.run(scenario())
    events = [b for b in at_end if b.startswith(b"data:")]
    assert events == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    # The 0.35 s silence holds two or three 0.1 s ones (timer slack); the 0.01 s one none.
    pings = at_end[1 : at_end.index(b"data: 1\n\n")]
    assert pings and set(pings) == {KEEPALIVE}
    assert at_end[-2:] == [b"data: 2\n\n", b""]  # the end follows the last event directly
    assert sent == at_end and tasks_left == 0
