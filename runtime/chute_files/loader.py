"""Import a chute file and turn the template call it made into chutebox chute settings."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.chute_files.custom import SHIM, chute_file, describe, is_template_file
from runtime.chute_files.record import (
    TemplateCall,
    call_for,
    check_engine_args,
    checked_selector,
    remember,
    remember_selector,
    selector_fields,
    to_settings,
)
from runtime.errors import ConfigError

TEMPLATES = {
    "vllm": ("chutes.chute.template.vllm", "build_vllm_chute"),
    "sglang": ("chutes.chute.template.sglang", "build_sglang_chute"),
    "embedding": ("chutes.chute.template.embedding", "build_embedding_chute"),
    "diffusion": ("chutes.chute.template.diffusion", "build_diffusion_chute"),
}
SUPPORTED = ("chutebox serves the SDK's build_vllm_chute, build_sglang_chute, "
             "build_embedding_chute and build_diffusion_chute, and custom chutes (a Chute with "
             "its own cords)")  # fmt: skip


def sdk_installed() -> bool:
    spec = importlib.util.find_spec("chutes")
    return spec is not None and not str(spec.origin or "").startswith(str(SHIM))


def _recording(template: str, original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def build(*args: Any, **kwargs: Any) -> Any:
        given = dict(signature.bind(*args, **kwargs).arguments)
        if template != "diffusion":
            check_engine_args(given.get("engine_args"))
        result = original(*args, **kwargs)
        call = TemplateCall(template, given, selector_fields(given.get("node_selector")))
        return remember(result, call)

    build.__chutebox_recording__ = True  # type: ignore[attr-defined]
    return build


def _wrap_sdk() -> None:
    """Record the real SDK's template calls and NodeSelector fields."""
    chute_module = importlib.import_module("chutes.chute")
    real_selector = chute_module.NodeSelector
    if not getattr(real_selector, "__chutebox_recording__", False):

        def node_selector(**fields: Any) -> Any:
            checked_selector(fields)
            return remember_selector(real_selector(**fields), fields)

        node_selector.__chutebox_recording__ = True  # type: ignore[attr-defined]
        setattr(chute_module, "NodeSelector", node_selector)  # noqa: B010 - patching a module
    for template, (module_name, function) in TEMPLATES.items():
        module = importlib.import_module(module_name)
        original = getattr(module, function)
        if not getattr(original, "__chutebox_recording__", False):
            setattr(module, function, _recording(template, original))


def _use_shim() -> None:
    if str(SHIM) not in sys.path:
        sys.path.insert(0, str(SHIM))


def load_chute_file(target: str, python: str | None = None) -> dict[str, Any]:
    """`module:attr` → chute settings (a dict for `ChuteSettings`). A template chute's file is
    read here; a custom chute's is described by its own interpreter (`python`)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"chute file {target!r}: write it as module:attr, e.g. my_chute:chute")
    path = chute_file(module_name)
    if not path.is_file():
        raise ConfigError(f"chute file {target}: no {path.name} in {path.parent}")
    if not is_template_file(path):
        return custom_settings(path, attr, python)
    if sdk_installed():
        _wrap_sdk()
    else:
        _use_shim()
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
        value = getattr(module, attr)
    except (ValueError, TypeError) as exc:  # what the templates raise for bad arguments
        raise ConfigError(f"chute file {target}: {exc}") from None
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"chute file {target}: {exc}") from None
    finally:
        sys.path.remove(str(Path.cwd()))
    call = call_for(value)
    if call is None:
        kind = type(value).__name__
        raise ConfigError(f"chute file {target}: {attr} is a {kind}, not a chute its template "
                          f"made. {SUPPORTED}.")  # fmt: skip
    return to_settings(call)


def custom_settings(path: Path, attr: str, python: str | None) -> dict[str, Any]:
    """A custom chute as chutebox chute settings: the file is its engine's model."""
    code = describe(path, attr, python)
    settings: dict[str, Any] = {
        "engine": "chute",
        "model": str(path.resolve()),
        "name": code.name,
        "concurrency": code.concurrency,
        "engine_args": f"--attr {attr}",
    }
    if python is not None:
        settings["python"] = python
    return settings
