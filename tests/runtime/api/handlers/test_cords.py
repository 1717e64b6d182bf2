"""A custom chute's cords become routes; one that would shadow the gateway's is refused."""

from __future__ import annotations

import pytest

from runtime.api.handlers.cords import cord_routes
from runtime.config.settings import ChuteSettings
from runtime.errors import ConfigError
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute
from runtime.fleet.cords import ChuteCode, Cord
from runtime.fleet.registry import load_backend


def custom(name: str, *paths: str) -> Chute:
    cords = tuple(Cord(function=p.strip("/"), path=p, method="POST") for p in paths)
    code = ChuteCode(name=name, username="t", chute_id=f"id-{name}", concurrency=1, cords=cords)
    settings = ChuteSettings(model=f"/chutes/{name}.py", name=name, engine="chute")
    return Chute(settings=settings, backend=load_backend("chute"), admission=Admission(1),
                 code=code)  # fmt: skip


def test_each_path_once_beside_the_chutes_form() -> None:
    routes = cord_routes([custom("a", "/echo", "/a"), custom("b", "/echo")], taken={"/health"})
    assert [r.path for r in routes] == ["/chutes/{chute}/{path:path}", "/a", "/echo"]


@pytest.mark.parametrize("path", ["/health", "/chutes", "/chutes/x"])
def test_a_cord_may_not_shadow_the_gateways_routes(path: str) -> None:
    with pytest.raises(ConfigError, match="would shadow the gateway's own route"):
        cord_routes([custom("a", path)], taken={"/health", "/v1/models"})


def test_no_custom_chutes_no_routes() -> None:
    assert cord_routes([], taken=set()) == []
