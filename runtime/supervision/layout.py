"""From settings to planner requests: the model facts each chute has locally, then a plan.

The edge between the pure planner and the files: reads config.json and weight sizes from
prepared (or already cached) model folders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from runtime.fleet.backend import split_args
from runtime.fleet.chutes import Chute
from runtime.planner.inventory import Node
from runtime.planner.model import ModelFacts, parse_params, read_facts
from runtime.planner.plan import ChuteRequest, Plan, plan
from runtime.planner.selector import NodeSelector
from runtime.supervision.sources import ModelSource, gguf_cache_folder, resolve_source


def cached_folder(source: ModelSource, cache_dir: Path, hub_cache: Path) -> Path | None:
    """The folder an engine would load, if it is already on this machine."""
    if source.kind == "folder":
        return Path(source.location)
    if source.kind == "gguf":
        folder = gguf_cache_folder(Path(source.location), cache_dir)
        return folder if folder.exists() else None
    if source.kind == "hub":
        repo = "models--" + source.location.replace("/", "--")
        folder = hub_cache / repo / "snapshots" / str(source.revision)
        return folder if folder.exists() else None
    return None


def facts_for(chute: Chute, folder: Path | None, source: ModelSource | None) -> ModelFacts | None:
    params = parse_params(chute.settings.params) if chute.settings.params else None
    if folder is not None:
        return read_facts(folder, chute.name, params)
    if source is not None and source.kind in ("file", "gguf"):
        size = Path(source.location).stat().st_size
        return ModelFacts(chute.name, weight_bytes=size, weight_source="checkpoint file size",
                          params=params)  # fmt: skip
    return ModelFacts(chute.name, params=params) if params is not None else None


def request_for(chute: Chute, facts: ModelFacts | None) -> ChuteRequest:
    settings = chute.settings
    # Each backend reads its own engine's flags: vLLM's -tp is not SGLang's --tp-size.
    sizes = chute.backend.parallel_sizes(split_args(settings.engine_args))
    return ChuteRequest(
        name=chute.name,
        facts=facts,
        selector=NodeSelector.from_mapping(settings.node_selector),
        max_model_len=settings.max_model_len,
        concurrency=settings.concurrency or chute.backend.default_concurrency,
        replicas=settings.replicas,
        tensor_parallel_size=sizes.tensor,
        pipeline_parallel_size=sizes.pipeline,
        data_parallel_size=sizes.data,
        parallel=chute.backend.multi_gpu,
        nodes=chute.settings.nodes,
    )


def plan_chutes(
    chutes: Sequence[Chute], folders: Mapping[str, Path | None], nodes: Sequence[Node]
) -> Plan:
    """The chutes that are always loaded share the nodes; each on-demand chute is planned
    as if the nodes were its own: it runs when others are unloaded or asleep (`max_loaded`
    keeps how many run at once)."""
    requests = {}
    for chute in chutes:
        source = resolve_source(chute.settings, chute.backend.single_file_suffixes)
        requests[chute.name] = request_for(chute, facts_for(chute, folders.get(chute.name), source))
    shared = plan([requests[c.name] for c in chutes if not c.on_demand], nodes)
    alone = [plan([requests[c.name]], nodes).chutes[0] for c in chutes if c.on_demand]
    return Plan((*shared.chutes, *alone), shared.unused)


def weight_bytes(chute: Chute, folder: Path | None) -> int | None:
    """The size of the chute's weights, where its folder or checkpoint says it."""
    source = resolve_source(chute.settings, chute.backend.single_file_suffixes)
    facts = facts_for(chute, folder, source)
    return facts.weight_bytes if facts is not None else None
