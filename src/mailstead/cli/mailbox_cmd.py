"""``mailstead mailbox list`` and ``mailstead message list|show``: look into mailboxes."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import TypeAlias

from mailstead.cli.common import CommandError, add_config_option
from mailstead.cli.context import Services, run_command
from mailstead.store import MailboxInfo, MessageInfo

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: _Sub) -> None:
    parser = subparsers.add_parser("mailbox", help="an account's mailboxes")
    group = parser.add_subparsers(dest="mailbox_command", metavar="COMMAND")
    parser.set_defaults(func=lambda _a: _usage(parser))
    p = group.add_parser("list", help="mailboxes with message counts")
    add_config_option(p)
    p.add_argument("address")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _mailbox_list(s, a.address, a.json)))

    parser = subparsers.add_parser("message", help="messages in a mailbox")
    group = parser.add_subparsers(dest="message_command", metavar="COMMAND")
    parser.set_defaults(func=lambda _a: _usage(parser))
    p = group.add_parser("list", help="the messages of a mailbox")
    add_config_option(p)
    p.add_argument("address")
    p.add_argument("mailbox")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _message_list(s, a)))
    p = group.add_parser("show", help="print a message as stored (raw RFC 5322)")
    add_config_option(p)
    p.add_argument("address")
    p.add_argument("mailbox")
    p.add_argument("uid", type=int)
    p.set_defaults(func=lambda a: run_command(a, lambda s: _message_show(s, a)))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


async def _mailbox(svc: Services, address: str, name: str) -> MailboxInfo:
    account = await svc.directory.require_account(address)
    mailbox = await svc.store.get_mailbox(account.id, name)
    if mailbox is None:
        raise CommandError(f"{address} has no mailbox {name!r}")
    return mailbox


async def _mailbox_list(svc: Services, address: str, as_json: bool) -> int:
    account = await svc.directory.require_account(address)
    for box in await svc.store.list_mailboxes(account.id):
        if as_json:
            record = {
                "name": box.name,
                "special_use": box.special_use,
                "messages": box.messages,
                "unseen": box.unseen,
                "size": box.size,
                "uidvalidity": box.uidvalidity,
                "uidnext": box.uidnext,
                "highestmodseq": box.highestmodseq,
            }
            print(json.dumps(record, ensure_ascii=False))
        else:
            role = f" {box.special_use}" if box.special_use else ""
            print(f"{box.name}{role}\t{box.messages} message(s), {box.unseen} unseen, {box.size} B")
    return 0


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def message_record(message: MessageInfo) -> dict[str, object]:
    """The JSON of ``message list --json``."""
    return {
        "uid": message.uid,
        "date": _iso(message.date if message.date is not None else message.internal_date),
        "internal_date": _iso(message.internal_date),
        "from": message.from_,
        "to": message.to,
        "subject": message.subject,
        "size": message.size,
        "flags": sorted(message.flags),
        "message_id": message.message_id,
    }


async def _message_list(svc: Services, args: argparse.Namespace) -> int:
    mailbox = await _mailbox(svc, args.address, args.mailbox)
    for message in await svc.store.list_messages(mailbox.id):
        record = message_record(message)
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(f"{message.uid}\t{record['date']}\t{message.from_}\t{message.subject}")
    return 0


async def _message_show(svc: Services, args: argparse.Namespace) -> int:
    mailbox = await _mailbox(svc, args.address, args.mailbox)
    message = await svc.store.get_message(mailbox.id, args.uid)
    if message is None:
        raise CommandError(f"no message with UID {args.uid} in {args.mailbox}")
    raw = await svc.store.read_blob(message.blob_id)
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()
    return 0
