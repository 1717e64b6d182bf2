"""`from chutes.chute import NodeSelector, Chute`."""

from __future__ import annotations

from typing import Any

from runtime.chute_files.record import remember_selector


class NodeSelector:
    """The SDK's five fields; unknown ones are refused instead of silently dropped."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        remember_selector(self, fields)


class Chute:
    """A custom chute (your own cords). chutebox cannot run arbitrary cords; see the loader."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.name = kwargs.get("name", "")
        self.custom = True

    def cord(self, *args: Any, **kwargs: Any) -> Any:
        return lambda function: function

    def on_startup(self, *args: Any, **kwargs: Any) -> Any:
        return lambda function: function
