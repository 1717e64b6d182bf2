"""Metrics, access logs, JSON logs and Server-Timing, through the real gateway."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from runtime.observability.logs import JsonFormatter
from tests.gateway.conftest import Gateway, GatewayFactory
from tests.gateway.test_contract import CHAT

STREAM = {"model": "loose", "stream": True, "stream_options": {"include_usage": True},
          "fake_delay": 0.01,
          "messages": [{"role": "user", "content": "one two three four"}]}  # fmt: skip


def samples(text: str, name: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample of one metric."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    key = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return samples(text, name).get(key)


CHAT_ROUTE = "/v1/chat/completions"


def scrape(gateway: Gateway) -> str:
    with gateway.client(key=None) as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return reply.text


def test_requests_tokens_and_latencies_are_counted(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json=STREAM) as reply:
            reply.read()
        assert client.post("/v1/chat/completions", json={"model": "nope"}).status_code == 400
    text = scrape(gateway)
    for chute in ("tiny", "loose"):
        assert value(text, "chutebox_requests_total", chute=chute, route=CHAT_ROUTE,
                     status="200") == 1  # fmt: skip
    # The stream's usage came from its final chunk: four words in, four out.
    assert value(text, "chutebox_prompt_tokens_total", chute="loose") == 4
    assert value(text, "chutebox_completion_tokens_total", chute="loose") == 4
    assert value(text, "chutebox_time_to_first_token_seconds_count", chute="loose") == 1
    # Events after the first: role chunk, four words, finish, usage, [DONE] → gaps to time.
    itl = value(text, "chutebox_inter_token_latency_seconds_count", chute="loose")
    assert itl is not None and itl >= 1
    assert value(text, "chutebox_request_duration_seconds_count", chute="tiny",
                 route=CHAT_ROUTE) == 1  # fmt: skip
    assert value(text, "chutebox_engine_up", chute="tiny", replica="0") == 1
    assert value(text, "chutebox_concurrency_limit", chute="tiny") == 8
    assert value(text, "chutebox_requests_in_flight", chute="tiny") == 0


def test_unknown_paths_do_not_grow_the_series(gateway: Gateway) -> None:
    with gateway.client() as client:
        for i in range(5):
            assert client.get(f"/scan/{i}").status_code == 404
    requests = samples(scrape(gateway), "chutebox_requests_total")
    assert requests['chutebox_requests_total{chute="",route="other",status="404"}'] == 5
    assert not any("/scan/" in key for key in requests)


def test_rejections_and_disconnects_are_counted(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(concurrency=1)
    slow = {"model": "loose", "stream": True, "fake_delay": 0.2,
            "messages": [{"role": "user", "content": " ".join(["w"] * 30)}]}  # fmt: skip
    with gateway.client() as client, client.stream("POST", "/v1/chat/completions", json=slow) as r:
        chunks = r.iter_raw()  # held: dropping the iterator would close the connection
        next(chunks)
        with gateway.client() as other:
            refused = other.post(CHAT_ROUTE, json={**slow, "stream": False})
            assert refused.status_code == 429
    for _ in range(100):  # the disconnect is noticed a moment after the client closes
        text = scrape(gateway)
        if value(text, "chutebox_client_disconnects_total", chute="loose", route=CHAT_ROUTE):
            break
        time.sleep(0.02)
    assert value(text, "chutebox_admission_rejections_total", chute="loose") == 1
    assert value(text, "chutebox_client_disconnects_total", chute="loose", route=CHAT_ROUTE) == 1
    assert value(text, "chutebox_requests_total", chute="loose", route=CHAT_ROUTE,
                 status="499") == 1  # fmt: skip


def test_metrics_can_be_turned_off(make_gateway: GatewayFactory) -> None:
    with make_gateway(metrics=False).client() as client:
        assert client.get("/metrics").status_code == 404


def test_server_timing_splits_gateway_and_engine_time(gateway: Gateway) -> None:
    with gateway.client() as client:
        relayed = client.post("/v1/chat/completions", json=CHAT)
        local = client.get("/v1/models")
    timing = re.fullmatch(r"gateway;dur=([\d.]+), engine;dur=([\d.]+)",
                          relayed.headers["server-timing"])  # fmt: skip
    assert timing is not None, relayed.headers["server-timing"]
    assert re.fullmatch(r"gateway;dur=[\d.]+", local.headers["server-timing"])


def test_access_log_names_request_chute_status_and_tokens(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chutebox.access"), gateway.client() as client:
        reply = client.post("/v1/chat/completions", json=CHAT)
        record = access_record(caplog)  # lines come in batches, at most 0.2 s after
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["invocation_id"] == reply.headers["x-chutes-invocationid"]
    assert (fields["chute"], fields["status"], fields["path"]) == ("tiny", 200, CHAT_ROUTE)
    assert fields["prompt_tokens"] == 1 and fields["completion_tokens"] == 1
    assert "Bearer" not in record.getMessage() and "key-one" not in json.dumps(fields)
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "chutebox.access" and line["status"] == 200
    assert line["invocation_id"] == fields["invocation_id"]


def access_record(caplog: pytest.LogCaptureFixture, wait: float = 10) -> logging.LogRecord:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if r.name == "chutebox.access"]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no access log record within {wait} s")


def test_access_log_can_be_turned_off(
    gateway: Gateway, make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = make_gateway(access_log=False)
    with caplog.at_level(logging.INFO, logger="chutebox.access"):
        with quiet.client() as client:
            client.post("/v1/chat/completions", json=CHAT)
        # A request to a logging gateway, sent later: once its line is in, the quiet
        # gateway's would be too, had it kept one (its batch would have been due first).
        with gateway.client() as client:
            logged = client.post("/v1/chat/completions", json=CHAT)
        access_record(caplog)
    lines = [r for r in caplog.records if r.name == "chutebox.access"]
    ids = [r.fields["invocation_id"] for r in lines]  # type: ignore[attr-defined]
    assert ids == [logged.headers["x-chutes-invocationid"]]
