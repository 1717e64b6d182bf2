"""Discovery against nvidia-smi outputs (see fixtures/README.md for where they come from)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runtime.planner.discovery import QUERY, TOPOLOGY, discover, parse_query, parse_topology

FIXTURES = Path(__file__).parent / "fixtures"


def runner(query: str, topology: str):  # type: ignore[no-untyped-def]
    def run(argv: Sequence[str]) -> str:
        if list(argv) == QUERY:
            return (FIXTURES / query).read_text()
        assert list(argv) == TOPOLOGY
        return (FIXTURES / topology).read_text()

    return run


def test_query_names_memory_and_capability() -> None:
    gpus = parse_query((FIXTURES / "h100x8_query.csv").read_text())
    assert len(gpus) == 8
    gpu, uuid = gpus[3]
    assert (gpu.index, gpu.gpu_id, gpu.memory_gb, gpu.compute_capability) == (
        3, "h100_sxm", 79.6, "9.0",
    )  # fmt: skip
    assert uuid.startswith("GPU-4b3c")
    mixed = [g.gpu_id for g, _ in parse_query((FIXTURES / "mixed_query.csv").read_text())]
    assert mixed == ["4090", "4090", "l4"]


def test_topology_reads_the_gpu_block_only() -> None:
    links = parse_topology((FIXTURES / "h100x4_topo.txt").read_text(), 4)
    assert links[0] == ("X", "NV18", "NV18", "NV18")
    assert links[2][3] == "NV18"
    mixed = parse_topology((FIXTURES / "mixed_topo.txt").read_text(), 3)
    assert mixed[0][1] == "PHB" and mixed[1][2] == "SYS"


def test_discover_with_links_and_masks() -> None:
    node = discover({}, runner("mixed_query.csv", "mixed_topo.txt"))
    assert [g.gpu_id for g in node.gpus] == ["4090", "4090", "l4"]
    assert node.nvlinked((0, 1)) is False
    masked = discover({"CUDA_VISIBLE_DEVICES": "2,0"}, runner("mixed_query.csv", "mixed_topo.txt"))
    assert [(g.index, g.gpu_id) for g in masked.gpus] == [(0, "l4"), (1, "4090")]
    assert masked.links == ()  # the topology's numbering no longer applies
    by_uuid = discover(
        {"CUDA_VISIBLE_DEVICES": "GPU-a1111111-2222-3333-4444-555555555552"},
        runner("mixed_query.csv", "mixed_topo.txt"),
    )
    assert [g.gpu_id for g in by_uuid.gpus] == ["l4"]
    counted = discover({"CUDA_DEVICE_COUNT": "2"}, runner("h100x8_query.csv", "h100x4_topo.txt"))
    assert len(counted.gpus) == 2


def test_no_driver_means_no_gpus() -> None:
    def missing(argv: Sequence[str]) -> str:
        raise FileNotFoundError("nvidia-smi")

    assert discover({}, missing).gpus == ()
