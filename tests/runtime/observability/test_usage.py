"""Usage read off replies without parsing them whole."""

from __future__ import annotations

import json

from runtime.observability.usage import Usage, find_usage


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
    assert find_usage(body) == Usage(5, 4, cached_tokens=2)
    assert find_usage(b'{"usage": {"prompt_tokens": 5, "note": "}", "completion_tokens": 1}}') == (
        Usage(5, 1)
    )


def test_the_responses_and_messages_apis_name_them_input_and_output() -> None:
    completed = (
        b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r",'
        b'"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":0},'
        b'"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":10}}}\n\n'
    )
    assert find_usage(completed) == Usage(7, 3)
    delta = (
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"input_tokens":12,"output_tokens":5}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert find_usage(delta) == Usage(12, 5)


def test_cached_tokens_as_each_api_names_them() -> None:
    responses = json.dumps(
        {
            "usage": {
                "input_tokens": 9,
                "input_tokens_details": {"cached_tokens": 4},
                "output_tokens": 2,
            }
        }
    ).encode()
    assert find_usage(responses) == Usage(9, 2, cached_tokens=4)
    # Anthropic's input_tokens leave out the cache's reads and writes; the prompt is all three.
    usage = {"input_tokens": 3, "cache_read_input_tokens": 6, "cache_creation_input_tokens": 1}
    messages = json.dumps({"usage": {**usage, "output_tokens": 5}}).encode()
    assert find_usage(messages) == Usage(10, 5, cached_tokens=6)


def test_a_rerank_reply_counts_its_total_as_prompt() -> None:
    assert find_usage(b'{"results": [], "usage": {"total_tokens": 17}}') == Usage(17, 0)
