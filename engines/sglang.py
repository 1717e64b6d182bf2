"""SGLang's server, launched as the Chutes SGLang template launches it.

`python -m sglang.launch_server` on loopback with the planned `--tp-size` (and `--pp-size`), the
chute's served name and engine args. SGLang has no Unix-socket listener and reads no key from
the environment, so its per-boot key goes in a YAML file in chutebox's private folder, passed
with SGLang's `--config` (merged into its arguments in memory): the key never appears on a
command line, though the port stays reachable by other local users, who would need the key.
SGLang does not abort a request when its HTTP connection closes, so the gateway tags each
request with its invocation id (`rid`) and, when the client goes away, calls
`/abort_request` with it. SGLang needs CUDA: it cannot run on the CPU-only machines this project
is tested on, so its end-to-end tests are marked `gpu`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from engines.worker import read_parallel_sizes, refuse_owned_flags
from runtime.errors import ConfigError
from runtime.fleet.backend import (
    CHAT,
    COMPLETIONS,
    RESPONSES,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
    has_flag,
)

OWNED_FLAGS = ("--api-key", "--served-model-name", "--host", "--port", "--model-path",
               "--model", "--revision", "--config", "--nnodes", "--node-rank",
               "--dist-init-addr")  # fmt: skip
# SGLang's spellings (python/sglang/srt/server_args.py: `tp_size` with the alias
# `--tensor-parallel-size`, and `--tp`, which argparse takes as a prefix of `--tp-size`).
TP_FLAGS = ("--tp-size", "--tp", "--tensor-parallel-size")
PP_FLAGS = ("--pp-size", "--pp", "--pipeline-parallel-size")
DP_FLAGS = ("--dp-size", "--dp", "--data-parallel-size")


class SGLangBackend:
    """SGLang's OpenAI-compatible server (GPU only)."""

    name = "sglang"
    # SGLang serves OpenAI's Responses API but not Anthropic's Messages API.
    capabilities = frozenset({CHAT, COMPLETIONS, RESPONSES})
    ready_path = "/v1/models"
    health_path = "/health"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = True
    multi_node = True
    unix_socket = False
    module = "sglang"
    install_hint = "pip install 'sglang[all]' (in its own environment: its torch pin differs)"
    request_id_field: str | None = "rid"

    def check_args(self, args: Sequence[str]) -> None:
        refuse_owned_flags(args, OWNED_FLAGS, "SGLang")
        self.parallel_sizes(args)

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return read_parallel_sizes(args, TP_FLAGS, PP_FLAGS, DP_FLAGS)

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        args = request.engine_args
        self.check_args(args)
        if not request.private_dir:
            raise ConfigError("SGLang needs a private folder for its key file")
        config = str(Path(request.private_dir) / f"sglang-{request.port}.yaml")
        argv = [
            request.python, "-m", "sglang.launch_server",
            "--config", config,
            "--model-path", request.model_path,
            "--served-model-name", request.served_name,
            "--host", request.host, "--port", str(request.port),
        ]  # fmt: skip
        if not has_flag(args, TP_FLAGS):
            argv += ["--tp-size", str(request.tensor_parallel)]
        if request.pipeline_parallel > 1 and not has_flag(args, PP_FLAGS):
            argv += ["--pp-size", str(request.pipeline_parallel)]
        if request.nodes > 1:
            # SGLang's own multi-node launch: the same command on every node, with its rank;
            # only rank 0 serves HTTP.
            argv += ["--nnodes", str(request.nodes), "--node-rank", str(request.node_rank)]
            argv += ["--dist-init-addr", f"{request.master_addr}:{request.master_port}"]
        # JSON is YAML: a quoted string whatever the key's characters.
        files = {config: f"api-key: {json.dumps(request.api_key)}\n"}
        return LaunchSpec(argv=(*argv, *args), files=files)

    def abort_call(self, request_id: str) -> AbortCall | None:
        return AbortCall("/abort_request", {"rid": request_id})
