"""A real gateway in front of one chute on two toy-model replicas (`tests.support.toy_lm`)
that share their planned connection cuts; a stand-in for the supervisor's probe brings a
replica marked unreachable back (the toy engine only dropped a connection)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from engines.vllm import VLLMBackend
from runtime.api.app import create_app
from runtime.config.settings import ChuteSettings, Settings
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.http.engine_client import Endpoint
from runtime.observability.tracing import Tracing
from runtime.protocol.fields import EngineFields
from tests.support.toy_lm import ToyEngine
from tests.support.uvicorn_thread import serve_in_thread

KEY = "toy-key"


class Pair:
    """A gateway in front of one chute on two toy replicas that share their cuts."""

    def __init__(self, base_url: str, chute: Chute, engines: list[ToyEngine]) -> None:
        self.base_url, self.chute, self.engines = base_url, chute, engines
        self.cuts = engines[0].cuts
        self.probing = True

    def probe(self, stop: threading.Event) -> None:
        """As the supervisor's probe does: a replica marked unreachable whose engine answers
        (a toy engine only dropped a connection) is ready again."""
        while not stop.wait(0.05):
            for replica in self.chute.replicas:
                if self.probing and replica.state is ChuteState.UNREACHABLE:
                    replica.state = ChuteState.READY

    def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}", **(headers or {})}
        return httpx.post(self.base_url + path, json=body, headers=headers, timeout=30)

    def stream(self, path: str, body: dict[str, Any]) -> list[Any]:
        """The stream's events, parsed (`[DONE]` as the string)."""
        reply = self.post(path, {**body, "stream": True})
        assert reply.status_code == 200, reply.text
        assert reply.text.endswith("\n\n")
        events = []
        for block in reply.text.split("\n\n"):
            if block.startswith("data: "):
                payload = block[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return events

    def sent(self) -> list[dict[str, Any]]:
        return [r for e in self.engines for r in e.requests]


@contextlib.contextmanager
def toy_pair(
    folder: Path, probe: bool = True, tracing: Tracing | None = None, **chute_settings: Any
) -> Iterator[Pair]:
    """The gateway (with `tracing`, if given) and its chute `toy` (with `chute_settings`)."""
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        cuts: list[int] = []
        engines = [ToyEngine("toy", cuts), ToyEngine("toy", cuts)]
        urls = [stack.enter_context(serve_in_thread(e)) for e in engines]
        document = httpx.get(urls[0] + "/openapi.json").json()
        settings = ChuteSettings(
            model=str(folder), name="toy", routing="least-outstanding", **chute_settings
        )
        replicas = [
            Replica(i, state=ChuteState.READY, endpoint=Endpoint(url, ""))
            for i, url in enumerate(urls)
        ]
        chute = Chute(
            settings=settings,
            backend=VLLMBackend(),
            admission=Admission(8),
            replicas=replicas,
            phase=ChuteState.STARTING,
            fields=EngineFields.from_openapi(document),
        )
        app = create_app(Settings(chutes=()), ChuteSet([chute]), api_keys=(KEY,), tracing=tracing)
        pair = Pair(stack.enter_context(serve_in_thread(app)), chute, engines)
        pair.probing = probe
        prober = threading.Thread(target=pair.probe, args=(stop,), daemon=True)
        prober.start()
        try:
            yield pair
        finally:
            stop.set()
            prober.join(5)
