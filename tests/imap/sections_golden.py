"""Record Dovecot's BODY[section] / BINARY answers into sections_golden.json.

Not a test: run it by hand against the private Dovecot peer
(``/work/shared/peers/dovecot.sh start``) after changing section_cases.py:

    .venv/bin/python tests/imap/sections_golden.py

Every message (the crafted cases and the shared MIME corpus, CRLF-normalised as the store
keeps them) is APPENDed to a scratch mailbox, then each item is fetched with its own
``UID FETCH n (item)`` and the answer kept verbatim: the FETCH item (name, literal and
all), or the tagged NO/BAD line when Dovecot refuses. Octets are stored as Latin-1.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))
sys.path.insert(0, str(HERE))

from dovecot_client import Client  # noqa: E402
from section_cases import CASES, SHARED, crlf, items_for  # noqa: E402

from mailstead.message import parse_message  # noqa: E402

MAILBOX = b"sections-golden"


def corpus() -> dict[str, bytes]:
    base = SHARED / "mime"
    out = {}
    if base.is_dir():
        for p in sorted(base.rglob("*.eml")):
            out[f"corpus:{p.relative_to(base).as_posix()}"] = p.read_bytes()
    return out


def store_form(raw: bytes) -> bytes:
    """What the store keeps: CRLF line endings (and no lone CR at the very end)."""
    raw = crlf(raw)
    return raw[:-1] if raw.endswith(b"\r") else raw


def answer(c: Client, uid: int, item: str) -> str:
    lines = c.cmd(b"UID FETCH %d (%s)" % (uid, item.encode()), check=False)
    tagged = lines[-1]
    if not re.match(rb"a\d+ OK", tagged):
        return tagged.split(b" ", 1)[1].rstrip(b"\r\n").decode("latin-1")
    (resp,) = [r for r in lines if b" FETCH (" in r]
    body = resp[resp.index(b" FETCH (") + 8 : -3]
    body = re.sub(rb"^UID \d+ ", b"", body)
    body = re.sub(rb" UID \d+$", b"", body)
    return body.decode("latin-1")


def main() -> None:
    messages = {f"case:{k}": v for k, v in CASES.items()} | corpus()
    c = Client()
    c.login(MAILBOX)
    golden: dict[str, dict[str, str]] = {}
    for name, raw in messages.items():
        raw = store_form(raw)
        if not raw:
            continue  # Dovecot refuses an empty APPEND
        uid = c.append(MAILBOX, raw)
        got = golden[name] = {}
        for item in items_for(parse_message(raw)):
            try:
                got[item] = answer(c, uid, item)
            except ConnectionError:
                # Dovecot drops the connection when it cannot decode (FETCH failed)
                got[item] = "DISCONNECT"
                c = Client()
                c.login(MAILBOX, expunge=False)
        c.cmd(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
        c.cmd(b"EXPUNGE")
    c.cmd(b"LOGOUT", check=False)
    out = HERE / "sections_golden.json"
    out.write_text(json.dumps(golden, indent=0, sort_keys=True, ensure_ascii=True) + "\n")
    print(f"wrote {len(golden)} messages, {sum(map(len, golden.values()))} items to {out}")


if __name__ == "__main__":
    main()
