from pathlib import Path

import pytest

from engines.sglang import SGLangBackend
from runtime.errors import ConfigError
from runtime.fleet.backend import LaunchRequest, ParallelSizes, flag_value


def request(**fields: object) -> LaunchRequest:
    base: dict[str, object] = {
        "model_path": "/m", "served_name": "name", "port": 10101, "api_key": "k",
        "python": "/envs/sglang/bin/python", "device": "cuda", "private_dir": "/run/cbx",
    }  # fmt: skip
    base.update(fields)
    return LaunchRequest(**base)  # type: ignore[arg-type]


def test_command_matches_the_chutes_template_with_the_key_in_a_private_file() -> None:
    spec = SGLangBackend().launch(
        request(tensor_parallel=4, engine_args=("--mem-fraction-static", "0.8"))
    )
    assert spec.argv == (
        "/envs/sglang/bin/python", "-m", "sglang.launch_server",
        "--config", "/run/cbx/sglang-10101.yaml", "--model-path", "/m",
        "--served-model-name", "name", "--host", "127.0.0.1", "--port", "10101",
        "--tp-size", "4", "--mem-fraction-static", "0.8",
    )  # fmt: skip
    # SGLang's --config file is YAML merged into its arguments: the key lives only there.
    assert dict(spec.files) == {"/run/cbx/sglang-10101.yaml": 'api-key: "k"\n'}
    assert "k" not in spec.argv and "--api-key" not in spec.argv


def test_the_key_file_is_yaml_sglang_reads_back(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    spec = SGLangBackend().launch(request(api_key='eng-"odd": #key', private_dir=str(tmp_path)))
    ((path, text),) = spec.files.items()
    assert yaml.safe_load(text) == {"api-key": 'eng-"odd": #key'}


def test_pipeline_stages_and_explicit_sizes() -> None:
    spec = SGLangBackend().launch(request(tensor_parallel=8, pipeline_parallel=2))
    assert flag_value(spec.argv, ["--pp-size"]) == "2"
    spec = SGLangBackend().launch(request(tensor_parallel=8, engine_args=("--tp", "2")))
    assert "--tp-size" not in spec.argv and spec.argv[-2:] == ("--tp", "2")


@pytest.mark.parametrize(
    ("args", "sizes"),
    [
        (("--tp-size", "2"), ParallelSizes(2)),
        (("--tp", "4", "--pp-size=2"), ParallelSizes(4, 2)),
        (("--tensor-parallel-size", "2", "--dp-size", "2"), ParallelSizes(2, None, 2)),
        (("--dp", "4"), ParallelSizes(data=4)),
    ],
)
def test_parallel_sizes_are_read_in_sglangs_own_flags(
    args: tuple[str, ...], sizes: ParallelSizes
) -> None:
    assert SGLangBackend().parallel_sizes(args) == sizes


@pytest.mark.parametrize(
    "arg",
    ["--api-key", "--served-model-name", "--host", "--port=1", "--model-path", "--revision",
     "--config"],
)  # fmt: skip
def test_owned_flags_are_refused(arg: str) -> None:
    with pytest.raises(ConfigError, match=arg.partition("=")[0]):
        SGLangBackend().check_args([arg, "x"])


def test_abort_uses_the_request_id() -> None:
    backend = SGLangBackend()
    assert backend.request_id_field == "rid"
    call = backend.abort_call("abc")
    assert call is not None and (call.path, dict(call.body)) == ("/abort_request", {"rid": "abc"})


def test_every_node_runs_the_same_command_with_its_rank() -> None:
    for rank in (0, 1):
        spec = SGLangBackend().launch(
            request(nodes=2, node_rank=rank, master_addr="10.0.0.1", master_port=29511)
        )
        argv = " ".join(spec.argv)
        assert f"--nnodes 2 --node-rank {rank} --dist-init-addr 10.0.0.1:29511" in argv
