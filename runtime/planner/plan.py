"""The planner: model facts, GPU inventories and chute requests in; a placement plan out.

Pure: no I/O, no environment. Rules, in order:
- memory need = weights (the Chutes sizing rule) + KV cache for max_model_len × concurrency;
- a replica runs on GPUs of one type; tensor parallel is the smallest size that fits and
  divides the attention heads and hidden size (and is compatible with the KV heads);
  ties go to the smaller GPU;
- pipeline parallel only when no tensor-parallel group of one node holds the model: then each
  valid tensor-parallel size with the fewest pipeline stages that hold the model, preferring
  the plan that leaves the most whole replicas, then the fewest idle GPUs, then the larger
  tensor-parallel group (it splits each layer's work, where stages only queue it);
- sizes the chute's engine args ask for (tensor, pipeline, data parallel, read by the engine's
  own backend) or its `node_selector.gpu_count` are honoured, or refused with the reason;
- GPUs left over become extra replicas of chutes that did not fix their replica count;
- several chutes get disjoint GPU sets; what cannot be placed is refused with the numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.errors import ConfigError
from runtime.planner.gputable import nvlink_class
from runtime.planner.inventory import Gpu, Node
from runtime.planner.model import ModelFacts
from runtime.planner.selector import NodeSelector
from runtime.planner.sizing import GB, kv_bytes_per_token, weights_need

DEFAULT_CONTEXT = 8192
NCCL_REENABLE = ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_NET_GDR_LEVEL")


class PlanError(ConfigError):
    """A chute cannot be placed on the GPUs given; the message carries the numbers."""


@dataclass(frozen=True)
class ChuteRequest:
    """What one chute asks of the planner."""

    name: str
    facts: ModelFacts | None
    selector: NodeSelector = field(default_factory=NodeSelector)
    max_model_len: int | None = None
    concurrency: int = 32
    replicas: int | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    # Data-parallel ranks inside one engine (vLLM's -dp, SGLang's --dp-size): each holds a
    # copy of the model on tensor × pipeline GPUs, and they share the chute's concurrency.
    data_parallel_size: int | None = None
    parallel: bool = True  # the engine can split a model across GPUs (vLLM, SGLang)
    # Nodes one replica spans (the engine's own multi-node launch), each alike the one given.
    nodes: int = 1


@dataclass(frozen=True)
class Placement:
    node: str
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class ReplicaPlan:
    """One engine process (or one multi-node engine) and its GPUs."""

    placements: tuple[Placement, ...]
    gpu_id: str = "cpu"
    tp: int = 1
    pp: int = 1
    dp: int = 1
    weights_gb: float = 0.0
    kv_gb: float = 0.0
    free_gb: float = 0.0
    env: tuple[tuple[str, str], ...] = ()
    env_unset: tuple[str, ...] = ()

    @property
    def visible_devices(self) -> str:
        return self.devices_on(0)

    def devices_on(self, rank: int) -> str:
        """CUDA_VISIBLE_DEVICES on the replica's node of `rank` ("" on CPU)."""
        if rank >= len(self.placements):
            return ""
        return ",".join(str(i) for i in self.placements[rank].gpus)

    @property
    def nodes(self) -> int:
        return max(1, len(self.placements))


@dataclass(frozen=True)
class ChutePlan:
    name: str
    device: str
    replicas: tuple[ReplicaPlan, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    chutes: tuple[ChutePlan, ...]
    unused: tuple[Placement, ...] = ()

    def for_chute(self, name: str) -> ChutePlan:
        return next(c for c in self.chutes if c.name == name)


@dataclass(frozen=True)
class _Shape:
    gpu_id: str
    memory_gb: float
    tp: int
    pp: int
    need_bytes: float  # one copy of the model: weights plus its share of the KV cache
    weights_bytes: float
    multinode: bool = False
    dp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


@dataclass(frozen=True)
class _Sizes:
    """What the planner may choose: tensor sizes to try, and what the chute fixed."""

    tp: list[int]
    pp: int | None = None
    dp: int = 1


class _Free:
    """GPUs not yet given to a replica, per node."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = list(nodes)
        self.free: dict[str, list[Gpu]] = {n.name: list(n.gpus) for n in nodes}

    def of_type(self, node: str, gpu_id: str) -> list[Gpu]:
        return [g for g in self.free[node] if g.gpu_id == gpu_id]

    def types(self, selector: NodeSelector) -> list[tuple[str, float]]:
        seen = {(g.gpu_id, g.memory_gb) for gpus in self.free.values() for g in gpus
                if selector.allows(g.gpu_id, g.memory_gb)}  # fmt: skip
        return sorted(seen, key=lambda t: (t[1], t[0]))

    def take(self, node: Node, gpu_id: str, count: int) -> tuple[int, ...] | None:
        pool = [g.index for g in self.of_type(node.name, gpu_id)]
        if len(pool) < count:
            return None
        chosen = _best_group(node, pool, count)
        self.free[node.name] = [g for g in self.free[node.name] if g.index not in chosen]
        return chosen


def _best_group(node: Node, pool: list[int], count: int) -> tuple[int, ...]:
    """Lowest indices, unless the links are known: then a fully NVLinked group if there is one."""
    if node.links and count > 1 and len(pool) <= 12:
        for group in itertools.combinations(pool, count):
            if node.nvlinked(group):
                return group
    return tuple(pool[:count])


def splits(facts: ModelFacts | None, tp: int) -> bool:
    """Whether tensor parallel `tp` divides this model (as vLLM and the Chutes rule need)."""
    if tp == 1:
        return True
    if facts is None or not facts.has_attention:
        return tp in (2, 4, 8)  # architecture unknown: the usual power-of-two splits
    if facts.heads % tp or (facts.hidden and facts.hidden % tp):
        return False
    return facts.kv_heads % tp == 0 or tp % facts.kv_heads == 0


def _need(req: ChuteRequest, reasons: list[str], dp: int = 1) -> tuple[float, float]:
    """(bytes, weight bytes) one copy of the model needs across its GPUs; with `dp` data-
    parallel copies, each holds the KV cache of its share of the concurrency."""
    assert req.facts is not None
    weights, how = weights_need(req.facts)
    kv = 0.0
    if req.parallel and req.facts.has_attention:
        context = req.max_model_len or min(req.facts.max_positions or DEFAULT_CONTEXT,
                                           DEFAULT_CONTEXT)  # fmt: skip
        if req.max_model_len is None:
            reasons.append(f"max_model_len not set: planning KV cache for {context} tokens")
        per_token = kv_bytes_per_token(req.facts)
        concurrent = math.ceil(req.concurrency / dp)
        kv = per_token * context * concurrent
        per_rank = " per data-parallel rank" if dp > 1 else ""
        how += (f" + KV {kv / GB:.1f} GB ({per_token / 1024:.0f} KiB/token × {context} tokens × "
                f"{concurrent} concurrent{per_rank})")  # fmt: skip
    reasons.append(f"needs {(weights + kv) / GB:.1f} GB: {how}")
    return weights + kv, weights


def _sizes(req: ChuteRequest, reasons: list[str]) -> _Sizes:
    """The tensor sizes to try, and the pipeline and data-parallel sizes the chute fixed."""
    pp, dp = req.pipeline_parallel_size, req.data_parallel_size or 1
    explicit = req.tensor_parallel_size
    if not req.parallel:
        asked = max(explicit or 1, pp or 1, dp, req.selector.gpu_count or 1)
        if asked > 1:
            raise PlanError(f"{req.name}: this engine runs on one GPU; it cannot use {asked}")
        return _Sizes([1])
    if explicit is None and req.selector.gpu_count:
        per_copy = (pp or 1) * dp
        if req.selector.gpu_count % per_copy:
            raise PlanError(f"{req.name}: node_selector.gpu_count={req.selector.gpu_count} is not "
                            f"a multiple of pipeline {pp or 1} × data parallel {dp}")  # fmt: skip
        explicit = req.selector.gpu_count // per_copy
        what = "node_selector.gpu_count"
    else:
        what = "tensor_parallel_size"
    if pp and pp > 1:
        reasons.append(f"pipeline_parallel_size={pp} honoured")
    if dp > 1:
        reasons.append(f"data_parallel_size={dp} honoured: {dp} copies of the model in one "
                       "engine, sharing the chute's concurrency")  # fmt: skip
    if explicit:
        if not splits(req.facts, explicit):
            facts = req.facts
            detail = (f"{facts.heads} attention heads, {facts.kv_heads} KV heads, hidden "
                      f"{facts.hidden}" if facts else "unknown architecture")  # fmt: skip
            raise PlanError(f"{req.name}: {what}={explicit} does not divide the model ({detail})")
        reasons.append(f"{what}={explicit} honoured"
                       + (f" (tensor parallel {explicit})" if what != "tensor_parallel_size"
                          and explicit != req.selector.gpu_count else ""))  # fmt: skip
        return _Sizes([explicit], pp, dp)
    sizes = [t for t in range(1, 9) if splits(req.facts, t)]
    skipped = [t for t in (2, 4, 8) if t not in sizes]
    if req.facts and not req.facts.has_attention:
        reasons.append("architecture unknown (no config.json): tensor parallel 2, 4 or 8 "
                       "assumed to divide it")  # fmt: skip
    elif skipped and req.facts:
        reasons.append(f"tensor parallel {skipped} ruled out: {req.facts.heads} heads / "
                       f"{req.facts.kv_heads} KV heads do not split that way")  # fmt: skip
    return _Sizes(sizes, pp, dp)


def _room(free: _Free, gpu_id: str, gpus: int) -> bool:
    return any(len(free.of_type(n.name, gpu_id)) >= gpus for n in free.nodes)


def _shape(req: ChuteRequest, free: _Free, sizes: _Sizes, need: float, weights: float,
           reasons: list[str]) -> _Shape:  # fmt: skip
    types = free.types(req.selector)
    if not types:
        raise PlanError(f"{req.name}: no free GPU matches its node selector")
    dp = sizes.dp
    if not sizes.pp or sizes.pp == 1:
        for tp in sizes.tp:  # fewest GPUs first, then the smaller GPU
            for gpu_id, memory in types:
                if need / tp <= memory * GB and _room(free, gpu_id, tp * dp):
                    return _Shape(gpu_id, memory, tp, 1, need, weights, dp=dp)
    shape = _pipeline_shape(req, free, sizes, types, need, weights)
    if shape is not None:
        stages = "" if sizes.pp else ("no tensor-parallel group fits; ")
        reasons.append(f"{stages}{shape.pp} pipeline stages of tensor parallel {shape.tp}")
        return shape
    if sizes.pp is None and dp == 1:
        shape = _multinode(free, sizes.tp, types, need, weights)
        if shape is not None:
            reasons.append(f"one node cannot hold it: tensor parallel {shape.tp} within each "
                           f"node, pipeline parallel {shape.pp} across nodes")  # fmt: skip
            return shape
    best = max(memory * max(len(free.of_type(n.name, t)) for n in free.nodes)
               for t, memory in types)  # fmt: skip
    fixed = f", pipeline {sizes.pp}" if sizes.pp else ""
    fixed += f", data parallel {dp} (a copy per rank)" if dp > 1 else ""
    raise PlanError(
        f"{req.name}: needs {need / GB:.1f} GB per copy but the largest free group of one GPU "
        f"type holds {best:.0f} GB (with tensor parallel sizes {sizes.tp} allowed by its "
        f"heads{fixed})"
    )


def _pipeline_shape(req: ChuteRequest, free: _Free, sizes: _Sizes,
                    types: list[tuple[str, float]], need: float,
                    weights: float) -> _Shape | None:  # fmt: skip
    """Tensor × pipeline on one node: for each tensor size, the fewest stages that hold the
    model (or the stages the chute fixed); the plan leaving the most whole replicas wins, then
    the one leaving fewest GPUs idle, then the larger tensor group, then the smaller GPU."""
    best: tuple[tuple[float, ...], _Shape] | None = None
    for gpu_id, memory in types:
        counts = [len(free.of_type(n.name, gpu_id)) for n in free.nodes]
        for tp in sizes.tp:
            pp = sizes.pp or max(2, math.ceil(need / (tp * memory * GB)))
            gpus = tp * pp * sizes.dp
            if need / (tp * pp) > memory * GB or gpus > max(counts):
                continue
            fit = sum(c // gpus for c in counts)
            replicas = min(fit, req.replicas) if req.replicas else fit
            idle = sum(counts) - replicas * gpus
            rank = (-replicas, idle, -tp, memory)
            if best is None or rank < best[0]:
                best = (rank, _Shape(gpu_id, memory, tp, pp, need, weights, dp=sizes.dp))
    return best[1] if best else None


def _multinode(free: _Free, sizes: list[int], types: list[tuple[str, float]], need: float,
               weights: float) -> _Shape | None:  # fmt: skip
    if len(free.nodes) < 2:
        return None
    for gpu_id, memory in types:
        counts = [len(free.of_type(n.name, gpu_id)) for n in free.nodes]
        for tp in sorted(sizes, reverse=True):
            nodes = sum(1 for c in counts if c >= tp)
            pp = math.ceil(need / (tp * memory * GB))
            if 2 <= pp <= nodes:
                return _Shape(gpu_id, memory, tp, pp, need, weights, multinode=True)
    return None


def _allocate_any(shape: _Shape, free: _Free, selector: NodeSelector) -> ReplicaPlan | None:
    """Another replica of this shape: on its GPU type, else on any other type that holds it."""
    replica = _allocate(shape, free)
    if replica is not None or shape.multinode:
        return replica
    per_gpu = shape.need_bytes / (shape.tp * shape.pp)
    for gpu_id, memory in free.types(selector):
        if gpu_id != shape.gpu_id and per_gpu <= memory * GB:
            other = _Shape(gpu_id, memory, shape.tp, shape.pp, shape.need_bytes,
                           shape.weights_bytes, dp=shape.dp)  # fmt: skip
            replica = _allocate(other, free)
            if replica is not None:
                return replica
    return None


def _allocate(shape: _Shape, free: _Free) -> ReplicaPlan | None:
    placements: list[Placement] = []
    if shape.multinode:
        for node in free.nodes:
            if (
                len(placements) < shape.pp
                and len(free.of_type(node.name, shape.gpu_id)) >= shape.tp
            ):
                gpus = free.take(node, shape.gpu_id, shape.tp)
                assert gpus is not None
                placements.append(Placement(node.name, gpus))
    else:
        for node in free.nodes:
            gpus = free.take(node, shape.gpu_id, shape.gpus)
            if gpus is not None:
                placements.append(Placement(node.name, gpus))
                break
    if not placements:
        return None
    total = shape.gpus
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()
    if total > 1:
        if nvlink_class(shape.gpu_id):
            unset = NCCL_REENABLE
        else:
            env = (("NCCL_P2P_DISABLE", "1"),)
    copy = shape.tp * shape.pp
    per_gpu_weights = shape.weights_bytes / copy / GB
    per_gpu_kv = (shape.need_bytes - shape.weights_bytes) / copy / GB
    return ReplicaPlan(
        placements=tuple(placements), gpu_id=shape.gpu_id, tp=shape.tp, pp=shape.pp, dp=shape.dp,
        weights_gb=per_gpu_weights, kv_gb=per_gpu_kv,
        free_gb=shape.memory_gb - per_gpu_weights - per_gpu_kv, env=env, env_unset=unset,
    )  # fmt: skip


def _unknown_model(req: ChuteRequest, free: _Free, reasons: list[str]) -> _Shape:
    """No facts: do what the Chutes templates do, tensor parallel over every GPU given."""
    types = free.types(req.selector)
    if not types:
        raise PlanError(f"{req.name}: no free GPU matches its node selector")
    gpu_id, memory = types[-1]
    if not req.parallel:
        _sizes(req, reasons)  # refuses sizes above one
        reasons.append("model size unknown (not local, no --params): one GPU")
        return _Shape(gpu_id, memory, 1, 1, 0.0, 0.0)
    pp, dp = req.pipeline_parallel_size or 1, req.data_parallel_size or 1
    total = req.selector.gpu_count or max(len(free.of_type(n.name, gpu_id)) for n in free.nodes)
    tp = req.tensor_parallel_size or max(1, total // (pp * dp))
    reasons.append(f"model size unknown (not local, no --params): tensor parallel {tp} over "
                   f"{gpu_id}" + (f" × pipeline {pp}" if pp > 1 else "")
                   + (f" × data parallel {dp}" if dp > 1 else "")
                   + ", as the Chutes templates use every visible GPU")  # fmt: skip
    return _Shape(gpu_id, memory, tp, pp, 0.0, 0.0, dp=dp)


def _place(req: ChuteRequest, free: _Free) -> tuple[_Shape, ReplicaPlan, list[str]]:
    reasons: list[str] = []
    if req.selector.max_hourly_price_per_gpu is not None:
        reasons.append("node_selector.max_hourly_price_per_gpu has no meaning on your own "
                       "GPUs: not used")  # fmt: skip
    if req.facts is None or (req.facts.weight_bytes is None and req.facts.params is None):
        shape = _unknown_model(req, free, reasons)
    else:
        sizes = _sizes(req, reasons)
        need, weights = _need(req, reasons, sizes.dp)
        shape = _shape(req, free, sizes, need, weights, reasons)
    replica = _allocate(shape, free)
    if replica is None:
        raise PlanError(f"{req.name}: not enough free {shape.gpu_id} GPUs for {shape.gpus}")
    reasons.append(f"each replica: {shape.gpus} × {shape.gpu_id} "
                   f"({shape.memory_gb:.0f} GB), tensor parallel {shape.tp}"
                   + (f", pipeline parallel {shape.pp}" if shape.pp > 1 else "")
                   + (f", data parallel {shape.dp}" if shape.dp > 1 else ""))  # fmt: skip
    if replica.env_unset:
        unset = ", ".join(NCCL_REENABLE)
        reasons.append(f"{shape.gpu_id} is NVLink-class: NCCL P2P/IB re-enabled (unset "
                       f"{unset}), as the Chutes templates do")  # fmt: skip
    elif replica.env:
        reasons.append(f"{shape.gpu_id} GPUs talk over PCIe: NCCL_P2P_DISABLE=1")
    return shape, replica, reasons


def _cpu_plan(req: ChuteRequest) -> ChutePlan:
    count = req.replicas or 1
    reasons = ["no GPUs: the engine runs on CPU"
               + (f", {count} replicas sharing the cores" if count > 1 else "")]  # fmt: skip
    placements: tuple[Placement, ...] = ()
    if req.nodes > 1:
        placements = tuple(Placement(f"node{i}", ()) for i in range(req.nodes))
        reasons.append(f"spans {req.nodes} nodes: the engine's ranks split evenly over them "
                       "(its own multi-node launch)")  # fmt: skip
    replicas = tuple(ReplicaPlan(placements) for _ in range(count))
    return ChutePlan(req.name, "cpu", replicas, tuple(reasons))


def _spread_sizes(req: ChuteRequest, per_node: int) -> tuple[int, int]:
    """(tensor, pipeline) for a replica over `req.nodes` nodes of `per_node` GPUs each.
    Unfixed: tensor parallel over a node's GPUs, one pipeline stage per node (what vLLM's
    and SGLang's multi-node guides advise: tensor parallel needs the fast links inside a
    node). A fixed tensor size larger than a node spans nodes, with one stage."""
    nodes, tp, pp = req.nodes, req.tensor_parallel_size, req.pipeline_parallel_size
    if tp is None and pp is None:
        sizes = [t for t in range(1, per_node + 1) if splits(req.facts, t)]
        return max(sizes), nodes
    if tp is None:
        assert pp is not None
        fits = [t for t in range(1, per_node * nodes + 1)
                if splits(req.facts, t) and (t * pp) % nodes == 0
                and t * pp // nodes <= per_node]  # fmt: skip
        if not fits:
            raise PlanError(f"{req.name}: pipeline {pp} does not split over {nodes} nodes of "
                            f"{per_node} GPUs")  # fmt: skip
        return max(fits), pp
    if pp is None:
        pp = nodes if tp <= per_node else 1
    return tp, pp


def _spread(req: ChuteRequest, free: _Free, reasons: list[str]) -> ReplicaPlan:
    """One replica over `req.nodes` nodes: on as many of the nodes given when there are
    (`chutebox plan --gpus … --gpus …`), else on nodes alike the first (`chutebox serve` sees
    its own node only), each node's share on the same GPU indices."""
    if (req.data_parallel_size or 1) > 1:
        raise PlanError(f"{req.name}: data parallel inside a replica spanning nodes is not "
                        "planned here; run one group per replica")  # fmt: skip
    node = free.nodes[0]
    types = free.types(req.selector)
    if not types:
        raise PlanError(f"{req.name}: no free GPU matches its node selector")
    gpu_id, memory = max(types, key=lambda t: (len(free.of_type(node.name, t[0])), t[1]))
    per_node = len(free.of_type(node.name, gpu_id))
    tp, pp = _spread_sizes(req, per_node)
    world = tp * pp
    if world % req.nodes or world // req.nodes > per_node:
        raise PlanError(f"{req.name}: tensor {tp} × pipeline {pp} = {world} ranks do not split "
                        f"evenly over {req.nodes} nodes of {per_node} {gpu_id}")  # fmt: skip
    need = weights = 0.0
    if req.facts is not None and (req.facts.weight_bytes or req.facts.params):
        need, weights = _need(req, reasons)
        if need / world > memory * GB:
            raise PlanError(f"{req.name}: needs {need / GB:.1f} GB, {need / world / GB:.1f} GB "
                            f"per GPU over {world} GPUs, more than a {gpu_id}'s "
                            f"{memory:.0f} GB")  # fmt: skip
    share = world // req.nodes
    hosts = [n for n in free.nodes if len(free.of_type(n.name, gpu_id)) >= share]
    if len(free.nodes) >= req.nodes and len(hosts) >= req.nodes:
        taken = [(n.name, free.take(n, gpu_id, share)) for n in hosts[: req.nodes]]
        placements = tuple(Placement(name, gpus) for name, gpus in taken if gpus is not None)
    else:
        gpus = free.take(node, gpu_id, share)
        assert gpus is not None
        placements = tuple(Placement(f"node{i}", gpus) for i in range(req.nodes))
    reasons.append(f"spans {req.nodes} nodes: tensor parallel {tp} × pipeline parallel {pp}, "
                   f"{world // req.nodes} × {gpu_id} ({memory:.0f} GB) on each node "
                   "(the engine's own multi-node launch)")  # fmt: skip
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()
    if nvlink_class(gpu_id):
        unset = NCCL_REENABLE
    else:
        env = (("NCCL_P2P_DISABLE", "1"),)
    per_gpu = (weights / world / GB, (need - weights) / world / GB)
    return ReplicaPlan(placements, gpu_id=gpu_id, tp=tp, pp=pp, weights_gb=per_gpu[0],
                       kv_gb=per_gpu[1], free_gb=memory - sum(per_gpu), env=env,
                       env_unset=unset)  # fmt: skip


def plan(requests: Sequence[ChuteRequest], nodes: Sequence[Node]) -> Plan:
    """Place every chute, or raise PlanError before anything starts."""
    if not any(n.gpus for n in nodes):
        return Plan(tuple(_cpu_plan(r) for r in requests))
    free = _Free(nodes)
    shapes: dict[str, _Shape] = {}
    replicas: dict[str, list[ReplicaPlan]] = {}
    reasons: dict[str, list[str]] = {}
    for req in requests:
        if req.nodes > 1:
            why: list[str] = []
            replicas[req.name], reasons[req.name] = [_spread(req, free, why)], why
            continue
        shape, first, why = _place(req, free)
        shapes[req.name], replicas[req.name], reasons[req.name] = shape, [first], why
        for _ in range((req.replicas or 1) - 1):
            extra = _allocate(shape, free)
            if extra is None:
                raise PlanError(f"{req.name}: replicas={req.replicas} asked, only "
                                f"{len(replicas[req.name])} fit on the free GPUs")  # fmt: skip
            replicas[req.name].append(extra)
    # Left-over GPUs go, in turn, to chutes that did not fix their replica count.
    auto = [r for r in requests if r.name in shapes and r.replicas is None
            and not shapes[r.name].multinode]  # fmt: skip
    placed = True
    while placed:
        placed = False
        for req in auto:
            extra = _allocate_any(shapes[req.name], free, req.selector)
            if extra is not None:
                replicas[req.name].append(extra)
                placed = True
    for req in requests:
        count = len(replicas[req.name])
        if req.replicas is None and count > 1:
            reasons[req.name].append(f"{count - 1} more replica(s) on GPUs left over "
                                     "(data parallel, spread by its `routing`)")  # fmt: skip
    unused = tuple(Placement(n, tuple(g.index for g in gpus)) for n, gpus in free.free.items()
                   if gpus)  # fmt: skip
    chutes = tuple(ChutePlan(r.name, "cuda", tuple(replicas[r.name]), tuple(reasons[r.name]))
                   for r in requests)  # fmt: skip
    return Plan(chutes, unused)
