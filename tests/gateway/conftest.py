"""The real gateway app, under uvicorn, in front of real fake-engine servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from engines.fake import FakeBackend
from engines.sglang import SGLangBackend
from engines.vllm import VLLMBackend
from runtime.api.app import create_app
from runtime.config.settings import ChuteSettings, Settings
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.http.engine_client import Endpoint
from runtime.http.guard import ConnectionLimits, guarded_protocol
from runtime.protocol.fields import EngineFields
from tests.support.servers import fake_engine
from tests.support.uvicorn_thread import serve_in_thread

KEYS = ("key-one", "key-two")


@pytest.fixture(scope="session")
def engines() -> Iterator[dict[str, Endpoint]]:
    """Fake engines: `tiny` is driven as a vLLM chute, `sg` as an SGLang one, `loose` as the
    fake backend."""
    with fake_engine("tiny") as tiny, fake_engine("loose") as loose, fake_engine("sg") as sg:
        yield {"tiny": tiny, "loose": loose, "sg": sg}


class Gateway:
    def __init__(
        self, base_url: str, chutes: ChuteSet, stop: Callable[[], None] = lambda: None
    ) -> None:
        self.base_url = base_url
        self.chutes = chutes
        # Stops the server now (its lifespan ends); the fixture's teardown does it otherwise.
        self.stop = stop

    def client(self, key: str | None = KEYS[0], **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def post_while_a_slot_is_held(
    gateway: Gateway,
    stream: dict[str, Any],
    path: str = "/v1/chat/completions",
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """Hold a slot with the streaming chat request `stream`, and meanwhile POST `body` (by
    default the same request, not streamed) to `path`."""
    started = threading.Event()

    def hold() -> None:
        with (
            gateway.client() as client,
            client.stream("POST", "/v1/chat/completions", json=stream) as reply,
        ):
            started.set()
            reply.read()

    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(10)
    with gateway.client() as client:
        reply = client.post(path, json=body if body is not None else {**stream, "stream": False})
    holder.join(10)
    return reply


GatewayFactory = Callable[..., Gateway]


@pytest.fixture(scope="session")
def engine_fields(engines: dict[str, Endpoint]) -> EngineFields:
    """What the fake engines publish in /openapi.json, read as the supervisor reads it."""
    document = httpx.get(engines["tiny"].address + "/openapi.json", timeout=10).json()
    return EngineFields.from_openapi(document)


@pytest.fixture
def make_gateway(
    engines: dict[str, Endpoint], engine_fields: EngineFields, tmp_path: Path
) -> Iterator[GatewayFactory]:
    stack = ExitStack()

    def make(concurrency: int = 8, **settings_fields: object) -> Gateway:
        server = Settings(chutes=(), **settings_fields)  # type: ignore[arg-type]

        def chute(name: str, backend: object) -> Chute:
            settings = ChuteSettings(
                model=str(tmp_path), name=name, concurrency=concurrency, price_prompt=0.5
            )
            replica = Replica(0, state=ChuteState.READY, endpoint=engines[name])
            return Chute(
                settings=settings,
                backend=backend,  # type: ignore[arg-type]
                admission=Admission(
                    concurrency, queue_size=server.queue_size, queue_timeout=server.queue_timeout
                ),  # fmt: skip
                replicas=[replica],
                phase=ChuteState.STARTING,
                card={"max_model_len": 512, "root": "/models/" + name},
                fields=engine_fields,
            )

        chutes = ChuteSet([chute("tiny", VLLMBackend()), chute("loose", FakeBackend()),
                           chute("sg", SGLangBackend())])  # fmt: skip
        app = create_app(server, chutes, api_keys=KEYS)
        # The client connections as `chutebox serve` runs them (runtime.http.guard).
        limits = ConnectionLimits(
            server.header_timeout, server.body_timeout, server.max_connections
        )
        own = ExitStack()
        url = own.enter_context(serve_in_thread(app, http=guarded_protocol(limits)))
        stack.callback(own.close)
        return Gateway(url, chutes, stop=own.close)

    with stack:
        yield make


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> Gateway:
    return make_gateway()


def wait_until_abandoned(stats_url: str, before: int) -> None:
    """Wait for the fake engine to count one more stream abandoned and none running: the
    client left, and the gateway let the engine know by closing its connection."""
    stats: dict[str, Any] = {}
    for _ in range(50):
        stats = httpx.get(stats_url).json()
        if stats["streams_abandoned"] > before and stats["streams_active"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"the engine kept streaming after the client left: {stats}")
