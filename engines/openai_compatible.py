"""Any OpenAI-compatible server that chutebox fronts but does not start (`engine = "openai"`
with a `url`): another chutebox, a proxy, a server of an engine chutebox has no backend for.

It may serve every route the gateway knows; which ones it does is read from its own
`/openapi.json` at readiness, as for every engine. Nothing here launches a process.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.errors import ConfigError
from runtime.fleet.backend import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    MESSAGES,
    RERANK,
    RESPONSES,
    TOKENIZE,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
)


class OpenAICompatibleBackend:
    """A server reached at a chute's `url`; it runs elsewhere."""

    name = "openai"
    capabilities = frozenset(
        {CHAT, COMPLETIONS, TOKENIZE, EMBEDDINGS, IMAGES, RESPONSES, MESSAGES, RERANK}
    )
    ready_path = "/v1/models"
    health_path = "/v1/models"
    default_concurrency = 32
    single_file_suffixes: frozenset[str] = frozenset()
    multi_gpu = False
    multi_node = False
    unix_socket = False
    module = ""
    install_hint = ""
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        if args:
            raise ConfigError("engine openai runs elsewhere: it takes no engine_args")

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return ParallelSizes()

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        raise ConfigError("engine openai is not started by chutebox: give the chute a `url`")

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None
