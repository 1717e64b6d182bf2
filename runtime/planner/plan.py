"""The planner: model facts, GPU inventories and chute requests in; a placement plan out.

Pure: no I/O, no environment. Rules, in order:
- memory need = weights (the Chutes sizing rule) + KV cache for max_model_len × concurrency;
- a replica runs on GPUs of one type; tensor parallel is the smallest size that fits and
  divides the attention heads and hidden size (and is compatible with the KV heads);
  ties go to the smaller GPU;
- pipeline parallel only when no tensor-parallel group of one node holds the model;
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
    parallel: bool = True  # the engine can split a model across GPUs (vLLM, SGLang)


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
    weights_gb: float = 0.0
    kv_gb: float = 0.0
    free_gb: float = 0.0
    env: tuple[tuple[str, str], ...] = ()
    env_unset: tuple[str, ...] = ()

    @property
    def visible_devices(self) -> str:
        return ",".join(str(i) for i in self.placements[0].gpus) if self.placements else ""


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
    need_bytes: float
    weights_bytes: float
    multinode: bool = False


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


def _need(req: ChuteRequest, reasons: list[str]) -> tuple[float, float]:
    """(total bytes, weight bytes) the chute needs across its GPUs."""
    assert req.facts is not None
    weights, how = weights_need(req.facts)
    kv = 0.0
    if req.parallel and req.facts.has_attention:
        context = req.max_model_len or min(req.facts.max_positions or DEFAULT_CONTEXT,
                                           DEFAULT_CONTEXT)  # fmt: skip
        if req.max_model_len is None:
            reasons.append(f"max_model_len not set: planning KV cache for {context} tokens")
        per_token = kv_bytes_per_token(req.facts)
        kv = per_token * context * req.concurrency
        how += (f" + KV {kv / GB:.1f} GB ({per_token / 1024:.0f} KiB/token × {context} tokens × "
                f"{req.concurrency} concurrent)")  # fmt: skip
    reasons.append(f"needs {(weights + kv) / GB:.1f} GB: {how}")
    return weights + kv, weights


def _tp_sizes(req: ChuteRequest, reasons: list[str]) -> list[int]:
    explicit = req.tensor_parallel_size or req.selector.gpu_count
    if not req.parallel:
        if explicit and explicit > 1:
            raise PlanError(f"{req.name}: this engine runs on one GPU; it cannot use {explicit}")
        return [1]
    if explicit:
        what = "tensor_parallel_size" if req.tensor_parallel_size else "node_selector.gpu_count"
        if not splits(req.facts, explicit):
            facts = req.facts
            detail = (f"{facts.heads} attention heads, {facts.kv_heads} KV heads, hidden "
                      f"{facts.hidden}" if facts else "unknown architecture")  # fmt: skip
            raise PlanError(f"{req.name}: {what}={explicit} does not divide the model ({detail})")
        reasons.append(f"{what}={explicit} honoured")
        return [explicit]
    sizes = [t for t in range(1, 9) if splits(req.facts, t)]
    skipped = [t for t in (2, 4, 8) if t not in sizes]
    if req.facts and not req.facts.has_attention:
        reasons.append("architecture unknown (no config.json): tensor parallel 2, 4 or 8 "
                       "assumed to divide it")  # fmt: skip
    elif skipped and req.facts:
        reasons.append(f"tensor parallel {skipped} ruled out: {req.facts.heads} heads / "
                       f"{req.facts.kv_heads} KV heads do not split that way")  # fmt: skip
    return sizes


def _shape(req: ChuteRequest, free: _Free, sizes: list[int], need: float, weights: float,
           reasons: list[str]) -> _Shape:  # fmt: skip
    types = free.types(req.selector)
    if not types:
        raise PlanError(f"{req.name}: no free GPU matches its node selector")
    biggest = max(len(free.of_type(n.name, t)) for n in free.nodes for t, _ in types)
    for tp in sizes:  # fewest GPUs first, then the smaller GPU
        for gpu_id, memory in types:
            if need / tp <= memory * GB and any(
                len(free.of_type(n.name, gpu_id)) >= tp for n in free.nodes
            ):
                return _Shape(gpu_id, memory, tp, 1, need, weights)
    for total in range(2, biggest + 1):  # pipeline stages inside one node
        for tp in [t for t in sizes if total % t == 0 and t < total]:
            for gpu_id, memory in types:
                if need / total <= memory * GB and any(
                    len(free.of_type(n.name, gpu_id)) >= total for n in free.nodes
                ):
                    reasons.append(f"no tensor-parallel group fits; {total // tp} pipeline "
                                   f"stages of tensor parallel {tp}")  # fmt: skip
                    return _Shape(gpu_id, memory, tp, total // tp, need, weights)
    shape = _multinode(free, sizes, types, need, weights)
    if shape is not None:
        reasons.append(f"one node cannot hold it: tensor parallel {shape.tp} within each node, "
                       f"pipeline parallel {shape.pp} across nodes")  # fmt: skip
        return shape
    best = max(memory * max(len(free.of_type(n.name, t)) for n in free.nodes)
               for t, memory in types)  # fmt: skip
    raise PlanError(
        f"{req.name}: needs {need / GB:.1f} GB but the largest free group of one GPU type "
        f"holds {best:.0f} GB (with tensor parallel sizes {sizes} allowed by its heads)"
    )


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
                           shape.weights_bytes)  # fmt: skip
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
            gpus = free.take(node, shape.gpu_id, shape.tp * shape.pp)
            if gpus is not None:
                placements.append(Placement(node.name, gpus))
                break
    if not placements:
        return None
    total = shape.tp * shape.pp
    env: tuple[tuple[str, str], ...] = ()
    unset: tuple[str, ...] = ()
    if total > 1:
        if nvlink_class(shape.gpu_id):
            unset = NCCL_REENABLE
        else:
            env = (("NCCL_P2P_DISABLE", "1"),)
    per_gpu_weights = shape.weights_bytes / total / GB
    per_gpu_kv = (shape.need_bytes - shape.weights_bytes) / total / GB
    return ReplicaPlan(
        placements=tuple(placements), gpu_id=shape.gpu_id, tp=shape.tp, pp=shape.pp,
        weights_gb=per_gpu_weights, kv_gb=per_gpu_kv,
        free_gb=shape.memory_gb - per_gpu_weights - per_gpu_kv, env=env, env_unset=unset,
    )  # fmt: skip


def _unknown_model(req: ChuteRequest, free: _Free, reasons: list[str]) -> _Shape:
    """No facts: do what the Chutes templates do, tensor parallel over every GPU given."""
    types = free.types(req.selector)
    if not types:
        raise PlanError(f"{req.name}: no free GPU matches its node selector")
    gpu_id, memory = types[-1]
    count = (
        req.tensor_parallel_size
        or req.selector.gpu_count
        or max(len(free.of_type(n.name, gpu_id)) for n in free.nodes)
    )
    if not req.parallel:
        count = 1
    reasons.append(f"model size unknown (not local, no --params): tensor parallel over {count} "
                   f"{gpu_id}, as the Chutes templates use every visible GPU")  # fmt: skip
    return _Shape(gpu_id, memory, count, 1, 0.0, 0.0)


def _place(req: ChuteRequest, free: _Free) -> tuple[_Shape, ReplicaPlan, list[str]]:
    reasons: list[str] = []
    if req.selector.max_hourly_price_per_gpu is not None:
        reasons.append("node_selector.max_hourly_price_per_gpu has no meaning on your own "
                       "GPUs: not used")  # fmt: skip
    if req.facts is None or (req.facts.weight_bytes is None and req.facts.params is None):
        shape = _unknown_model(req, free, reasons)
    else:
        need, weights = _need(req, reasons)
        shape = _shape(req, free, _tp_sizes(req, reasons), need, weights, reasons)
    replica = _allocate(shape, free)
    if replica is None:
        raise PlanError(
            f"{req.name}: not enough free {shape.gpu_id} GPUs for {shape.tp * shape.pp}"
        )
    reasons.append(f"each replica: {shape.tp * shape.pp} × {shape.gpu_id} "
                   f"({shape.memory_gb:.0f} GB), tensor parallel {shape.tp}"
                   + (f", pipeline parallel {shape.pp}" if shape.pp > 1 else ""))  # fmt: skip
    if replica.env_unset:
        unset = ", ".join(NCCL_REENABLE)
        reasons.append(f"{shape.gpu_id} is NVLink-class: NCCL P2P/IB re-enabled (unset "
                       f"{unset}), as the Chutes templates do")  # fmt: skip
    elif replica.env:
        reasons.append(f"{shape.gpu_id} GPUs talk over PCIe: NCCL_P2P_DISABLE=1")
    return shape, replica, reasons


def _cpu_plan(req: ChuteRequest) -> ChutePlan:
    count = req.replicas or 1
    reasons = ("no GPUs: the engine runs on CPU"
               + (f", {count} replicas sharing the cores" if count > 1 else ""),)  # fmt: skip
    return ChutePlan(req.name, "cpu", tuple(ReplicaPlan(()) for _ in range(count)), reasons)


def plan(requests: Sequence[ChuteRequest], nodes: Sequence[Node]) -> Plan:
    """Place every chute, or raise PlanError before anything starts."""
    if not any(n.gpus for n in nodes):
        return Plan(tuple(_cpu_plan(r) for r in requests))
    free = _Free(nodes)
    shapes: dict[str, _Shape] = {}
    replicas: dict[str, list[ReplicaPlan]] = {}
    reasons: dict[str, list[str]] = {}
    for req in requests:
        shape, first, why = _place(req, free)
        shapes[req.name], replicas[req.name], reasons[req.name] = shape, [first], why
        for _ in range((req.replicas or 1) - 1):
            extra = _allocate(shape, free)
            if extra is None:
                raise PlanError(f"{req.name}: replicas={req.replicas} asked, only "
                                f"{len(replicas[req.name])} fit on the free GPUs")  # fmt: skip
            replicas[req.name].append(extra)
    # Left-over GPUs go, in turn, to chutes that did not fix their replica count.
    auto = [r for r in requests if r.replicas is None and not shapes[r.name].multinode]
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
                                     "(data parallel, least-outstanding balancing)")  # fmt: skip
    unused = tuple(Placement(n, tuple(g.index for g in gpus)) for n, gpus in free.free.items()
                   if gpus)  # fmt: skip
    chutes = tuple(ChutePlan(r.name, "cuda", tuple(replicas[r.name]), tuple(reasons[r.name]))
                   for r in requests)  # fmt: skip
    return Plan(chutes, unused)
