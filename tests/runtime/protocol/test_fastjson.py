"""Request JSON through orjson changes no value that the standard library would keep."""

from __future__ import annotations

import json

import pytest

from runtime.protocol import fastjson

BIG = [2**64 - 1, 2**64, 2**70, -(2**63), -(2**63) - 1, 10**30, -(10**30)]


@pytest.mark.parametrize("number", BIG)
def test_integers_past_64_bits_come_through_exactly(number: int) -> None:
    body = json.dumps({"seed": number, "extra": {"n": [number]}}).encode()
    data = fastjson.loads(body)
    assert data == {"seed": number, "extra": {"n": [number]}}
    assert isinstance(data["seed"], int)
    assert json.loads(fastjson.dumps(data)) == data


def test_a_request_reads_and_writes_as_with_json() -> None:
    request = {"model": "m", "temperature": 0.7, "stop": ["\n", "é", "日本"],
               "messages": [{"role": "user", "content": "say \"hi\" \\ \u2028"}],
               "logit_bias": {"50256": -100}, "n": 1, "stream": False, "user": None}  # fmt: skip
    assert fastjson.loads(json.dumps(request).encode()) == request
    assert json.loads(fastjson.dumps(request)) == request


NOT_JSON = [b"{", b"NaN", b"\xff\xfe", b'{"a": "\\ud800"}', b"[1,]",
            b'{"seed": 12345678901234567890, "temperature": NaN}']  # fmt: skip


@pytest.mark.parametrize("body", NOT_JSON)
def test_what_is_not_valid_json_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        fastjson.loads(body)
