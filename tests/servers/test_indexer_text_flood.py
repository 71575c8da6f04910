"""A message of many megabytes of plain-text words (issue 11, found while streaming large
messages): FTS5 indexed it in the one writer thread, and every delivery waited about 40 s.
Now a message with more text than the indexer takes is left for SEARCH to read, and SEARCH
still finds words anywhere in it (no timing is asserted: the store test checks the bounds)."""

from __future__ import annotations

import base64
import imaplib
import random
import smtplib
import sqlite3
import time

from mailstead.store.sqlite.backend import SEARCH_READS
from mailstead.testing.server import Account

DEADLINE = 60.0


def test_huge_text_message_is_searched_without_being_indexed(mail_server) -> None:
    server = mail_server(accounts=[Account("alice@example.org", "alice-pw")])
    noise = base64.b64encode(random.Random(3).randbytes(3 << 20))
    body = b"".join(noise[i : i + 76] + b"\r\n" for i in range(0, len(noise), 76))
    huge = b"Subject: noise\r\n\r\n" + body + b"needle-at-the-end\r\n"
    with smtplib.SMTP(*server.smtp_address, timeout=60) as client:
        client.sendmail("bob@example.net", ["alice@example.org"], huge)
        client.sendmail("bob@example.net", ["alice@example.org"], b"Subject: small\r\n\r\nhi\r\n")
    deadline = time.monotonic() + DEADLINE
    while True:  # polling the database with a deadline until the indexer has been through
        with sqlite3.connect(server.data_dir / "mailstead.db", timeout=30) as conn:
            states = [row[0] for row in conn.execute("SELECT indexed FROM blobs ORDER BY id")]
        if states == [SEARCH_READS, 1]:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.05)
    imap = imaplib.IMAP4(*server.imap_address, timeout=60)
    try:
        imap.login("alice@example.org", "alice-pw")
        imap.select("INBOX")
        assert imap.search(None, "BODY", "needle-at-the-end") == ("OK", [b"1"])
        assert imap.search(None, "TEXT", "small") == ("OK", [b"2"])
    finally:
        imap.logout()
