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
