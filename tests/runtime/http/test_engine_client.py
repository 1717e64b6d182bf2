"""The engine client against real small HTTP servers on loopback: reuse, retry, streaming,
back-pressure, broken replies, timeouts, and that a dropped reply closes its connection."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from runtime.errors import EngineDownError, InvalidRequestError, UpstreamError
from runtime.http.engine_client import (
    HIGH_WATER,
    Endpoint,
    Upstream,
    UpstreamBroken,
    UpstreamTimeouts,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw HTTP/1.1 server whose replies the test writes byte by byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed = asyncio.Event()
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)  # fmt: skip
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body

    async def __aenter__(self) -> Endpoint:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Endpoint(f"http://127.0.0.1:{port}", "engine-key")

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def reply(body: bytes, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return head + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_requests_reuse_one_keep_alive_connection_and_carry_the_key() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (body := await server.read_request(reader)) is not None:
                writer.write(reply(b'{"echo": ' + (body or b"null") + b"}"))

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            for i in range(3):
                response = await upstream.send(endpoint, "POST", "/v1/x", str(i).encode())
                assert response.status == 200 and response.content_type == "application/json"
                assert await response.json() == {"echo": i}
                response.release()
            await upstream.close()
        assert server.connections == 1
        assert b"Authorization: Bearer engine-key\r\n" in server.requests[0]
        assert b"Content-Length: 1\r\n" in server.requests[0]

    run(scenario)


def test_a_pooled_connection_the_engine_closed_is_retried_on_a_new_one() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(reply(b"{}"))
            await writer.drain()
            if server.connections == 1:
                await server.read_request(reader)  # the second request: closed unanswered
                return
            while await server.read_request(reader) is not None:
                writer.write(reply(b"{}"))

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            (await upstream.send(endpoint, "GET", "/a")).release()
            second = await upstream.send(endpoint, "GET", "/b")
            assert second.status == 200
            second.release()
            await upstream.close()
        assert server.connections == 2

    run(scenario)


def test_streamed_bodies_arrive_as_they_are_sent_and_end_cleanly() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            writer.write(b"7\r\ndata: 1\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
            await writer.drain()
            await reader.read()

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            response = await upstream.send(endpoint, "POST", "/s", b"{}")
            chunks = response.iter_chunks()
            assert await chunks.__anext__() == b"data: 1"  # before the rest exists
            release.set()
            assert [c async for c in chunks] == [b"data: 2"]
            response.release()
            await upstream.close()

    run(scenario)


def test_an_engine_that_dies_mid_body_raises_upstream_broken() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            response = await upstream.send(endpoint, "GET", "/")
            with pytest.raises(UpstreamBroken, match="closed the connection"):
                await response.read()
            response.close()
            await upstream.close()

    run(scenario)


def test_silence_beyond_the_read_timeout_is_a_502_and_a_refused_connection_a_503() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(5)

        server = Server(handler)
        upstream = Upstream.create(UpstreamTimeouts(connect=1, read=0.1))
        async with server as endpoint:
            with pytest.raises(UpstreamError, match="silent for 0.1s"):
                await upstream.send(endpoint, "GET", "/")
        # The server is gone now: down, not broken, so the caller may go elsewhere.
        with pytest.raises(EngineDownError, match="refused the connection") as refused:
            await upstream.send(endpoint, "GET", "/")
        assert refused.value.status_code == 503 and refused.value.headers["Retry-After"]
        await upstream.close()

    run(scenario)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_connection_dropped_before_any_reply_byte_means_the_engine_is_down(how: str) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if how == "reset":  # SO_LINGER 0: the close sends RST, as a killed process's does
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            with pytest.raises(EngineDownError, match="dropped the connection unanswered"):
                await upstream.send(endpoint, "POST", "/v1/chat/completions", b"{}")
        await upstream.close()

    run(scenario)


def test_a_connection_dropped_mid_reply_is_a_502() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-")  # a reply began, then the engine died

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            with pytest.raises(UpstreamError) as broken:
                await upstream.send(endpoint, "GET", "/")
            assert not isinstance(broken.value, EngineDownError)
        await upstream.close()

    run(scenario)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
    ],
    ids=["http-1.0", "connection-close", "no-length-header"],
)
def test_a_body_delimited_by_the_engine_closing_is_read_to_the_end(head: bytes) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(head + b'{"answer": ')
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"42}")
            # Closing ends the body (Server._serve closes the writer when this returns).

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            for _ in range(2):  # the second request needs a new connection: none is reused
                response = await upstream.send(endpoint, "GET", "/")
                assert await response.json() == {"answer": 42}
                response.release()
            assert server.connections == 2
            await upstream.close()

    run(scenario)


def test_header_values_with_line_breaks_are_never_sent() -> None:
    async def scenario() -> None:
        upstream = Upstream.create()
        endpoint = Endpoint("http://127.0.0.1:9", "engine-key")
        for value in ("a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"):
            with pytest.raises(InvalidRequestError, match="not allowed in a header") as bad:
                await upstream.send(endpoint, "GET", "/", headers={"X-Trace": value})
            assert bad.value.param == "X-Trace" and bad.value.status_code == 400
        await upstream.close()

    run(scenario)


def test_connections_to_one_engine_are_capped_and_a_burst_waits_its_turn() -> None:
    async def scenario() -> None:
        open_now, most = 0, 0

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)
            try:
                while await server.read_request(reader) is not None:
                    await asyncio.sleep(0.05)
                    writer.write(reply(b"{}"))
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass
            finally:
                open_now -= 1

        server = Server(handler)
        upstream = Upstream.create(UpstreamTimeouts(max_connections=3))

        async def one() -> int:
            response = await upstream.send(endpoint, "GET", "/")
            await response.read()
            response.release()
            return response.status

        async with server as endpoint:
            statuses = await asyncio.gather(*(one() for _ in range(30)))
            assert statuses == [200] * 30
            assert most == 3 and server.connections == 3
            assert upstream.open_connections(endpoint.address) <= 3
            await upstream.close()

    run(scenario)


def test_an_engine_on_a_unix_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (head := await reader.readuntil(b"\r\n\r\n")) is not None:
                seen.append(head)
                writer.write(reply(b'{"ok": true}'))
                await writer.drain()

        seen: list[bytes] = []
        path = str(tmp_path / "e.sock")
        server = await asyncio.start_unix_server(handler, path)
        upstream = Upstream.create()
        endpoint = Endpoint("unix:" + path, "k")
        for _ in range(2):
            response = await upstream.send(endpoint, "GET", "/v1/models")
            assert await response.json() == {"ok": True}
            response.release()
        assert len(seen) == 2 and b"Host: localhost\r\n" in seen[0]
        assert b"Authorization: Bearer k\r\n" in seen[0]
        await upstream.close()
        server.close()
        with pytest.raises(EngineDownError):  # the socket file is still there; nobody listens
            await upstream.send(endpoint, "GET", "/v1/models")
        os.unlink(path)
        with pytest.raises(EngineDownError):  # and now the file is gone too
            await upstream.send(endpoint, "GET", "/v1/models")

    run(scenario)


def test_dropping_an_unfinished_reply_closes_its_connection() -> None:
    async def scenario() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()
            await reader.read()  # returns once the client closes its end

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            response = await upstream.send(endpoint, "GET", "/")
            assert await response.iter_chunks().__anext__() == b"abc"
            response.release()  # not complete: it cannot go back to the pool
            await asyncio.wait_for(server.closed.wait(), 5)
            await upstream.close()

    run(scenario)


def test_a_slow_reader_pauses_the_engine_instead_of_buffering_without_bound() -> None:
    async def scenario() -> None:
        size = 8 * HIGH_WATER

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n")
            for _ in range(size // 65536):
                writer.write(b"x" * 65536)
                await writer.drain()

        server = Server(handler)
        upstream = Upstream.create()
        async with server as endpoint:
            response = await upstream.send(endpoint, "GET", "/")
            await asyncio.sleep(0.5)  # the engine writes as fast as it may; nobody reads
            assert response._buffered < 3 * HIGH_WATER
            assert len(await response.read()) == size
            response.release()
            await upstream.close()

    run(scenario)
