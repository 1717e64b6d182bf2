"""The published E2EE client, unchanged (`chutes-e2ee` 0.1.0 under the OpenAI SDK), against
the gateway in front of real vLLM: sealed answers equal the answers in clear at temperature 0,
and nothing of the prompt or the answer reaches the gateway's log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from chutes_e2ee import ChutesE2EETransport
from openai import OpenAI

from tests.e2e.conftest import API_KEY, MODEL
from tests.support.servers import Served, eventually

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROMPT = "Describe a quiet harbour where marlinspike sailors mend nets."


def test_sealed_chat_equals_chat_in_clear(vllm_gateway: Served) -> None:
    base = vllm_gateway.base_url
    transport = ChutesE2EETransport(API_KEY, api_base=base)
    sealed = OpenAI(api_key=API_KEY, base_url=base + "/v1", max_retries=0,
                    http_client=httpx.Client(transport=transport, timeout=120))  # fmt: skip
    clear = OpenAI(api_key=API_KEY, base_url=base + "/v1", max_retries=0, timeout=120)
    logged = len(vllm_gateway.log_text())
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 24,
        "temperature": 0,
    }
    plain = clear.chat.completions.create(**ask)
    whole = sealed.chat.completions.create(**ask)
    chunks = list(
        sealed.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    )
    answer = plain.choices[0].message.content
    assert answer and whole.choices[0].message.content == answer
    assert whole.usage == plain.usage
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    # The access lines are written off the event loop, the stream's once it ended.
    line = '"POST /e2e/invoke" 200'
    assert eventually(lambda: vllm_gateway.log_text()[logged:].count(line) == 2, 10)
    log = vllm_gateway.log_text()[logged:]
    assert "marlinspike" not in log
    assert len(answer) < 16 or answer not in log  # 24 random tokens: no accidental match
