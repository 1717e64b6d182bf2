"""A non-leader node's watch over its ranks: a real child process, a real listening socket
standing for the leader's rendezvous port."""

import asyncio
import sys
from pathlib import Path

from runtime.config.settings import ChuteSettings
from runtime.fleet.chutes import ChuteSet
from runtime.planner.host import Host
from runtime.serve import build_chute
from runtime.supervision.hub import HubAccess
from runtime.supervision.node import NodeShare, listening
from runtime.supervision.process import ChildProcess
from runtime.supervision.supervisor import SupervisorConfig


def share_for(tmp_path: Path, port: int) -> tuple[NodeShare, ChuteSet]:
    settings = ChuteSettings(model=str(tmp_path), engine="fake", dist_port=port)
    chutes = ChuteSet([build_chute(settings, check_engine=False)])
    config = SupervisorConfig(cache_dir=tmp_path, hub=HubAccess(None, tmp_path, None))
    return NodeShare(chutes, Host(cpu_ids=(0,)), config, rank=1), chutes


async def leader() -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_the_ranks_start_again_when_the_leaders_engine_goes_away(tmp_path: Path) -> None:
    async def run() -> tuple[str, bool]:
        server, port = await leader()
        share, chutes = share_for(tmp_path, port)
        engine = ChildProcess("ranks")
        await engine.start([sys.executable, "-c", "import time; time.sleep(60)"], {})
        try:
            watch = asyncio.create_task(share._watch(engine, next(iter(chutes))))
            await asyncio.sleep(1.5)  # seen listening at least once
            assert not watch.done()
            server.close()
            await server.wait_closed()
            return await asyncio.wait_for(watch, 10)
        finally:
            await engine.stop(1)

    reason, joined = asyncio.run(run())
    assert "the leader's engine went away" in reason and joined


def test_a_rank_that_exits_is_reported_with_its_last_lines(tmp_path: Path) -> None:
    async def run() -> tuple[str, bool]:
        share, chutes = share_for(tmp_path, 1)  # nothing listens: the leader is not up yet
        engine = ChildProcess("ranks")
        code = "print('no leader at the rendezvous'); raise SystemExit(3)"
        await engine.start([sys.executable, "-c", code], {})
        return await asyncio.wait_for(share._watch(engine, next(iter(chutes))), 10)

    reason, joined = asyncio.run(run())
    assert "exited with code 3" in reason and "no leader at the rendezvous" in reason
    assert not joined


def test_listening_tells_an_open_port_from_a_closed_one() -> None:
    async def run() -> tuple[bool, bool]:
        server, port = await leader()
        open_ = await listening("127.0.0.1", port)
        server.close()
        await server.wait_closed()
        return open_, await listening("127.0.0.1", port)

    assert asyncio.run(run()) == (True, False)
