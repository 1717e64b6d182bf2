"""A custom chute's description, checked before anything routes by it."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.fleet.cords import ChuteCode, chute_attr, template_chute_id


def described(**changes: Any) -> dict[str, Any]:
    cord = {"function": "echo", "path": "/echo", "method": "post", "stream": False}
    return {"name": "toolbox", "username": "tester", "uid": "id-1", "concurrency": 2,
            "cords": [cord], **changes}  # fmt: skip


def test_a_description_becomes_the_chutes_code() -> None:
    code = ChuteCode.from_description(described(), "toolbox:chute")
    assert (code.name, code.chute_id, code.concurrency) == ("toolbox", "id-1", 2)
    cord = code.find("/echo", "POST")
    assert cord is not None and cord.function == "echo" and code.find("/echo", "GET") is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jobs": ["train"]}, "@chute.job train"),
        ({"cords": []}, "defines no @chute.cord"),
        ({"cords": [{"function": "a", "path": "/a", "method": "POST"}] * 2}, "two cords"),
        ({"cords": [{"function": "a", "path": "/Bad Path", "method": "POST"}]}, "incomplete"),
        ({"cords": [{"function": "a", "path": "/a", "method": "TRACE"}]}, "incomplete"),
        ({"uid": None, "name": None, "cords": None}, "incomplete"),
    ],
)
def test_what_the_gateway_cannot_route_by_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ChuteCode.from_description(described(**changes), "toolbox:chute")


def test_the_attr_rides_in_the_engine_args_and_ids_are_stable() -> None:
    assert chute_attr(["--attr", "app"]) == "app" == chute_attr(["--attr=app"])
    assert chute_attr([]) == "chute"
    assert template_chute_id("tiny") == template_chute_id("tiny") != template_chute_id("other")
