"""Real processes for tests: the fake engine, and `chutebox serve` itself."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from runtime.http.engine_client import Endpoint

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None, status: int = 200) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-4000:] if log else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == status:
                return
        time.sleep(0.25)
    tail = log.read_text()[-4000:] if log else ""
    raise TimeoutError(f"{url} not {status} after {timeout}s:\n{tail}")


def refusing_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def eventually(check: Callable[[], Any], timeout: float = 30, every: float = 0.25) -> Any:
    """`check()`'s first truthy value, or its last value once `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def ready_of(base_url: str) -> dict[str, Any]:
    """A gateway's `/ready`: its status code as `code`, and its body."""
    reply = httpx.get(base_url + "/ready", timeout=5)
    return {"code": reply.status_code, **reply.json()}


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM the process (as a user's Ctrl-C would), then sweep its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def fake_engine(
    name: str = "tiny", key: str = "engine-key", port: int | None = None
) -> Iterator[Endpoint]:
    port = port or free_port()
    argv = [sys.executable, "-m", "engines.fake", "--port", str(port),
            "--served-model-name", name]  # fmt: skip
    env = {**os.environ, "CHUTEBOX_ENGINE_KEY": key}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 30, proc)
        yield Endpoint(f"http://127.0.0.1:{port}", key)
    finally:
        stop_group(proc)


@contextlib.contextmanager
def vllm_server(
    model: Path, log: Path, args: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[str]:
    """vLLM's own OpenAI server on `model`, no chutebox in front, with `args` (its KV cache
    sized as chutebox sizes it on CPU); its base URL."""
    port = free_port()
    server = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    argv = [*server, "--model", str(model), "--port", str(port)]
    argv += ["--kv-cache-memory-bytes", "268435456", *args]
    environ = {**os.environ, **(env or {})}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=environ, start_new_session=True
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 400, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


class Served:
    """A running `chutebox serve`: its base URL, its process and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text()


@contextlib.contextmanager
def chutebox_serve(
    args: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
    ready_timeout: float = 300, command: Sequence[str] | None = None, port: int | None = None,
    ready_path: str = "/ready", cwd: Path = ROOT,
) -> Iterator[Served]:  # fmt: skip
    port = port or free_port()
    argv = [*(command or [sys.executable, "-m", "runtime.cli", "serve"]), *args]
    if port and command is None:
        argv += ["--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + ready_path, ready_timeout, proc, log)
        yield Served(proc, base, log)
    finally:
        stop_group(proc)


def children(pid: int) -> dict[int, list[int]]:
    """Every process's children, read from /proc: {parent: [children]}."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process started under `pid`, at any depth."""
    tree, found, todo = children(pid), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def engine_pids(served: Served) -> list[int]:
    """The engines a running `chutebox serve` started: its direct children."""
    return children(served.proc.pid).get(served.proc.pid, [])


def engine_socket(served: Served, chute: str) -> str:
    """The Unix socket of the chute's engine (its latest start), from the gateway's log."""
    found = re.findall(rf"\[{re.escape(chute)}\] starting engine: .* --uds (\S+)",
                       served.log_text())  # fmt: skip
    assert found, f"no start line of {chute}'s engine on a socket in the log"
    return str(found[-1])


def vllm_pid(served: Served) -> int:
    """The vLLM API server the gateway started (the engine's process-group leader)."""
    found = [pid for pid in engine_pids(served)
             if b"vllm" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
    assert len(found) == 1, f"expected one vLLM server process: {found}"
    return found[0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_replicas_ready(base_url: str, chute: str, timeout: float = 300) -> list[dict[str, object]]:
    """/ready turns 200 once a chute can serve (one replica); wait for all of its replicas."""
    deadline = time.monotonic() + timeout
    while True:
        replicas = httpx.get(base_url + "/ready").json()["chutes"][chute]["replicas"]
        if all(r["state"] == "ready" for r in replicas) or time.monotonic() > deadline:
            return list(replicas)
        time.sleep(0.5)
