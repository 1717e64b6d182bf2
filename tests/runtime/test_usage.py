"""Usage read off replies without parsing them whole."""

from __future__ import annotations

import json

from runtime.usage import Usage, find_usage


def test_usage_of_a_json_body() -> None:
    body = json.dumps({"data": [{"embedding": [0.1] * 100}],
                       "usage": {"prompt_tokens": 7, "total_tokens": 7}}).encode()  # fmt: skip
    assert find_usage(body) == Usage(7, 0)


def test_the_last_usage_of_a_stream_tail_counts() -> None:
    tail = (
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
        b'data: {"choices":[],"usage": {"prompt_tokens": 3, "completion_tokens": 9}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert find_usage(tail) == Usage(3, 9)


def test_no_usage_or_a_broken_one_is_none() -> None:
    assert find_usage(b'{"id": "x"}') is None
    assert find_usage(b'data: {"usage": null}\n\n') is None
    assert find_usage(b'data: {"usage": {"prompt_tokens": 3, "comp') is None
    assert find_usage(b'{"text": "the word \\"usage\\" in a reply"}') is None


def test_nested_usage_details_and_odd_spacing_are_read_too() -> None:
    body = (b'{"usage" :\n {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2},'
            b' "completion_tokens": 4}}')  # fmt: skip
    assert find_usage(body) == Usage(5, 4)
    assert find_usage(b'{"usage": {"prompt_tokens": 5, "note": "}", "completion_tokens": 1}}') == (
        Usage(5, 1)
    )
