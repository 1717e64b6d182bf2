"""A bounded load test on loopback: thousands of requests far above the concurrency limit.

Only 200s and 429s may come back; afterwards every slot is free, and a second round of the same
load leaves the gateway with no more open files and no more memory than the first did.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.support.servers import chutebox_serve

pytestmark = pytest.mark.slow

LIMIT, CLIENTS, PER_ROUND = 16, 64, 2000
BODY = {"model": "tiny", "fake_delay": 0.002, "messages": [{"role": "user", "content": "a b"}]}
STREAM = {**BODY, "stream": True}


async def one_round(base_url: str) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    todo = iter(range(PER_ROUND))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in todo:
            body = STREAM if i % 4 == 0 else BODY
            async with session.post(base_url + "/v1/chat/completions", json=body) as reply:
                await reply.read()
                statuses[reply.status] += 1

    headers = {"Authorization": "Bearer k"}
    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return statuses


def usage(pid: int) -> tuple[int, int]:
    """(open file descriptors, resident memory in kB) of a process, once the round's client
    connections are closed on the server's side too."""
    fds, previous = -1, -2
    for _ in range(50):
        if fds == previous:
            break
        time.sleep(0.1)
        previous, fds = fds, len(list(Path(f"/proc/{pid}/fd").iterdir()))
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return fds, rss


@pytest.mark.serve
def test_load_far_above_the_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--api-key", "k",
            "--concurrency", str(LIMIT), "--no-access-log"]  # fmt: skip
    with chutebox_serve(args, tmp_path / "log") as served:
        first = asyncio.run(one_round(served.base_url))
        after_first = usage(served.proc.pid)
        second = asyncio.run(one_round(served.base_url))
        after_second = usage(served.proc.pid)
        metrics = httpx.get(served.base_url + "/metrics").text
        ready = httpx.get(served.base_url + "/ready").json()
    for statuses in (first, second):
        assert set(statuses) == {200, 429}, statuses
        assert sum(statuses.values()) == PER_ROUND
    assert 'chutebox_requests_in_flight{chute="tiny"} 0.0' in metrics
    assert 'chutebox_requests_queued{chute="tiny"} 0.0' in metrics
    assert ready["chutes"]["tiny"]["replicas"][0]["outstanding"] == 0
    fds, rss = after_second
    assert fds <= after_first[0] + 4, (after_first, after_second)
    assert rss <= after_first[1] + 16 * 1024, (after_first, after_second)
