"""`mailstead init`: create a data directory with a complete, commented configuration file and a
self-signed TLS certificate, and optionally the first mail domain."""

from __future__ import annotations

import argparse
import importlib
import shlex
import socket
from pathlib import Path

from mailstead.cli.common import CommandError, fail
from mailstead.config import ConfigError, hostname_problem, load_config, render_config_file
from mailstead.security.files import write_atomically
from mailstead.security.tls import generate_self_signed

CONFIG_NAME = "mailstead.toml"
# Set explicitly, whatever the umask and whatever an existing directory had: the data directory
# holds the database (password hashes, DKIM keys) and the TLS key. `serve` with server.user set
# hands them to that user with the same modes.
DATA_DIR_MODE = 0o700
TLS_DIR_MODE = 0o700
PARENT_DIR_MODE = 0o755  # directories above the data directory that init creates
CONFIG_MODE = 0o640
KEY_MODE = 0o600
CERT_MODE = 0o644
DEFAULT_DATA = "./var"
DIRECTORY_MODULE = "mailstead.cli.directory_cmd"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init",
        help="create a data directory with a configuration file and a TLS certificate",
        description=f"Create DIR, write DIR/{CONFIG_NAME} (every key documented) and a "
        "self-signed TLS certificate under DIR/tls/.",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="development setup: listen on 127.0.0.1 only, on the standard ports + 10000 "
        "(SMTP 10025, IMAP 10143, ...) and HTTP 8080; certificate also valid for localhost",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=DEFAULT_DATA,
        help=f"data directory to create; holds the configuration file (default: {DEFAULT_DATA})",
    )
    parser.add_argument("--domain", help="first mail domain to serve, e.g. example.com")
    parser.add_argument(
        "--hostname",
        metavar="NAME",
        help="name this server announces (default: mail.DOMAIN with --domain, else this "
        "machine's fully qualified name)",
    )
    parser.add_argument("--force", action="store_true", help=f"overwrite an existing {CONFIG_NAME}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _init(args)
    except CommandError as exc:
        return fail(str(exc), exc.status)


def _init(args: argparse.Namespace) -> int:
    domain: str | None = args.domain.strip().lower().rstrip(".") if args.domain else None
    if domain is not None and (problem := hostname_problem(domain)):
        raise CommandError(f"--domain: {problem}", status=2)
    hostname = args.hostname or (f"mail.{domain}" if domain else socket.getfqdn())
    if problem := hostname_problem(hostname):
        hint = "" if args.hostname else "; pass --hostname NAME"
        raise CommandError(f"host name: {problem}{hint}", status=2)

    data_dir = Path(args.data)
    config_file = data_dir / CONFIG_NAME
    if config_file.exists() and not args.force:
        raise CommandError(f"{config_file} exists; pass --force to overwrite it")
    try:
        _make_dir(data_dir, DATA_DIR_MODE)
        # data_dir "." in the file: the directory of the file itself, wherever it is moved.
        text = render_config_file(dev=args.dev, hostname=hostname, data_dir=".")
        write_atomically(config_file, text.encode("utf-8"), mode=CONFIG_MODE)
    except OSError as exc:
        raise CommandError(f"cannot write {config_file}: {exc.strerror or exc}") from None
    try:
        cfg = load_config(config_file)
    except ConfigError as exc:  # a bug in the template, not a user error
        raise CommandError(f"{config_file}: generated file is invalid: {exc}") from None
    print(f"Wrote {config_file} ({'development' if args.dev else 'production'} settings)")

    cert, key = cfg.tls.cert_file, cfg.tls.key_file
    if cert.exists() and key.exists():
        print(f"Kept the existing certificate {cert} and key {key}")
    elif (cert.exists() or key.exists()) and not args.force:
        present = cert if cert.exists() else key
        raise CommandError(
            f"{present} exists without its pair; remove it or pass --force to replace both"
        )
    else:
        extra = ["localhost", "127.0.0.1", "::1"] if args.dev else []
        try:
            for directory in {cert.parent, key.parent}:
                _make_dir(directory, TLS_DIR_MODE)
            generate_self_signed(hostname, cert, key, extra_names=extra)
        except OSError as exc:
            raise CommandError(f"cannot write {cert}: {exc.strerror or exc}") from None
        names = ", ".join([hostname, *extra])
        print(f"Wrote a self-signed certificate for {names}: {cert} (key {key})")

    try:
        _tighten(data_dir, cert, key)
    except OSError as exc:
        raise CommandError(f"cannot set the mode of {exc.filename}: {exc.strerror}") from None

    status = 0
    if domain is not None:
        status = _add_domain(config_file, domain)

    _print_next_steps(config_file, dev=args.dev)
    return status


def _make_dir(path: Path, mode: int) -> None:
    """Create ``path`` (and missing parents, 0755) with ``mode`` set explicitly: mkdir's mode
    is filtered by the umask, and umask 000 would leave it writable by everyone."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(mode if directory == path else PARENT_DIR_MODE)


def _tighten(data_dir: Path, cert: Path, key: Path) -> None:
    """The modes of what init leaves in the data directory, existing files included (a
    directory made world-writable before init ran, a key copied in with mode 0644). TLS files
    outside the data directory are the administrator's and keep their modes."""
    data_dir.chmod(DATA_DIR_MODE)
    inside = data_dir.resolve()
    for path, mode in ((key, KEY_MODE), (cert, CERT_MODE)):
        if path.exists() and path.resolve().is_relative_to(inside):
            if path.parent.resolve() != inside:
                path.parent.chmod(TLS_DIR_MODE)
            path.chmod(mode)


def _add_domain(config_file: Path, domain: str) -> int:
    # The directory commands live in their own module, which may not be part of this build.
    try:
        module = importlib.import_module(DIRECTORY_MODULE)
        add_domain = module.add_domain_from_config
    except (ModuleNotFoundError, AttributeError) as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name != DIRECTORY_MODULE:
            raise
        print(
            f"Note: domain {domain} not added: this build has no directory commands yet; "
            "add it later with the directory command"
        )
        return 0
    try:
        add_domain(config_file, domain)
    except CommandError as exc:
        return fail(f"domain {domain} not added: {exc}", exc.status)
    print(f"Added domain {domain}")
    return 0


def _print_next_steps(config_file: Path, *, dev: bool) -> None:
    quoted = shlex.quote(str(config_file))
    lines = [
        "",
        "Next steps:",
        f"  mailstead config check --config {quoted}",
        f"  mailstead serve --config {quoted}",
        f"  (or export MAILSTEAD_CONFIG={quoted} and leave out --config)",
    ]
    if dev:
        lines.append("  SMTP on 127.0.0.1:10025, IMAP on 127.0.0.1:10143, HTTP on 127.0.0.1:8080")
    else:
        lines += [
            "  Replace the self-signed certificate with one from a CA (e.g. ACME) at the paths "
            "in [tls].",
            "  Started as root, the server should switch to its own user after binding the ports:",
            "    useradd --system --no-create-home --shell /usr/sbin/nologin mailstead",
            '    and set server.user = "mailstead" (serve then hands it the data directory).',
            "  Publish MX, SPF, DKIM and DMARC records for your domains.",
        ]
    print("\n".join(lines))
