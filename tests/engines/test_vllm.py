import json
import subprocess
import sys

import pytest

from engines.vllm import DP_FLAGS, PP_FLAGS, TP_FLAGS, VLLMBackend, cpu_bind
from engines.vllm_embedding import VLLMEmbeddingBackend
from runtime.errors import ConfigError
from runtime.fleet.backend import LaunchRequest, ParallelSizes, flag_value


def request(**fields: object) -> LaunchRequest:
    base: dict[str, object] = {
        "model_path": "/m", "served_name": "name", "socket_path": "/run/cbx/e1.sock",
        "api_key": "k", "python": "py", "device": "cpu", "cpu_ids": (0, 1),
    }  # fmt: skip
    base.update(fields)
    return LaunchRequest(**base)  # type: ignore[arg-type]


def test_cpu_command_matches_the_chutes_template_plus_cpu_needs() -> None:
    spec = VLLMBackend().launch(request(engine_args=("--dtype", "bfloat16")))
    assert spec.argv == (
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m",
        "--served-model-name", "name", "--uds", "/run/cbx/e1.sock",
        "--kv-cache-memory-bytes", "268435456", "--dtype", "bfloat16",
    )  # fmt: skip
    # The key in the environment (vLLM reads VLLM_API_KEY), never in the arguments.
    assert spec.env["VLLM_API_KEY"] == "k" and "k" not in spec.argv
    assert "VLLM_CPU_OMP_THREADS_BIND" not in spec.env


def test_without_a_socket_it_listens_on_loopback() -> None:
    spec = VLLMBackend().launch(request(socket_path="", port=10101))
    assert ("--host", "127.0.0.1", "--port", "10101") == spec.argv[7:11]
    assert "--uds" not in spec.argv and spec.env["VLLM_API_KEY"] == "k"


def test_cpu_tensor_parallel_binds_one_core_set_per_rank() -> None:
    spec = VLLMBackend().launch(request(engine_args=("--tensor-parallel-size=2",)))
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    assert cpu_bind(tuple(range(8)), 2) == "0,1,2,3|4,5,6,7"
    with pytest.raises(ConfigError, match="at least 4"):
        cpu_bind((0, 1), 4)


def test_user_kv_cache_size_wins_on_cpu() -> None:
    spec = VLLMBackend().launch(request(engine_args=("--kv-cache-memory-bytes", "1")))
    assert spec.argv.count("--kv-cache-memory-bytes") == 1


def test_gpu_uses_the_planned_parallel_sizes_unless_told() -> None:
    spec = VLLMBackend().launch(request(device="cuda", tensor_parallel=4, pipeline_parallel=2))
    assert flag_value(spec.argv, ["--tensor-parallel-size"]) == "4"
    assert flag_value(spec.argv, ["--pipeline-parallel-size"]) == "2"
    assert "--disable-custom-all-reduce" in spec.argv
    assert "--kv-cache-memory-bytes" not in spec.argv
    spec = VLLMBackend().launch(request(device="cuda", custom_all_reduce=True))
    assert "--disable-custom-all-reduce" not in spec.argv
    spec = VLLMBackend().launch(request(device="cuda", tensor_parallel=4, engine_args=("-tp", "2")))
    assert spec.argv.count("--tensor-parallel-size") == 0 and spec.argv[-2:] == ("-tp", "2")


def test_cpu_replicas_are_pinned_to_their_cores() -> None:
    spec = VLLMBackend().launch(request(cpu_ids=(1,), pin_cpus=True))
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_kv_events_are_published_where_the_router_asks() -> None:
    endpoint = "ipc:///run/cbx/k1.ipc"
    spec = VLLMBackend().launch(request(kv_events=endpoint))
    config = json.loads(spec.argv[spec.argv.index("--kv-events-config") + 1])
    assert config == {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": endpoint}
    assert spec.kv_events == endpoint
    assert "--kv-events-config" not in VLLMBackend().launch(request()).argv
    # A chute's own events config is kept, and the router then matches approximately.
    own = ("--kv-events-config", '{"enable_kv_cache_events": true}')
    spec = VLLMBackend().launch(request(kv_events=endpoint, engine_args=own))
    assert spec.argv.count("--kv-events-config") == 1 and spec.kv_events == ""


def test_pooling_engines_publish_no_kv_events() -> None:
    spec = VLLMEmbeddingBackend().launch(request(kv_events="ipc:///run/cbx/k1.ipc"))
    assert "--kv-events-config" not in spec.argv and spec.kv_events == ""


@pytest.mark.parametrize(
    "arg",
    ["--api-key", "--served-model-name=x", "--revision", "--host", "--port=1", "--model", "--uds"],
)
def test_owned_flags_are_refused(arg: str) -> None:
    with pytest.raises(ConfigError, match=arg.partition("=")[0]):
        VLLMBackend().check_args([arg, "v"])


@pytest.mark.parametrize(
    ("args", "sizes"),
    [
        ((), ParallelSizes()),
        (("--tensor-parallel-size", "4"), ParallelSizes(4)),
        (("-tp", "2", "-pp=2"), ParallelSizes(2, 2)),
        (("--pipeline-parallel-size=3", "--data-parallel-size", "2"), ParallelSizes(None, 3, 2)),
        (("-dp", "4"), ParallelSizes(data=4)),
    ],
)
def test_parallel_sizes_are_read_in_vllms_own_flags(
    args: tuple[str, ...], sizes: ParallelSizes
) -> None:
    assert VLLMBackend().parallel_sizes(args) == sizes


def test_a_parallel_size_that_is_not_a_positive_integer_is_refused() -> None:
    with pytest.raises(ConfigError, match="--tensor-parallel-size takes a positive integer"):
        VLLMBackend().check_args(["-tp", "two"])


PARSE = """
import json, sys
from vllm.engine.arg_utils import EngineArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
out = {}
for flag, dest in json.loads(sys.argv[1]):
    out[flag] = getattr(parser.parse_args(["--model", "m", flag, "3"]), dest)
print(json.dumps(out))
"""


@pytest.mark.slow
def test_the_flag_spellings_are_vllms() -> None:
    """Every spelling read here means the same to vLLM's own argument parser (in a process of
    its own: importing vLLM warns about its own dependencies)."""
    pytest.importorskip("vllm")
    pairs = [(flag, dest) for flags, dest in ((TP_FLAGS, "tensor_parallel_size"),
             (PP_FLAGS, "pipeline_parallel_size"), (DP_FLAGS, "data_parallel_size"))
             for flag in flags]  # fmt: skip
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", PARSE, json.dumps(pairs)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed == {flag: 3 for flag, _ in pairs}


def test_a_leader_node_adds_vllms_multi_node_flags() -> None:
    spec = VLLMBackend().launch(request(
        engine_args=("--tensor-parallel-size", "2"), cpu_ids=(0,), nodes=2,
        master_addr="10.0.0.1", master_port=29511,
    ))  # fmt: skip
    argv = " ".join(spec.argv)
    assert "vllm.entrypoints.openai.api_server" in argv and "--uds" in argv
    assert "--nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29511" in argv
    assert "--headless" not in argv
    # One of the two ranks runs here: one core set.
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_other_nodes_run_vllms_headless_serve_without_key_or_listener() -> None:
    spec = VLLMBackend().launch(request(
        engine_args=("-tp", "2"), cpu_ids=(1,), nodes=2, node_rank=1,
        master_addr="10.0.0.1", master_port=29511,
    ))  # fmt: skip
    assert spec.argv[:3] == ("py", "-m", "engines.vllm_node")
    argv = " ".join(spec.argv)
    assert "--nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29511 --headless" in argv
    assert "--uds" not in argv and "--port" not in argv
    assert "VLLM_API_KEY" not in spec.env
    assert spec.env["VLLM_TARGET_DEVICE"] == "cpu"  # vllm-cpu: see engines/vllm_node.py
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_under_ray_the_leader_starts_alone_and_other_nodes_nothing() -> None:
    ray = ("--distributed-executor-backend", "ray")
    sizes = {"tensor_parallel": 8, "pipeline_parallel": 2, "master_addr": "h", "master_port": 1}
    leader = VLLMBackend().launch(request(engine_args=ray, device="cuda", nodes=2, **sizes))
    assert "--nnodes" not in leader.argv and "--pipeline-parallel-size" in leader.argv
    worker = VLLMBackend().launch(request(engine_args=ray, device="cuda", nodes=2, node_rank=1))
    assert worker.argv == ()


@pytest.mark.parametrize("arg", ["--nnodes", "--node-rank", "--master-addr", "--master-port",
                                 "--headless"])  # fmt: skip
def test_the_multi_node_flags_are_chuteboxs(arg: str) -> None:
    with pytest.raises(ConfigError, match=arg):
        VLLMBackend().check_args([arg, "1"])


HEADLESS = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))
print(json.dumps({k: getattr(args, k) for k in ("nnodes", "node_rank", "master_addr",
      "master_port", "headless", "tensor_parallel_size", "model")}))
"""


@pytest.mark.slow
def test_the_headless_command_means_what_it_says_to_vllms_parser() -> None:
    """The argv given to engines.vllm_node, read back by the parser it hands it to."""
    pytest.importorskip("vllm")
    spec = VLLMBackend().launch(request(engine_args=("-tp", "2"), nodes=2, node_rank=1,
                                        master_addr="10.0.0.1", master_port=29511))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", HEADLESS, json.dumps(list(spec.argv[3:]))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed == {"nnodes": 2, "node_rank": 1, "master_addr": "10.0.0.1",
                      "master_port": 29511, "headless": True, "tensor_parallel_size": 2,
                      "model": "/m"}  # fmt: skip


def test_on_demand_chutes_on_gpus_start_able_to_sleep() -> None:
    spec = VLLMBackend().launch(request(device="cuda", on_demand=True))
    assert "--enable-sleep-mode" in spec.argv and spec.sleep_mode
    assert spec.env["VLLM_SERVER_DEV_MODE"] == "1"
    # vLLM's sleep mode is GPU-only: on CPU an on-demand engine is stopped instead.
    cpu = VLLMBackend().launch(request(on_demand=True))
    assert "--enable-sleep-mode" not in cpu.argv and not cpu.sleep_mode
    assert "VLLM_SERVER_DEV_MODE" not in cpu.env
    assert not VLLMBackend().launch(request(device="cuda")).sleep_mode


def test_adapters_start_the_engine_with_runtime_lora_loading() -> None:
    spec = VLLMBackend().launch(request(lora_slots=3, lora_rank=16))
    at = spec.argv.index("--enable-lora")
    assert spec.argv[at : at + 7] == (
        "--enable-lora", "--max-loras", "3", "--max-cpu-loras", "3", "--max-lora-rank", "16",
    )  # fmt: skip
    assert spec.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "--enable-lora" not in VLLMBackend().launch(request()).argv
