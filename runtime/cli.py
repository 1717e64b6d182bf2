"""`chutebox` command line. Flags are derived from the settings schema, not declared twice."""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from runtime.config.settings import ChuteSettings, Settings, load_settings
from runtime.errors import ConfigError

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
        if extra.get("json"):
            kwargs["type"] = _json_object
            kwargs["metavar"] = "JSON"
        elif annotation is bool:
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


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


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
    serve.add_argument(
        "chute_files", nargs="*", metavar="MODULE:ATTR",
        help="chute files built with the Chutes SDK's templates, e.g. my_chute:chute",
    )  # fmt: skip
    serve.add_argument("--config", type=Path, help="TOML or YAML file listing [[chutes]]")
    _schema_flags(serve, Settings, "gateway")
    _schema_flags(serve, ChuteSettings, "one chute, inline")
    plan = commands.add_parser(
        "plan",
        help="show how the chutes would be laid out on GPUs, and why; starts nothing",
        description="Plans from model facts found locally (model folders, the hub cache, "
        "converted GGUF files) or --params; GPUs from --gpus, else from this host.",
    )
    plan.add_argument("chute_files", nargs="*", metavar="MODULE:ATTR", help="chute files")
    plan.add_argument("--config", type=Path, help="TOML or YAML file listing [[chutes]]")
    plan.add_argument(
        "--gpus",
        action="append",
        metavar="SPEC",
        help="a node's GPUs, e.g. 8xH100-80GB or 2x4090,1xL4; repeat once per node",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--emit",
        choices=["table", "json", "k8s"],
        default="table",
        help="k8s: Kubernetes manifests of the plan (a Deployment per chute, a LeaderWorkerSet "
        "where a replica spans nodes, a Service, a ConfigMap; keys from a Secret)",
    )
    _schema_flags(plan, Settings, "gateway")
    _schema_flags(plan, ChuteSettings, "one chute, inline")
    kit = commands.add_parser(
        "conformance",
        help="check any Chutes/OpenAI-compatible endpoint against the API it claims",
        description="Black-box checks; exit status 1 when any fails.",
    )
    kit.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000")
    kit.add_argument("--api-key", help="the key to send (auth checks are skipped without one)")
    kit.add_argument("--model", help="a chat model")
    kit.add_argument("--embedding-model", help="an embedding model")
    kit.add_argument("--image-model", help="an image model")
    kit.add_argument("--rerank-model", help="a rerank (cross-encoder) model")
    kit.add_argument("--only", nargs="+", default=[], metavar="GROUP", help="run only these")
    kit.add_argument("--skip", nargs="+", default=[], metavar="GROUP", help="leave these out")
    kit.add_argument("--json", type=Path, dest="json_file", help="write results as JSON")
    kit.add_argument("--junit", type=Path, help="write results as JUnit XML")
    kit.add_argument("--openapi", type=Path, help="also validate replies against this document")
    kit.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    kit.add_argument(
        "--chute",
        metavar="MODULE:ATTR",
        help="cords: the chute file served at "
        "--base-url by the SDK's own runner (chutebox lists its own at /chutes)",
    )
    kit.add_argument("--python", help="--chute's interpreter, to read it with")
    image = commands.add_parser("image", help="render or build Docker images")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    render = image_commands.add_parser(
        "render", help="print a Dockerfile: a recipe (vllm, sglang, diffusion, embeddings, "
        "cpu), cuda (Dockerfile.cuda), module:attr naming your own Image, or a custom chute "
        "(module:chute): its own Image, made ready to run behind chutebox",
    )  # fmt: skip
    render.add_argument("target")
    build = image_commands.add_parser("build", help="render into a build context and build it")
    build.add_argument("target")
    for command in (render, build):
        command.add_argument("--python", help="a custom chute's interpreter, to read it with "
                             "(default: chutebox's own)")  # fmt: skip
    build.add_argument("--tag", help="image tag (default: the Image's username/name:tag)")
    build.add_argument("--platform", default="linux/amd64")
    build.add_argument("--context", type=Path, help="files to build with (your own images)")
    return parser


def flags_from(namespace: argparse.Namespace) -> dict[str, Any]:
    own = ("command", "config", "gpus", "json", "emit", "chute_files")
    flags = {k: v for k, v in vars(namespace).items() if k not in own}
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
    """The plain keys the gateway accepts; with no key configured at all (plain or named),
    one generated and printed once."""
    if not settings.auth:
        log.warning("authentication is off (--no-auth): anyone who can reach the port can call it")
        return ()
    keys = tuple(k.get_secret_value() for k in settings.api_keys)
    if keys or settings.keys or settings.keys_file:  # named keys: the only ones then
        return keys
    key = "cbx-" + secrets.token_urlsafe(32)
    print(
        f"chutebox: no API key configured; this run accepts:\n\n    {key}\n\n"
        "Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        file=sys.stderr,
        flush=True,
    )
    return (key,)


def read_settings(namespace: argparse.Namespace) -> Settings:
    from runtime.chute_files.loader import load_chute_file
    from runtime.config.defaults import default_chutes

    return load_settings(
        flags_from(namespace),
        os.environ,
        namespace.config,
        default_chutes=default_chutes,
        chute_files=namespace.chute_files,
        load_chute_file=load_chute_file,
    )


def serve(namespace: argparse.Namespace) -> int:
    from runtime.observability.logs import configure_logging
    from runtime.serve import build_server, run_server

    settings = read_settings(namespace)
    configure_logging(settings.log_level, settings.log_format)
    chutes, host = build_server(settings, os.environ)
    if settings.node_rank > 0:
        from runtime.serve import supervisor_config
        from runtime.supervision.node import NodeShare, run_node

        share = NodeShare(chutes, host, supervisor_config(settings), settings.node_rank)
        return run_node(share)
    return run_server(settings, api_keys_for(settings), chutes, host)


def plan(namespace: argparse.Namespace) -> int:
    from runtime.planner.render import as_json, as_table
    from runtime.serve import plan_for_settings

    settings = read_settings(namespace)
    layout = plan_for_settings(settings, os.environ, namespace.gpus)
    models = {c.served_name: c.model for c in settings.chutes}
    config = str(namespace.config) if namespace.config else "CONFIG"
    emit = "json" if namespace.json else namespace.emit
    if emit == "k8s":
        from images.recipes import RECIPES
        from runtime.deploy.k8s import manifests, render

        images = {name: recipe().uid for name, recipe in RECIPES.items()}
        print(render(manifests(layout, settings, images)), end="")
    elif emit == "json":
        print(as_json(layout, models, config))
    else:
        print(as_table(layout, models, config))
    return 0


def conformance(namespace: argparse.Namespace) -> int:
    from runtime.conformance.check import Target
    from runtime.conformance.groups import all_checks
    from runtime.conformance.openapi import OpenAPIValidator
    from runtime.conformance.report import table, write_json, write_junit
    from runtime.conformance.runner import run, select

    try:
        checks = select(all_checks(), namespace.only, namespace.skip)
        validator = OpenAPIValidator(namespace.openapi) if namespace.openapi else None
    except ValueError as exc:
        print(f"chutebox: error: {exc}", file=sys.stderr)
        return 2
    cords = None
    if namespace.chute:
        from runtime.chute_files.custom import chute_file, describe

        module, _, attr = namespace.chute.partition(":")
        try:
            code = describe(chute_file(module), attr or "chute", namespace.python)
        except ConfigError as exc:
            print(f"chutebox: error: {exc}", file=sys.stderr)
            return 2
        cords = tuple(dataclasses.asdict(cord) for cord in code.cords)
    target = Target(
        base_url=namespace.base_url, api_key=namespace.api_key, model=namespace.model,
        embedding_model=namespace.embedding_model, image_model=namespace.image_model,
        rerank_model=namespace.rerank_model, timeout=namespace.timeout, cords=cords,
    )  # fmt: skip
    results = run(checks, target, validator)
    print(table(results))
    if namespace.json_file:
        write_json(results, namespace.json_file)
    if namespace.junit:
        write_junit(results, namespace.junit)
    return 1 if any(r.status == "fail" for r in results) else 0


def image(namespace: argparse.Namespace) -> int:
    from images.build import build, render
    from images.image import ImageError
    from runtime.chute_files.custom import chute_file, is_custom_chute_file

    module, _, attr = namespace.target.partition(":")
    try:
        if attr and is_custom_chute_file(chute_file(module)):
            return chute_image(namespace, module, attr)
        if namespace.image_command == "render":
            print(render(namespace.target), end="")
            return 0
        return build(namespace.target, namespace.tag, namespace.platform, namespace.context)
    except (ImageError, ConfigError) as exc:
        print(f"chutebox: error: {exc}", file=sys.stderr)
        return 2


def chute_image(namespace: argparse.Namespace, module: str, attr: str) -> int:
    """A custom chute's image: its own `Image` as the SDK renders it, ready for chutebox."""
    from images.build import build_context
    from images.chute_image import chute_dockerfile
    from runtime.chute_files.custom import chute_file, describe

    path = chute_file(module)
    code = describe(path, attr, namespace.python, stand_in=True)
    dockerfile = chute_dockerfile(sdk_dockerfile=code.dockerfile, prebuilt=code.image,
                                  module=path.stem, attr=attr)  # fmt: skip
    if namespace.image_command == "render":
        print(dockerfile, end="")
        return 0
    tag = namespace.tag or code.image_tag or code.image or f"chutebox/{code.name}:latest"
    return build_context(dockerfile, tag, namespace.platform, {f"chute/{path.stem}.py": path})


def main(argv: Sequence[str] | None = None) -> int:
    namespace = build_parser().parse_args(argv)
    try:
        if namespace.command == "serve":
            return serve(namespace)
        if namespace.command == "plan":
            return plan(namespace)
        if namespace.command == "image":
            return image(namespace)
        if namespace.command == "conformance":
            return conformance(namespace)
    except ConfigError as exc:
        print(f"chutebox: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signals
        print("chutebox: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
