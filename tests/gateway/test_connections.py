"""Slow and idle clients are bounded: header and body timeouts, a cap on open connections,
idle keep-alive connections closed — against a real `chutebox serve` on loopback."""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Served, chutebox_serve

pytestmark = pytest.mark.slow
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}
HALF_HEADER = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Served]:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth",
            "--header-timeout", "2", "--body-timeout", "1", "--keepalive-timeout", "1",
            "--max-connections", "3000"]  # fmt: skip
    with chutebox_serve(args, tmp_path / "log") as served:
        yield served


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def address(served: Served) -> tuple[str, int]:
    host, port = served.base_url.removeprefix("http://").split(":")
    return host, int(port)


def until_closed(sockets: list[socket.socket], deadline: float) -> list[bytes]:
    """What each socket received before the server closed it; fails at the deadline."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = b""
    open_ = len(sockets)
    while open_:
        assert time.monotonic() < deadline, f"{open_} connections still open"
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            received[sock] += data
            if not data:
                selector.unregister(sock)
                open_ -= 1
    selector.close()
    return list(received.values())


@pytest.mark.serve
def test_thousands_of_half_sent_headers_neither_block_nor_stay(serve: Served) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4500:
        pytest.skip(f"the open-file limit ({hard}) is too low for 2,000 client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4500), hard))
    with httpx.Client(base_url=serve.base_url, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    baseline = open_files(serve.proc.pid)
    slow: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(address(serve))
            sock.sendall(HALF_HEADER)
            slow.append(sock)
        opened = time.monotonic()
        # Served beside them (a server they blocked would leave this unanswered).
        reply = httpx.post(serve.base_url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert reply.status_code == 200
        # Header timeout 2 s: every one is closed within it plus a second of the last opening.
        answers = until_closed(slow, opened + 2 + 1)
    finally:
        for sock in slow:
            sock.close()
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers)
    assert any(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    deadline = time.monotonic() + 2
    while open_files(serve.proc.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_files(serve.proc.pid) <= baseline


@pytest.mark.serve
def test_a_stalled_body_is_dropped_with_408(serve: Served) -> None:
    with socket.create_connection(address(serve)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{\"model\": ")  # fmt: skip
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body stalled" in answer


@pytest.mark.serve
def test_idle_keep_alive_connections_close(serve: Served) -> None:
    with socket.create_connection(address(serve)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        reply = b""
        while not reply.endswith(b'{"status":"ok"}'):  # the whole reply, however it is split
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server after --keepalive-timeout 1
    assert time.monotonic() - started < 5


@pytest.mark.serve
def test_past_the_connection_cap_a_new_client_gets_503_at_once(tmp_path: Path) -> None:
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--no-auth",
            "--max-connections", "20"]  # fmt: skip
    with chutebox_serve(args, tmp_path / "log") as served:
        held = [socket.create_connection(address(served)) for _ in range(20)]
        try:
            with socket.create_connection(address(served)) as extra:
                extra.settimeout(5)
                answer = extra.recv(65536)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b"retry-after" in answer.lower() and b"too_many_connections" in answer
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)  # the server sees the closes
        reply = httpx.post(served.base_url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert reply.status_code == 200


def chat_request(version: bytes = b"1.1", extra: bytes = b"") -> tuple[bytes, bytes]:
    body = json.dumps(CHAT).encode()
    head = (b"POST /v1/chat/completions HTTP/" + version + b"\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n")  # fmt: skip
    return head, body


def read_replies(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole replies (by their Content-Length), in the order they came."""
    data, replies = b"", []
    while len(replies) < count:
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        replies.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return replies


@pytest.mark.serve
def test_http_1_1_as_clients_use_it_pipelining_1_0_and_100_continue(serve: Served) -> None:
    # The guard (runtime/http/guard.py) adds deadlines to uvicorn's protocol: what uvicorn
    # does for these, it must still do.
    head, body = chat_request()
    with socket.create_connection(address(serve)) as sock:
        sock.settimeout(10)
        sock.sendall((head + body) * 3)  # three requests in one packet
        replies = read_replies(sock, 3)
    assert [r.split(b"\r\n")[0] for r in replies] == [b"HTTP/1.1 200 OK"] * 3
    assert len({r.lower().split(b"x-chutes-invocationid: ")[1][:32] for r in replies}) == 3

    head, body = chat_request(b"1.0")
    with socket.create_connection(address(serve)) as sock:
        sock.settimeout(10)
        sock.sendall(head + body)
        (reply,) = read_replies(sock, 1)
        assert sock.recv(65536) == b""  # HTTP/1.0 without keep-alive: closed after the reply
    assert reply.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in reply

    head, body = chat_request(extra=b"Expect: 100-continue\r\n")
    with socket.create_connection(address(serve)) as sock:
        sock.settimeout(10)
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (reply,) = read_replies(sock, 1)
    assert reply.startswith(b"HTTP/1.1 200 ")


@pytest.mark.serve
def test_a_trusted_proxys_x_forwarded_for_names_the_client_request_by_request(
    serve: Served,
) -> None:
    # uvicorn's proxy-headers layer runs only for requests that carry X-Forwarded-*
    # (runtime/http/guard.py): pipelined on one connection, each request gets its own
    # answer. The access log shows the client each request was given (loopback is trusted).
    forwarded = chat_request(extra=b"X-Forwarded-For: 203.0.113.7\r\n")
    plain = chat_request()
    with socket.create_connection(address(serve)) as sock:
        sock.settimeout(10)
        sock.sendall(b"".join([*forwarded, *plain, *forwarded]))
        replies = read_replies(sock, 3)
    assert [r.split(b"\r\n")[0] for r in replies] == [b"HTTP/1.1 200 OK"] * 3
    ids = [r.lower().split(b"x-chutes-invocationid: ")[1][:32].decode() for r in replies]
    deadline = time.monotonic() + 10
    while not all(f"id={i}" in serve.log_text() for i in ids):  # the access log is batched
        assert time.monotonic() < deadline, serve.log_text()[-2000:]
        time.sleep(0.1)
    lines = {i: next(line for line in serve.log_text().splitlines() if f"id={i}" in line)
             for i in ids}  # fmt: skip
    assert "chutebox.access: 203.0.113.7:0 " in lines[ids[0]]
    assert "chutebox.access: 127.0.0.1:" in lines[ids[1]]
    assert "chutebox.access: 203.0.113.7:0 " in lines[ids[2]]
