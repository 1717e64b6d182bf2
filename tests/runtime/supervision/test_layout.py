from pathlib import Path
from typing import Literal

import pytest

from engines.vllm import VLLMBackend
from runtime.config.settings import ChuteSettings
from runtime.errors import ConfigError
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute
from runtime.planner.inventory import parse_gpu_spec
from runtime.supervision.layout import plan_chutes


def chute(folder: Path, name: str, load: Literal["always", "on-demand"]) -> Chute:
    settings = ChuteSettings(model=str(folder), name=name, params="7B", load=load)
    return Chute(settings=settings, backend=VLLMBackend(), admission=Admission(4))


def test_on_demand_chutes_are_each_planned_on_the_whole_node(tmp_path: Path) -> None:
    node = parse_gpu_spec("1x4090")
    chutes = [chute(tmp_path, "a", "on-demand"), chute(tmp_path, "b", "on-demand")]
    layout = plan_chutes(chutes, {}, [node])
    for name in ("a", "b"):  # the one GPU each: they take turns on it
        (replica,) = layout.for_chute(name).replicas
        assert replica.visible_devices == "0"
    # Always loaded, the same two do not fit beside each other.
    with pytest.raises(ConfigError):
        plan_chutes([chute(tmp_path, "a", "always"), chute(tmp_path, "b", "always")], {}, [node])
