"""The Grafana dashboard kept in runtime/deploy/grafana: a document Grafana can import, and
every metric it queries exists in a running gateway's /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.gateway.conftest import Gateway
from tests.gateway.test_observability import CHAT, STREAM, scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "runtime" / "deploy" / "grafana" / "chutebox.json"
METRIC = re.compile(r"\bchutebox_[a-z_]+\b")


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def test_the_dashboard_has_what_grafana_needs_to_import_it() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "chute"}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) > 0
    for panel in board["panels"]:
        assert panel["type"] and panel["title"] and panel["targets"]
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24
        assert all(t["refId"] and METRIC.search(t["expr"]) for t in panel["targets"])


def test_every_metric_the_dashboard_queries_is_served(gateway: Gateway) -> None:
    with gateway.client() as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        with client.stream("POST", "/v1/chat/completions", json=STREAM) as reply:
            reply.read()  # a stream: time to first token and the gaps between events
    served = {line.split("{")[0].split(" ")[0] for line in scrape(gateway).splitlines()
              if line.startswith("chutebox_")}  # fmt: skip
    queried = {name for panel in dashboard()["panels"] for target in panel["targets"]
               for name in METRIC.findall(target["expr"])}  # fmt: skip
    assert queried and queried <= served, sorted(queried - served)
