"""Memory exhaustion with large messages: a ~30 MB message must not cost the server more than
twice its size in memory, to receive and store it (SMTP, spool, parsing, compression, commit,
full-text indexing), to answer FETCH BINARY of its big base64 part or BODY[], or POP3 RETR, and
it comes back octet for octet. IMAP APPEND holds the literal once (1.5x in all, indexing
included)."""

from __future__ import annotations

import base64
import hashlib
import imaplib
import poplib
import random
import smtplib
import sqlite3
import ssl
import time
from pathlib import Path

import pytest

from mailstead.testing.server import RunningServer

SIZE = 30 << 20
PASSWORD = "alice-pw"


def _message(size: int) -> tuple[bytes, bytes]:
    """(message, attachment): a text part and a base64 attachment of random octets."""
    payload = random.Random(11).randbytes(size * 57 // 78)
    head = (
        b"From: <bob@example.net>\r\nTo: <alice@example.org>\r\nSubject: large\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    body = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return head + body + b"--b1--\r\n", payload


def _kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> int:
    """VmHWM := VmRSS (``clear_refs`` 5); the RSS it starts from, in bytes."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError as exc:
        pytest.skip(f"cannot reset the peak RSS of the server: {exc}")
    return _kib(pid, "VmRSS") * 1024


def _peak(pid: int) -> int:
    return _kib(pid, "VmHWM") * 1024


def _wait_indexed(server: RunningServer) -> None:
    """Until the full-text indexer has read every message (it reads each one whole)."""
    deadline = time.monotonic() + 300
    db_path: Path = server.data_dir / "mailstead.db"
    while time.monotonic() < deadline:
        db = sqlite3.connect(db_path, timeout=30)
        try:
            (pending,) = db.execute("SELECT count(*) FROM blobs WHERE indexed = 0").fetchone()
        finally:
            db.close()
        if not pending:
            return
        time.sleep(0.1)
    raise AssertionError("the indexer did not finish")


def _send(server: RunningServer, message: bytes) -> None:
    with smtplib.SMTP(*server.smtp_address, timeout=300) as client:
        client.sendmail("bob@example.net", ["alice@example.org"], message)


@pytest.mark.slow
def test_receiving_a_large_message_costs_at_most_twice_its_size(mail_server):
    server = mail_server()
    pid = server.process.pid
    message, _ = _message(SIZE)
    _send(server, b"Subject: warm-up\r\n\r\nhello\r\n")  # first use of every code path
    _wait_indexed(server)
    baseline = _reset_peak(pid)
    _send(server, message)
    _wait_indexed(server)
    increase = _peak(pid) - baseline
    assert increase <= 2 * len(message), f"peak RSS grew by {increase / len(message):.2f}x"
    stored = server.messages("alice@example.org")[-1]
    assert hashlib.sha256(stored[len(stored) - len(message) :]).digest() == (
        hashlib.sha256(message).digest()
    )


@pytest.mark.slow
def test_fetch_of_a_large_message_costs_at_most_twice_its_size(mail_server):
    """BINARY[2] (its base64 part decoded) and BODY[] of a large message: the answers are
    exact and the server's peak RSS grows by at most twice the message's size for each."""
    server = mail_server()
    pid = server.process.pid
    message, attachment = _message(SIZE)
    _send(server, message)
    _wait_indexed(server)
    client = imaplib.IMAP4(*server.imap_address, timeout=300)
    try:
        client.login("alice@example.org", PASSWORD)
        client.select("INBOX", readonly=True)
        client.fetch("1", "(UID)")
        baseline = _reset_peak(pid)
        typ, data = client.fetch("1", "(BINARY.PEEK[2])")
        increase = _peak(pid) - baseline
        assert typ == "OK"
        got = data[0]
        assert isinstance(got, tuple)
        assert got[0].endswith(b"BINARY[2] ~{%d}" % len(attachment))
        assert hashlib.sha256(got[1]).digest() == hashlib.sha256(attachment).digest()
        assert increase <= 2 * len(message), f"BINARY: peak grew {increase / len(message):.2f}x"
        del data, got
        baseline = _reset_peak(pid)
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        increase = _peak(pid) - baseline
        assert typ == "OK" and isinstance(data[0], tuple)
        body = data[0][1]
        assert hashlib.sha256(body[len(body) - len(message) :]).digest() == (
            hashlib.sha256(message).digest()
        )
        assert increase <= 2 * len(message), f"BODY[]: peak grew {increase / len(message):.2f}x"
        # the header alone, read without the rest of the message
        typ, data = client.fetch("1", "(BODY.PEEK[HEADER])")
        assert typ == "OK" and isinstance(data[0], tuple)
        assert data[0][1] == body[: body.index(b"\r\n\r\n") + 4]
        client.logout()
    finally:
        if client.state != "LOGOUT":
            client.shutdown()


@pytest.mark.slow
def test_append_of_a_large_message_holds_it_once(mail_server):
    """APPEND of a large literal: received into one buffer and handed to the store without a
    copy, so storing and indexing it raise the peak by at most 1.5x its size (2x before: the
    receiver's buffer was copied when the command ended, and the literal sliced out of it)."""
    server = mail_server()
    pid = server.process.pid
    message, _ = _message(SIZE)
    client = imaplib.IMAP4(*server.imap_address, timeout=300)
    try:
        client.login("alice@example.org", PASSWORD)
        assert client.append("INBOX", None, None, b"Subject: warm-up\r\n\r\nhello\r\n")[0] == "OK"
        _wait_indexed(server)
        baseline = _reset_peak(pid)
        typ, _ = client.append("INBOX", None, None, message)
        _wait_indexed(server)
        increase = _peak(pid) - baseline
        assert typ == "OK"
        assert increase <= 1.5 * len(message), f"APPEND: peak grew {increase / len(message):.2f}x"
        client.select("INBOX", readonly=True)
        typ, data = client.fetch("2", "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple)
        assert hashlib.sha256(data[0][1]).digest() == hashlib.sha256(message).digest()
        client.logout()
    finally:
        if client.state != "LOGOUT":
            client.shutdown()


@pytest.mark.slow
def test_pop3_retr_of_a_large_message_costs_at_most_twice_its_size(mail_server):
    """RETR (on 110, then over TLS on 995) of a message whose lines often start with ".": the
    client gets it back exactly once the stuffing is undone, and the server's peak RSS grows by
    at most twice its size (it is sent piece by piece: far less). TOP reads only its lines."""
    server = mail_server()
    pid = server.process.pid
    message, _ = _message(SIZE)
    dotted = b"".join(b".%d\r\n..\r\n.\r\n" % i for i in range(20000))
    message = message.replace(b"See the attachment.\r\n", dotted, 1)
    _send(server, b"Subject: small\r\n\r\n.hello\r\n")
    _send(server, message)
    _wait_indexed(server)
    context = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))
    clients = [
        lambda: poplib.POP3(*server.pop3_address, timeout=300),
        lambda: poplib.POP3_SSL(*server.pop3s_address, context=context, timeout=300),
    ]
    for connect in clients:
        client = connect()
        try:
            client.user("alice@example.org")
            client.pass_(PASSWORD)
            assert client.retr(1)[1][-1] == b".hello"  # warm-up; poplib undoes the stuffing
            baseline = _reset_peak(pid)
            status, lines, _ = client.retr(2)
            increase = _peak(pid) - baseline
            assert status.startswith(b"+OK")
            got = b"\r\n".join(lines) + b"\r\n"
            del lines
            assert hashlib.sha256(got[len(got) - len(message) :]).digest() == (
                hashlib.sha256(message).digest()
            )
            assert increase <= 2 * len(message), f"RETR: peak grew {increase / len(message):.2f}x"
            header = got[: got.index(b"\r\n\r\n") + 4]
            baseline = _reset_peak(pid)
            status, lines, _ = client.top(2, 4)
            increase = _peak(pid) - baseline
            assert b"\r\n".join(lines) + b"\r\n" == header + b"--b1\r\n" + (
                b"Content-Type: text/plain\r\n\r\n.0\r\n"
            )
            assert increase <= len(message) // 4, f"TOP: peak grew {increase / len(message):.2f}x"
            client.quit()
        finally:
            client.close()
