"""Named keys against the real gateway and fake engines: scopes, quotas, per-minute limits,
Chutes' read routes, metering, and a keys file re-read while it runs."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway, GatewayFactory
from tests.support.servers import eventually

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 3}


def keyed(name: str, key: str, **limits: Any) -> dict[str, Any]:
    return {"name": name, "key": key, **limits}


def post(gateway: Gateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    with gateway.client(key) as client:
        return client.post("/v1/chat/completions", json=body or CHAT)


def get(gateway: Gateway, key: str | None, path: str) -> httpx.Response:
    with gateway.client(key) as client:
        return client.get(path)


def test_a_key_calls_only_its_chutes_and_sees_only_them(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(keys=[keyed("ann", "sk-ann", chutes=["loose"])])
    refused = post(gateway, "sk-ann")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert post(gateway, "sk-ann", {**CHAT, "model": "loose"}).status_code == 200
    listed = [m["id"] for m in get(gateway, "sk-ann", "/v1/models").json()["data"]]
    assert listed == ["loose"]
    assert get(gateway, "sk-ann", "/v1/models/tiny").status_code == 404
    assert get(gateway, "sk-ann", "/v1/models/loose").status_code == 200
    # The public listing (no key) and an unscoped key still see every model.
    assert len(get(gateway, None, "/v1/models").json()["data"]) == 3
    assert len(get(gateway, "key-one", "/v1/models").json()["data"]) == 3


def test_a_model_list_skips_a_chute_the_key_may_not_call(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(keys=[keyed("ann", "sk-ann", chutes=["loose"])])
    reply = post(gateway, "sk-ann", {**CHAT, "model": "tiny,loose"})
    assert reply.status_code == 200 and reply.json()["model"] == "loose"


def test_a_daily_quota_answers_402_as_chutes_does(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(keys=[keyed("bo", "sk-bo", quotas={"tiny": 2})])
    assert [post(gateway, "sk-bo").status_code for _ in range(2)] == [200, 200]
    spent = post(gateway, "sk-bo")
    assert spent.status_code == 402
    body = spent.json()
    assert body["error"]["code"] == "quota_exceeded" and "2 invocations" in body["error"]["message"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    reset = datetime.fromisoformat(body["detail"]["quota_reset_timestamp"])
    assert reset == midnight + timedelta(days=1)
    assert body["detail"]["message"] == body["error"]["message"]
    # Other chutes have no quota; the read routes say so.
    assert post(gateway, "sk-bo", {**CHAT, "model": "loose"}).status_code == 200
    assert get(gateway, "sk-bo", "/users/me/quota_usage/tiny").json() == {"quota": 2, "used": 2}
    chute_id = gateway.chutes.get("tiny").chute_id  # type: ignore[union-attr]
    assert get(gateway, "sk-bo", f"/users/me/quota_usage/{chute_id}").json()["used"] == 2
    assert get(gateway, "sk-bo", "/users/me/quota_usage/loose").json() == {
        "quota": "unlimited",
        "used": 1,
    }
    quotas = get(gateway, "sk-bo", "/users/me/quotas").json()
    assert [(q["chute_id"], q["quota"], q["used"]) for q in quotas] == [("tiny", 2, 2)]


def test_the_star_quota_is_one_pool_for_the_chutes_without_their_own(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(keys=[keyed("cy", "sk-cy", quotas={"*": 3, "sg": 1})])
    codes = [post(gateway, "sk-cy", {**CHAT, "model": m}).status_code
             for m in ("tiny", "loose", "tiny", "loose")]  # fmt: skip
    assert codes == [200, 200, 200, 402]
    # `sg` has its own quota, apart from the pool.
    assert post(gateway, "sk-cy", {**CHAT, "model": "sg"}).status_code == 200
    assert get(gateway, "sk-cy", "/users/me/quota_usage/me").json() == {"quota": 3, "used": 3}
    assert get(gateway, "sk-cy", "/users/me/quota_usage/sg").json() == {"quota": 1, "used": 1}


def test_limits_hold_across_concurrent_requests(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        keys=[keyed("dee", "sk-dee", quotas={"tiny": 3}), keyed("eve", "sk-eve", rpm=4)]
    )
    slow = {**CHAT, "max_tokens": 8, "stream": True}

    def run(key: str) -> int:
        with gateway.client(key) as client:
            with client.stream("POST", "/v1/chat/completions", json=slow) as reply:
                reply.read()
                return reply.status_code

    with ThreadPoolExecutor(8) as pool:
        quota_codes = sorted(pool.map(run, ["sk-dee"] * 8))
        rate_codes = sorted(pool.map(run, ["sk-eve"] * 8))
    assert quota_codes == [200] * 3 + [402] * 5
    assert rate_codes == [200] * 4 + [429] * 4


def test_requests_per_minute_answer_429_with_retry_after(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(keys=[keyed("fay", "sk-fay", rpm=2)])
    assert [post(gateway, "sk-fay").status_code for _ in range(2)] == [200, 200]
    over = post(gateway, "sk-fay")
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    # Another key is not held back by it.
    assert post(gateway, "key-one").status_code == 200


def test_tokens_per_minute_reserve_the_prompt_and_settle_from_usage(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(keys=[keyed("gus", "sk-gus", tpm=60)])
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 400}]}
    alone = post(gateway, "sk-gus", huge)
    assert alone.status_code == 429 and "by itself" in alone.json()["error"]["message"]
    # Each small request settles to its usage (prompt + 3 output tokens, the fake's count);
    # the minute fills and the next is refused.
    used = 0
    while True:
        reply = post(gateway, "sk-gus")
        if reply.status_code != 200:
            break
        usage = reply.json()["usage"]
        used += usage["prompt_tokens"] + usage["completion_tokens"]
    assert reply.status_code == 429 and "tokens per minute" in reply.json()["error"]["message"]
    assert 0 < used <= 60 + usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_refused_request_uses_nothing(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(keys=[keyed("hal", "sk-hal", quotas={"tiny": 1}, rpm=5)])
    bad = post(gateway, "sk-hal", {**CHAT, "temperature": "hot"})
    assert bad.status_code == 400
    assert post(gateway, "sk-hal", {**CHAT, "max_tokens": -1}).status_code == 400
    assert get(gateway, "sk-hal", "/users/me/quota_usage/tiny").json()["used"] == 0
    assert post(gateway, "sk-hal").status_code == 200


def test_usage_is_metered_per_key_and_kept_across_a_restart(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    db = tmp_path / "usage.db"
    keys = [keyed("ivy", "sk-ivy", quotas={"tiny": 3})]
    gateway = make_gateway(keys=keys, usage_db=db)
    replies = [post(gateway, "sk-ivy").json() for _ in range(2)]
    with gateway.client("sk-ivy") as client:
        with client.stream("POST", "/v1/completions",
                           json={"model": "tiny", "prompt": "a b", "max_tokens": 2,
                                 "stream": True}) as streamed:  # fmt: skip
            streamed.read()
    rows = get(gateway, "sk-ivy", "/users/me/usage").json()["data"]
    assert [(r["chute"], r["requests"]) for r in rows] == [("tiny", 3)]
    prompt = sum(r["usage"]["prompt_tokens"] for r in replies)
    output = sum(r["usage"]["completion_tokens"] for r in replies)
    assert rows[0]["input_tokens"] > prompt and rows[0]["output_tokens"] == output + 2
    assert rows[0]["date"] == datetime.now(UTC).date().isoformat()
    gateway.stop()  # its lifespan's end writes what is pending
    stored = sqlite3.connect(db).execute("SELECT SUM(requests) FROM usage WHERE key = 'ivy'")
    assert stored.fetchone() == (3,)
    again = make_gateway(keys=keys, usage_db=db)
    assert post(again, "sk-ivy").status_code == 402  # the day's 3 are remembered
    assert get(again, "sk-ivy", "/users/me/usage").json()["data"][0]["requests"] == 3


def test_names_not_keys_reach_logs_and_metrics(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-very-secret-jay"
    gateway = make_gateway(keys=[keyed("jay", secret)])
    with caplog.at_level(logging.INFO, logger="chutebox.access"):
        assert post(gateway, secret).status_code == 200
        eventually(lambda: any("key=jay" in r.getMessage() for r in caplog.records), 5)
    assert any("key=jay" in r.getMessage() for r in caplog.records)
    metrics = get(gateway, None, "/metrics").text
    assert 'chutebox_key_requests_total{chute="tiny",key="jay"} 1.0' in metrics
    assert 'chutebox_key_output_tokens_total{chute="tiny",key="jay"}' in metrics
    status = get(gateway, secret, "/status")
    (minute,) = status.json()["usage"]["series"]  # the status page's chart
    assert (minute["key"], minute["chute"], minute["requests"]) == ("jay", "tiny", 1)
    assert minute["output_tokens"] > 0
    assert "usage" not in get(gateway, None, "/status").json()  # the public view
    for seen in (caplog.text, metrics, status.text):
        assert secret not in seen


def write_keys(path: Path, entries: list[tuple[str, str]]) -> None:
    lines = []
    for name, key in entries:
        lines += ["[[keys]]", f'name = "{name}"',
                  f'key_sha256 = "{hashlib.sha256(key.encode()).hexdigest()}"', ""]  # fmt: skip
    path.write_text("\n".join(lines))


def test_the_keys_file_is_read_again_when_it_changes(
    make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys_file = tmp_path / "keys.toml"
    write_keys(keys_file, [("kim", "sk-kim")])
    gateway = make_gateway(keys_file=keys_file)
    assert post(gateway, "sk-kim").status_code == 200
    assert post(gateway, "sk-lou").status_code == 401
    write_keys(keys_file, [("kim", "sk-kim"), ("lou", "sk-lou")])
    assert eventually(lambda: post(gateway, "sk-lou").status_code == 200, 10)
    # A file that does not parse keeps the keys from before, and says why.
    with caplog.at_level(logging.ERROR, logger="chutebox.keys"):
        keys_file.write_text("[[keys]]\nname = 'broken\n")
        assert eventually(lambda: "does not parse" in caplog.text, 10)
    assert post(gateway, "sk-lou").status_code == 200
    write_keys(keys_file, [("kim", "sk-kim")])
    assert eventually(lambda: post(gateway, "sk-lou").status_code == 401, 10)
