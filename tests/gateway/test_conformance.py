"""The conformance kit against the gateway on fake engines: it passes what the fake does
right and fails what it cannot do (the fake echoes; it has no n, tools or JSON modes)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from runtime.conformance.check import Result, Target
from runtime.conformance.groups import all_checks
from runtime.conformance.report import summary, table, write_json, write_junit
from runtime.conformance.runner import run, select
from tests.gateway.conftest import KEYS, Gateway


def test_kit_against_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    target = Target(gateway.base_url, api_key=KEYS[0], model="tiny", timeout=30)
    results = {f"{r.group}/{r.name}": r for r in run(all_checks(), target)}
    for name in ("auth/bearer", "auth/x-api-key", "auth/bare-authorization", "auth/missing-key",
                 "auth/wrong-key", "models/list", "errors/envelope", "errors/unknown-model",
                 "headers/invocation-id", "headers/connections", "streaming/sse",
                 "chat/non-stream", "tokenize/round-trip", "e2ee/instances", "e2ee/whole",
                 "e2ee/stream", "e2ee/replay", "e2ee/tampered"):  # fmt: skip
        assert results[name].status == "pass", results[name]
    for name in ("chat/n", "tools/named", "response_format/json_schema"):
        failure = results[name]
        assert failure.status == "fail" and failure.sent and failure.expected and failure.got
    assert results["embeddings/shape"].status == "skip"
    assert results["embeddings/shape"].got == "no --embedding-model given"


def test_reports(tmp_path: Path) -> None:
    results = [
        Result("chat", "a", "pass", got="ok"),
        Result("chat", "b", "fail", sent="POST /x", expected="200", got="500"),
        Result("images", "c", "skip", got="no --image-model given"),
    ]
    assert summary(results) == "1 passed, 1 failed, 1 skipped"
    text = table(results)
    assert "FAIL  chat/b" in text and "expected: 200" in text
    assert text.splitlines()[-1] == "1 passed, 1 failed, 1 skipped"
    write_junit(results, tmp_path / "r.xml")
    root = ElementTree.parse(tmp_path / "r.xml").getroot()
    chat = root.find("testsuite[@name='chat']")
    assert chat is not None and chat.get("failures") == "1" and chat.get("tests") == "2"
    write_json(results, tmp_path / "r.json")
    assert '"status": "skip"' in (tmp_path / "r.json").read_text()


def test_group_selection() -> None:
    checks = all_checks()
    assert {c.group for c in select(checks, ["auth"], [])} == {"auth"}
    assert "auth" not in {c.group for c in select(checks, [], ["auth"])}
    with pytest.raises(ValueError, match="unknown group"):
        select(checks, ["nope"], [])
