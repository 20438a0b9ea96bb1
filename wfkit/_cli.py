"""The ``wfkit`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wfkit._version import __version__


def _demo(args: argparse.Namespace) -> int:
    from wfkit._demo import run_demo

    return run_demo(runs=args.runs, seed=args.seed, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wfkit", description="Prototype and evaluate LLM-agent workflows.")
    parser.add_argument("--version", action="version", version=f"wfkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run the built-in query-router workflow offline and summarise the runs"
    )
    demo.add_argument("--runs", type=int, default=40, help="how many queries to route (default 40)")
    demo.add_argument("--seed", type=int, default=7, help="seed for the simulated failures")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
