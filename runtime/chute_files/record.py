"""Recorded template calls, and what they mean as chutebox chute settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ConfigError
from runtime.fleet.backend import split_args

SELECTOR_FIELDS = ("gpu_count", "min_vram_gb_per_gpu", "max_hourly_price_per_gpu", "include",
                   "exclude")  # fmt: skip
# The Chutes vLLM/SGLang templates refuse these inside engine_args (ValueError).
TEMPLATE_OWNED_ARGS = ("--revision", "--served-model-name", "--api-key")
ENGINES = {"vllm": "vllm", "sglang": "sglang", "embedding": "vllm-embedding",
           "diffusion": "diffusers"}  # fmt: skip
_POOLING = {"cls": "CLS", "mean": "MEAN", "last": "LAST", "lasttoken": "LAST"}


@dataclass
class TemplateCall:
    """One `build_*_chute(...)` call: which template, and the arguments given."""

    template: str
    kwargs: dict[str, Any]
    selector: dict[str, Any] = field(default_factory=dict)


_CALLS: dict[int, tuple[object, TemplateCall]] = {}
_SELECTORS: dict[int, tuple[object, dict[str, Any]]] = {}


def remember(result: object, call: TemplateCall) -> object:
    _CALLS[id(result)] = (result, call)  # the object is kept, so its id is not reused
    return result


def call_for(result: object) -> TemplateCall | None:
    entry = _CALLS.get(id(result))
    return entry[1] if entry and entry[0] is result else None


def checked_selector(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Refuse NodeSelector fields the SDK would silently drop (`num_gpus`…)."""
    unknown = sorted(set(kwargs) - set(SELECTOR_FIELDS))
    if unknown:
        raise ValueError(
            f"NodeSelector got unknown field(s) {', '.join(unknown)}; its fields are "
            + ", ".join(SELECTOR_FIELDS)
        )
    return dict(kwargs)


def remember_selector(selector: object, kwargs: dict[str, Any]) -> object:
    _SELECTORS[id(selector)] = (selector, checked_selector(kwargs))
    return selector


def selector_fields(selector: object) -> dict[str, Any]:
    """The fields a NodeSelector was given explicitly (SDK defaults are not requests)."""
    entry = _SELECTORS.get(id(selector))
    if entry and entry[0] is selector:
        return dict(entry[1])
    if isinstance(selector, dict):
        return checked_selector(selector)
    return {}


def check_engine_args(engine_args: str | None) -> None:
    for arg in split_args(engine_args or ""):
        if arg.partition("=")[0] in TEMPLATE_OWNED_ARGS:
            raise ValueError(f"engine_args may not contain {arg.partition('=')[0]}: the "
                             "template sets it")  # fmt: skip


def to_settings(call: TemplateCall) -> dict[str, Any]:
    """The chutebox chute settings a template call describes."""
    k = call.kwargs
    settings: dict[str, Any] = {"engine": ENGINES[call.template]}
    if call.template == "diffusion":
        settings |= {"name": k["name"], "model": k["model_name_or_url"]}
        if k.get("pipeline_args"):
            raise ConfigError("build_diffusion_chute: pipeline_args are not supported by chutebox")
    else:
        settings |= {"name": k["model_name"], "model": k["model_name"]}
        engine_args = k.get("engine_args") or ""
        if call.template == "embedding":
            engine_args = _embedding_args(k, engine_args)
        settings["engine_args"] = engine_args
    if k.get("revision"):
        settings["revision"] = k["revision"]
    if k.get("concurrency") is not None:
        settings["concurrency"] = int(k["concurrency"])
    if call.selector:
        settings["node_selector"] = call.selector
    return settings


def _embedding_args(k: dict[str, Any], engine_args: str) -> str:
    extra = []
    pooling = str(k.get("pooling_type") or "auto").lower()
    if pooling != "auto":
        if pooling not in _POOLING:
            raise ConfigError(f"build_embedding_chute: unknown pooling_type {pooling!r}")
        extra.append(
            "--pooler-config " + json.dumps(json.dumps({"pooling_type": _POOLING[pooling]}))
        )
    if k.get("max_embed_len"):
        extra.append(f"--max-model-len {int(k['max_embed_len'])}")
    if k.get("enable_chunked_processing"):
        raise ConfigError(
            "build_embedding_chute: enable_chunked_processing is not available in the vLLM this "
            "runtime drives; leave it off and keep inputs within max_embed_len"
        )
    return " ".join([engine_args, *extra]).strip()
