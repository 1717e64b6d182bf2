"""A replica that refuses connections: marked unreachable at once, its requests sent to a
ready replica, and a 503 with Retry-After (never a 502) when none is left."""

from __future__ import annotations

from runtime.fleet.chutes import ChuteState, Replica
from runtime.http.engine_client import Endpoint
from tests.gateway.conftest import GatewayFactory
from tests.support.servers import refusing_address

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}]}


def test_a_refusing_replica_is_marked_down_and_its_request_goes_to_another(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    chute = gateway.chutes.get("tiny")
    assert chute is not None
    dead = Replica(1, state=ChuteState.READY, endpoint=Endpoint(refusing_address(), "k"))
    chute.replicas.insert(0, dead)  # least-outstanding picks it first
    with gateway.client() as client:
        replies = [client.post("/v1/chat/completions", json=CHAT) for _ in range(5)]
        ready = client.get("/ready").json()["chutes"]["tiny"]
    assert [r.status_code for r in replies] == [200] * 5
    assert dead.state is ChuteState.UNREACHABLE and "refused" in dead.detail
    assert dead.suspect.is_set()  # the supervisor is told to probe it now
    assert ready["state"] == "ready" and ready["replicas"][0]["state"] == "unreachable"
    assert [r.outstanding for r in chute.replicas] == [0, 0]
    assert chute.admission.used == 0


def test_with_no_replica_left_the_answer_is_503_with_retry_after(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    chute = gateway.chutes.get("tiny")
    assert chute is not None
    chute.replicas[0].endpoint = Endpoint(refusing_address(), "k")
    with gateway.client() as client:
        first = client.post("/v1/chat/completions", json=CHAT)
        streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        ready = client.get("/ready")
    for reply in (first, streamed):
        assert reply.status_code == 503, reply.text
        assert reply.headers["retry-after"]
        assert reply.json()["error"]["code"] == "engine_unavailable"
    assert ready.status_code == 503
    assert ready.json()["chutes"]["tiny"]["state"] == "unreachable"
    assert chute.replicas[0].outstanding == 0 and chute.admission.used == 0
