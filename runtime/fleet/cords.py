"""A custom chute's code as the gateway sees it: its cords, and who and what it is.

Read once, when the chute is built, from the chute's own interpreter (`engines/cord_runner.py
describe`), never by importing the chute's code into the gateway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.errors import ConfigError

# The engine argument that names the chute in its file (`module:attr`).
ATTR_FLAG = "--attr"
# The SDK's own rule for cord paths.
PATH = re.compile(r"^(/[a-z0-9_]+[a-z0-9-_]*)+$")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Cord:
    """One `@chute.cord`: where it is invoked and what it takes and gives."""

    function: str
    path: str  # the public path: `public_api_path`, else the cord's own path
    method: str
    stream: bool = False
    passthrough: bool = False
    body_schema: Mapping[str, Any] | None = None
    output_content_type: str | None = None


@dataclass(frozen=True)
class ChuteCode:
    """What a custom chute's file defines, as `describe` reported it."""

    name: str
    username: str
    chute_id: str
    concurrency: int
    cords: tuple[Cord, ...]
    jobs: tuple[str, ...] = ()
    image: str | None = None  # a prebuilt image's reference, when `image` is a string
    dockerfile: str | None = None  # the SDK's rendering of its `Image`, otherwise
    image_tag: str | None = None  # that Image's `username/name:tag`

    @classmethod
    def from_description(cls, data: Mapping[str, Any], where: str) -> ChuteCode:
        """Checked: what the gateway will route by must be what the SDK would accept."""
        try:
            cords = tuple(_cord(entry) for entry in data["cords"])
            code = cls(
                name=str(data["name"]),
                username=str(data["username"]),
                chute_id=str(data["uid"]),
                concurrency=int(data.get("concurrency") or 1),
                cords=cords,
                jobs=tuple(str(job) for job in data.get("jobs", ())),
                image=data.get("image"),
                dockerfile=data.get("dockerfile"),
                image_tag=data.get("image_tag"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"chute file {where}: incomplete description ({exc})") from None
        if code.jobs:
            raise ConfigError(f"chute file {where}: defines @chute.job {', '.join(code.jobs)}; "
                              "chutebox serves cords, not jobs")  # fmt: skip
        if not code.cords:
            raise ConfigError(f"chute file {where}: {code.name} defines no @chute.cord")
        seen: set[tuple[str, str]] = set()
        for cord in code.cords:
            if (cord.path, cord.method) in seen:
                raise ConfigError(f"chute file {where}: two cords at {cord.method} {cord.path}")
            seen.add((cord.path, cord.method))
        return code

    def find(self, path: str, method: str) -> Cord | None:
        for cord in self.cords:
            if cord.path == path and cord.method == method:
                return cord
        return None


def _cord(entry: Mapping[str, Any]) -> Cord:
    path, method = str(entry["path"]), str(entry["method"]).upper()
    if not PATH.match(path) or method not in METHODS:
        raise ValueError(f"cord {entry.get('function')}: {method} {path}")
    return Cord(
        function=str(entry["function"]),
        path=path,
        method=method,
        stream=bool(entry.get("stream")),
        passthrough=bool(entry.get("passthrough")),
        body_schema=entry.get("body_schema"),
        output_content_type=entry.get("output_content_type"),
    )


def chute_attr(args: Sequence[str]) -> str:
    """The name the chute has in its file, as the engine's `--attr` carries it."""
    for i, arg in enumerate(args):
        if arg == ATTR_FLAG and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(ATTR_FLAG + "="):
            return arg.partition("=")[2]
    return "chute"


def template_chute_id(name: str) -> str:
    """A stable id for a chute that is not a custom chute file: the SDK's rule
    (uuid5 of `{username}::chute::{name}`), with chutebox as the owner."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"chutebox::chute::{name}"))
