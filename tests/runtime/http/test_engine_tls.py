"""The engine link over TLS: a real https engine whose CA the test makes, the certificate
verified (trusted CA, another CA, the system's trust store, the host name)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from engines.fake import FakeEngine
from runtime.errors import EngineDownError
from runtime.http.engine_client import Endpoint, Upstream
from tests.support.uvicorn_thread import serve_in_thread


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_engine(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    app = FakeEngine("tiny", "engine-key", "fake").app()
    with serve_in_thread(app, ssl_certfile=str(folder / "cert.pem"),
                         ssl_keyfile=str(folder / "key.pem")) as url:  # fmt: skip
        yield url


def ca_file(ca: trustme.CA, folder: Path) -> str:
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def models(endpoint: Endpoint) -> int:
    upstream = Upstream.create()
    try:
        response = await upstream.send(endpoint, "GET", "/v1/models")
        await response.read()
        response.release()
        return response.status
    finally:
        await upstream.close()
        # A refused handshake's socket is closed by a loop callback: let it run before
        # asyncio.run closes the loop (a gateway's loop runs on).
        await asyncio.sleep(0.01)


def test_an_engine_whose_certificate_the_ca_signed_answers(
    https_engine: str, ca: trustme.CA, tmp_path: Path
) -> None:
    assert https_engine.startswith("https://")
    endpoint = Endpoint(https_engine, "engine-key", ca_file(ca, tmp_path))
    assert asyncio.run(models(endpoint)) == 200


@pytest.mark.parametrize("trust", ["another CA", "the system's store"])
def test_an_engine_no_trusted_ca_signed_is_never_sent_a_request(
    https_engine: str, tmp_path: Path, trust: str
) -> None:
    cafile = ca_file(trustme.CA(), tmp_path) if trust == "another CA" else None
    with pytest.raises(EngineDownError, match="certificate was refused"):
        asyncio.run(models(Endpoint(https_engine, "engine-key", cafile)))


def test_a_certificate_for_another_host_is_refused(
    ca: trustme.CA, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cert = ca.issue_cert("engine.example")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    app = FakeEngine("tiny", "engine-key", "fake").app()
    with serve_in_thread(app, ssl_certfile=str(tmp_path / "cert.pem"),
                         ssl_keyfile=str(tmp_path / "key.pem")) as url:  # fmt: skip
        endpoint = Endpoint(url, "engine-key", ca_file(ca, tmp_path))
        with pytest.raises(EngineDownError, match="certificate was refused"):
            asyncio.run(models(endpoint))


def test_a_connection_verified_for_one_ca_is_not_lent_to_an_endpoint_trusting_another(
    https_engine: str, ca: trustme.CA, tmp_path: Path
) -> None:
    async def scenario() -> tuple[int, str]:
        upstream = Upstream.create()
        try:
            trusted = await upstream.send(
                Endpoint(https_engine, "engine-key", ca_file(ca, tmp_path)), "GET", "/v1/models"
            )
            await trusted.read()
            trusted.release()  # back in the pool, idle
            try:
                await upstream.send(Endpoint(https_engine, "engine-key"), "GET", "/v1/models")
            except EngineDownError as exc:
                return trusted.status, str(exc)
            return trusted.status, "sent"
        finally:
            await upstream.close()
            await asyncio.sleep(0.01)

    status, second = asyncio.run(scenario())
    assert status == 200 and "certificate was refused" in second
