"""chutebox's gateway in front of an OpenAI server that is already running, for the benches.

    python bench/relay.py --port 9001 --upstream http://127.0.0.1:9000 [--engine vllm]
        [--upstream http://127.0.0.1:9002 … --routing prefix|least-outstanding]

The app is `create_app` exactly as `chutebox serve` builds it — auth, admission, routing,
request validation and rewriting, usage accounting, metrics, access log all on — with one
ready replica per `--upstream` pointing at that server instead of an engine the supervisor
started.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from runtime.api.app import create_app  # noqa: E402
from runtime.config.settings import ChuteSettings, Settings  # noqa: E402
from runtime.fleet.admission import Admission  # noqa: E402
from runtime.fleet.chutes import Chute, ChuteSet, ChuteState, Replica  # noqa: E402
from runtime.fleet.registry import load_backend  # noqa: E402
from runtime.http.engine_client import Endpoint  # noqa: E402
from runtime.observability.logs import configure_logging  # noqa: E402
from runtime.protocol.fields import EngineFields  # noqa: E402
from runtime.serve import DrainingServer, server_config  # noqa: E402

KEY = "bench-key"


def engine_fields(endpoint: Endpoint) -> EngineFields:
    """What the engine's /openapi.json says each route reads, as the supervisor reads it (the
    fake upstream publishes none, and then nothing is screened)."""
    address = endpoint.address
    if address.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=address.removeprefix("unix:"))
        client = httpx.Client(transport=transport, base_url="http://engine")
    else:
        client = httpx.Client(base_url=address)
    with client:
        reply = client.get("/openapi.json", headers=endpoint.headers(), timeout=30)
    return EngineFields.from_openapi(reply.json() if reply.is_success else None)


def following(app: ASGIApp, chute: Chute, endpoints: list[str]) -> ASGIApp:
    """The app, following each replica's KV-cache events once the loop runs (as the
    supervisor does for the engines it starts)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for index, endpoint in enumerate(endpoints):
                chute.router.kv.watch(index, endpoint)
        await app(scope, receive, send)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream",
        required=True,
        action="append",
        help="an OpenAI server's URL (one replica each)",
    )
    parser.add_argument("--routing", default="prefix", choices=("prefix", "least-outstanding"))
    parser.add_argument(
        "--kv-events",
        action="append",
        default=[],
        help="where upstream N publishes KV-cache events (in --upstream order)",
    )
    parser.add_argument("--upstream-key", default="", help="key the upstream expects")
    parser.add_argument("--model", default="bench", help="the name clients send")
    parser.add_argument("--engine", default="vllm", help="backend whose field rules apply")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--no-auth", action="store_true", help="ablation: no API key check")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="ablation: a gateway setting, e.g. metrics=false")  # fmt: skip
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="chutebox-bench-")
    chute_settings = ChuteSettings(model=folder, name=args.model, engine=args.engine,
                                   concurrency=args.concurrency, routing=args.routing)  # fmt: skip
    replicas = [
        Replica(i, state=ChuteState.READY, endpoint=Endpoint(url, args.upstream_key))
        for i, url in enumerate(args.upstream)
    ]
    chute = Chute(settings=chute_settings, backend=load_backend(args.engine),
                  admission=Admission(args.concurrency), replicas=replicas,
                  phase=ChuteState.STARTING)  # fmt: skip
    chute.fields = engine_fields(Endpoint(args.upstream[0], args.upstream_key))
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = Settings.model_validate({"chutes": (), "port": args.port, "host": "127.0.0.1",
                                        **overrides})  # fmt: skip
    configure_logging(settings.log_level, settings.log_format)
    chutes = ChuteSet([chute])
    app = create_app(settings, chutes, api_keys=() if args.no_auth else (KEY,))
    if args.kv_events:
        app = following(app, chute, args.kv_events)
    # The same server and options `chutebox serve` uses (header and body timeouts included).
    config = server_config(app, settings)
    DrainingServer(config, chutes, settings.shutdown_timeout).run()


if __name__ == "__main__":
    main()
