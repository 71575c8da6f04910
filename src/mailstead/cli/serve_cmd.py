"""``mailstead serve``: run the server."""

from __future__ import annotations

import argparse
import json
import sys

from mailstead.cli.common import CommandError, add_config_option, config_path
from mailstead.config import ConfigError
from mailstead.security.memory import return_large_buffers
from mailstead.security.privileges import PrivilegeError
from mailstead.servers.app import BoundAddresses, run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run the mail server")
    add_config_option(parser)
    parser.add_argument(
        "--ready-fd",
        type=int,
        metavar="FD",
        help="write one JSON line with the bound addresses to this file descriptor when ready",
    )
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    path = config_path(args)

    def ready(bound: BoundAddresses) -> None:
        line = json.dumps(bound.as_json()) + "\n"
        if args.ready_fd is not None:
            with open(args.ready_fd, "w", closefd=True) as out:
                out.write(line)
        else:
            print(f"mailstead: ready: {bound.as_json()}", file=sys.stderr, flush=True)

    return_large_buffers()  # large messages' memory goes back to the system (security.memory)
    try:
        run(path, ready=ready)
    except ConfigError as exc:
        raise CommandError("invalid configuration:\n  " + "\n  ".join(exc.problems)) from None
    except PrivilegeError as exc:
        raise CommandError(f"cannot start: {exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot start: {exc}") from None
    return 0
