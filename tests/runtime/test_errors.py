import json

from runtime.errors import (
    CapacityError,
    InvalidRequestError,
    envelope,
    from_engine_body,
    sse_error_event,
)


def test_envelope_has_both_openai_and_chutes_keys() -> None:
    body = envelope(InvalidRequestError("bad", param="temperature"))
    assert body == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "temperature",
                  "code": None},
        "detail": "bad",
    }  # fmt: skip


def test_capacity_error_carries_its_code() -> None:
    assert envelope(CapacityError("full"))["error"]["code"] == "concurrency_limit_exceeded"


def test_vllm_error_keeps_status_and_message_and_drops_integer_code() -> None:
    raw = {"error": {"message": "too long", "type": "BadRequestError", "param": None, "code": 400}}
    error = from_engine_body(400, json.dumps(raw).encode())
    assert (error.status_code, error.message, error.type, error.code) == (
        400, "too long", "BadRequestError", None,
    )  # fmt: skip


def test_fastapi_and_plain_text_engine_errors() -> None:
    assert from_engine_body(422, b'{"detail": "nope"}').message == "nope"
    error = from_engine_body(500, b"Internal Server Error")
    assert (error.message, error.type) == ("Internal Server Error", "server_error")
    assert from_engine_body(401, b'{"error": "Unauthorized"}').message == "Unauthorized"


def test_sse_error_event_is_one_frame() -> None:
    frame = sse_error_event(InvalidRequestError("x"))
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert json.loads(frame[6:])["error"]["message"] == "x"


def test_anthropic_routes_get_anthropics_error_body_and_stream_event() -> None:
    from runtime.errors import CapacityError, Dialect, EngineUnavailableError

    busy = CapacityError("all slots taken")
    assert Dialect.ANTHROPIC.body(busy) == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "all slots taken"}
    }  # fmt: skip
    down = EngineUnavailableError("restarting")
    assert Dialect.ANTHROPIC.body(down)["error"]["type"] == "overloaded_error"
    event = Dialect.ANTHROPIC.sse_event(down)
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert Dialect.OPENAI.sse_event(down).startswith(b'data: {"error": ')
