"""Record Dovecot's SORT and THREAD answers for the imaptest sort-*/thread* mboxes into
sort_thread_golden.json. Not a test: run by hand against the private Dovecot peer.

Each mbox goes into a fresh mailbox (UIDs from 1, internal date from the From_ line).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dovecot_client import Client  # noqa: E402
from mbox import read_mbox  # noqa: E402
from section_cases import SHARED  # noqa: E402

COMMANDS = [
    b"UID SORT (SUBJECT) UTF-8 ALL",
    b"UID SORT (DATE) UTF-8 ALL",
    b"UID SORT (ARRIVAL) UTF-8 ALL",
    b"UID SORT (REVERSE ARRIVAL) UTF-8 ALL",
    b"UID SORT (FROM) UTF-8 ALL",
    b"UID SORT (TO) UTF-8 ALL",
    b"UID SORT (CC) UTF-8 ALL",
    b"UID SORT (SIZE) UTF-8 ALL",
    b"UID SORT (REVERSE SUBJECT) UTF-8 ALL",
    b"UID SORT (DISPLAYFROM) UTF-8 ALL",
    b"UID SORT (DISPLAYTO) UTF-8 ALL",
    b"UID THREAD REFERENCES UTF-8 ALL",
    b"UID THREAD ORDEREDSUBJECT UTF-8 ALL",
]


def main() -> None:
    base = SHARED / "imaptest-tests"
    c = Client()
    c.cmd(b"LOGIN u4@example.test pass")
    golden: dict[str, dict[str, str]] = {}
    for p in sorted(base.glob("*.mbox")):
        if not re.match(r"(sort|thread)", p.name):
            continue
        c.cmd(b"CLOSE", check=False)
        c.cmd(b"DELETE sortgold", check=False)
        c.cmd(b"CREATE sortgold")
        c.cmd(b"SELECT sortgold")
        for date, raw in read_mbox(p.read_bytes()):
            c.append(b"sortgold", raw, date.encode())
        got = golden[p.name] = {}
        for cmd in COMMANDS:
            lines = c.cmd(cmd, check=False)
            data = [x for x in lines if x.startswith((b"* SORT", b"* THREAD"))]
            got[cmd.decode()] = (data[0] if data else lines[-1]).decode("latin-1").rstrip("\r\n")
    c.cmd(b"CLOSE", check=False)
    c.cmd(b"DELETE sortgold", check=False)
    c.cmd(b"LOGOUT", check=False)
    out = HERE / "sort_thread_golden.json"
    out.write_text(json.dumps(golden, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(golden)} mailboxes to {out}")


if __name__ == "__main__":
    main()
