"""The status page's files and `GET /status`: public in what anyone may see, complete with a
key, live traffic from the gateway's own counters, and `--no-ui`."""

from __future__ import annotations

import json

import httpx

from tests.gateway.conftest import KEYS, Gateway, GatewayFactory

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "one two three four"}]}


def test_the_page_and_its_files_are_public_and_load_nothing_from_elsewhere(
    gateway: Gateway,
) -> None:
    with gateway.client(key=None) as client:
        page = client.get("/")
        script = client.get("/ui/app.js")
        style = client.get("/ui/style.css")
        other = client.get("/ui/../status")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert "http://" not in page.text + script.text and "https://" not in page.text + script.text
    assert 'src="/ui/app.js"' in page.text and other.status_code in (200, 404)


def test_without_a_key_status_says_only_what_ready_says(gateway: Gateway) -> None:
    with gateway.client(key=None) as client:
        public = client.get("/status").json()
        ready = client.get("/ready").json()
    assert public["full"] is False
    assert [c["name"] for c in public["chutes"]] == list(ready["chutes"])
    for chute in public["chutes"]:
        # The id is derived from the public name (the SDK's uuid5 rule): public as the name is.
        assert set(chute) == {"name", "chute_id", "engine", "state", "replicas"}
        assert all(set(r) == {"index", "state"} for r in chute["replicas"])
    with gateway.client(key="not-a-key") as client:
        assert client.get("/status").json()["full"] is False


def test_with_a_key_status_shows_the_layout_and_live_traffic(gateway: Gateway) -> None:
    with gateway.client() as client:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as s:
            s.read()
        document = client.get("/status").json()
    assert document["full"] is True
    tiny = next(c for c in document["chutes"] if c["name"] == "tiny")
    assert tiny["engine"] == "vllm" and "/v1/chat/completions" in tiny["routes"]
    assert tiny["concurrency"] == {"in_use": 0, "limit": 8, "queued": 0, "rejected_total": 0}
    traffic = tiny["traffic"]
    assert traffic["requests_per_s"] > 0 and traffic["tokens_per_s"] > 0
    assert traffic["ttft_p50_ms"] is not None and traffic["rejected_429"] == 0
    assert tiny["replicas"][0]["gpus"] == "cpu" and tiny["replicas"][0]["restarts"] == 0
    assert tiny["price_per_million"]["prompt"] == 0.5
    text = json.dumps(document)
    assert all(key not in text for key in (*KEYS, "engine-key"))


def test_no_ui_turns_the_page_off_but_not_status(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(ui=False)
    with gateway.client() as client:
        assert client.get("/").status_code == 404
        assert client.get("/ui/app.js").status_code == 404
    with gateway.client(key=None) as client:
        assert client.get("/").status_code == 401  # no longer a public route
        assert client.get("/status").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/status" in paths


def test_status_is_documented(gateway: Gateway) -> None:
    paths = httpx.get(gateway.base_url + "/openapi.json").json()["paths"]
    assert paths["/status"]["get"]["security"] == []
    assert "text/html" in paths["/"]["get"]["responses"]["200"]["content"]
