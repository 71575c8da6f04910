"""``mailstead queue list|show|retry|hold|release|delete``: the outbound queue.

The commands work on the database of a running server too (SQLite in WAL mode lets a second
process read and write); the server sees retries within a few seconds, when it next looks at
the due index. ``--json`` prints one JSON object per message (``list``: one per line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any, TypeAlias

from mailstead.cli.common import CommandError, add_config_option
from mailstead.cli.context import Services, run_command
from mailstead.store import QueueItem, QueueRecipient, StoreError

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# The header block `show` prints at most (the body is never shown).
SHOW_HEADER_LIMIT = 64 * 1024


def register(subparsers: _Sub) -> None:
    parser = subparsers.add_parser("queue", help="list and manage the outbound queue")
    parser.set_defaults(func=lambda _args: _usage(parser))
    group = parser.add_subparsers(dest="queue_command", metavar="COMMAND")

    p = _command(group, "list", "list the queued messages and their recipients")
    p.add_argument("--json", action="store_true", help="one JSON object per message and line")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _list(s, a.json)))

    p = _command(group, "show", "show one message: envelope, recipients, header")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _show(s, a.id, a.json)))

    p = _command(group, "retry", "try a message (or all) again now")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true", help="every unfinished recipient")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _retry(s, a.id, a.all)))

    p = _command(group, "hold", "stop delivery attempts for a message until released")
    p.add_argument("id")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _hold(s, a.id, True)))

    p = _command(group, "release", "let a held message be delivered again")
    p.add_argument("id")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _hold(s, a.id, False)))

    p = _command(group, "delete", "drop a message from the queue (no report to the sender)")
    p.add_argument("id")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _delete(s, a.id)))


def _command(group: _Sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text)
    add_config_option(parser)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds")


def recipient_json(r: QueueRecipient) -> dict[str, Any]:
    return {
        "address": r.address,
        "state": r.state.value,
        "attempts": r.attempts,
        "next_attempt": _time(r.next_attempt) if r.state.active else None,
        "last_attempt": _time(r.last_attempt),
        "last_reply": r.last_error,
        "status": r.status,
        "remote_mta": r.remote_mta,
        "notify": list(r.notify) if r.notify is not None else None,
        "orcpt": f"{r.orcpt[0]};{r.orcpt[1]}" if r.orcpt else None,
        "report_owed": r.report,
    }


def item_json(item: QueueItem) -> dict[str, Any]:
    """A queued message as the ``--json`` output shows it."""
    return {
        "id": item.queue_id,
        "queued_at": _time(item.queued_at),
        "size": item.size,
        "mail_from": item.mail_from,
        "origin": item.origin,
        "held": item.held,
        "envid": item.envid,
        "ret": item.ret,
        "smtputf8": item.smtputf8,
        "recipients": [recipient_json(r) for r in item.recipients],
    }


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def _recipient_line(r: QueueRecipient, now: float) -> str:
    line = f"  {r.state.value:<9} {r.address}"
    if r.state.active and r.attempts:
        line += f" (attempt {r.attempts}, next in {_age(r.next_attempt - now)})"
    if r.last_error and not (r.state.active and not r.attempts):
        line += f"\n            {r.last_error}"
    return line


async def _list(svc: Services, as_json: bool) -> int:
    items = await svc.store.list_queue()
    now = time.time()
    for item in items:
        if as_json:
            print(json.dumps(item_json(item), ensure_ascii=False))
            continue
        held = " HELD" if item.held else ""
        sender = item.mail_from or "<>"
        print(f"{item.queue_id}  {_time(item.queued_at)}  {item.size:>9}  {sender}{held}")
        for r in item.recipients:
            print(_recipient_line(r, now))
    if not as_json:
        total = sum(len(i.recipients) for i in items)
        _note(f"{len(items)} message(s), {total} recipient(s)")
    return 0


async def _item(svc: Services, queue_id: str) -> QueueItem:
    item = await svc.store.get_queue_item(queue_id)
    if item is None:
        raise CommandError(f"no queued message {queue_id}")
    return item


async def _show(svc: Services, queue_id: str, as_json: bool) -> int:
    item = await _item(svc, queue_id)
    content = await svc.store.read_blob(item.blob_id)
    end = content.find(b"\r\n\r\n")
    header = content[: end + 2 if end >= 0 else SHOW_HEADER_LIMIT][:SHOW_HEADER_LIMIT]
    if as_json:
        data = item_json(item)
        data["header"] = header.decode("utf-8", "replace")
        print(json.dumps(data, ensure_ascii=False))
        return 0
    now = time.time()
    print(f"id:        {item.queue_id}")
    print(f"queued:    {_time(item.queued_at)} ({_age(now - item.queued_at)} ago)")
    print(f"from:      <{item.mail_from}>")
    print(f"size:      {item.size}")
    print(f"origin:    {item.origin or '-'}")
    if item.held:
        print("held:      yes (mailstead queue release ID)")
    for label, value in (("envid", item.envid), ("ret", item.ret)):
        if value:
            print(f"{label + ':':<10} {value}")
    print("recipients:")
    for r in item.recipients:
        print(_recipient_line(r, now))
    print()
    sys.stdout.write(header.decode("utf-8", "replace").replace("\r\n", "\n"))
    return 0


async def _retry(svc: Services, queue_id: str | None, everything: bool) -> int:
    if everything == (queue_id is not None):
        raise CommandError("give a queue id or --all", status=2)
    try:
        count = await svc.store.retry_queue(queue_id, time.time())
    except StoreError as exc:
        raise CommandError(exc.detail or str(exc)) from None
    _note(f"{count} recipient(s) due now")
    return 0


async def _hold(svc: Services, queue_id: str, held: bool) -> int:
    try:
        await svc.store.hold_queue_item(queue_id, held)
    except StoreError as exc:
        raise CommandError(exc.detail or str(exc)) from None
    _note(f"{queue_id} {'held' if held else 'released'}")
    return 0


async def _delete(svc: Services, queue_id: str) -> int:
    try:
        await svc.store.delete_queue_item(queue_id)
    except StoreError as exc:
        raise CommandError(exc.detail or str(exc)) from None
    _note(f"{queue_id} deleted")
    return 0
