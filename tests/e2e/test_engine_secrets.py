"""No engine key in any process's arguments, and engines no other local user can reach.

Against the session's real gateway: vLLM (a Unix socket, its key in VLLM_API_KEY) and the fake
engine standing in for chutebox's own workers (CHUTEBOX_ENGINE_KEY). Every process chutebox
started, at any depth (vLLM's engine core too), is read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import Served, descendants, engine_pids

pytestmark = [pytest.mark.engine, pytest.mark.slow]
KEY_VARIABLES = (b"VLLM_API_KEY", b"CHUTEBOX_ENGINE_KEY")


def read(pid: int, name: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):  # ended while we looked
        return []


def engine_keys(pids: list[int]) -> set[bytes]:
    keys = set()
    for pid in pids:
        for entry in read(pid, "environ"):
            name, _, value = entry.partition(b"=")
            if name in KEY_VARIABLES and value:
                keys.add(value)
    return keys


def test_no_key_appears_in_any_started_process_arguments(vllm_gateway: Served) -> None:
    pids = descendants(vllm_gateway.proc.pid)
    keys = engine_keys(pids)
    assert len(keys) >= 2, "expected the vLLM and the fake engine's keys in their environment"
    for pid in [vllm_gateway.proc.pid, *pids]:
        argv = read(pid, "cmdline")
        command = b" ".join(argv)
        if pid != vllm_gateway.proc.pid:  # the gateway's own keys are the user's to place
            assert b"--api-key" not in argv, command
        for key in keys:
            assert key not in command, f"an engine key is in the arguments of {command!r}"
    log = vllm_gateway.log_text().encode()
    assert not any(key in log for key in keys)


def engine_sockets(served: Served) -> list[str]:
    return re.findall(r"starting engine: .* --uds (\S+)", served.log_text())


def test_engines_listen_on_sockets_in_a_folder_only_this_user_opens(vllm_gateway: Served) -> None:
    sockets = engine_sockets(vllm_gateway)
    assert sockets, "no engine runs on a Unix socket"
    for path in map(Path, sockets):
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        assert path.parent.stat().st_uid == os.getuid()
    # No engine's HTTP server listens on a TCP port. (vLLM's CPU workers do listen on loopback
    # ports of their own, for torch.distributed between ranks: README says so.)
    for pid in engine_pids(vllm_gateway):
        assert tcp_listeners(pid) == [], f"engine {pid} listens on TCP"


def tcp_listeners(pid: int) -> list[str]:
    """The TCP sockets process `pid` listens on, from /proc (no `ss` needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    listening = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state 0A: LISTEN
                listening.append(fields[1])
    return listening


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another user needs root")
def test_another_local_user_cannot_even_connect(vllm_gateway: Served) -> None:
    path = engine_sockets(vllm_gateway)[-1]
    probe = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, path], capture_output=True)
    assert result.returncode == 13, result.stderr
    # The same connect as chutebox's own user works: the socket is live.
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
