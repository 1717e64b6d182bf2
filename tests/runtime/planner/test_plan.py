"""The planner, table-driven: inventories and model configs written here."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.planner.inventory import Node, parse_gpu_spec
from runtime.planner.model import ModelFacts, facts_from_config
from runtime.planner.multinode import chutebox_commands, sglang_commands, vllm_ray_commands
from runtime.planner.plan import ChuteRequest, Plan, PlanError, plan
from runtime.planner.selector import NodeSelector

GIB = 1024**3


def llama(layers: int, heads: int, kv: int, hidden: int, params: float, **extra: Any) -> ModelFacts:
    config = {"model_type": "llama", "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "hidden_size": hidden,
              "max_position_embeddings": 131072, **extra}  # fmt: skip
    return replace(facts_from_config(config, "m"), params=params)


LLAMA_8B = llama(32, 32, 8, 4096, 8.0e9)
LLAMA_70B = llama(80, 64, 8, 8192, 70.6e9)
ODD_HEADS_40B = llama(64, 28, 4, 3584, 40e9)
DEEPSEEK_V3 = replace(
    facts_from_config(
        {
            "model_type": "deepseek_v3",
            "num_hidden_layers": 61,
            "num_attention_heads": 128,
            "num_key_value_heads": 128,
            "hidden_size": 7168,
            "quantization_config": {"quant_method": "fp8"},
        },
        "deepseek",
    ),  # fmt: skip
    weight_bytes=688_586_727_753,
    weight_source="safetensors index total_size",
)


def nodes(*specs: str) -> list[Node]:
    return [parse_gpu_spec(spec, f"node{i}") for i, spec in enumerate(specs)]


def shape(result: Plan, name: str = "m") -> list[tuple[str, int, int]]:
    return [(r.visible_devices, r.tp, r.pp) for r in result.for_chute(name).replicas]


@pytest.mark.parametrize(
    ("facts", "gpus", "fields", "expected"),
    [
        # 8B bf16 (22.4 GB with overhead) on one 24 GB card, short context.
        (LLAMA_8B, "1x4090", {"max_model_len": 4096, "concurrency": 1}, [("0", 1, 1)]),
        # 70B: 184 GB weights + 80 GB KV (8192 × 32) → four H100s.
        (LLAMA_70B, "4xH100-80GB", {}, [("0,1,2,3", 4, 1)]),
        # The same on 40 GB A100s needs all eight.
        (LLAMA_70B, "8xA100-40GB", {}, [("0,1,2,3,4,5,6,7", 8, 1)]),
        # 28 heads: tensor parallel 8 is impossible, so two replicas of four.
        (ODD_HEADS_40B, "8xL40S", {"max_model_len": 4096, "concurrency": 4},
         [("0,1,2,3", 4, 1), ("4,5,6,7", 4, 1)]),
        # FP8 671B MoE (file sizes already FP8) on eight H200s.
        (DEEPSEEK_V3, "8xH200", {"max_model_len": 16384, "concurrency": 1},
         [("0,1,2,3,4,5,6,7", 8, 1)]),
        # A small model fills an 8-GPU box with replicas.
        (LLAMA_8B, "8xH100", {"max_model_len": 8192, "concurrency": 8},
         [(str(i), 1, 1) for i in range(8)]),
        # gpu_count is honoured: replicas of two.
        (LLAMA_8B, "8xH100", {"selector": NodeSelector(gpu_count=2)},
         [("0,1", 2, 1), ("2,3", 2, 1), ("4,5", 2, 1), ("6,7", 2, 1)]),
        # An explicit replica count stops the filling.
        (LLAMA_8B, "4xH100", {"replicas": 2}, [("0", 1, 1), ("1", 1, 1)]),
    ],
)  # fmt: skip
def test_single_chute_layouts(
    facts: ModelFacts, gpus: str, fields: dict[str, Any], expected: list[tuple[str, int, int]]
) -> None:
    result = plan([ChuteRequest("m", facts, **fields)], nodes(gpus))
    assert shape(result) == expected


def test_reasons_explain_the_numbers() -> None:
    result = plan([ChuteRequest("m", ODD_HEADS_40B, max_model_len=4096, concurrency=4)],
                  nodes("8xL40S"))  # fmt: skip
    reasons = "\n".join(result.for_chute("m").reasons)
    assert "needs 106.3 GB" in reasons and "× 1.4 llama overhead" in reasons
    assert "tensor parallel [8] ruled out: 28 heads / 4 KV heads" in reasons
    assert "each replica: 4 × l40s (48 GB), tensor parallel 4" in reasons
    replica = result.for_chute("m").replicas[0]
    assert replica.weights_gb == pytest.approx(26.1, abs=0.1)
    assert replica.kv_gb == pytest.approx(0.5, abs=0.01)
    assert replica.free_gb == pytest.approx(48 - 26.1 - 0.5, abs=0.1)


def test_nccl_environment_follows_the_gpu_class() -> None:
    nvlink = plan([ChuteRequest("m", LLAMA_70B)], nodes("4xH100")).for_chute("m").replicas[0]
    assert nvlink.env_unset == ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_NET_GDR_LEVEL")
    request = ChuteRequest("m", LLAMA_8B, selector=NodeSelector(gpu_count=2),
                           max_model_len=2048, concurrency=2)  # fmt: skip
    pcie = plan([request], nodes("2x4090")).for_chute("m").replicas[0]
    assert pcie.env == (("NCCL_P2P_DISABLE", "1"),) and pcie.env_unset == ()


def test_mixed_box_with_an_llm_and_an_embedding_chute() -> None:
    small_llm = llama(28, 24, 8, 3072, 3.2e9)
    embedder = replace(facts_from_config({"model_type": "bert", "num_hidden_layers": 6,
                                          "num_attention_heads": 12, "hidden_size": 384}, "e"),
                       weight_bytes=90_000_000, weight_source="weight file sizes")  # fmt: skip
    result = plan(
        [ChuteRequest("llm", small_llm, max_model_len=4096, concurrency=8),
         ChuteRequest("embed", embedder, parallel=False)],
        nodes("2x4090,1xL4"),
    )  # fmt: skip
    assert shape(result, "llm") == [("0", 1, 1), ("2", 1, 1)]
    assert shape(result, "embed") == [("1", 1, 1)]
    used = [g for c in result.chutes for r in c.replicas for g in r.placements[0].gpus]
    assert sorted(used) == [0, 1, 2]  # disjoint, and nothing idle


def test_a_too_large_model_is_refused_with_the_numbers() -> None:
    with pytest.raises(PlanError) as info:
        plan([ChuteRequest("m", llama(126, 128, 8, 16384, 405e9))], nodes("2x4090"))
    message = str(info.value)
    assert "needs" in message and "GB" in message and "48 GB" in message


def test_explicit_tensor_parallel_is_honoured_or_refused() -> None:
    result = plan([ChuteRequest("m", LLAMA_8B, tensor_parallel_size=2, replicas=1)],
                  nodes("8xH100"))  # fmt: skip
    assert shape(result) == [("0,1", 2, 1)]
    with pytest.raises(PlanError, match="tensor_parallel_size=3 does not divide"):
        plan([ChuteRequest("m", LLAMA_8B, tensor_parallel_size=3)], nodes("8xH100"))
    with pytest.raises(PlanError, match="gpu_count=6 does not divide"):
        plan([ChuteRequest("m", LLAMA_8B, selector=NodeSelector(gpu_count=6))], nodes("8xH100"))


def test_selector_filters_gpus() -> None:
    only_l4 = NodeSelector(include=("l4",))
    result = plan([ChuteRequest("m", LLAMA_8B, selector=only_l4, max_model_len=1024,
                                concurrency=1)], nodes("2x4090,1xL4"))  # fmt: skip
    assert shape(result) == [("2", 1, 1)]
    with pytest.raises(PlanError, match="no free GPU matches"):
        plan([ChuteRequest("m", LLAMA_8B, selector=NodeSelector(min_vram_gb_per_gpu=80))],
             nodes("2x4090"))  # fmt: skip


def test_price_is_noted_not_silently_dropped() -> None:
    request = ChuteRequest("m", LLAMA_8B, selector=NodeSelector(max_hourly_price_per_gpu=2.0),
                           max_model_len=1024, concurrency=1)  # fmt: skip
    reasons = plan([request], nodes("1x4090")).for_chute("m").reasons
    assert any("max_hourly_price_per_gpu" in r for r in reasons)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"num_gpus": 2}, "did you mean 'gpu_count'"),
        ({"gpu_count": 9}, "between 1 and 8"),
        ({"min_vram_gb_per_gpu": 8}, "between 16 and 140"),
        ({"include": ["h100", "tpu"]}, "unknown GPU id 'tpu'"),
        ({"exclude": "h100"}, "must be a list"),
    ],
)
def test_node_selector_typos_are_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeSelector.from_mapping(data)


def test_two_nodes_split_by_pipeline() -> None:
    result = plan([ChuteRequest("deepseek", DEEPSEEK_V3, max_model_len=8192, concurrency=1)],
                  nodes("8xH100-80GB", "8xH100-80GB"))  # fmt: skip
    replica = result.for_chute("deepseek").replicas[0]
    assert (replica.tp, replica.pp) == (8, 2)
    assert [(p.node, p.gpus) for p in replica.placements] == [
        ("node0", tuple(range(8))), ("node1", tuple(range(8))),
    ]  # fmt: skip
    ray = vllm_ray_commands(replica, "deepseek-ai/DeepSeek-V3", "deepseek")
    assert ray[0].startswith("[node0] CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7 ray start --head")
    assert ray[1].startswith("[node1]") and "--address=node0:6379" in ray[1]
    assert ray[2].endswith("--tensor-parallel-size 8 --pipeline-parallel-size 2 "
                           "--distributed-executor-backend ray")  # fmt: skip
    sglang = sglang_commands(replica, "deepseek-ai/DeepSeek-V3", "deepseek")
    assert (
        "--tp-size 8 --pp-size 2 --nnodes 2 --node-rank 1 --dist-init-addr node0:5000" in sglang[1]
    )


def test_several_chutes_get_disjoint_gpus_and_the_first_fits_first() -> None:
    result = plan([ChuteRequest("big", LLAMA_70B, replicas=1),
                   ChuteRequest("small", LLAMA_8B, max_model_len=4096, concurrency=4)],
                  nodes("8xH100"))  # fmt: skip
    assert shape(result, "big") == [("0,1,2,3", 4, 1)]
    assert shape(result, "small") == [("4", 1, 1), ("5", 1, 1), ("6", 1, 1), ("7", 1, 1)]


def test_without_gpus_chutes_run_on_cpu() -> None:
    result = plan([ChuteRequest("m", LLAMA_8B, replicas=2)], [Node("local", ())])
    chute = result.for_chute("m")
    assert chute.device == "cpu" and len(chute.replicas) == 2


def test_unknown_models_use_every_gpu_like_the_templates() -> None:
    result = plan([ChuteRequest("m", None)], nodes("4xA100"))
    assert shape(result) == [("0,1,2,3", 4, 1)]
    assert "as the Chutes templates" in result.for_chute("m").reasons[0]


def test_textual_inventories() -> None:
    node = parse_gpu_spec("2x4090,1xL4")
    assert [(g.index, g.gpu_id, g.memory_gb) for g in node.gpus] == [
        (0, "4090", 24.0), (1, "4090", 24.0), (2, "l4", 24.0),
    ]  # fmt: skip
    assert parse_gpu_spec("8xA100-40GB").gpus[0].gpu_id == "a100_40gb"
    assert parse_gpu_spec("1xRTX6000-48GB").gpus[0].memory_gb == 48.0
    with pytest.raises(ConfigError, match="unknown GPU"):
        parse_gpu_spec("2xTPU")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_gpu_spec("lots of GPUs")


# 28 heads and 4 KV heads: tensor parallel 1, 2 or 4; 60 GB of weights.
WIDE_60GB = replace(llama(64, 28, 4, 3584, 0), params=None, weight_bytes=60_000_000_000,
                    weight_source="weight file sizes")  # fmt: skip


def test_tensor_times_pipeline_when_no_tensor_group_holds_the_model() -> None:
    result = plan([ChuteRequest("m", WIDE_60GB)], nodes("8x4090"))
    # Not TP 1 × PP 5 (three GPUs idle): all eight, each layer's work split four ways.
    assert shape(result) == [("0,1,2,3,4,5,6,7", 4, 2)]
    reasons = "\n".join(result.for_chute("m").reasons)
    assert "no tensor-parallel group fits; 2 pipeline stages of tensor parallel 4" in reasons


def test_the_pipeline_plan_that_leaves_whole_replicas_wins() -> None:
    result = plan([ChuteRequest("m", WIDE_60GB)], nodes("12x4090"))
    # TP 4 × PP 2 would leave four GPUs idle; TP 2 × PP 3 fits twice in twelve.
    assert shape(result) == [("0,1,2,3,4,5", 2, 3), ("6,7,8,9,10,11", 2, 3)]


def test_pipeline_and_data_parallel_sizes_from_engine_args_are_honoured() -> None:
    piped = plan([ChuteRequest("m", LLAMA_8B, pipeline_parallel_size=2, max_model_len=4096,
                               concurrency=4)], nodes("4xH100"))  # fmt: skip
    assert shape(piped) == [("0,1", 1, 2), ("2,3", 1, 2)]
    assert "pipeline_parallel_size=2 honoured" in piped.for_chute("m").reasons
    data = plan([ChuteRequest("m", LLAMA_8B, data_parallel_size=2, max_model_len=4096,
                              concurrency=4)], nodes("4xH100"))  # fmt: skip
    replicas = data.for_chute("m").replicas
    assert [(r.visible_devices, r.tp, r.dp) for r in replicas] == [("0,1", 1, 2), ("2,3", 1, 2)]
    both = plan([ChuteRequest("m", LLAMA_8B, selector=NodeSelector(gpu_count=4),
                              pipeline_parallel_size=2)], nodes("4xH100"))  # fmt: skip
    assert shape(both) == [("0,1,2,3", 2, 2)]


def test_sizes_that_cannot_be_honoured_are_refused_with_the_reason() -> None:
    with pytest.raises(PlanError, match="gpu_count=3 is not a multiple of pipeline 2"):
        plan([ChuteRequest("m", LLAMA_8B, selector=NodeSelector(gpu_count=3),
                           pipeline_parallel_size=2)], nodes("4xH100"))  # fmt: skip
    with pytest.raises(PlanError, match="this engine runs on one GPU; it cannot use 2"):
        plan([ChuteRequest("m", LLAMA_8B, pipeline_parallel_size=2, parallel=False)],
             nodes("4xH100"))  # fmt: skip
    with pytest.raises(PlanError, match="pipeline 2, data parallel 4"):
        plan([ChuteRequest("m", LLAMA_70B, pipeline_parallel_size=2, data_parallel_size=4)],
             nodes("4x4090"))  # fmt: skip


def test_a_chute_told_to_span_nodes_takes_a_node_per_pipeline_stage() -> None:
    result = plan([ChuteRequest("deepseek", DEEPSEEK_V3, max_model_len=8192, concurrency=1,
                                nodes=2)], nodes("8xH100-80GB"))  # fmt: skip
    replica = result.for_chute("deepseek").replicas[0]
    assert (replica.tp, replica.pp, replica.nodes) == (8, 2, 2)
    assert [(p.node, p.gpus) for p in replica.placements] == [
        ("node0", tuple(range(8))), ("node1", tuple(range(8))),
    ]  # fmt: skip
    assert replica.devices_on(1) == "0,1,2,3,4,5,6,7"
    assert any("spans 2 nodes" in r for r in result.for_chute("deepseek").reasons)
    assert replica.env_unset  # NVLink-class: NCCL left on
    commands = chutebox_commands(replica, "c.toml")
    assert (
        commands[1] == "[node1] chutebox serve --config c.toml --node-rank 1 --leader-address node0"
    )


@pytest.mark.parametrize(
    ("tp", "pp", "expected"),
    [(16, None, (16, 1, 8)), (4, None, (4, 2, 4)), (None, 4, (4, 4, 8)), (8, 2, (8, 2, 8))],
)
def test_fixed_sizes_split_evenly_over_the_nodes(
    tp: int | None, pp: int | None, expected: tuple[int, int, int]
) -> None:
    request = ChuteRequest("m", LLAMA_70B, nodes=2, tensor_parallel_size=tp,
                           pipeline_parallel_size=pp, max_model_len=4096)  # fmt: skip
    replica = plan([request], nodes("8xH100")).for_chute("m").replicas[0]
    assert (replica.tp, replica.pp, len(replica.placements[0].gpus)) == expected


def test_sizes_that_do_not_split_over_the_nodes_are_refused() -> None:
    request = ChuteRequest("m", LLAMA_70B, nodes=2, tensor_parallel_size=8,
                           pipeline_parallel_size=3)  # fmt: skip
    with pytest.raises(PlanError, match="do not split evenly over 2 nodes"):
        plan([request], nodes("8xH100"))


def test_too_large_for_its_nodes_is_refused_with_the_numbers() -> None:
    with pytest.raises(PlanError, match="more than a 4090's 24 GB"):
        plan([ChuteRequest("m", DEEPSEEK_V3, nodes=2)], nodes("2x4090"))


def test_on_cpu_a_spanning_chute_gets_one_placement_per_node() -> None:
    result = plan([ChuteRequest("m", LLAMA_8B, nodes=2)], [Node("local", ())])
    replica = result.for_chute("m").replicas[0]
    assert replica.nodes == 2 and replica.visible_devices == "" and replica.devices_on(1) == ""
