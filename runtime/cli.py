"""`chutebox` command line. Flags are derived from the settings schema, not declared twice."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from runtime import __version__
from runtime.errors import ConfigError
from runtime.settings import ChuteSettings, Settings, load_settings

log = logging.getLogger("chutebox")


def _schema_flags(parser: argparse.ArgumentParser, model: type[BaseModel], title: str) -> None:
    group = parser.add_argument_group(title)
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, Mapping) else {}
        if extra.get("no_flag"):
            continue
        flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        annotation = field.annotation
        origin = typing.get_origin(annotation)
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin in (tuple, list, dict):
            kwargs["action"] = "append"
            kwargs["metavar"] = "KEY=VALUE" if origin is dict else name.upper().rstrip("S")
        elif origin is typing.Literal:
            kwargs["choices"] = typing.get_args(annotation)
        else:
            kwargs["metavar"] = name.upper()
        default = "" if field.is_required() or field.default in (None, (), {}) else field.default
        suffix = f" (default: {default})" if default not in ("", None) else ""
        group.add_argument(flag, help=(field.description or "") + suffix, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chutebox", description="Serve models locally behind the Chutes API."
    )
    parser.add_argument("--version", action="version", version=f"chutebox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start the gateway and its engines",
        description="With no --model and no --config, serves the embedded CPU default: "
        "SmolLM2-135M-Instruct on vLLM's CPU build, and all-MiniLM-L6-v2 embeddings.",
    )
    serve.add_argument("--config", type=Path, help="TOML or YAML file listing [[chutes]]")
    _schema_flags(serve, Settings, "gateway")
    _schema_flags(serve, ChuteSettings, "one chute, inline")
    return parser


def flags_from(namespace: argparse.Namespace) -> dict[str, Any]:
    flags = {k: v for k, v in vars(namespace).items() if k not in ("command", "config")}
    for name, value in list(flags.items()):
        if (
            name in ChuteSettings.model_fields
            and typing.get_origin(ChuteSettings.model_fields[name].annotation) is dict
        ):
            flags[name] = dict(_pair(item, name) for item in value)
    return flags


def _pair(item: str, name: str) -> tuple[str, str]:
    key, eq, value = item.partition("=")
    if not eq or not key:
        raise ConfigError(f"--{name.replace('_', '-')} takes KEY=VALUE, got {item!r}")
    return key, value


def api_keys_for(settings: Settings) -> tuple[str, ...]:
    """The keys the gateway accepts; with none configured, one generated and printed once."""
    if not settings.auth:
        log.warning("authentication is off (--no-auth): anyone who can reach the port can call it")
        return ()
    keys = tuple(k.get_secret_value() for k in settings.api_keys)
    if keys:
        return keys
    key = "cbx-" + secrets.token_urlsafe(32)
    print(
        f"chutebox: no API key configured; this run accepts:\n\n    {key}\n\n"
        "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        file=sys.stderr,
        flush=True,
    )
    return (key,)


def serve(namespace: argparse.Namespace) -> int:
    from runtime.defaults import default_chutes
    from runtime.server import run_server

    settings = load_settings(
        flags_from(namespace), os.environ, namespace.config, default_chutes=default_chutes
    )
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_server(settings, api_keys_for(settings), os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    namespace = build_parser().parse_args(argv)
    try:
        if namespace.command == "serve":
            return serve(namespace)
    except ConfigError as exc:
        print(f"chutebox: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
