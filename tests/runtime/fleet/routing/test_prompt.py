"""The cacheable text of a request: what the engine renders first comes first, and a
conversation that grows keeps its earlier text as a prefix."""

from __future__ import annotations

from runtime.fleet.backend import CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES, RESPONSES
from runtime.fleet.routing.prompt import prompt_text

SYSTEM = {"role": "system", "content": "You answer from the document. " * 20}


def test_a_growing_conversation_keeps_its_text_as_a_prefix() -> None:
    first = {"messages": [SYSTEM, {"role": "user", "content": "Who wrote it?"}]}
    later = {
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": "Someone."},
            {"role": "user", "content": "When?"},
        ]
    }
    one, two = prompt_text(first, CHAT), prompt_text(later, CHAT)
    assert one and two and two.startswith(one)


def test_tools_come_first_and_content_parts_are_read() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    parts = {
        "tools": [tool],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }
    text = prompt_text(parts, CHAT)
    assert text is not None
    assert text.index("get_weather") < text.index("hello")
    assert prompt_text({"messages": [{"role": "user", "content": "hello"}]}, CHAT) != text


def test_roles_are_part_of_the_text() -> None:
    user = prompt_text({"messages": [{"role": "user", "content": "x" * 300}]}, CHAT)
    system = prompt_text({"messages": [{"role": "system", "content": "x" * 300}]}, CHAT)
    assert user != system


def test_completions_responses_and_messages() -> None:
    assert prompt_text({"prompt": "abc"}, COMPLETIONS) == "abc"
    assert prompt_text({"prompt": ["first", "second"]}, COMPLETIONS) == "first"
    assert prompt_text({"prompt": [1, 2, 3]}, COMPLETIONS) == "1 2 3"
    responses = prompt_text({"instructions": "Be brief.", "input": "Hello"}, RESPONSES)
    assert responses is not None and responses.index("Be brief.") < responses.index("Hello")
    anthropic = {"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}
    messages = prompt_text(anthropic, MESSAGES)
    assert messages is not None and messages.index("Be brief.") < messages.index("Hi")


def test_routes_without_a_cached_prompt_have_no_text() -> None:
    assert prompt_text({"input": "a sentence"}, EMBEDDINGS) is None
