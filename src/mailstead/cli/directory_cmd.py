"""``mailstead domain|user|alias ...``: the directory."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import sys
from pathlib import Path
from typing import TypeAlias

from mailstead.cli.common import CommandError, add_config_option
from mailstead.cli.context import Services, run_command, services
from mailstead.config import ConfigError, load_config
from mailstead.config._values import Size, format_size
from mailstead.store import AccountRole

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: _Sub) -> None:
    _register_domain(subparsers)
    _register_user(subparsers)
    _register_alias(subparsers)


def _group(subparsers: _Sub, name: str, help_text: str) -> _Sub:
    parser = subparsers.add_parser(name, help=help_text)
    parser.set_defaults(func=lambda _args: _usage(parser))
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _command(group: _Sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text)
    add_config_option(parser)
    return parser


def parse_quota(text: str) -> int:
    """``2G``, ``500M``, bytes, or ``0``/``unlimited``."""
    if text.lower() in ("unlimited", "none"):
        return 0
    try:
        return Size(minimum=0).parse(int(text) if text.isdigit() else text, "quota")
    except ConfigError as exc:
        raise CommandError(f"bad quota {text!r}: {exc.problems[0]}") from None
    except ValueError as exc:
        raise CommandError(f"bad quota {text!r}: {exc}") from None


def read_password(args: argparse.Namespace) -> str:
    """From stdin (``--password-stdin``, first line) or an interactive prompt; never argv."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to prompt for the password: use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the passwords differ")
    if not password:
        raise CommandError("empty password")
    return password


# -- domain -------------------------------------------------------------------------------------
def _register_domain(subparsers: _Sub) -> None:
    group = _group(subparsers, "domain", "manage the domains mail is received for")
    p = _command(group, "add", "add a domain")
    p.add_argument("name")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _domain_add(s, a.name)))
    p = _command(group, "list", "list domains")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _domain_list(s, a.json)))
    p = _command(group, "remove", "remove a domain (it must have no accounts)")
    p.add_argument("name")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _domain_remove(s, a.name)))


async def _domain_add(svc: Services, name: str) -> int:
    domain = await svc.directory.add_domain(name)
    print(f"added domain {domain.name}")
    return 0


async def _domain_list(svc: Services, as_json: bool) -> int:
    for domain in await svc.directory.list_domains():
        accounts = len(await svc.store.list_accounts(domain.name))
        if as_json:
            print(json.dumps({"domain": domain.name, "accounts": accounts}, ensure_ascii=False))
        else:
            print(f"{domain.name}\t{accounts} account(s)")
    return 0


async def _domain_remove(svc: Services, name: str) -> int:
    await svc.directory.remove_domain(name)
    print(f"removed domain {name}")
    return 0


def add_domain_from_config(config_file: Path, domain: str) -> None:
    """Used by ``mailstead init --domain``: add ``domain`` to the new installation's directory."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise CommandError("invalid configuration:\n  " + "\n  ".join(exc.problems)) from None

    async def main() -> None:
        async with services(config) as svc:
            if await svc.store.get_domain(domain) is None:
                await svc.directory.add_domain(domain)

    asyncio.run(main())


# -- user ---------------------------------------------------------------------------------------
def _register_user(subparsers: _Sub) -> None:
    group = _group(subparsers, "user", "manage accounts")
    p = _command(group, "add", "add an account (INBOX, Sent, Drafts, Junk, Trash, Archive)")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--quota", default="0", help="e.g. 2G, 500M; 0 = unlimited (default)")
    p.add_argument("--role", choices=[r.value for r in AccountRole], default="user")
    p.set_defaults(func=_user_add)
    p = _command(group, "list", "list accounts")
    p.add_argument("domain", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _user_list(s, a.domain, a.json)))
    p = _command(group, "remove", "remove an account and all its mail")
    p.add_argument("address")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _user_remove(s, a.address)))
    p = _command(group, "passwd", "change an account's password")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=_user_passwd)
    p = _command(group, "quota", "set an account's quota")
    p.add_argument("address")
    p.add_argument("quota", help="e.g. 2G, 500M; 0 or unlimited")
    p.set_defaults(func=_user_quota)
    for name, enabled in (("disable", False), ("enable", True)):
        p = _command(group, name, f"{name} an account (login and mail delivery)")
        p.add_argument("address")
        p.set_defaults(func=lambda a, e=enabled: run_command(a, lambda s: _user_enable(s, a, e)))
    _register_app_password(group)


def _register_app_password(user_group: _Sub) -> None:
    group = _group(
        user_group, "app-password", "manage an account's app passwords (one per client, revocable)"
    )
    p = _command(group, "add", "make a new app password; it is printed once, never stored")
    p.add_argument("address")
    p.add_argument("name", help="what it is for, e.g. 'phone' or 'Thunderbird on the laptop'")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _app_add(s, a.address, a.name)))
    p = _command(group, "list", "list an account's app passwords (names and dates, no secrets)")
    p.add_argument("address")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _app_list(s, a.address, a.json)))
    p = _command(group, "remove", "revoke an app password")
    p.add_argument("address")
    p.add_argument("name")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _app_remove(s, a.address, a.name)))


def _user_add(args: argparse.Namespace) -> int:
    quota = parse_quota(args.quota)
    password = read_password(args)

    async def body(svc: Services) -> int:
        account = await svc.directory.add_account(
            args.address, password, quota=quota, role=AccountRole(args.role)
        )
        print(f"added account {account.address}")
        return 0

    return run_command(args, body)


async def _user_list(svc: Services, domain: str | None, as_json: bool) -> int:
    for account in await svc.directory.list_accounts(domain):
        record = {
            "address": account.address,
            "quota": account.quota,
            "used": account.used,
            "role": account.role.value,
            "enabled": account.enabled,
        }
        if as_json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            quota = format_size(account.quota) if account.quota else "unlimited"
            state = "" if account.enabled else "\tdisabled"
            print(f"{account.address}\t{account.role.value}\t{account.used}/{quota}{state}")
    return 0


async def _user_remove(svc: Services, address: str) -> int:
    await svc.directory.remove_account(address)
    print(f"removed account {address}")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    password = read_password(args)

    async def body(svc: Services) -> int:
        await svc.directory.set_password(args.address, password)
        print(f"password changed for {args.address}")
        return 0

    return run_command(args, body)


def _user_quota(args: argparse.Namespace) -> int:
    quota = parse_quota(args.quota)

    async def body(svc: Services) -> int:
        await svc.directory.set_quota(args.address, quota)
        print(f"quota of {args.address}: {format_size(quota) if quota else 'unlimited'}")
        return 0

    return run_command(args, body)


async def _user_enable(svc: Services, args: argparse.Namespace, enabled: bool) -> int:
    await svc.directory.set_enabled(args.address, enabled)
    print(f"{'enabled' if enabled else 'disabled'} {args.address}")
    return 0


async def _app_add(svc: Services, address: str, name: str) -> int:
    record, password = await svc.directory.add_app_password(address, name)
    # the password alone on stdout (for scripts); what it is on stderr
    print(f"app password {record.name!r} for {address} (shown only now):", file=sys.stderr)
    print(password)
    return 0


async def _app_list(svc: Services, address: str, as_json: bool) -> int:
    for app in await svc.directory.list_app_passwords(address):
        created = datetime.datetime.fromtimestamp(app.created, datetime.UTC).isoformat()
        if as_json:
            print(json.dumps({"name": app.name, "created": created}, ensure_ascii=False))
        else:
            print(f"{app.name}\t{created}")
    return 0


async def _app_remove(svc: Services, address: str, name: str) -> int:
    await svc.directory.remove_app_password(address, name)
    print(f"removed app password {name!r} of {address}")
    return 0


# -- alias --------------------------------------------------------------------------------------
def _register_alias(subparsers: _Sub) -> None:
    group = _group(subparsers, "alias", "manage aliases and catch-alls (@domain)")
    p = _command(group, "add", "deliver mail for SOURCE to TARGET(s), local or remote")
    p.add_argument("source", help="local@domain, or @domain for the domain's catch-all")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _alias_add(s, a.source, a.targets)))
    p = _command(group, "list", "list aliases")
    p.add_argument("domain", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _alias_list(s, a.domain, a.json)))
    p = _command(group, "remove", "remove an alias (all its targets, or one)")
    p.add_argument("source")
    p.add_argument("target", nargs="?")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _alias_remove(s, a.source, a.target)))


async def _alias_add(svc: Services, source: str, targets: list[str]) -> int:
    for target in targets:
        alias = await svc.directory.add_alias(source, target)
        print(f"added alias {alias.source} -> {alias.target}")
    return 0


async def _alias_list(svc: Services, domain: str | None, as_json: bool) -> int:
    for alias in await svc.directory.list_aliases(domain):
        if as_json:
            print(json.dumps({"source": alias.source, "target": alias.target}, ensure_ascii=False))
        else:
            print(f"{alias.source}\t{alias.target}")
    return 0


async def _alias_remove(svc: Services, source: str, target: str | None) -> int:
    count = await svc.directory.remove_alias(source, target)
    print(f"removed {count} alias(es) of {source}")
    return 0
