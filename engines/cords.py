"""The engine of a custom chute: its own code, served by `engines.cord_runner` under the
chute's interpreter (which has the Chutes SDK and the chute's dependencies)."""

from __future__ import annotations

from collections.abc import Sequence

from engines.worker import listen_args
from runtime.errors import ConfigError
from runtime.fleet.backend import (
    CORDS,
    ENGINE_KEY_ENV,
    PACKAGE_ROOT,
    AbortCall,
    LaunchRequest,
    LaunchSpec,
    ParallelSizes,
)
from runtime.fleet.cords import ATTR_FLAG, chute_attr


class CordsBackend:
    """A chute file's own cords and hooks (`chute = "my_chute:chute"`); the model is the file.

    The runner answers only with its per-boot key, on a Unix socket in chutebox's private
    folder (or a loopback port, with `--engine-link tcp`). A client that leaves closes the
    connection, which the SDK turns into a cancelled call: there is no abort route.
    """

    name = "chute"
    capabilities = frozenset({CORDS})
    ready_path = "/_chutebox/ready"
    health_path = "/_chutebox/ready"
    default_concurrency = 1  # as on Chutes, for custom chutes
    single_file_suffixes = frozenset({".py"})
    multi_gpu = True  # the chute's own code decides what it does with the GPUs it is given
    multi_node = False
    unix_socket = True
    module = "chutes"
    install_hint = "pip install chutes (with the chute's own dependencies) there, or name another "
    install_hint += "interpreter with `python`"
    request_id_field: str | None = None

    def check_args(self, args: Sequence[str]) -> None:
        extra = [a for a in args if a.partition("=")[0] != ATTR_FLAG and a != chute_attr(args)]
        if extra:
            raise ConfigError(f"engine_args: a custom chute's engine takes only {ATTR_FLAG}, "
                              f"not {extra[0]}")  # fmt: skip

    def parallel_sizes(self, args: Sequence[str]) -> ParallelSizes:
        return ParallelSizes()

    def launch(self, request: LaunchRequest) -> LaunchSpec:
        self.check_args(request.engine_args)
        argv = (request.python, "-m", "engines.cord_runner", "serve", request.model_path,
                chute_attr(request.engine_args), *listen_args(request))  # fmt: skip
        env = {"PYTHONPATH": PACKAGE_ROOT, ENGINE_KEY_ENV: request.api_key}
        return LaunchSpec(argv=argv, env=env)

    def abort_call(self, request_id: str) -> AbortCall | None:
        return None
