"""SGLang's server, launched as the Chutes SGLang template launches it.

`python -m sglang.launch_server` on loopback with a per-boot key, the planned `--tp-size` (and
`--pp-size`), the chute's served name and engine args. SGLang does not abort a request when its
HTTP connection closes, so the gateway tags each request with its invocation id (`rid`) and,
when the client goes away, calls `/abort_request` with it. SGLang needs CUDA: it cannot run on
the CPU-only machines this project is tested on, so its end-to-end tests are marked `gpu`.
"""

from __future__ import annotations

from collections.abc import Sequence

from engines.base import CHAT, COMPLETIONS, AbortCall, LaunchRequest, LaunchSpec
from engines.vllm import has_flag
from engines.worker import refuse_owned_flags

OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model-path",
               "--model", "--revision")  # fmt: skip
TP_FLAGS = ("--tp-size", "--tp", "--tensor-parallel-size")
PP_FLAGS = ("--pp-size", "--pipeline-parallel-size")

# SGLang's OpenAI-server request fields beyond the OpenAI ones our schemas name
# (python/sglang/srt/entrypoints/openai/protocol.py).
_COMMON = frozenset({
    "top_k", "min_p", "min_tokens", "regex", "ebnf", "json_schema", "repetition_penalty",
    "stop_token_ids", "stop_regex", "no_stop_trim", "ignore_eos", "skip_special_tokens",
    "lora_path", "session_id", "session_params", "custom_logit_processor", "custom_params",
    "rid", "extra_key", "cache_salt", "priority", "return_hidden_states", "return_token_ids",
    "return_routed_experts", "routed_experts_start_len", "return_cached_tokens_details",
    "bootstrap_host", "bootstrap_port", "bootstrap_room", "routed_dp_rank",
    "disagg_prefill_dp_rank", "data_parallel_rank", "images_config", "ngram_corpus_id",
})  # fmt: skip
_CHAT = _COMMON | frozenset({
    "continue_final_message", "separate_reasoning", "stream_reasoning", "chat_template_kwargs",
    "reasoning_effort", "max_dynamic_patch", "min_dynamic_patch", "use_audio_in_video",
    "input_ids", "return_prompt_token_ids", "return_meta_info", "task",
})  # fmt: skip
_COMPLETION = _COMMON | frozenset({"best_of", "custom_labels"})


class SGLangBackend:
    """SGLang's OpenAI-compatible server (GPU only)."""

    name = "sglang"
    capabilities = frozenset({CHAT, COMPLETIONS})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = True
    module = "sglang"
    install_hint = "pip install 'sglang[all]' (in its own environment: its torch pin differs)"
    request_id_field: str | None = "rid"

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, OWNED_FLAGS, "SGLang")

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        args = request.engine_args
        self.check_args(args)
        argv = [
            request.python, "-m", "sglang.launch_server",
            "--model-path", request.model_path,
            "--served-model-name", request.served_name,
            "--api-key", request.api_key,
            "--host", request.host, "--port", str(request.port),
        ]  # fmt: skip
        if not has_flag(args, TP_FLAGS):
            argv += ["--tp-size", str(request.tensor_parallel)]
        if request.pipeline_parallel > 1 and not has_flag(args, PP_FLAGS):
            argv += ["--pp-size", str(request.pipeline_parallel)]
        return LaunchSpec(argv=(*argv, *args))

    def accepted_fields(self, route: str) -> frozenset[str] | None:
        return {CHAT: _CHAT, COMPLETIONS: _COMPLETION}.get(route)

    def abort_call(self, request_id: str) -> AbortCall | None:
        return AbortCall("/abort_request", {"rid": request_id})
