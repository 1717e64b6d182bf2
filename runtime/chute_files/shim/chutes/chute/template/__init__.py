"""The SDK's standard templates, recorded by chutebox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.chute_files.record import (
    TemplateCall,
    check_engine_args,
    remember,
    selector_fields,
)

STANDARD = {"vllm": "vllm", "sglang": "vllm", "embedding": "embedding", "diffusion": "diffusion"}


@dataclass
class RecordedChute:
    """What `pack.chute` exposes in the SDK: name, template kind, selector, limits."""

    name: str
    standard_template: str
    node_selector: Any
    concurrency: int
    revision: str | None


@dataclass
class ChuteTemplatePack:
    chute: RecordedChute


def builder(template: str) -> Any:
    """`build_<template>_chute` with the SDK's positional parameters, recording its call."""
    if template == "diffusion":
        positional = ("username", "name", "model_name_or_url", "node_selector")
        name_key, default_concurrency = "name", 3
    else:
        positional = ("username", "model_name", "node_selector")
        name_key, default_concurrency = "model_name", 32

    def build(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(positional):
            raise TypeError(f"build_{template}_chute takes {len(positional)} positional arguments")
        call = {"node_selector": None, **dict(zip(positional, args, strict=False)), **kwargs}
        missing = [p for p in positional if p not in call]
        if missing:
            raise TypeError(f"build_{template}_chute missing argument(s): {', '.join(missing)}")
        return record(template, call, name_key, default_concurrency)

    build.__name__ = f"build_{template}_chute"
    return build


def record(template: str, kwargs: dict[str, Any], name_key: str, default_concurrency: int) -> Any:
    if template != "diffusion":
        if not kwargs.get("revision"):
            raise ValueError("You must provide a revision (a pinned commit) for the model")
        check_engine_args(kwargs.get("engine_args"))
    selector = kwargs.get("node_selector")
    call = TemplateCall(template, kwargs, selector_fields(selector))
    chute = RecordedChute(
        name=kwargs[name_key], standard_template=STANDARD[template], node_selector=selector,
        concurrency=kwargs.get("concurrency") or default_concurrency,
        revision=kwargs.get("revision"),
    )  # fmt: skip
    return remember(ChuteTemplatePack(chute), call)
