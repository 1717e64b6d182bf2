"""The supervisor against real fake-engine processes: ready, restart, give up, stop clean."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from engines.fake import FakeBackend
from runtime.config.settings import ChuteSettings
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState
from runtime.http.engine_client import Upstream
from runtime.planner.host import Host
from runtime.supervision.hub import HubAccess
from runtime.supervision.supervisor import Supervisor, SupervisorConfig
from tests.support.servers import group_alive


def make(
    tmp_path: Path, engine_args: str = "", probe_interval: float = 0.2
) -> tuple[Chute, Supervisor]:
    settings = ChuteSettings(model=str(tmp_path), name="tiny", engine="fake",
                             engine_args=engine_args, python=sys.executable)  # fmt: skip
    chute = Chute(settings=settings, backend=FakeBackend(), admission=Admission(1))
    config = SupervisorConfig(
        cache_dir=tmp_path / "cache",
        hub=HubAccess(endpoint=None, cache_dir=tmp_path / "hub", token=None),
        probe_interval=probe_interval, max_failures=2, backoff_max=0.2,
    )  # fmt: skip
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path.cwd())}
    return chute, Supervisor(ChuteSet([chute]), Host((0,), env), config)


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def run(scenario: Callable[[Upstream], Awaitable[None]]) -> None:
    async def main() -> None:
        upstream = Upstream.create()
        try:
            await scenario(upstream)
        finally:
            await upstream.close()

    asyncio.run(main())


def test_engine_becomes_ready_and_is_restarted_after_a_crash(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path)

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.READY)
        assert chute.card["root"] == str(tmp_path) and chute.card["max_model_len"] == 512
        first = chute.replicas[0].endpoint
        engine = supervisor._engines["tiny/0"]
        assert engine.proc is not None
        os.killpg(engine.proc.pid, signal.SIGKILL)
        await until(lambda: chute.state is not ChuteState.READY)
        await until(lambda: chute.state is ChuteState.READY)
        assert chute.replicas[0].endpoint != first  # a new port and a new key
        await supervisor.stop()
        assert chute.state is ChuteState.STOPPED
        assert not group_alive(supervisor._engines["tiny/0"].proc.pid)  # type: ignore[union-attr]

    run(scenario)


def test_an_engine_that_cannot_start_fails_with_its_last_lines(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path, engine_args="--no-such-flag")

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.FAILED)
        assert "gave up after 2 failed starts" in chute.detail
        assert "unrecognized arguments: --no-such-flag" in chute.detail
        assert chute.replicas[0].state is ChuteState.FAILED
        await supervisor.stop()

    run(scenario)


def test_preparation_failure_marks_the_chute_failed(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path)
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf")
    chute.settings = chute.settings.model_copy(update={"model": str(bad)})

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.FAILED, timeout=120)
        assert "preparing the model failed" in chute.detail
        assert not list((tmp_path / "cache" / "gguf").glob("*.partial"))
        await supervisor.stop()

    run(scenario)


def test_an_engine_that_ignores_its_key_is_not_served(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path, engine_args="--no-auth")

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.FAILED)
        assert "answers requests without its per-boot key" in chute.detail
        await supervisor.stop()

    run(scenario)


def test_a_replica_found_unreachable_is_probed_at_once_and_served_again(tmp_path: Path) -> None:
    # Routine probes every minute: only the suspicion can explain a quick return.
    chute, supervisor = make(tmp_path, probe_interval=60)

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.READY)
        replica = chute.replicas[0]
        replica.mark_unreachable("refused a connection (test)")
        assert chute.state is ChuteState.UNREACHABLE
        await until(lambda: chute.state is ChuteState.READY, timeout=10)
        assert replica.restarts == 0 and not replica.detail  # the engine answered: no restart
        await supervisor.stop()

    run(scenario)


def test_an_exited_engine_leaves_service_at_once(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path, probe_interval=60)

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.READY)
        engine = supervisor._engines["tiny/0"]
        assert engine.proc is not None
        os.kill(engine.proc.pid, signal.SIGKILL)
        # Seen within a poll of the exit, not after the next minute's probe.
        await until(lambda: chute.replicas[0].endpoint is None, timeout=2)
        assert chute.state is not ChuteState.READY
        await supervisor.stop()

    run(scenario)


def test_keys_are_not_in_arguments_and_private_files_are_the_users_alone(tmp_path: Path) -> None:
    chute, supervisor = make(tmp_path)

    async def scenario(upstream: Upstream) -> None:
        await supervisor.start(upstream)
        await until(lambda: chute.state is ChuteState.READY)
        endpoint = chute.replicas[0].endpoint
        assert endpoint is not None and endpoint.address.startswith("unix:")
        private = supervisor.private_dir
        assert private is not None and (private.stat().st_mode & 0o777) == 0o700
        pid = supervisor._engines["tiny/0"].proc.pid  # type: ignore[union-attr]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert endpoint.api_key.encode() not in b" ".join(argv)
        assert b"--api-key" not in argv
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"CHUTEBOX_ENGINE_KEY={endpoint.api_key}".encode() in environ
        await supervisor.stop()
        assert not private.exists()

    run(scenario)
