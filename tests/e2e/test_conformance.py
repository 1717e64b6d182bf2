"""The conformance kit against chutebox on real vLLM, and against vLLM's own server directly."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.e2e.conftest import API_KEY, ENGINE_ARGS, MODEL
from tests.support.kit import run_kit, statuses
from tests.support.servers import (
    ROOT,
    Served,
    chutebox_serve,
    vllm_server,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.serve]
OPENAI_SPEC = ROOT.parent / "shared" / "openai-openapi.yaml"
ENGINE_KEY = "vllm-own-key"


def test_chutebox_on_vllm_passes_every_check(vllm_gateway: Served, tmp_path: Path) -> None:
    junit = tmp_path / "kit.xml"
    code, report, output = run_kit(tmp_path, "--base-url", vllm_gateway.base_url,
                                   "--api-key", API_KEY, "--model", MODEL,
                                   "--junit", str(junit))  # fmt: skip
    assert code == 0, output
    seen = statuses(report)
    failed = [name for name, status in seen.items() if status == "fail"]
    assert not failed, output
    # Only the groups needing models (or a custom chute) this gateway lacks may skip, and
    # tool_choice "required", whose unbounded array the random-weights model never closes
    # within max_tokens.
    skipped = {name for name, status in seen.items() if status == "skip"}
    assert {name.split("/")[0] for name in skipped} <= {
        "embeddings",
        "images",
        "rerank",
        "tools",
        "cords",
    }, output
    assert skipped & {"tools/named", "tools/streamed"} == set(), output
    assert sum(status == "pass" for status in seen.values()) >= 24
    suites = ElementTree.parse(junit).getroot()
    assert int(suites.find("testsuite[@name='chat']").get("tests")) == 5  # type: ignore[union-attr]
    assert output.strip().splitlines()[-1].endswith("skipped")


@pytest.mark.skipif(not OPENAI_SPEC.exists(), reason="OpenAI's spec lies in ../shared")
def test_replies_are_checked_against_openais_published_spec(
    vllm_gateway: Served, tmp_path: Path
) -> None:
    code, report, output = run_kit(
        tmp_path, "--base-url", vllm_gateway.base_url, "--api-key", API_KEY, "--model", MODEL,
        "--only", "models", "chat", "completions", "--openapi", str(OPENAI_SPEC),
    )  # fmt: skip
    seen = statuses(report)
    assert seen["models/list"] == "pass", output
    # vLLM sends optional fields as null (`annotations: null`) where OpenAI's spec wants them
    # absent or an array; chutebox relays engine bodies untouched, so the kit reports it.
    failures = [r for r in report["results"] if r["status"] == "fail"]
    assert failures and code == 1, output
    assert all("is not of type" in r["got"] for r in failures), output


@pytest.fixture(scope="module")
def direct_vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's own OpenAI server on the same tiny model, no chutebox in front."""
    log = tmp_path_factory.mktemp("direct") / "vllm.log"
    # The flags chutebox's own chute passes, so that a gateway in front of it (below) can
    # pass the same checks.
    args = ["--served-model-name", MODEL, "--api-key", ENGINE_KEY, *shlex.split(ENGINE_ARGS)]
    env = {"VLLM_ENFORCE_STRICT_TOOL_CALLING": "0", "VLLM_ENABLE_RESPONSES_API_STORE": "1"}
    with vllm_server(tiny_model, log, args, env) as url:
        yield url


def test_the_kit_reports_what_plain_vllm_does_differently(direct_vllm: str, tmp_path: Path) -> None:
    code, report, output = run_kit(tmp_path, "--base-url", direct_vllm, "--api-key",
                                   ENGINE_KEY, "--model", MODEL)  # fmt: skip
    seen = statuses(report)
    assert code == 1, output  # it ran to the end and found differences
    assert len(seen) == 50 and "Traceback" not in output
    # Chutes' header and error conventions are chutebox's, not vLLM's.
    for check in ("auth/x-api-key", "auth/bare-authorization", "errors/envelope",
                  "headers/invocation-id", "headers/connections"):  # fmt: skip
        assert seen[check] == "fail", output
    assert seen["chat/non-stream"] == "pass" and seen["streaming/sse"] == "pass"
    assert seen["e2ee/whole"] == "skip"  # no chute_id: not a Chutes server


def test_chutebox_in_front_of_a_vllm_it_did_not_start_passes_every_check(
    direct_vllm: str, tmp_path: Path
) -> None:
    """The same vLLM server as above, now a remote chute (`url`): every check the kit
    failed on plain vLLM passes through the gateway."""
    config = tmp_path / "remote.toml"
    config.write_text(f'[[chutes]]\nname = "{MODEL}"\nmodel = "{MODEL}"\nurl = ["{direct_vllm}"]\n'
                      'api_key_env = "VLLM_KEY"\n')  # fmt: skip
    env = {"CHUTEBOX_API_KEYS": API_KEY, "VLLM_KEY": ENGINE_KEY}
    with chutebox_serve(["--config", str(config)], tmp_path / "gw.log", env=env) as served:
        code, report, output = run_kit(tmp_path, "--base-url", served.base_url, "--api-key",
                                       API_KEY, "--model", MODEL)  # fmt: skip
    seen = statuses(report)
    assert code == 0 and len(seen) == 50, output
    for check in ("auth/x-api-key", "auth/bare-authorization", "errors/envelope",
                  "headers/invocation-id", "headers/connections", "chat/non-stream",
                  "e2ee/whole", "e2ee/stream", "e2ee/replay"):  # fmt: skip
        assert seen[check] == "pass", output
    skipped = {name.split("/")[0] for name, status in seen.items() if status == "skip"}
    assert skipped <= {"embeddings", "images", "rerank", "tools", "cords"}, output


LITELLM_PYTHON = ROOT / ".venv-litellm" / "bin" / "python"


@pytest.mark.skipif(not LITELLM_PYTHON.exists(), reason="make install creates .venv-litellm")
def test_litellms_chutes_provider_chats_and_streams(vllm_gateway: Served) -> None:
    result = subprocess.run(
        [str(LITELLM_PYTHON), str(ROOT / "tests/support/litellm_client.py"),
         vllm_gateway.base_url, API_KEY, MODEL],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["chat"]["total_tokens"] > 0
    assert out["stream"] == out["chat"]["content"]  # temperature 0: the same five tokens
