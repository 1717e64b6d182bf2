"""responses (OpenAI's Responses API) and messages (Anthropic's Messages API).

Replies are parsed by the official SDKs (`openai`, `anthropic`) as a client would, and checked
against the schemas the gateway publishes; streams are read frame by frame as well, since an
SDK forgives framing a stricter client would not.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from runtime.conformance.check import Check, Failed, Session, Skipped, conforms, expect
from runtime.conformance.groups.tools import CITY
from runtime.protocol.messages import (
    AnthropicErrorResponse,
    Message,
    MessageStreamEvent,
    MessageTokensCount,
)
from runtime.protocol.responses_api import Response, ResponseStreamEvent

ASK = "Write a few words about the sea."
MESSAGES: Any = [{"role": "user", "content": ASK}]
# Anthropic's tool shape: the same function the tools group calls.
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": CITY,
    "strict": True,
}


def _named_events(session: Session, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a stream whose frames are `event: NAME` + `data: JSON`, checking that
    each names its own type."""
    session.sent.append(f"POST {path} {json.dumps(body)[:300]}")
    events: list[dict[str, Any]] = []
    name = None
    with session.http.stream("POST", path, json=body, headers=session.auth()) as reply:
        expect(reply.status_code == 200, "200", reply.status_code)
        expect(
            reply.headers.get("content-type", "").startswith("text/event-stream"),
            "Content-Type text/event-stream",
            reply.headers.get("content-type"),
        )
        for line in reply.iter_lines():
            if not line or line.startswith(":"):
                continue
            if line.startswith("event: "):
                name = line[len("event: ") :]
                continue
            expect(line.startswith("data: "), "only `event:` and `data:` lines", line)
            data = json.loads(line[len("data: ") :])
            expect(
                name == data.get("type"),
                "an `event:` line naming each event's type",
                [name, data.get("type")],
            )
            events.append(data)
            name = None
    expect(bool(events), "events", events)
    return events


def response_create(session: Session) -> str:
    body = {"model": session.model(), "input": ASK, "max_output_tokens": 16, "temperature": 0}
    reply = session.request("POST", "/v1/responses", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    made = conforms(Response, reply.json(), "a response")
    expect(bool(made.output), "output items", made.output)
    usage = made.usage
    expect(
        usage is not None and usage.total_tokens == usage.input_tokens + usage.output_tokens,
        "usage with total = input + output",
        usage,
    )
    sdk = session.sdk.responses.create(
        model=session.model(), input=ASK, max_output_tokens=16, temperature=0
    )
    expect(
        sdk.output_text == _text(made),
        "the SDK's output_text equal to the reply's text",
        [sdk.output_text, _text(made)],
    )
    return f"{made.status} {usage}"


def _text(made: Response) -> str:
    return "".join(
        part.get("text", "")
        for item in made.output
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def response_stream(session: Session) -> str:
    body = {
        "model": session.model(),
        "input": ASK,
        "max_output_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    events = [
        conforms(ResponseStreamEvent, e, "a response event")
        for e in _named_events(session, "/v1/responses", body)
    ]
    kinds = [e.type for e in events]
    expect(kinds[0] == "response.created", "response.created first", kinds[:3])
    expect(kinds[-1] == "response.completed", "response.completed last", kinds[-3:])
    last = conforms(Response, (events[-1].model_extra or {}).get("response"), "the response")
    deltas = "".join(
        str((e.model_extra or {}).get("delta", ""))
        for e in events
        if e.type == "response.output_text.delta"
    )
    expect(
        deltas == _text(last), "the deltas adding up to the completed text", [deltas, _text(last)]
    )
    return f"{len(events)} events"


def response_retrieve(session: Session) -> str:
    made = session.sdk.responses.create(model=session.model(), input=ASK, max_output_tokens=8)
    reply = session.request("GET", f"/v1/responses/{made.id}")
    error = reply.json().get("error") if reply.status_code == 404 else None
    if isinstance(error, dict) and error.get("code") != "response_not_found":
        # The engine itself answered that it keeps none (a chutebox gateway that lost track
        # of the id says `response_not_found`, and fails).
        raise Skipped(
            f"the engine stores no responses ({error.get('message')}); vLLM keeps "
            "them with VLLM_ENABLE_RESPONSES_API_STORE=1"
        )
    expect(
        reply.status_code == 200,
        "200 for a response just made with store: true",
        f"{reply.status_code} {reply.text[:300]}",
    )
    again = conforms(Response, reply.json(), "a response")
    expect(again.id == made.id, "the same response", again.id)
    missing = session.request("GET", "/v1/responses/resp_no_such_response")
    expect(missing.status_code == 404, "404 for an unknown id", missing.status_code)
    return made.id


def message_create(session: Session) -> str:
    made = session.claude.messages.create(model=session.model(), max_tokens=16, messages=MESSAGES)
    message = conforms(Message, made.model_dump(), "a message")
    expect(
        message.stop_reason in ("end_turn", "max_tokens", "stop_sequence"),
        "a stop_reason",
        message.stop_reason,
    )
    expect(
        message.usage.input_tokens > 0 and message.usage.output_tokens > 0,
        "input and output tokens",
        message.usage,
    )
    return f"{message.stop_reason} {message.usage}"


def message_stream(session: Session) -> str:
    body = {"model": session.model(), "max_tokens": 16, "messages": MESSAGES, "stream": True}
    events = [
        conforms(MessageStreamEvent, e, "a message event")
        for e in _named_events(session, "/v1/messages", body)
    ]
    kinds = [e.type for e in events if e.type != "ping"]
    expect(
        kinds[0] == "message_start" and kinds[-1] == "message_stop",
        "message_start first, message_stop last",
        kinds,
    )
    expect("message_delta" in kinds, "a message_delta with the stop reason", kinds)
    with session.claude.messages.stream(
        model=session.model(), max_tokens=16, messages=MESSAGES
    ) as stream:
        final = stream.get_final_message()
    expect(final.usage.output_tokens > 0, "the SDK's final message with usage", final.usage)
    return f"{len(events)} events"


def message_tool_use(session: Session) -> str:
    request: Any = {
        "model": session.model(),
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    try:
        made = session.claude.messages.create(**request)
    except anthropic.BadRequestError as exc:
        if "tool" in str(exc.message).lower() and "parser" in str(exc.message).lower():
            raise Skipped(f"the server has tool calling switched off: {exc.message}") from None
        raise
    if made.stop_reason == "max_tokens":
        raise Skipped(
            "the model did not finish its grammar-constrained call within 200 "
            "tokens; nothing to judge"
        )
    uses = [b for b in made.content if b.type == "tool_use"]
    expect(
        len(uses) >= 1 and uses[0].name == "get_weather",
        "a get_weather tool_use block",
        made.model_dump(),
    )
    args = uses[0].input
    expect(
        isinstance(args, dict) and args.get("city") in ("Paris", "Rome"),
        "input matching the tool's schema",
        args,
    )
    expect(made.stop_reason == "tool_use", 'stop_reason "tool_use"', made.stop_reason)
    return f"get_weather({json.dumps(args)})"


def message_count_tokens(session: Session) -> str:
    body = {"model": session.model(), "messages": MESSAGES}
    reply = session.request("POST", "/v1/messages/count_tokens", body)
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    counted = conforms(MessageTokensCount, reply.json(), "a token count")
    made = session.claude.messages.create(model=session.model(), max_tokens=1, messages=MESSAGES)
    expect(
        counted.input_tokens == made.usage.input_tokens,
        "the count equal to the input_tokens a message reports",
        [counted.input_tokens, made.usage.input_tokens],
    )
    return str(counted.input_tokens)


def message_error(session: Session) -> str:
    body = {"model": session.model(), "messages": MESSAGES}  # no max_tokens
    reply = session.request("POST", "/v1/messages", body)
    expect(400 <= reply.status_code < 500, "a 4xx without max_tokens", reply.status_code)
    try:
        error = conforms(AnthropicErrorResponse, reply.json(), "Anthropic's error body")
    except ValueError:
        raise Failed("a JSON error body", reply.text[:300]) from None
    return f"{reply.status_code} {error.error.type}"


CHECKS = [
    Check("responses", "create", response_create, "a response whose text the SDK reads"),
    Check("responses", "stream", response_stream, "named events, created → completed"),
    Check("responses", "retrieve", response_retrieve, "a stored response retrieved by id"),
    Check("messages", "create", message_create, "an Anthropic message with usage"),
    Check("messages", "stream", message_stream, "Anthropic's event sequence, intact"),
    Check("messages", "tool_use", message_tool_use, "a forced tool yields a tool_use block"),
    Check("messages", "count_tokens", message_count_tokens, "count equals the input usage"),
    Check("messages", "error", message_error, "errors in Anthropic's shape"),
]
