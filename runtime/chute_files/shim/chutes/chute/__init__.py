"""`from chutes.chute import NodeSelector, Chute, ChutePack`, as the stand-in records them.

A custom chute's file imports here when no interpreter at hand has the real SDK: its `Chute`,
cords, hooks and jobs are recorded with the attributes `engines/cord_runner.py describe`
reads, so its image can still be rendered. Serving it needs the real SDK.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from typing import Any

from runtime.chute_files.record import remember_selector


class NodeSelector:
    """The SDK's five fields; unknown ones are refused instead of silently dropped."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        remember_selector(self, fields)


class Cord:
    """What `@chute.cord(...)` declared (the SDK's attribute names)."""

    def __init__(self, path: str | None = None, public_api_path: str | None = None,
                 public_api_method: str = "POST", stream: bool = False,
                 passthrough: bool = False, input_schema: Any = None,
                 minimal_input_schema: Any = None, output_content_type: str | None = None,
                 output_schema: Any = None, **_: Any) -> None:  # fmt: skip
        self._path = path
        self._public_api_path = "/" + public_api_path.strip("/") if public_api_path else None
        self._public_api_method = public_api_method
        self._stream = stream
        self._passthrough = passthrough
        self.input_schema = input_schema
        self.minimal_input_schema = minimal_input_schema
        self.output_content_type = output_content_type
        self.output_schema = output_schema
        self.input_models: list[Any] | None = None
        self._func: Callable[..., Any] | None = None

    @property
    def path(self) -> str:
        name = self._path or (self._func.__name__ if self._func else "")
        return "/" + name.strip("/")

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        self._func = func
        # The body's model: the annotation of the argument after `self`, as the SDK reads it.
        params = list(inspect.signature(func).parameters.values())[1:]
        model = params[0].annotation if params else None
        if isinstance(model, type) and hasattr(model, "model_json_schema"):
            self.input_models = [model]
        return func


class Job:
    def __init__(self, **_: Any) -> None:
        self._func: Callable[..., Any] | None = None

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        self._func = func
        return func


class Chute:
    """A custom chute, recorded: who it is, its image, cords, hooks and jobs."""

    def __init__(self, username: str, name: str, image: Any, readme: str = "",
                 concurrency: int = 1, node_selector: Any = None, **_: Any) -> None:  # fmt: skip
        self._username = username
        self.name = name
        self.image = image
        self.readme = readme
        self.concurrency = concurrency
        self.node_selector = node_selector
        self.uid = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{username}::chute::{name}"))
        self.cords: list[Cord] = []
        self.jobs: list[Job] = []
        self._startup_hooks: list[tuple[int, Callable[..., Any]]] = []
        self._shutdown_hooks: list[tuple[int, Callable[..., Any]]] = []

    def cord(self, **kwargs: Any) -> Cord:
        cord = Cord(**kwargs)
        self.cords.append(cord)
        return cord

    def job(self, **kwargs: Any) -> Job:
        job = Job(**kwargs)
        self.jobs.append(job)
        return job

    def on_startup(self, priority: int = 50) -> Callable[..., Any]:
        return self._hook(self._startup_hooks, priority)

    def on_shutdown(self, priority: int = 50) -> Callable[..., Any]:
        return self._hook(self._shutdown_hooks, priority)

    def _hook(self, hooks: list[Any], priority: int) -> Callable[..., Any]:
        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            hooks.append((priority, func))
            return func

        return register


class ChutePack:
    """What the SDK's templates return; a custom chute is a `Chute` itself."""

    chute: Any
