"""Drives a server with LiteLLM's `chutes/` provider, changing only `api_base`.

Run with the interpreter of an environment that has litellm:
    python tests/support/litellm_client.py BASE_URL KEY CHAT_MODEL|- [EMBEDDING_MODEL]
Prints one JSON object with what came back.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for the cost map

import litellm  # noqa: E402


def main() -> None:
    base, key, chat_model = sys.argv[1:4]
    embedding_model = sys.argv[4] if len(sys.argv) > 4 else None
    common = {"api_base": base.rstrip("/") + "/v1", "api_key": key}
    messages = [{"role": "user", "content": "Hello there"}]
    out: dict[str, object] = {}
    if chat_model != "-":
        reply = litellm.completion(model=f"chutes/{chat_model}", messages=messages,
                                   max_tokens=5, temperature=0, **common)  # fmt: skip
        out["chat"] = {"content": reply.choices[0].message.content,
                       "total_tokens": reply.usage.total_tokens}  # fmt: skip
        stream = litellm.completion(model=f"chutes/{chat_model}", messages=messages,
                                    max_tokens=5, temperature=0, stream=True, **common)  # fmt: skip
        out["stream"] = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    if embedding_model:
        try:
            litellm.embedding(model=f"chutes/{embedding_model}", input=["a"], **common)
            out["chutes_provider_embeddings"] = "supported"
        except litellm.exceptions.BadRequestError as exc:
            out["chutes_provider_embeddings"] = f"refused by LiteLLM: {type(exc).__name__}"
        # What LiteLLM users do for embed.chutes.ai: its OpenAI-compatible provider.
        vectors = litellm.embedding(model=f"openai/{embedding_model}", input=["a", "b"], **common)
        out["embeddings"] = [len(item["embedding"]) for item in vectors.data]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
