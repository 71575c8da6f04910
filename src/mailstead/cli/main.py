"""The `mailstead` command: one argparse tree, one module per command group.

Each command-group module exposes ``register(subparsers)``, which adds its parser(s) and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mailstead.cli.common import CommandError, fail

# Command-group modules, in the order `mailstead --help` lists them.
COMMAND_MODULES = (
    "mailstead.cli.init_cmd",
    "mailstead.cli.config_cmd",
    "mailstead.cli.serve_cmd",
    "mailstead.cli.directory_cmd",
    "mailstead.cli.mailbox_cmd",
    "mailstead.cli.dkim_cmd",
    "mailstead.cli.dns_cmd",
    "mailstead.cli.queue_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="mailstead", description="Mailstead mail server")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $MAILSTEAD_CONFIG)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # group not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        status: int = func(args)
    except CommandError as exc:
        return fail(str(exc), exc.status)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `mailstead message list | head`: the reader is gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141
    return status


if __name__ == "__main__":
    sys.exit(main())
