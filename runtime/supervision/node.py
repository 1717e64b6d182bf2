"""A node of rank 1 or more: its share of every chute that spans several nodes.

`chutebox serve --node-rank N --leader-address A` with the leader's config. No gateway runs
here (clients call the leader's); for each chute with `nodes` > 1 this node prepares the
model, plans its GPUs as the leader does, and keeps the engine's non-leader ranks running with
the engine's own multi-node flags (vLLM `--headless`, SGLang `--node-rank`). Two things end a
life and start the next, after a short backoff: the engine exiting, and the leader's engine
going away (its rendezvous port, open before, closes): a rank left behind by a restarted
leader waits forever otherwise (measured on vLLM 0.32), and the leader's new engine waits
for a fresh one. Under Ray (`--distributed-executor-backend ray` in engine_args) Ray places
the ranks: this node has nothing to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import sys
from pathlib import Path

from runtime.errors import ConfigError
from runtime.fleet.backend import LaunchRequest, split_args
from runtime.fleet.chutes import Chute, ChuteSet
from runtime.planner.host import Host
from runtime.planner.plan import ReplicaPlan
from runtime.supervision.launching import (
    engine_device,
    engine_environment,
    private_folder,
    remove_private_files,
    write_private_files,
)
from runtime.supervision.layout import plan_chutes
from runtime.supervision.process import ChildProcess, free_port
from runtime.supervision.supervisor import SupervisorConfig, prepare_model

log = logging.getLogger("chutebox.node")
# Seconds between two looks at the leader's port; a leader engine restarts in far more.
LEADER_POLL = 1.0
# The headless vLLM rank ignores SIGTERM while it waits on its leader: a short grace.
GRACE = 5.0


class NodeShare:
    """Keeps this node's ranks of the chutes that span nodes running."""

    def __init__(self, chutes: ChuteSet, host: Host, config: SupervisorConfig, rank: int) -> None:
        self.chutes = chutes
        self.host = host
        self.config = config
        self.rank = rank
        self.private_dir: Path | None = None

    def spanning(self) -> list[Chute]:
        return [c for c in self.chutes if c.settings.nodes > self.rank]

    async def run(self) -> None:
        share = self.spanning()
        self.private_dir = private_folder()
        try:
            prepared = (prepare_model(c, self.host, self.config) for c in share)
            folders = await asyncio.gather(*prepared)
            layout = plan_chutes(share, dict(zip([c.name for c in share], folders, strict=True)),
                                 [self.host.node])  # fmt: skip
            lives = [self._keep(c, layout.for_chute(c.name).replicas[0], folder)
                     for c, folder in zip(share, folders, strict=True)]  # fmt: skip
            await asyncio.gather(*lives)
        finally:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    def _request(self, chute: Chute, plan: ReplicaPlan, model_path: Path) -> LaunchRequest:
        assert self.private_dir is not None
        return LaunchRequest(
            model_path=str(model_path),
            served_name=chute.name,
            # Ranks past 0 serve no API; SGLang's still wants a key file and a port.
            api_key="node-" + secrets.token_urlsafe(16),
            python=chute.settings.python or sys.executable,
            device=engine_device(chute, self.host),
            port=free_port(),
            private_dir=str(self.private_dir),
            engine_args=tuple(split_args(chute.settings.engine_args)),
            tensor_parallel=plan.tp,
            pipeline_parallel=plan.pp,
            cpu_ids=self.host.cpu_ids,
            custom_all_reduce=chute.settings.custom_all_reduce,
            cache_dir=str(self.config.cache_dir),
            nodes=chute.settings.nodes,
            node_rank=self.rank,
            master_addr=self.config.leader_address,
            master_port=chute.settings.dist_port,
        )

    async def _keep(self, chute: Chute, plan: ReplicaPlan, model_path: Path) -> None:
        label = f"{chute.name}@node{self.rank}"
        failures = 0
        while True:
            request = self._request(chute, plan, model_path)
            spec = chute.backend.launch(request)
            if not spec.argv:
                log.info("[%s] Ray places this engine's ranks: join this node to the leader's "
                         "Ray cluster (ray start --address=%s:6379)", label,
                         self.config.leader_address)  # fmt: skip
                return
            engine = ChildProcess(label)
            log.info("[%s] starting rank(s) of node %d: %s", label, self.rank, " ".join(spec.argv))
            try:
                write_private_files(spec)
                env = engine_environment(self.host, chute, plan, self.rank, spec.env)
                await engine.start(spec.argv, env)
                reason, joined = await self._watch(engine, chute)
            finally:
                await engine.stop(GRACE)
                remove_private_files(spec, "")
            failures = 0 if joined else failures + 1
            delay = min(self.config.backoff_max, 2.0**failures)
            log.warning("[%s] %s; starting again in %.0fs", label, reason, delay)
            await asyncio.sleep(delay)

    async def _watch(self, engine: ChildProcess, chute: Chute) -> tuple[str, bool]:
        """Why this life ended, and whether the leader had been seen meanwhile."""
        address, port = self.config.leader_address, chute.settings.dist_port
        seen = False
        while True:
            if engine.returncode is not None:
                await engine.wait()
                return (f"engine exited with code {engine.returncode}:\n"
                        f"{engine.last_lines(10)}", seen)  # fmt: skip
            if await listening(address, port):
                seen = True
            elif seen:
                return (f"the leader's engine went away ({address}:{port} closed); this node's "
                        "ranks start again to join its next one", True)  # fmt: skip
            await asyncio.sleep(LEADER_POLL)


async def listening(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at `address:port`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def run_node(share: NodeShare) -> int:
    """Run this node's share until SIGTERM or Ctrl-C; engines are stopped on the way out."""
    if not share.spanning():
        raise ConfigError(
            f"--node-rank {share.rank}: no chute of this config spans {share.rank + 1} or "
            "more nodes (`nodes`), so nothing runs here"
        )

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        log.info("node rank %d: running its share of %s; the gateway runs on the leader (%s)",
                 share.rank, ", ".join(c.name for c in share.spanning()) or "nothing",
                 share.config.leader_address)  # fmt: skip
        with contextlib.suppress(asyncio.CancelledError):
            await share.run()

    asyncio.run(main())
    return 0
