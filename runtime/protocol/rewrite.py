"""Request rewrites the Chutes platform applies before a request reaches the engine.

Pure functions over the request's JSON object; each rule can be switched off in settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THINKING_SUFFIX = ":THINKING"


@dataclass(frozen=True)
class RewriteRules:
    include_usage: bool = True
    tool_choice: bool = True
    thinking: bool = True
    top_logprobs: bool = True


def split_thinking(model: str) -> tuple[str, bool]:
    """`name:THINKING` → (`name`, True); anything else is returned unchanged."""
    if model.endswith(THINKING_SUFFIX):
        return model[: -len(THINKING_SUFFIX)], True
    return model, False


def wants_thinking(header: bytes | None) -> bool:
    """Whether an `X-Enable-Thinking` header's value asks for thinking."""
    return header is not None and header.strip().lower() in (b"true", b"1", b"yes")


def rewrite_request(
    body: dict[str, Any],
    served_name: str,
    rules: RewriteRules,
    *,
    thinking: bool,
    chat: bool,
    usage_option: bool = True,
) -> dict[str, Any]:
    """Return the body the engine receives: `model` rewritten, then the platform's rules.

    `usage_option`: the route takes OpenAI's `stream_options` (chat and completions; the
    Responses and Messages streams report usage in their last events anyway)."""
    out = dict(body)
    out["model"] = served_name
    if rules.include_usage and usage_option and out.get("stream"):
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    if rules.tool_choice and chat and out.get("tools") and "tool_choice" not in out:
        out["tool_choice"] = "auto"
    if rules.thinking and chat and thinking:
        kwargs = dict(out.get("chat_template_kwargs") or {})
        kwargs["thinking"] = True
        kwargs["enable_thinking"] = True
        out["chat_template_kwargs"] = kwargs
    if rules.top_logprobs and chat and out.get("logprobs") and out.get("top_logprobs") is None:
        out["top_logprobs"] = 1
    return out
