"""One scripted IMAP session, run the same way against Dovecot (record.py) and Mailstead
(the test): APPEND both mailboxes, FETCH every item of every message with its own
``UID FETCH`` under EXAMINE, then SELECT ``sections``, STORE flags and run the SEARCHes.

Returns ``{"append": {"mailbox message": refusal}, "fetch": {mailbox: {message: {item:
answer}}}, "search": {command: answer}}`` (a refused APPEND is retried as a literal8);
answers as diff_wire.fetch_answer / diff_wire.search_answer give them, ``DISCONNECT``
when the server closed the connection on a FETCH (Dovecot does when it cannot decode a
part).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from diff_corpus import (
    ENVELOPE_ITEMS,
    HERE,
    INTERNALDATE,
    REPO,
    SEARCHES,
    SECTIONS_ITEMS,
    STORES,
    envelope_messages,
    items_for,
    sections_messages,
)
from diff_wire import Client, Closed, fetch_answer, search_answer

Plan = dict[str, list[tuple[str, bytes, list[str]]]]  # mailbox -> (message, octets, items)


def search_key(command: bytes | tuple[bytes, ...]) -> str:
    """The SEARCH command as one printable string (literals shown as {...})."""
    if isinstance(command, bytes):
        return command.decode()
    parts = [p.decode("utf-8") for p in command]
    return "".join(f"{{{p}}}" if i % 2 else p for i, p in enumerate(parts))


GOLDEN = HERE / "golden.json"
ENVELOPE_GOLDEN = REPO / "tests" / "message" / "dovecot_golden.json"
SECTIONS_GOLDEN = REPO / "tests" / "imap" / "sections_golden.json"


def _read(path):
    return json.loads(path.read_text()) if path.exists() else {}


def recorded() -> dict:
    """Dovecot's answers, in run()'s shape: the component goldens and golden.json merged."""
    ours = _read(GOLDEN)
    fetch: dict[str, dict[str, dict[str, str]]] = {"envelope": {}, "sections": {}}
    for name, items in _read(ENVELOPE_GOLDEN).items():
        fetch["envelope"][name] = {"ENVELOPE": "ENVELOPE " + items["envelope"]}
        fetch["envelope"][name]["BODYSTRUCTURE"] = "BODYSTRUCTURE " + items["bodystructure"]
    for name, items in _read(SECTIONS_GOLDEN).items():
        fetch["sections"][name] = dict(items)
    for mailbox, messages in ours.get("fetch", {}).items():
        for name, items in messages.items():
            fetch[mailbox].setdefault(name, {}).update(items)
    return {"append": ours.get("append", {}), "fetch": fetch, "search": ours.get("search", {})}


def plan() -> Plan:
    """What to APPEND and FETCH, in order."""
    sections = _read(SECTIONS_GOLDEN)
    out: Plan = {"envelope": [], "sections": []}
    for name, raw in envelope_messages():
        out["envelope"].append((name, raw, ["ENVELOPE", "BODYSTRUCTURE", *ENVELOPE_ITEMS]))
    for name, raw in sections_messages():
        items = list(sections[name]) if name in sections else items_for(raw)
        out["sections"].append((name, raw, items + SECTIONS_ITEMS))
    return out


def run(connect: Callable[[], Client], plan: Plan) -> dict:
    client = connect()
    refused: dict[str, str] = {}
    for mailbox, messages in plan.items():
        client.cmd(b"DELETE " + mailbox.encode(), check=False)
        client.cmd(b"CREATE " + mailbox.encode())
        for name, raw, _ in messages:
            refusal = client.append(mailbox.encode(), raw, INTERNALDATE)
            if refusal is not None:
                refused[f"{mailbox} {name}"] = refusal
    fetched: dict[str, dict[str, dict[str, str]]] = {}
    for mailbox, messages in plan.items():
        client.cmd(b"EXAMINE " + mailbox.encode())
        got = fetched[mailbox] = {}
        for uid, (name, _, items) in enumerate(messages, 1):
            answers = got[name] = {}
            for item in items:
                try:
                    lines = client.cmd(b"UID FETCH %d (%s)" % (uid, item.encode()), check=False)
                    answers[item] = fetch_answer(lines)
                except Closed:
                    answers[item] = "DISCONNECT"
                    client = connect()
                    client.cmd(b"EXAMINE " + mailbox.encode())
    searched: dict[str, str] = {}
    client.cmd(b"SELECT sections")
    for store in STORES:
        client.cmd(store)
    for command in SEARCHES:
        searched[search_key(command)] = search_answer(client.cmd(command, check=False))
    client.cmd(b"LOGOUT", check=False)
    client.close()
    return {"append": refused, "fetch": fetched, "search": searched}


_TIMING = re.compile(r" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)\.$")


def without_timing(answer: str) -> str:
    """Dovecot ends NO/BAD texts with its timings; they are not part of the answer."""
    return _TIMING.sub("", answer)
