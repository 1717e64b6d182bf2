"""Checks, their outcomes, and the session they talk through."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anthropic
import httpx
import openai
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class Failed(Exception):
    """The server answered, but not as the API says it must."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got


class Skipped(Exception):
    """The check does not apply to this server (a feature or a model it lacks)."""


def expect(condition: bool, expected: str, got: object) -> None:
    if not condition:
        raise Failed(expected, _short(got))


def _short(value: object, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Target:
    """The server under test and the models to use."""

    base_url: str
    api_key: str | None = None
    model: str | None = None
    embedding_model: str | None = None
    image_model: str | None = None
    rerank_model: str | None = None
    timeout: float = 120.0
    # A chute file's cords as its description gives them, called at their own paths (the SDK's
    # runner); None: read the target's GET /chutes.
    cords: tuple[dict[str, Any], ...] | None = None


@dataclass
class Result:
    group: str
    name: str
    status: str  # pass | fail | skip
    sent: str = ""
    expected: str = ""
    got: str = ""
    seconds: float = 0.0


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: Any


@dataclass
class Session:
    """HTTP and SDK clients for one run; remembers what each check sent and received."""

    target: Target
    exchanges: list[Exchange] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        root = self.target.base_url.rstrip("/").removesuffix("/v1")
        self.http = httpx.Client(base_url=root, timeout=self.target.timeout)
        self.sdk = openai.OpenAI(base_url=root + "/v1", api_key=self.target.api_key or "none",
                                 max_retries=0, timeout=self.target.timeout)  # fmt: skip
        # Anthropic's client sends the key as `x-api-key`, as it does to Anthropic.
        self.claude = anthropic.Anthropic(base_url=root, api_key=self.target.api_key or "none",
                                          max_retries=0, timeout=self.target.timeout)  # fmt: skip

    def close(self) -> None:
        self.http.close()
        self.sdk.close()
        self.claude.close()

    def auth(self) -> dict[str, str]:
        key = self.target.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        sent = f"{method} {path}" + (f" {_short(body, 300)}" if body is not None else "")
        self.sent.append(sent)
        merged = self.auth() if headers is None else headers
        response = self.http.request(method, path, json=body, headers=merged, content=content)
        parsed: Any = None
        if response.headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
        self.exchanges.append(Exchange(method, path, response.status_code, parsed))
        return response

    def model(self) -> str:
        if not self.target.model:
            raise Skipped("no --model given")
        return self.target.model

    def embedding_model(self) -> str:
        if not self.target.embedding_model:
            raise Skipped("no --embedding-model given")
        return self.target.embedding_model

    def rerank_model(self) -> str:
        if not self.target.rerank_model:
            raise Skipped("no --rerank-model given")
        return self.target.rerank_model

    def image_model(self) -> str:
        if not self.target.image_model:
            raise Skipped("no --image-model given")
        return self.target.image_model


def conforms(schema: type[M], data: Any, what: str) -> M:
    """`data` parsed as `schema`, or a failure naming the first field at fault."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise Failed(f"{what} matching {schema.__name__}", f"{where}: {err['msg']}") from None


@dataclass(frozen=True)
class Check:
    """One named check in a group; `run` raises Failed or Skipped, or returns what it saw."""

    group: str
    name: str
    run: Callable[[Session], str]
    expected: str
