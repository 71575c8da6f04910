"""One header stopped search for everyone (issue 11): an encoded-word whose charset held a NUL
made header decoding raise, the full-text indexer retried the same batch forever, and every
SEARCH touching the message dropped the client's connection.

Now the message is indexed like any other; and a message whose text really cannot be read (a
corrupted blob stands in for any failure left) is set aside by the indexer, which goes on,
while a command reading it answers ``NO [SERVERBUG]`` (POP3 ``-ERR [SYS/TEMP]``) and the
session lives on."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import sqlite3
import time

import pytest

from mailstead.testing.server import Account, RunningServer

ACCOUNTS = [Account("alice@example.org", "alice-pw"), Account("bob@example.org", "bob-pw")]
DEADLINE = 60.0
POISON = "Subject: =?x\0y?q?a?= quarterly\r\n"


def deliver(server: RunningServer, rcpt: str, head: str, body: str) -> None:
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        client.sendmail("x@example.net", [rcpt], f"From: x@example.net\r\n{head}\r\n{body}\r\n")


def db(server: RunningServer) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "mailstead.db", timeout=30)


def blob_ids(server: RunningServer, address: str) -> list[int]:
    local = address.split("@")[0]
    with db(server) as conn:
        rows = conn.execute(
            "SELECT m.blob_id FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
            " JOIN accounts a ON a.id = x.account_id WHERE a.local_key = ? ORDER BY m.uid",
            (local,),
        ).fetchall()
    return [row[0] for row in rows]


def wait_until_indexed(server: RunningServer, blob: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with db(server) as conn:
            if conn.execute("SELECT indexed FROM blobs WHERE id = ?", (blob,)).fetchone() == (1,):
                return
        time.sleep(0.05)  # polling the database with a deadline
    raise AssertionError(f"blob {blob} not indexed within {DEADLINE} s")


def imap(server: RunningServer, user: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(*server.imap_address, timeout=30)
    client.login(user, password)
    client.select("INBOX")
    return client


def test_nul_charset_header_no_longer_stops_the_index(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    deliver(server, "alice@example.org", POISON, "first")
    deliver(server, "alice@example.org", "Subject: lunch plans\r\n", "pizzeria at noon")
    poisoned, normal = blob_ids(server, "alice@example.org")
    wait_until_indexed(server, normal)  # used to stay unindexed for ever behind the poison
    wait_until_indexed(server, poisoned)
    client = imap(server, "alice@example.org", "alice-pw")
    try:
        assert client.search(None, "TEXT", "pizzeria") == ("OK", [b"2"])
        assert client.search(None, "HEADER", "Subject", "lunch") == ("OK", [b"2"])
        # the message that used to drop the connection is searchable too
        assert client.search(None, "HEADER", "Subject", "quarterly") == ("OK", [b"1"])
        assert client.search(None, "TEXT", "first") == ("OK", [b"1"])
        assert client.noop()[0] == "OK"
    finally:
        client.logout()


def test_unreadable_message_is_set_aside_and_sessions_live_on(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    deliver(server, "bob@example.org", "Subject: doomed\r\n", "marmalade")
    [broken] = blob_ids(server, "bob@example.org")
    wait_until_indexed(server, broken)
    server.stop()
    with db(server) as conn:  # the blob can no longer be decompressed
        conn.execute("DELETE FROM search_text WHERE rowid = ?", (broken,))
        conn.execute(
            "UPDATE blobs SET codec = 1, data = X'00112233', indexed = 0 WHERE id = ?", (broken,)
        )
    server = mail_server.restart(server)
    deliver(server, "alice@example.org", "Subject: lunch plans\r\n", "marmalade at noon")
    [normal] = blob_ids(server, "alice@example.org")
    wait_until_indexed(server, normal)
    failed = [line for line in server.log_lines() if line.get("msg") == "store.index_failed"]
    assert failed and failed[0]["blob"] == broken, failed
    with db(server) as conn:
        row = conn.execute(
            "SELECT indexed, index_failures FROM blobs WHERE id = ?", (broken,)
        ).fetchone()
    assert row == (0, 1)

    alice = imap(server, "alice@example.org", "alice-pw")
    try:
        assert alice.search(None, "TEXT", "marmalade") == ("OK", [b"1"])
    finally:
        alice.logout()

    bob = imap(server, "bob@example.org", "bob-pw")
    try:
        typ, data = bob.search(None, "TEXT", "marmalade")
        assert (typ, data) == ("NO", [b"[SERVERBUG] Internal error, the command was not completed"])
        assert bob.noop()[0] == "OK"  # the session lives on
        assert bob.search(None, "ALL") == ("OK", [b"1"])
    finally:
        bob.logout()
    failed = [line for line in server.log_lines() if line.get("msg") == "imap.command_failed"]
    assert failed and failed[0]["command"] == "SEARCH"

    pop = poplib.POP3(*server.pop3_address, timeout=30)
    try:
        pop.user("bob@example.org")
        pop.pass_("bob-pw")
        with pytest.raises(poplib.error_proto) as refused:
            pop.retr(1)
        assert refused.value.args[0] == b"-ERR [SYS/TEMP] Temporary failure, try again later"
        assert pop.stat()[0] == 1  # the session lives on
    finally:
        pop.quit()


def test_failing_authenticate_answers_serverbug_and_the_session_lives_on(mail_server) -> None:
    """A failure inside an AUTHENTICATE exchange (a corrupted account row stands in for any
    bug) answers ``NO [SERVERBUG]`` instead of dropping the connection; LOGIN still works."""
    server = mail_server(accounts=ACCOUNTS)
    server.stop()
    with db(server) as conn:
        conn.execute("UPDATE accounts SET role = 'bogus' WHERE localpart = 'bob'")
    server = mail_server.restart(server)
    client = imaplib.IMAP4(*server.imap_address, timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error) as failed:
            client.authenticate("PLAIN", lambda _: b"\0bob@example.org\0bob-pw")
        assert "[SERVERBUG]" in str(failed.value)
        assert client.noop()[0] == "OK"  # the session lives on
        client.login("alice@example.org", "alice-pw")
    finally:
        client.logout()
