"""Helpers shared by the command-group modules."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CONFIG_ENV = "MAILSTEAD_CONFIG"


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit status 1 (or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Accept ``--config FILE`` after the subcommand too (``mailstead serve --config F``)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"configuration file (default: ${CONFIG_ENV})",
    )


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file named by ``--config`` or ``$MAILSTEAD_CONFIG``."""
    value = getattr(args, "config", None) or os.environ.get(CONFIG_ENV)
    if not value:
        raise CommandError(
            f"no configuration file: pass --config FILE or set {CONFIG_ENV}", status=2
        )
    return Path(value)


def fail(message: str, status: int = 1) -> int:
    """Print ``message`` to stderr and return ``status``."""
    print(f"mailstead: {message}", file=sys.stderr)
    return status
