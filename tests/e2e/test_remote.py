"""Chutes whose engines chutebox does not start (`url`): real engine processes elsewhere,
followed by a real `chutebox serve`."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
import trustme

from engines.fake import FakeEngine
from tests.support.servers import (
    chutebox_serve,
    eventually,
    fake_engine,
    free_port,
    ready_of,
    refusing_address,
)
from tests.support.uvicorn_thread import serve_in_thread

pytestmark = pytest.mark.serve

KEY = "cpk_remote_test"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello remote engine"}]}


def test_a_remote_chute_is_routed_over_its_urls_with_the_engines_fields(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "engine.key"
    key_file.write_text("engine-key\n")
    port_a, port_b = free_port(), free_port()
    config = tmp_path / "chutes.toml"
    config.write_text(
        '[[chutes]]\nname = "tiny"\nmodel = "tiny"\nengine = "vllm"\n'
        f"url = {json.dumps([f'http://127.0.0.1:{port_a}', f'http://127.0.0.1:{port_b}'])}\n"
        f"api_key_path = {json.dumps(str(key_file))}\n"
    )
    env = {"CHUTEBOX_API_KEYS": KEY}
    with (
        fake_engine("tiny", port=port_a),
        fake_engine("tiny", port=port_b),
        chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env) as served,
    ):
        base = served.base_url
        replies = [httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
                   for _ in range(4)]  # fmt: skip
        assert [r.status_code for r in replies] == [200] * 4, replies[0].text
        assert replies[0].json()["choices"][0]["message"]["content"]
        status = httpx.get(base + "/status", headers=HEADERS).json()["chutes"][0]
        # Routed over both engines, and the fields the remote engine publishes are enforced.
        assert set(status["routing"]["routed"]) == {"0", "1"}
        unknown = httpx.post(base + "/v1/chat/completions", json={**CHAT, "bogus_field": 1},
                             headers=HEADERS)  # fmt: skip
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "bogus_field"
        ready = ready_of(base)
        assert ready["code"] == 200
        urls = [r["url"] for r in ready["chutes"]["tiny"]["replicas"]]
        assert urls == [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
        assert [r["url"] for r in status["replicas"]] == urls  # the status page shows them


def test_requests_move_off_a_remote_replica_that_went_away(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    config = tmp_path / "chutes.toml"
    config.write_text(
        '[[chutes]]\nname = "tiny"\nmodel = "tiny"\napi_key_env = "ENGINE_KEY"\n'
        f"url = {json.dumps([f'http://127.0.0.1:{port_a}', f'http://127.0.0.1:{port_b}'])}\n"
    )
    env = {"CHUTEBOX_API_KEYS": KEY, "ENGINE_KEY": "engine-key"}
    with fake_engine("tiny", port=port_a), contextlib.ExitStack() as engine_b:
        engine_b.enter_context(fake_engine("tiny", port=port_b))
        with chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env) as served:
            base = served.base_url
            engine_b.close()  # the engine at port_b is gone
            replies = [httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
                       for _ in range(6)]  # fmt: skip
            assert [r.status_code for r in replies] == [200] * 6, replies[0].text
            replicas = ready_of(base)["chutes"]["tiny"]["replicas"]
            assert replicas[0]["state"] == "ready"
            assert replicas[1]["state"] == "unreachable", replicas
            assert f"127.0.0.1:{port_b}" in replicas[1]["detail"]


def test_a_remote_replica_that_stops_answering_is_down_then_back(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "chutes.toml"
    config.write_text(
        '[[chutes]]\nname = "tiny"\nmodel = "tiny"\n'
        f'url = ["http://127.0.0.1:{port}"]\napi_key_env = "TINY_ENGINE_KEY"\n'
    )
    env = {"CHUTEBOX_API_KEYS": KEY, "TINY_ENGINE_KEY": "engine-key"}
    with chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env,
                        ready_path="/health") as served:  # fmt: skip
        base = served.base_url
        # Down at boot: not ready, and /ready says why, naming the address.
        down = eventually(lambda: ready_of(base)["chutes"]["tiny"]["replicas"][0].get("detail"))
        assert f"127.0.0.1:{port}" in down and "refused" in down, down
        refused = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert f"127.0.0.1:{port}" in refused.json()["error"]["message"]
        with fake_engine("tiny", port=port):
            assert eventually(lambda: ready_of(base)["code"] == 200), ready_of(base)
            reply = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
            assert reply.status_code == 200, reply.text
        # The engine went away: the first request finds it refusing, answers 503 (no other
        # replica), and the chute is not ready until it answers again.
        gone = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
        assert gone.status_code == 503 and gone.headers["retry-after"], gone.text
        assert ready_of(base)["code"] == 503
        with fake_engine("tiny", port=port):
            assert eventually(lambda: ready_of(base)["code"] == 200), ready_of(base)
            back = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
            assert back.status_code == 200, back.text


def test_a_bad_remote_chute_leaves_the_others_serving(tmp_path: Path) -> None:
    """Three remote chutes: a good one, a refusing address, a wrong key, a wrong model name;
    each bad one is not ready with its own reason, and the good one serves."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "tiny"\nmodel = "tiny"\nurl = ["{url}"]\n'
        'api_key_env = "ENGINE_KEY"\n'
        f'[[chutes]]\nname = "nowhere"\nmodel = "tiny"\nurl = ["{refusing_address()}"]\n'
        f'[[chutes]]\nname = "wrong-key"\nmodel = "tiny"\nurl = ["{url}"]\n'
        'api_key_env = "OTHER_KEY"\n'
        f'[[chutes]]\nname = "wrong-name"\nmodel = "huge"\nurl = ["{url}"]\n'
        'api_key_env = "ENGINE_KEY"\n'
    )
    env = {"CHUTEBOX_API_KEYS": KEY, "ENGINE_KEY": "engine-key", "OTHER_KEY": "not-it"}
    with (
        fake_engine("tiny", port=port),
        chutebox_serve(
            ["--config", str(config)], tmp_path / "gw.log", env=env, ready_path="/health"
        ) as served,  # fmt: skip
    ):
        base = served.base_url

        def reasons() -> dict[str, str] | None:
            chutes = ready_of(base)["chutes"]
            found = {n: c["replicas"][0].get("detail", "") for n, c in chutes.items()}
            return found if all(found[n] for n in ("nowhere", "wrong-key", "wrong-name")) else None

        found = eventually(reasons)
        assert found is not None, ready_of(base)
        assert "refused the connection" in found["nowhere"]
        assert "refused chutebox's key (HTTP 401)" in found["wrong-key"]
        assert "serves tiny, not huge" in found["wrong-name"]
        assert ready_of(base)["code"] == 503
        assert eventually(lambda: ready_of(base)["chutes"]["tiny"]["state"] == "ready")
        reply = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
        assert reply.status_code == 200, reply.text


def test_a_remote_sglang_request_is_aborted_by_its_id_when_the_client_leaves(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "chutes.toml"
    config.write_text(
        f'[[chutes]]\nname = "sg"\nmodel = "sg"\nengine = "sglang"\n'
        f'url = ["http://127.0.0.1:{port}"]\napi_key_env = "ENGINE_KEY"\n'
    )
    env = {"CHUTEBOX_API_KEYS": KEY, "ENGINE_KEY": "engine-key"}
    stream = {"model": "sg", "stream": True, "fake_delay": 0.2,
              "messages": [{"role": "user", "content": " ".join(["w"] * 50)}]}  # fmt: skip
    with (
        fake_engine("sg", port=port) as engine,
        chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env) as served,
        httpx.Client(base_url=served.base_url, headers=HEADERS) as client,
    ):
        with client.stream("POST", "/v1/chat/completions", json=stream) as reply:
            assert reply.status_code == 200
            invocation = reply.headers["x-chutes-invocationid"]
            next(reply.iter_raw())  # started; leaving the block disconnects

        def aborted() -> bool:
            stats = httpx.get(engine.address + "/fake/stats").json()
            return invocation in stats["aborted"]

        assert eventually(aborted, 10), "no /abort_request with the request's rid reached it"


def test_a_remote_engine_over_https_is_verified_with_the_chutes_ca(tmp_path: Path) -> None:
    # One url string, no `model` (the engine serves the chute's name), a CA made here.
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    engine = FakeEngine("tiny", "engine-key", "fake").app()
    with serve_in_thread(engine, ssl_certfile=str(tmp_path / "cert.pem"),
                         ssl_keyfile=str(tmp_path / "key.pem")) as url:  # fmt: skip
        config = tmp_path / "chutes.toml"
        config.write_text(
            f'[[chutes]]\nname = "tiny"\nurl = "{url}"\napi_key_env = "TINY_ENGINE_KEY"\n'
            f'ca_file = "{tmp_path / "ca.pem"}"\n'
            f'[[chutes]]\nname = "untrusted"\nmodel = "tiny"\nurl = "{url}"\n'
            'api_key_env = "TINY_ENGINE_KEY"\n'
        )
        env = {"CHUTEBOX_API_KEYS": KEY, "TINY_ENGINE_KEY": "engine-key"}
        with chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env,
                            ready_path="/health") as served:  # fmt: skip
            base = served.base_url
            assert eventually(lambda: ready_of(base)["chutes"]["tiny"]["state"] == "ready")
            reply = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=HEADERS)
            assert reply.status_code == 200, reply.text
            # The system's trust store does not know the test's CA: never ready, and why.
            untrusted = ready_of(base)["chutes"]["untrusted"]["replicas"][0]
            assert "certificate was refused" in (untrusted.get("detail") or ""), untrusted
            refused = httpx.post(base + "/v1/chat/completions", headers=HEADERS,
                                 json={**CHAT, "model": "untrusted"})  # fmt: skip
            assert refused.status_code == 503, refused.text
