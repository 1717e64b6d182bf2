"""The one settings schema: config file, environment variables and CLI flags all feed it.

Every field of `Settings` and `ChuteSettings` is reachable three ways: a key in the config file
(TOML or YAML), an environment variable `CHUTEBOX_<FIELD>` (or the name in the field's `env`
extra), and a flag `--<field-with-dashes>` that `runtime.cli` derives from the schema. Precedence:
flags over environment over file over defaults. This module and the CLI are the only places
that read `os.environ`; everything after them takes frozen values.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from runtime.config.engine_url import check_url
from runtime.config.keys import KeySettings, check_keys, read_keys_file
from runtime.errors import ConfigError
from runtime.planner.model import parse_params
from runtime.planner.selector import NodeSelector

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[^\s]+$")
_ADAPTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ENV_PREFIX = "CHUTEBOX_"


class ChuteSettings(BaseModel):
    """One served model: what clients call it, where it comes from, and how its engine runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        description="a local model folder, a local .gguf file, or a hub id (org/name); for an "
        "engine at `url`, the name it serves (default: `name`)"
    )
    name: str | None = Field(
        None, description="the `model` clients send (default: the hub id, folder or file name)"
    )
    revision: str | None = Field(
        None, description="pinned 40-hex commit of a hub model (required for hub ids)"
    )
    engine: str = Field("vllm", description="engine backend: vllm (or fake, for tests)")
    engine_args: str = Field("", description="extra engine CLI arguments, as one string")
    concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="requests in flight before 429 (default: 32, or 3 for diffusion)",
    )
    python: str | None = Field(
        None, description="interpreter that runs the engine (default: chutebox's own)"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="extra environment for the engine, KEY=VALUE",
        json_schema_extra={"flag": "--engine-env", "no_env": True},
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the engine runs: auto picks cuda when NVIDIA GPUs are visible"
    )
    price_prompt: float = Field(0.0, ge=0, description="USD per 1M prompt tokens, for /v1/models")
    price_completion: float = Field(
        0.0, ge=0, description="USD per 1M completion tokens, for /v1/models"
    )
    startup_timeout: float = Field(
        1800.0, gt=0, description="seconds to wait for the engine to become ready"
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters (vLLM), each served as the model CHUTE:NAME: NAME=FOLDER",
        json_schema_extra={"flag": "--adapter", "no_env": True},
    )
    adapter_slots: int = Field(
        4, ge=1, le=256, description="LoRA adapters one replica's engine holds at once"
    )
    load: Literal["always", "on-demand"] = Field(
        "always",
        description="always: the engine runs from start to stop; on-demand: it starts with the "
        "first request and stops after keep_alive without one (or to make room)",
    )
    load_timeout: float = Field(
        300.0,
        gt=0,
        description="seconds a request waits for its on-demand chute to load before a 503 "
        "(the load goes on for the next request)",
    )
    keep_alive: str = Field(
        "5m",
        description='how long an on-demand chute stays loaded after its last request: "30s", '
        '"5m", "1h", "0" (unload when idle), "-1" (never)',
    )
    node_selector: dict[str, Any] | None = Field(
        None,
        description="Chutes NodeSelector: gpu_count, min_vram_gb_per_gpu, include, exclude, …",
        json_schema_extra={"flag": "--node-selector", "json": True},
    )
    max_model_len: int | None = Field(
        None, ge=1, description="context the planner sizes the KV cache for"
    )
    replicas: int | None = Field(
        None, ge=1, le=64, description="engine replicas (default: fill the GPUs left over)"
    )
    params: str | None = Field(
        None, description="parameter count (e.g. 70B) when the model is not local yet"
    )
    custom_all_reduce: bool = Field(
        False,
        description="let vLLM use its custom all-reduce (the Chutes templates disable it)",
    )
    routing: Literal["prefix", "least-outstanding"] = Field(
        "prefix",
        description="how requests spread over replicas: to the one that can start the prompt "
        "soonest, its cached prefix weighed against the prompts queued there, or by load alone",
    )
    routing_memory_mb: int = Field(
        16, ge=1, le=4096, description="memory the prefix router may use for this chute (MiB)"
    )
    routing_kv_events: bool = Field(
        False,
        description="prefix routing also follows the engines' KV-cache events (vLLM): exact, "
        "at one /tokenize call per request (bench/routing.py measured it slower on CPU engines)",
    )
    migration_limit: int = Field(
        3,
        ge=0,
        le=16,
        description="times a chat or completions request whose engine dies under it is moved "
        "to another ready replica, its stream continued where it was (0: off)",
    )
    migration_wait: float = Field(
        60.0,
        ge=0,
        description="seconds a moved request waits for a ready replica (a restart) when none is",
    )

    url: tuple[str, ...] = Field(
        (),
        description="an OpenAI-compatible engine chutebox does not start, https://host:port "
        "(or http:// on a private network; repeatable: one per replica); `model` is then the "
        "name that engine serves",
        json_schema_extra={"flag": "--url"},
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) that sign the certificate of the engine at an "
        "https `url` (default: the system's trust store, or the file SSL_CERT_FILE names)",
    )
    api_key_env: str | None = Field(
        None, description="environment variable holding the key of the engine at `url`"
    )
    api_key_path: Path | None = Field(
        None, description="file holding the key of the engine at `url` (its first line)"
    )
    nodes: int = Field(
        1,
        ge=1,
        le=64,
        description="nodes one replica spans, each running `chutebox serve` with the same "
        "config and its own --node-rank (the engine's own multi-node launch)",
    )
    dist_port: int = Field(
        29500,
        ge=1,
        le=65535,
        description="port on the leader node where a multi-node engine's ranks meet (vLLM "
        "--master-port, SGLang --dist-init-addr)",
    )

    @model_validator(mode="before")
    @classmethod
    def _served_model(cls, data: Any) -> Any:
        # An engine at `url` serving the chute's own name needs it only once.
        if isinstance(data, dict) and data.get("url") and "model" not in data and data.get("name"):
            return {**data, "model": data["name"]}
        return data

    @field_validator("url", mode="before")
    @classmethod
    def _one_url(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value  # one string: one replica

    @field_validator("url")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            check_url(url)
        return value

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, adapters: dict[str, str]) -> dict[str, str]:
        for name in adapters:
            if not _ADAPTER.match(name):
                raise ValueError(f"adapter {name!r}: letters, digits and . _ - only")
        return adapters

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def keep_alive_seconds(self) -> float | None:
        """Seconds an idle on-demand chute stays loaded (None: forever)."""
        return parse_duration(self.keep_alive)

    @model_validator(mode="after")
    def _remote_or_local(self) -> ChuteSettings:
        remote = ("api_key_env", "api_key_path")
        if not self.url:
            given = [name for name in (*remote, "ca_file") if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{given[0]} names the key of an engine at `url`; give url")
            return self
        if self.api_key_env is not None and self.api_key_path is not None:
            raise ValueError("give the remote engine's key as api_key_env or api_key_path, "
                             "not both")  # fmt: skip
        if self.ca_file is not None and not all(u.startswith("https:") for u in self.url):
            raise ValueError("ca_file verifies an engine reached over TLS: its url must be "
                             "https://")  # fmt: skip
        started = [name for name in ("engine_args", "python", "revision", "params",
                                     "max_model_len", "node_selector")
                   if getattr(self, name)]  # fmt: skip
        if started:
            raise ValueError(f"{started[0]} is for engines chutebox starts; the engine at "
                             "`url` runs elsewhere")  # fmt: skip
        if self.nodes > 1:
            raise ValueError("nodes is for engines chutebox starts; the engine at `url` "
                             "runs elsewhere")  # fmt: skip
        if self.replicas is not None and self.replicas != len(self.url):
            raise ValueError(f"replicas={self.replicas} but {len(self.url)} url(s): each url "
                             "is one replica")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _one_group(self) -> ChuteSettings:
        if self.nodes > 1 and (self.replicas or 1) > 1:
            raise ValueError(
                "a chute spanning several nodes runs one replica here; run another group "
                "and list both leaders as `url`s of one chute"
            )
        return self

    @property
    def remote(self) -> bool:
        return bool(self.url)

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            NodeSelector.from_mapping(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_params(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("revision")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and not _HEX40.match(value):
            raise ValueError("must be a pinned 40-hex commit sha, as on Chutes")
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not _NAME.match(value) or value.endswith(":THINKING")):
            raise ValueError("must be non-empty, without spaces, and not end in ':THINKING'")
        return value

    # Resolved once, when the settings are read: a name derived from the filesystem must not
    # change while serving (a GGUF file removed after its conversion, say).
    _served_name: str = PrivateAttr("")

    def model_post_init(self, context: Any) -> None:
        self._served_name = self.name or _derived_name(self.model)

    @property
    def served_name(self) -> str:
        return self._served_name


def _derived_name(model: str) -> str:
    """The file's stem or the folder's name for a local model, the hub id otherwise."""
    path = Path(model).expanduser()
    if path.is_file():
        return path.stem
    if path.is_dir():
        return path.name
    return model


class Settings(BaseModel):
    """Gateway-wide settings plus the chutes to serve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="address the gateway listens on")
    port: int = Field(8000, ge=0, le=65535, description="port the gateway listens on")
    api_keys: tuple[SecretStr, ...] = Field(
        (),
        description="accepted API key (repeatable); none → one is generated and printed",
        json_schema_extra={"flag": "--api-key", "env": "CHUTEBOX_API_KEYS"},
    )
    api_key_file: Path | None = Field(None, description="file with one API key per line")
    keys: tuple[KeySettings, ...] = Field(
        (),
        description="named keys with limits",
        json_schema_extra={"no_flag": True, "no_env": True},
    )
    keys_file: Path | None = Field(
        None,
        description="file of [[keys]] tables (named keys with limits), re-read when it changes "
        "or on SIGHUP",
    )
    usage_db: Path | None = Field(
        None,
        description="SQLite file where usage per key, chute and minute is kept (default: "
        "usage.db in cache_dir; an app built without it keeps usage in memory)",
    )
    auth: bool = Field(True, description="require an API key (--no-auth opts out)")
    public_models: bool = Field(True, description="GET /v1/models without a key, as on Chutes")
    strict_params: bool = Field(
        True, description="refuse request fields the engine does not know (400 naming them)"
    )
    rewrite_include_usage: bool = Field(
        True, description="streaming requests get stream_options.include_usage=true"
    )
    rewrite_tool_choice: bool = Field(True, description='tools without tool_choice → "auto"')
    rewrite_thinking: bool = Field(
        True, description="X-Enable-Thinking / ':THINKING' suffix set chat_template_kwargs"
    )
    rewrite_top_logprobs: bool = Field(True, description="logprobs without top_logprobs → 1")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="largest request body accepted (413 beyond)"
    )
    cache_dir: Path = Field(
        Path("~/.cache/chutebox").expanduser(),
        description="where prepared models (converted GGUF files) are kept",
    )
    hf_endpoint: str | None = Field(
        None, description="hub endpoint for downloads", json_schema_extra={"env": "HF_ENDPOINT"}
    )
    hf_home: Path | None = Field(
        None, description="hub cache root", json_schema_extra={"env": "HF_HOME"}
    )
    hf_token: SecretStr | None = Field(
        None, description="hub token for gated models", json_schema_extra={"env": "HF_TOKEN"}
    )
    shutdown_timeout: float = Field(
        30.0, ge=0, description="seconds in-flight requests get to finish on shutdown"
    )
    max_n: int = Field(16, ge=1, le=128, description="largest `n` (choices per request) accepted")
    max_messages: int = Field(2048, ge=1, description="most chat messages one request may carry")
    max_loaded: int = Field(
        0,
        ge=0,
        description="most chutes loaded at once (0: no cap); loading an on-demand chute past it "
        "first unloads the least recently used idle one",
    )
    queue_size: int = Field(
        0, ge=0, description="requests that may wait for a slot on a full chute (0: 429 at once)"
    )
    queue_timeout: float = Field(
        30.0, gt=0, description="seconds a queued request waits for a slot before its 429"
    )
    upstream_connect_timeout: float = Field(
        10.0, gt=0, description="seconds to connect to an engine before a 502"
    )
    upstream_read_timeout: float = Field(
        900.0, ge=0, description="seconds an engine may stay silent mid-reply (0: no limit)"
    )
    upstream_max_connections: int = Field(
        512, ge=1, description="most connections open to one engine; a burst past it waits"
    )
    engine_link: Literal["unix", "tcp"] = Field(
        "unix",
        description="how engines that can are reached: a Unix socket in a folder only this "
        "user can open, or a loopback port",
    )
    header_timeout: float = Field(
        10.0, gt=0, description="seconds a client has to send a request's headers"
    )
    body_timeout: float = Field(
        30.0, gt=0, description="seconds a request body may stall between two pieces"
    )
    keepalive_timeout: int = Field(
        5, ge=1, description="seconds an idle keep-alive client connection stays open"
    )
    max_connections: int = Field(
        4096, ge=1, description="open client connections; past it a new one gets 503 at once"
    )
    sse_keepalive: float = Field(
        15.0, ge=0, description="seconds of stream silence before a keep-alive comment (0: off)"
    )
    cors_origins: tuple[str, ...] = Field(
        (),
        description="browser origin allowed to call the API (repeatable; none: CORS off)",
        json_schema_extra={"flag": "--cors-origin"},
    )
    metrics: bool = Field(True, description="serve Prometheus metrics on GET /metrics")
    otlp_endpoint: str | None = Field(
        None,
        description="send a trace span per request to this OTLP collector, and start vLLM "
        "chutes with it too (their spans join the request's): host:port for gRPC, the whole "
        "…/v1/traces URL for http/protobuf (default: no tracing)",
        json_schema_extra={"env": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] = Field(
        "grpc",
        description="how spans reach the collector (vLLM's default too)",
        json_schema_extra={"env": "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
    )
    ui: bool = Field(True, description="serve the status page and playground at / (--no-ui)")
    access_log: bool = Field(True, description="log one line per request")
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    node_rank: int = Field(
        0,
        ge=0,
        le=63,
        description="this node's rank in chutes spanning several nodes: 0 runs the gateway "
        "and rank 0 of each engine, others only their engines' share",
    )
    leader_address: str = Field(
        "127.0.0.1",
        description="address of the node of rank 0, as the other nodes reach it (vLLM "
        "--master-addr, SGLang --dist-init-addr)",
    )
    chutes: tuple[ChuteSettings, ...] = Field((), json_schema_extra={"no_flag": True})

    @field_validator("api_keys")
    @classmethod
    def _non_empty_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(not k.get_secret_value().strip() for k in keys):
            raise ValueError("an API key must not be empty")
        return keys


_DURATION = re.compile(r"^(-1|0|\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float | None:
    """Seconds from Ollama-style durations ("30s", "5m", "1h", a bare number of seconds);
    "-1" (or any negative number) is forever: None."""
    match = _DURATION.match(text.strip())
    if match is None:
        if re.match(r"^-\d+(?:\.\d+)?[a-z]*$", text.strip()):
            return None
        raise ValueError(f'{text!r}: a duration such as "30s", "5m", "1h", "0" or "-1"')
    number, unit = match.groups()
    value = float(number)
    return None if value < 0 else value * _UNIT[unit]


def env_name(field: str, extra: Mapping[str, Any] | None) -> str | None:
    if extra and extra.get("no_env"):
        return None
    if extra and "env" in extra:
        return str(extra["env"])
    return ENV_PREFIX + field.upper()


def _extra(model: type[BaseModel], field: str) -> Mapping[str, Any]:
    extra = model.model_fields[field].json_schema_extra
    return extra if isinstance(extra, Mapping) else {}


def _from_env(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in model.model_fields:
        if field == "chutes":
            continue
        name = env_name(field, _extra(model, field))
        if name and environ.get(name):
            raw = environ[name]
            if field in ("api_keys", "cors_origins", "url"):
                values[field] = [k.strip() for k in raw.split(",") if k.strip()]
            else:
                values[field] = raw
    if model is Settings:
        values.update(_otlp_from_env(values, environ))
    return values


def _otlp_from_env(values: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """OpenTelemetry's variables for all signals, where the traces' own are not set; its
    all-signals HTTP endpoint is a base URL that traces go to at `/v1/traces`."""
    found: dict[str, Any] = {}
    protocol = values.get("otlp_protocol") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol:
        found["otlp_protocol"] = protocol
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if "otlp_endpoint" not in values and base:
        http = protocol == "http/protobuf"
        found["otlp_endpoint"] = base.rstrip("/") + "/v1/traces" if http else base
    return found


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml/.yml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"config file {path} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a table/mapping")
    return data


def _read_key_file(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read api_key_file {path}: {exc.strerror}") from exc
    keys = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise ConfigError(f"api_key_file {path} holds no key")
    return keys


def _split(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    server = {k: v for k, v in values.items() if k in Settings.model_fields}
    chute = {k: v for k, v in values.items() if k in ChuteSettings.model_fields}
    unknown = set(values) - set(server) - set(chute)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return server, chute


LoadChuteFile = Callable[[str, str | None], dict[str, Any]]


def _expand_chute_file(entry: Any, load_chute_file: LoadChuteFile | None) -> Any:
    """A [[chutes]] entry with `chute = "module:attr"`: the file's chute, the entry's overrides."""
    if not isinstance(entry, dict) or "chute" not in entry:
        return entry
    if load_chute_file is None:
        raise ConfigError("chute files cannot be loaded here")
    overrides = {k: v for k, v in entry.items() if k != "chute"}
    python = overrides.get("python")
    return {**load_chute_file(str(entry["chute"]), str(python) if python else None), **overrides}


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
    default_chutes: Callable[[], list[dict[str, Any]]] | None = None,
    chute_files: Sequence[str] = (),
    load_chute_file: LoadChuteFile | None = None,
) -> Settings:
    """Merge file < environment < flags into validated, frozen Settings.

    Chute fields given as flags or env vars describe one inline chute; with neither a model
    there nor chutes in the file, they adjust the first of `default_chutes` (the embedded CPU
    default's chat model). Chute files (`module:attr`, on the command line or as a `chute` key of
    a [[chutes]] entry) are expanded by `load_chute_file`; inline fields adjust every one.
    """
    file_values = read_config_file(config_file) if config_file else {}
    file_chutes = file_values.pop("chutes", [])
    file_server, file_chute = _split(file_values)
    if file_chute:
        raise ConfigError(
            f"config file: chute settings ({', '.join(sorted(file_chute))}) belong in a "
            "[[chutes]] entry"
        )
    env_server, env_chute = _split(
        {**_from_env(Settings, environ), **_from_env(ChuteSettings, environ)}
    )
    flag_server, flag_chute = _split(flags)
    server = {**file_server, **env_server, **flag_server}
    inline = {**env_chute, **flag_chute}

    if server.get("keys_file"):
        server["keys_file"] = Path(server["keys_file"]).expanduser()
    if "api_key_file" in server and server["api_key_file"]:
        extra_keys = _read_key_file(Path(server["api_key_file"]).expanduser())
        server["api_keys"] = [*server.get("api_keys", []), *extra_keys]

    file_chutes = [_expand_chute_file(entry, load_chute_file) for entry in file_chutes]
    if chute_files:
        if inline.get("model") or file_chutes:
            raise ConfigError("give chutes as chute files, --model or a config file, not several")
        assert load_chute_file is not None
        python = str(inline["python"]) if inline.get("python") else None
        chutes: list[Any] = [{**load_chute_file(target, python), **inline}
                             for target in chute_files]  # fmt: skip
    elif inline.get("model"):
        if file_chutes:
            raise ConfigError("give chutes either in the config file or as --model, not both")
        chutes = [inline]
    elif file_chutes:
        if inline:
            raise ConfigError(
                f"chute flags ({', '.join(sorted(inline))}) need --model when the config "
                "file lists chutes; set them in the file's [[chutes]] entries"
            )
        chutes = list(file_chutes)
    elif default_chutes is not None:
        first, *rest = default_chutes()
        chutes = [{**first, **inline}, *rest]
    else:
        raise ConfigError("no chute to serve: give --model or a config file with [[chutes]]")
    try:
        settings = Settings.model_validate({**server, "chutes": chutes})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc
    names = [c.served_name for c in settings.chutes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"two chutes share the name {duplicates[0]!r}; give each a `name`")
    filed = read_keys_file(settings.keys_file, names) if settings.keys_file else ()
    check_keys([*settings.keys, *filed], names)
    if settings.usage_db is None:
        settings = settings.model_copy(update={"usage_db": settings.cache_dir / "usage.db"})
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{where}: {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
