"""Child processes: start in their own process group, forward their output, stop them whole.

Engines spawn workers of their own (vLLM's engine core, tensor-parallel ranks); each engine
starts a new session so one signal to its process group reaches every descendant.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence

log = logging.getLogger("chutebox.engine")


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if chutebox dies, even by SIGKILL (Linux).

    SIGTERM rather than SIGKILL so the engine can stop its own workers on the way out.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ChildProcess:
    """A child in its own process group whose output is logged line by line with a prefix."""

    def __init__(self, prefix: str, tail_lines: int = 60) -> None:
        self.prefix = prefix
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        self._pump = asyncio.create_task(self._forward(self.proc.stdout))

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def exited(self, poll: float = 0.05) -> int:
        """The exit code, as soon as the process has exited.

        Not `proc.wait()`: on Python 3.11 that returns only once every pipe to the child is
        closed, and an engine's own workers (vLLM's engine core) keep its output pipe open
        after it died, for seconds. The exit code itself is known at once.
        """
        assert self.proc is not None
        while self.proc.returncode is None:
            await asyncio.sleep(poll)
        return self.proc.returncode

    async def wait(self) -> int:
        """The exit code once the process exited, after its last lines (often the reason it
        exited) reached the log, or two seconds, whichever comes first."""
        code = await self.exited()
        if self._pump is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), 2)
        return code

    def last_lines(self, count: int = 25) -> str:
        return "\n".join(list(self.tail)[-count:])

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        buffer = b""
        while chunk := await stream.read(65536):
            # Progress bars redraw with \r; treat it as a line end so progress shows up live.
            buffer += chunk.replace(b"\r", b"\n")
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                self._emit(raw)
        if buffer:
            self._emit(buffer)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            self.tail.append(line)
            log.info("[%s] %s", self.prefix, line)

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout` seconds."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited(), timeout)
        # Workers may outlive their parent: always sweep the group.
        _signal_group(self.proc.pid, signal.SIGKILL)
        await self.exited()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
