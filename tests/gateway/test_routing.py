"""Routing across two replicas through the real gateway: each replica a real fake-engine
server, the engine that answered read from its own request count."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.fleet.chutes import Chute, ChuteState, Replica
from runtime.fleet.routing.policy import Router, RoutingPolicy
from runtime.http.engine_client import Endpoint
from tests.gateway.conftest import Gateway, GatewayFactory
from tests.support.kv_events import batch as kv_batch
from tests.support.kv_events import stored
from tests.support.servers import fake_engine


@pytest.fixture(scope="module")
def second_engine() -> Iterator[Endpoint]:
    with fake_engine("tiny") as endpoint:
        yield endpoint


@pytest.fixture
def routed(make_gateway: GatewayFactory, second_engine: Endpoint) -> tuple[Gateway, Chute]:
    """A gateway whose `tiny` chute has two replicas, each its own fake engine."""
    gateway = make_gateway()
    chute = gateway.chutes.get("tiny")
    assert chute is not None
    chute.replicas.append(Replica(1, state=ChuteState.READY, endpoint=second_engine))
    return gateway, chute


def chat(document: int, question: str) -> dict[str, Any]:
    system = f"Answer from document {document}. " + f"Its text: {document} lorem ipsum. " * 40
    return {
        "model": "tiny",
        "max_tokens": 4,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ],
    }


BODY = chat(1, "Who wrote it?")


def ask(client: httpx.Client, document: int, question: str) -> None:
    reply = client.post("/v1/chat/completions", json=chat(document, question))
    assert reply.status_code == 200, reply.text


def engine_requests(chute: Chute) -> list[int]:
    """How many requests each replica's engine has had, by its own count."""
    counts = []
    for replica in chute.replicas:
        assert replica.endpoint is not None
        counts.append(httpx.get(replica.endpoint.address + "/fake/stats").json()["requests"])
    return counts


def served_by(chute: Chute, client: httpx.Client, document: int, question: str) -> int:
    """The replica that answered: the engine whose request count went up."""
    before = engine_requests(chute)
    ask(client, document, question)
    after = engine_requests(chute)
    moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a > b]
    assert len(moved) == 1
    return moved[0]


def test_each_document_stays_on_the_replica_that_first_served_it(
    routed: tuple[Gateway, Chute],
) -> None:
    gateway, chute = routed
    with gateway.client() as client:
        homes = {doc: served_by(chute, client, doc, "What is it about?") for doc in range(6)}
        for question in ("Who wrote it?", "When?"):
            for doc in range(6):
                assert served_by(chute, client, doc, question) == homes[doc]
        metrics = client.get("/metrics").text
        status = client.get("/status").json()
    assert set(homes.values()) == {0, 1}  # new documents went by load, in turn
    assert 'chutebox_route_affinity_hits_total{chute="tiny"} 12.0' in metrics
    assert 'chutebox_routed_requests_total{chute="tiny",replica="1"}' in metrics
    routing = next(c for c in status["chutes"] if c["name"] == "tiny")["routing"]
    assert routing["policy"] == "prefix" and routing["affinity_hits"] == 12
    assert routing["routed"] == {"0": 9, "1": 9} and routing["tracked_blocks"] > 0
    assert routing["tracked_bytes"] <= routing["max_bytes"]


def test_a_home_replica_computing_prompts_sends_the_next_elsewhere_which_then_holds_it(
    routed: tuple[Gateway, Chute],
) -> None:
    gateway, chute = routed
    with gateway.client() as client:
        home = served_by(chute, client, 1, "What is it about?")
        busy = chute.replicas[home]
        busy.outstanding, busy.waiting, busy.queued_blocks = 2, 2, 100  # two long prompts
        assert served_by(chute, client, 1, "Who wrote it?") == 1 - home
        busy.outstanding, busy.waiting, busy.queued_blocks = 0, 0, 0
        metrics = client.get("/metrics").text
    assert 'chutebox_route_spills_total{chute="tiny"} 1.0' in metrics
    assert chute.router.stats.spills == 1
    assert chute.router.index.match(chute.router.prompt(BODY, "chat", "tiny").keys, 0b11)[1] == 3
    assert [(r.outstanding, r.waiting, r.queued_blocks) for r in chute.replicas] == [(0, 0, 0)] * 2


def test_a_stream_waits_on_its_replica_until_its_first_event(
    routed: tuple[Gateway, Chute],
) -> None:
    gateway, chute = routed
    body = {
        "model": "tiny",
        "prompt": "A long prompt. " * 40,
        "max_tokens": 4,
        "stream": True,
        "fake_delay": 0.3,
    }
    seen: set[tuple[int, int]] = set()
    done = threading.Event()

    def stream() -> None:
        with gateway.client() as client:
            reply = client.post("/v1/completions", json=body)
            assert reply.status_code == 200
        done.set()

    thread = threading.Thread(target=stream)
    thread.start()
    while not done.is_set():
        seen |= {(r.outstanding, r.waiting) for r in chute.replicas if r.outstanding}
        time.sleep(0.01)
    thread.join()
    assert seen == {(1, 1), (1, 0)}  # waiting for its first event, then generating
    assert [(r.outstanding, r.waiting, r.queued_blocks) for r in chute.replicas] == [(0, 0, 0)] * 2


def test_least_outstanding_spreads_one_document_over_both(routed: tuple[Gateway, Chute]) -> None:
    gateway, chute = routed
    chute.router = Router(RoutingPolicy.LEAST_OUTSTANDING, 1 << 20)
    with gateway.client() as client:
        replicas = {served_by(chute, client, 1, f"Question {n}?") for n in range(4)}
    assert replicas == {0, 1}
    assert len(chute.router.index) == 0


def test_the_engines_kv_events_outrank_the_text_index(routed: tuple[Gateway, Chute]) -> None:
    """Replica 1's engine reports holding the prompt's first blocks (by the token ids its
    /tokenize gives), the text index says replica 0: the events win."""
    gateway, chute = routed
    prompt = "The shared document. " * 20
    tokens = list(prompt.encode())  # the fake engine's tokenizer: one id per byte
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 2}
    chute.router.index.record(chute.router.prompt(body, "completions", "tiny").keys, 0)
    chute.router.kv.ingest(0, kv_batch())
    chute.router.kv.ingest(1, kv_batch(stored([1, 2], None, tokens[:32], 16)))
    before = engine_requests(chute)
    with gateway.client() as client:
        assert client.post("/v1/completions", json=body).status_code == 200
        metrics = client.get("/metrics").text
    after = engine_requests(chute)
    # The /tokenize call went to one engine; the completion to replica 1.
    assert after[1] - before[1] >= 1 and chute.router.stats.routed == {1: 1}
    assert 'chutebox_route_exact_hits_total{chute="tiny"} 1.0' in metrics
