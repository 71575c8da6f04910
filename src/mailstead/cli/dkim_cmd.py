"""``mailstead dkim generate|list|record|activate|remove``: the domains' DKIM signing keys.

``generate`` makes a key, makes it the domain's active key for its algorithm (unless
``--inactive``) and prints the TXT record to publish, in zone-file form, on stdout; what
happened goes to stderr. :func:`dkim_dns_records` gives the records of the active keys to other
commands (``mailstead dns records``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import TypeAlias

from mailstead.cli.common import CommandError, add_config_option
from mailstead.cli.context import Services, run_command
from mailstead.mailauth.dkim import (
    ALGORITHMS,
    DkimAlgorithm,
    DkimError,
    DnsRecord,
    check_selector,
    dns_record,
    generate_key,
)
from mailstead.message.addresses import AddressError, normalize_domain
from mailstead.store import DkimKey, Store, StoreError

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

SELECTOR_PREFIX = "ms"


def register(subparsers: _Sub) -> None:
    parser = subparsers.add_parser("dkim", help="manage the DKIM keys outgoing mail is signed with")
    parser.set_defaults(func=lambda _args: _usage(parser))
    group = parser.add_subparsers(dest="dkim_command", metavar="COMMAND")

    p = _command(group, "generate", "make a key, make it active, print its DNS record")
    p.add_argument("domain")
    p.add_argument("--selector", help="default: ms + year and month (ms202501, ms202501e)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="rsa", help="default: rsa (2048)")
    p.add_argument(
        "--inactive",
        action="store_true",
        help="store the key without signing with it yet (activate it once DNS has the record)",
    )
    p.set_defaults(
        func=lambda a: run_command(
            a, lambda s: _generate(s, a.domain, a.selector, a.algorithm, not a.inactive)
        )
    )

    p = _command(group, "list", "list the keys (of one domain)")
    p.add_argument("domain", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _list(s, a.domain, a.json)))

    p = _command(group, "record", "print the DNS records of the active keys (or of one key)")
    p.add_argument("domain")
    p.add_argument("selector", nargs="?")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _record(s, a.domain, a.selector)))

    p = _command(group, "activate", "sign with this key (the active one of its algorithm stops)")
    p.add_argument("domain")
    p.add_argument("selector")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _activate(s, a.domain, a.selector)))

    p = _command(group, "remove", "forget a key (an active one stops signing)")
    p.add_argument("domain")
    p.add_argument("selector")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _remove(s, a.domain, a.selector)))


def _command(group: _Sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text)
    add_config_option(parser)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _note(text: str) -> None:
    print(text, file=sys.stderr)


async def dkim_dns_records(store: Store, domain: str) -> list[DnsRecord]:
    """The TXT records to publish for ``domain``'s active keys (RSA first): each has the
    selector, the record name (absolute, A-labels) and the value."""
    keys = await store.active_dkim_keys(domain)
    return [_record_of(key) for key in keys]


def _record_of(key: DkimKey) -> DnsRecord:
    return dns_record(key.domain, key.selector, key.algorithm, key.public_key)


def default_selector(algorithm: DkimAlgorithm, now: datetime.datetime, taken: set[str]) -> str:
    """``ms`` + year and month (``ms202501``; Ed25519 keys get an ``e``), then ``-2``, ``-3``…
    when the domain already has that selector."""
    base = f"{SELECTOR_PREFIX}{now:%Y%m}" + ("e" if algorithm == "ed25519" else "")
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


async def _domain(svc: Services, text: str) -> str:
    try:
        name = normalize_domain(text)
    except AddressError as exc:
        raise CommandError(f"bad domain {text!r}: {exc}") from None
    if await svc.store.get_domain(name) is None:
        raise CommandError(
            f"{name} is not one of this server's domains (add it with: mailstead domain add {name})"
        )
    return name


def _selector(text: str) -> str:
    try:
        return check_selector(text)
    except DkimError as exc:
        raise CommandError(str(exc)) from None


async def _generate(
    svc: Services, domain: str, selector: str | None, algorithm: DkimAlgorithm, active: bool
) -> int:
    name = await _domain(svc, domain)
    existing = await svc.store.list_dkim_keys(name)
    taken = {key.selector for key in existing}
    if selector is None:
        selector = default_selector(algorithm, datetime.datetime.now(datetime.UTC), taken)
    else:
        selector = _selector(selector)
        if selector in taken:
            raise CommandError(
                f"{name} already has a DKIM key {selector!r}; choose another selector"
            )
    pair = await asyncio.to_thread(generate_key, algorithm)
    key = await svc.store.add_dkim_key(
        name, selector, algorithm, pair.private_key_pem, pair.public_key, active=active
    )
    record = _record_of(key)
    print(record.zone_text())
    kind = "RSA-2048" if algorithm == "rsa" else "Ed25519"
    _note(f"made an {kind} DKIM key for {name}, selector {selector}")
    previous = [k.selector for k in existing if k.active and k.algorithm == algorithm]
    if active:
        replaced = f" instead of {previous[0]} (kept, inactive)" if previous else ""
        _note(f"it now signs mail from {name} ({_algorithm_name(algorithm)}){replaced}")
    else:
        _note(
            "it is inactive: once DNS serves the record, run: "
            f"mailstead dkim activate {name} {selector}"
        )
    _note(f"publish this TXT record at {record.name}")
    return 0


def _algorithm_name(algorithm: DkimAlgorithm) -> str:
    return "rsa-sha256" if algorithm == "rsa" else "ed25519-sha256"


async def _list(svc: Services, domain: str | None, as_json: bool) -> int:
    name = None if domain is None else await _domain(svc, domain)
    for key in await svc.store.list_dkim_keys(name):
        created = datetime.datetime.fromtimestamp(key.created, datetime.UTC).isoformat()
        record = _record_of(key)
        if as_json:
            line = {
                "domain": key.domain,
                "selector": key.selector,
                "algorithm": key.algorithm,
                "active": key.active,
                "created": created,
                "dns_name": record.name,
                "dns_value": record.value,
            }
            print(json.dumps(line, ensure_ascii=False))
        else:
            state = "active" if key.active else "inactive"
            print(f"{key.domain}\t{key.selector}\t{key.algorithm}\t{state}\t{created}")
    return 0


async def _record(svc: Services, domain: str, selector: str | None) -> int:
    name = await _domain(svc, domain)
    if selector is None:
        records = await dkim_dns_records(svc.store, name)
        if not records:
            raise CommandError(
                f"{name} has no active DKIM key (make one: mailstead dkim generate {name})"
            )
    else:
        wanted = _selector(selector)
        keys = [k for k in await svc.store.list_dkim_keys(name) if k.selector == wanted]
        if not keys:
            raise CommandError(f"{name} has no DKIM key {wanted!r}")
        records = [_record_of(keys[0])]
    for record in records:
        print(record.zone_text())
    return 0


async def _activate(svc: Services, domain: str, selector: str) -> int:
    name = await _domain(svc, domain)
    try:
        key = await svc.store.activate_dkim_key(name, _selector(selector))
    except StoreError as exc:
        raise CommandError(exc.detail or str(exc)) from None
    _note(f"{key.selector} now signs mail from {name} ({_algorithm_name(key.algorithm)})")
    return 0


async def _remove(svc: Services, domain: str, selector: str) -> int:
    name = await _domain(svc, domain)
    try:
        key = await svc.store.remove_dkim_key(name, _selector(selector))
    except StoreError as exc:
        raise CommandError(exc.detail or str(exc)) from None
    _note(f"removed DKIM key {key.selector} of {name}")
    if key.active:
        _note(f"{name} now has no active {key.algorithm} key: that signature is no longer made")
    return 0
