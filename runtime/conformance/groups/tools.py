"""tools (named, required, streamed) and response_format (json_object, json_schema)."""

from __future__ import annotations

import json
from typing import Any

from runtime.conformance.check import Check, Session, Skipped, conforms, expect
from runtime.conformance.groups.chat import _stream
from runtime.protocol.responses import CreateChatCompletionResponse

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
    "required": ["city"],
    "additionalProperties": False,
}
# `strict: true` asks for arguments held to the schema (grammar-constrained decoding on vLLM
# and SGLang): a small model then produces a call worth judging.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": CITY,
        "strict": True,
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                   "count": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["answer", "count"],
    "additionalProperties": False,
}  # fmt: skip


def _reply(session: Session, **fields: Any) -> CreateChatCompletionResponse:
    body = {"model": session.model(), "messages": ASK, "max_tokens": 60, "temperature": 0,
            **fields}  # fmt: skip
    reply = session.request("POST", "/v1/chat/completions", body)
    if reply.status_code == 400 and "tool" in reply.text.lower() and "enable" in reply.text.lower():
        raise Skipped("the server has tool calling switched off")
    expect(reply.status_code == 200, "200", f"{reply.status_code} {reply.text[:300]}")
    return conforms(CreateChatCompletionResponse, reply.json(), "a chat completion")


def _city(arguments: str) -> str:
    try:
        args = json.loads(arguments)
    except ValueError:
        args = None
    expect(isinstance(args, dict) and args.get("city") in ("Paris", "Rome"),
           "arguments that parse and match the schema", arguments)  # fmt: skip
    assert isinstance(args, dict)
    return str(args["city"])


def named_tool(session: Session) -> str:
    message = _reply(session, tools=[WEATHER], tool_choice=NAMED).choices[0].message
    calls = message.tool_calls or []
    expect(len(calls) >= 1 and calls[0].function.name == "get_weather",
           "a get_weather call", message.model_dump())  # fmt: skip
    return f"get_weather(city={_city(calls[0].function.arguments)})"


def required_tool(session: Session) -> str:
    choice = _reply(session, tools=[WEATHER], tool_choice="required", max_tokens=200).choices[0]
    if choice.finish_reason == "length":
        raise Skipped("the model did not finish its tool call within max_tokens; nothing to judge")
    message = choice.message
    calls = message.tool_calls or []
    expect(len(calls) >= 1, "at least one tool call", message.model_dump())
    return f"get_weather(city={_city(calls[0].function.arguments)})"


def streamed_tool(session: Session) -> str:
    whole = _reply(session, tools=[WEATHER], tool_choice=NAMED).choices[0].message
    body = {"model": session.model(), "messages": ASK, "max_tokens": 60, "temperature": 0,
            "tools": [WEATHER], "tool_choice": NAMED, "stream": True}  # fmt: skip
    name, arguments = "", ""
    for chunk in _stream(session, body):
        for choice in chunk.get("choices", []):
            for call in choice.get("delta", {}).get("tool_calls") or []:
                function = call.get("function") or {}
                name += function.get("name") or ""
                arguments += function.get("arguments") or ""
    expect(name == "get_weather", "the streamed deltas name get_weather", name)
    expected_args = json.loads((whole.tool_calls or [])[0].function.arguments)
    expect(json.loads(arguments) == expected_args, "the same arguments as without streaming",
           [arguments, expected_args])  # fmt: skip
    return f"{name}({arguments})"


def json_object(session: Session) -> str:
    reply = _reply(session, response_format={"type": "json_object"}, max_tokens=200)
    choice = reply.choices[0]
    if choice.finish_reason == "length":
        raise Skipped("the model did not finish its JSON within max_tokens; nothing to judge")
    try:
        value = json.loads(choice.message.content or "")
    except ValueError:
        value = None
    expect(isinstance(value, dict), "a JSON object", choice.message.content)
    return str(choice.message.content)[:80]


def json_schema(session: Session) -> str:
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER,
                                                  "strict": True}}  # fmt: skip
    content = _reply(session, response_format=fmt).choices[0].message.content or ""
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    valid = (isinstance(value, dict) and set(value) == {"answer", "count"}
             and value["answer"] in ("yes", "no") and isinstance(value["count"], int)
             and 0 <= value["count"] <= 9)  # fmt: skip
    expect(valid, "JSON valid against the requested schema", content)
    return content


CHECKS = [
    Check("tools", "named", named_tool, "a named tool_choice yields a parseable call"),
    Check("tools", "required", required_tool, 'tool_choice "required" yields a call'),
    Check("tools", "streamed", streamed_tool, "streamed tool-call deltas reassemble to the call"),
    Check("response_format", "json_object", json_object, "json_object output parses"),
    Check("response_format", "json_schema", json_schema, "json_schema output validates"),
]
