"""SORT and THREAD against Dovecot 2.3.19.1's answers for the imaptest sort-*/thread*
mboxes (recorded by sort_thread_golden.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from mailstead.imap.sort import MessageView, sort_uids
from mailstead.imap.thread import ordered_subject, references, wire
from mailstead.message import parse_message

from .mbox import read_mbox
from .section_cases import SHARED

GOLDEN: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "sort_thread_golden.json").read_text()
)
BASE = SHARED / "imaptest-tests"


def _views(name: str) -> list[MessageView]:
    if not BASE.is_dir():
        pytest.skip("../shared/testdata/imaptest-tests not found next to the repository")
    out = []
    for uid, (date, raw) in enumerate(read_mbox((BASE / name).read_bytes()), 1):
        d = datetime.strptime(date, "%d-%b-%Y %H:%M:%S %z")
        out.append(MessageView(uid, d, len(raw), parse_message(raw)))
    return out


def ours(cmd: str, views: list[MessageView]) -> str:
    words = cmd.split()
    if words[1] == "SORT":
        crit = cmd[cmd.index("(") + 1 : cmd.index(")")].split()
        return "* SORT " + " ".join(map(str, sort_uids(crit, views)))
    algo = words[2]
    threads = references(views) if algo == "REFERENCES" else ordered_subject(views)
    return "* THREAD " + wire(threads).decode()


# cases that do not match Dovecot yet; the test fails if one starts matching (strict)
KNOWN: set[tuple[str, str]] = set()

CASES = [(box, cmd) for box, answers in sorted(GOLDEN.items()) for cmd in sorted(answers)]


@pytest.mark.parametrize(("box", "cmd"), CASES, ids=[f"{b}:{c}" for b, c in CASES])
def test_matches_dovecot(box, cmd):
    matched = ours(cmd, _views(box)) == GOLDEN[box][cmd]
    if (box, cmd) in KNOWN:
        assert not matched, "matches Dovecot now: remove it from KNOWN"
        pytest.xfail("known difference from Dovecot, to do")
    assert matched, (ours(cmd, _views(box)), GOLDEN[box][cmd])
