import pytest

from engines.base import LaunchRequest
from engines.sglang import SGLangBackend
from engines.vllm import flag_value
from runtime.errors import ConfigError


def request(**fields: object) -> LaunchRequest:
    base: dict[str, object] = {
        "model_path": "/m", "served_name": "name", "port": 10101, "api_key": "k",
        "python": "/envs/sglang/bin/python", "device": "cuda",
    }  # fmt: skip
    base.update(fields)
    return LaunchRequest(**base)  # type: ignore[arg-type]


def test_command_matches_the_chutes_template() -> None:
    spec = SGLangBackend().launch(
        request(tensor_parallel=4, engine_args=("--mem-fraction-static", "0.8"))
    )
    assert spec.argv == (
        "/envs/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", "/m",
        "--served-model-name", "name", "--api-key", "k", "--host", "127.0.0.1",
        "--port", "10101", "--tp-size", "4", "--mem-fraction-static", "0.8",
    )  # fmt: skip


def test_pipeline_stages_and_explicit_sizes() -> None:
    spec = SGLangBackend().launch(request(tensor_parallel=8, pipeline_parallel=2))
    assert flag_value(spec.argv, ["--pp-size"]) == "2"
    spec = SGLangBackend().launch(request(tensor_parallel=8, engine_args=("--tp", "2")))
    assert "--tp-size" not in spec.argv and spec.argv[-2:] == ("--tp", "2")


@pytest.mark.parametrize(
    "arg", ["--api-key", "--served-model-name", "--host", "--port=1", "--model-path", "--revision"]
)
def test_owned_flags_are_refused(arg: str) -> None:
    with pytest.raises(ConfigError, match=arg.partition("=")[0]):
        SGLangBackend().check_args([arg, "x"])


def test_abort_uses_the_request_id() -> None:
    backend = SGLangBackend()
    assert backend.request_id_field == "rid"
    call = backend.abort_call("abc")
    assert call is not None and (call.path, dict(call.body)) == ("/abort_request", {"rid": "abc"})
    chat = backend.accepted_fields("chat")
    assert chat is not None and {"rid", "top_k", "separate_reasoning", "regex"} <= chat
