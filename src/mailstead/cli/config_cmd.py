"""`mailstead config check` and `mailstead config show`: validate a configuration file, print its
effective values."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailstead.cli.common import CommandError, add_config_option, config_path, fail
from mailstead.config import Config, ConfigError, load_config, render_effective
from mailstead.security.privileges import user_problem
from mailstead.security.tls import TLSError, server_context


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="check or show the configuration",
        description="Check or show the configuration file.",
    )
    parser.set_defaults(func=lambda args: _help(parser))
    sub = parser.add_subparsers(dest="config_command", metavar="COMMAND")

    check = sub.add_parser(
        "check",
        help="validate the configuration file",
        description="Validate the configuration file, the TLS certificate it names and the "
        "system user of server.user. Prints every problem, one per line, naming its key; exit "
        "status 1 if there is any.",
    )
    add_config_option(check)
    check.set_defaults(func=run_check)

    show = sub.add_parser(
        "show",
        help="print the effective configuration",
        description="Print every key with its effective value (defaults filled in, paths "
        "resolved), as TOML.",
    )
    add_config_option(show)
    show.set_defaults(func=run_show)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _load(args: argparse.Namespace) -> tuple[Path, Config]:
    path = config_path(args)
    try:
        return path, load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        raise CommandError(f"{path}: {count} problem{'s' if count != 1 else ''}") from None


def tls_problems(cfg: Config) -> tuple[list[str], list[str]]:
    """(problems, warnings) about the certificate and key, when a listener that offers TLS is
    configured. Without both files the server runs without TLS (a warning); files that do not load
    stop it from starting (a problem)."""
    listen = cfg.listen
    uses_tls = any(
        getattr(listen, name)
        for name in (
            "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve"
        )
    )
    if not uses_tls:
        return [], []
    cert, key = cfg.tls.cert_file, cfg.tls.key_file
    if not (cert.exists() and key.exists()):
        missing = " and ".join(str(p) for p in (cert, key) if not p.exists())
        return [], [f"tls.cert_file: {missing} not found: TLS (STARTTLS, imaps, ...) unavailable"]
    try:
        server_context(cert, key, cfg.tls.min_version)
    except TLSError as exc:
        return [f"tls.cert_file: {exc}"], []
    return [], []


def run_check(args: argparse.Namespace) -> int:
    try:
        path, cfg = _load(args)
    except CommandError as exc:
        return fail(str(exc), exc.status)
    problems, warnings = tls_problems(cfg)
    if problem := user_problem(cfg.server.user):
        problems.insert(0, problem)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return fail(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    print(f"OK: {path}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        _path, cfg = _load(args)
    except CommandError as exc:
        return fail(str(exc), exc.status)
    sys.stdout.write(render_effective(cfg))
    return 0
