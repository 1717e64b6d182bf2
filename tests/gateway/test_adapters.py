"""LoRA adapters through the real gateway, on two fake-engine replicas that play vLLM's
runtime loading (`engines/fake_lora.py`): each adapter a model `CHUTE:NAME`, loaded into a
replica the first time a request lands there, at most `adapter_slots` held per replica."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from engines.fake import FakeBackend
from runtime.api.app import create_app
from runtime.config.settings import ChuteSettings, Settings
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica
from runtime.http.engine_client import Endpoint
from tests.support.servers import fake_engine, refusing_address
from tests.support.uvicorn_thread import serve_in_thread

KEY = "adapter-key"


class Pair:
    def __init__(self, base_url: str, engines: list[Endpoint]) -> None:
        self.base_url, self.engines = base_url, engines

    def chat(self, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello sea"}], **extra}
        headers = {"Authorization": f"Bearer {KEY}"}
        return httpx.post(self.base_url + "/v1/chat/completions", json=body, headers=headers,
                          timeout=30)  # fmt: skip

    def stats(self) -> list[dict[str, Any]]:
        return [httpx.get(e.address + "/fake/stats").json()["adapters"] for e in self.engines]


@contextlib.contextmanager
def pair(folder: Path, slots: int = 2) -> Iterator[Pair]:
    adapters = {}
    for name in ("sql", "poet", "legal"):
        (folder / name).mkdir()
        adapters[name] = str(folder / name)
    with fake_engine("tiny") as one, fake_engine("tiny") as two:
        settings = ChuteSettings(model=str(folder), name="tiny", engine="fake",
                                 adapters=adapters, adapter_slots=slots)  # fmt: skip
        replicas = [
            Replica(i, state=ChuteState.READY, endpoint=e) for i, e in enumerate([one, two])
        ]
        chute = Chute(settings=settings, backend=FakeBackend(), admission=Admission(64),
                      replicas=replicas, phase=ChuteState.STARTING)  # fmt: skip
        app = create_app(Settings(chutes=()), ChuteSet([chute]), api_keys=(KEY,))
        with serve_in_thread(app) as url:
            yield Pair(url, [one, two])


def test_an_adapter_is_a_model_of_its_own(tmp_path: Path) -> None:
    with pair(tmp_path) as p:
        base, tuned = p.chat("tiny"), p.chat("tiny:sql")
        assert base.status_code == tuned.status_code == 200, tuned.text
        assert tuned.json()["model"] == "tiny:sql"
        text = tuned.json()["choices"][0]["message"]["content"]
        assert (
            text.startswith("[tiny:sql]")
            and text != base.json()["choices"][0]["message"]["content"]
        )
        listed = httpx.get(p.base_url + "/v1/models").json()["data"]
        assert [(m["id"], m.get("parent")) for m in listed] == [
            ("tiny", None),
            ("tiny:sql", "tiny"),
            ("tiny:poet", "tiny"),
            ("tiny:legal", "tiny"),
        ]
        assert p.chat("tiny:nope").status_code == 404


def test_first_requests_load_it_once_and_slots_unload_the_least_recently_used(
    tmp_path: Path,
) -> None:
    with pair(tmp_path, slots=2) as p:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: p.chat("tiny:sql").status_code, range(8)))
        assert codes == [200] * 8
        loads = [s["loads"].get("tiny:sql", 0) for s in p.stats()]
        assert all(n <= 1 for n in loads) and sum(loads) >= 1  # no reload storm
        for model in ("tiny:poet", "tiny:legal", "tiny:sql"):
            for _ in range(3):
                assert p.chat(model).status_code == 200
        for stats in p.stats():
            assert len(stats["held"]) <= 2
        assert sum(s["unloads"].get("tiny:sql", 0) for s in p.stats()) >= 1


def test_a_hot_adapter_spreads_past_the_spill_gate_and_loads_once_per_replica(
    tmp_path: Path,
) -> None:
    with pair(tmp_path) as p:
        slow: dict[str, Any] = {"stream": True, "fake_delay": 0.05, "max_tokens": 20}
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: p.chat("tiny:sql", **slow).status_code, range(32)))
        assert codes == [200] * 32
        loads = [s["loads"].get("tiny:sql", 0) for s in p.stats()]
        assert loads == [1, 1], loads


def test_a_request_moved_to_another_replica_has_its_adapter_loaded_there(
    tmp_path: Path,
) -> None:
    (tmp_path / "sql").mkdir()
    with fake_engine("tiny") as live:
        dead = Endpoint(refusing_address(), "engine-key")
        settings = ChuteSettings(model=str(tmp_path), name="tiny", engine="fake",
                                 adapters={"sql": str(tmp_path / "sql")})  # fmt: skip
        replicas = [Replica(0, state=ChuteState.READY, endpoint=dead),
                    Replica(1, state=ChuteState.READY, endpoint=live)]  # fmt: skip
        chute = Chute(settings=settings, backend=FakeBackend(), admission=Admission(8),
                      replicas=replicas, phase=ChuteState.STARTING)  # fmt: skip
        app = create_app(Settings(chutes=()), ChuteSet([chute]), api_keys=(KEY,))
        with serve_in_thread(app) as url:
            p = Pair(url, [live])
            replies = [p.chat("tiny:sql") for _ in range(4)]
            assert [r.status_code for r in replies] == [200] * 4, replies[0].text
            assert all(r.json()["model"] == "tiny:sql" for r in replies)
            assert p.stats()[0]["loads"] == {"tiny:sql": 1}
