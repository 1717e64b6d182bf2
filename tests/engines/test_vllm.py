import pytest

from engines.base import LaunchRequest
from engines.vllm import VLLMBackend, cpu_bind, flag_value
from runtime.errors import ConfigError


def request(**fields: object) -> LaunchRequest:
    base: dict[str, object] = {
        "model_path": "/m", "served_name": "name", "port": 10101, "api_key": "k",
        "python": "py", "device": "cpu", "cpu_ids": (0, 1),
    }  # fmt: skip
    base.update(fields)
    return LaunchRequest(**base)  # type: ignore[arg-type]


def test_cpu_command_matches_the_chutes_template_plus_cpu_needs() -> None:
    spec = VLLMBackend().launch(request(engine_args=("--dtype", "bfloat16")))
    assert spec.argv == (
        "py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m",
        "--served-model-name", "name", "--api-key", "k", "--host", "127.0.0.1",
        "--port", "10101", "--kv-cache-memory-bytes", "268435456", "--dtype", "bfloat16",
    )  # fmt: skip
    assert "VLLM_CPU_OMP_THREADS_BIND" not in spec.env


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


@pytest.mark.parametrize(
    "arg", ["--api-key", "--served-model-name=x", "--revision", "--host", "--port=1", "--model"]
)
def test_owned_flags_are_refused(arg: str) -> None:
    with pytest.raises(ConfigError, match=arg.partition("=")[0]):
        VLLMBackend().check_args([arg, "v"])


def test_accepted_fields_cover_vllm_extras() -> None:
    backend = VLLMBackend()
    chat = backend.accepted_fields("chat")
    assert chat is not None and {"top_k", "min_p", "chat_template_kwargs"} <= chat
    assert "temprature" not in chat
