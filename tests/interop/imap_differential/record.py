"""Record Dovecot's answers for the IMAP differential test into golden.json.

Not a test: run it by hand against a private Dovecot peer after changing corpus.py:

    PEER_DOVECOT_DIR=/tmp/d/dovecot PEER_MAIL_ROOT=/tmp/d/mail IMAP_PORT=21143 \\
        /work/shared/peers/dovecot.sh start
    .venv/bin/python tests/interop/imap_differential/record.py 127.0.0.1 21143

It runs diff_session.run() as u5@example.test and keeps the answers the component goldens
(tests/message/dovecot_golden.json, tests/imap/sections_golden.json) do not hold, and
every SEARCH answer. Where Dovecot now answers an item differently from a component
golden, it says so (the component golden is left alone).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diff_session import GOLDEN, plan, recorded, run, without_timing
from diff_wire import Client


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])

    def connect() -> Client:
        c = Client((host, port))
        c.login("u5@example.test", "pass")
        return c

    answers = run(connect, plan())
    GOLDEN.unlink(missing_ok=True)
    known = recorded()["fetch"]
    new: dict[str, dict[str, dict[str, str]]] = {}
    changed = 0
    for mailbox, messages in answers["fetch"].items():
        for name, items in messages.items():
            for item, answer in items.items():
                old = known.get(mailbox, {}).get(name, {}).get(item)
                if old is None:
                    new.setdefault(mailbox, {}).setdefault(name, {})[item] = answer
                elif without_timing(old) != without_timing(answer):
                    changed += 1
                    print(f"differs from component golden: {mailbox} {name} {item}")
    version = subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = {"append": answers["append"], "dovecot": version, "fetch": new}
    out["search"] = answers["search"]
    GOLDEN.write_text(json.dumps(out, indent=0, sort_keys=True, ensure_ascii=True) + "\n")
    items = sum(len(i) for m in new.values() for i in m.values())
    print(f"wrote {items} items, {len(answers['search'])} searches to {GOLDEN}; {changed} changed")


if __name__ == "__main__":
    main()
