"""Mail loops (issue 11): two servers whose aliases forward to each other exchanged one message
1,188 times in 50 s. A message with more Received fields than ``[smtp] max_received_headers``
(RFC 5321 §6.3), or one that comes back for an alias whose forwarded copy it is (its
Delivered-To), is refused at the end of DATA with 554 5.4.6, on port 25 and on submission.
Two real servers forwarding to each other are in tests/interop/test_mail_loop.py."""

from __future__ import annotations

import smtplib
import socket
import sqlite3
import uuid

import pytest

from mailstead.servers.smtp import INLINE_PARSE_LIMIT
from mailstead.store.sqlite.backend import decode_blob
from mailstead.testing.replies import ReplyReader
from mailstead.testing.server import RunningServer

NO_DNS = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": "1s", "attempts": 1}}


def loop_message(mark: str, hops: int, extra: str = "") -> bytes:
    received = "".join(
        f"Received: from hop{i}.example.net by hop{i + 1}.example.net; "
        "Mon, 7 Dec 2026 10:00:00 +0000\r\n"
        for i in range(hops)
    )
    return (
        f"{received}{extra}From: <alice@example.org>\r\nTo: <bob@example.org>\r\n"
        f"Subject: loop {mark}\r\n\r\nmarker {mark}\r\n"
    ).encode()


def send(server: RunningServer, raw: bytes, to: str = "bob@example.org") -> tuple[int, bytes]:
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        try:
            client.sendmail("someone@example.net", [to], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def stored(server: RunningServer, mark: str, user: str = "bob@example.org") -> list[bytes]:
    return [m for m in server.messages(user) if f"marker {mark}".encode() in m]


def queued(server: RunningServer, mark: str) -> list[bytes]:
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    try:
        rows = db.execute(
            "SELECT b.codec, b.data FROM queue_messages q JOIN blobs b ON b.id = q.blob_id"
        ).fetchall()
    finally:
        db.close()
    found = [decode_blob(codec, data) for codec, data in rows]
    return [raw for raw in found if f"marker {mark}".encode() in raw]


def test_fifty_one_received_fields_are_refused(mail_server):
    server = mail_server()
    mark = uuid.uuid4().hex
    assert send(server, loop_message(mark, 51)) == (
        554, b"5.4.6 Too many hops (51 Received fields, at most 50): mail loop"
    )  # fmt: skip
    assert not stored(server, mark)
    assert send(server, loop_message(mark, 50)) == (250, b"")  # 50, and ours makes 51
    [raw] = stored(server, mark)
    assert raw.count(b"\r\nReceived: ") == 51


def test_hop_limit_is_configurable_and_holds_on_submission(mail_server):
    server = mail_server({"smtp": {"max_received_headers": 3}})
    mark = uuid.uuid4().hex
    assert send(server, loop_message(mark, 4))[0] == 554
    assert send(server, loop_message(mark, 3)) == (250, b"")
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.login("alice@example.org", "alice-pw")
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail("alice@example.org", ["bob@example.org"], loop_message("x", 4))
        assert (caught.value.smtp_code, caught.value.smtp_error) == (
            554, b"5.4.6 Too many hops (4 Received fields, at most 3): mail loop"
        )  # fmt: skip
        client.sendmail("alice@example.org", ["bob@example.org"], loop_message("y", 3))
    assert stored(server, "y") and not stored(server, "x")


def test_alias_forwarding_loop_is_refused_by_delivered_to(mail_server):
    server = mail_server(
        NO_DNS,
        aliases=[("fwd@example.org", "friend@remote.test"), ("fwd@example.org", "bob@example.org")],
    )
    mark = uuid.uuid4().hex
    # the forwarded copy names the alias; the local copy does not (one blob for local targets)
    assert send(server, loop_message(mark, 1), to="fwd@example.org") == (250, b"")
    [copy] = queued(server, mark)
    assert copy.startswith(b"Delivered-To: fwd@example.org\r\nReceived: from ")
    [local] = stored(server, mark)
    assert b"Delivered-To" not in local
    # it comes back for the same alias (any case): a loop, refused before anything is stored
    again = uuid.uuid4().hex
    looped = loop_message(again, 2, extra="Delivered-To: FWD@Example.ORG\r\n")
    assert send(server, looped, to="fwd@example.org") == (
        554, b"5.4.6 Mail forwarding loop for <fwd@example.org>"
    )  # fmt: skip
    assert not stored(server, again) and not queued(server, again)
    # Delivered-To of another address is no loop
    other = loop_message(again, 2, extra="Delivered-To: someone@example.org\r\n")
    assert send(server, other, to="fwd@example.org") == (250, b"")


def test_hop_limit_holds_for_bdat(mail_server):
    server = mail_server()
    mark = uuid.uuid4().hex
    payload = loop_message(mark, 51)
    with socket.create_connection(server.smtp_address, timeout=30) as sock:
        replies = ReplyReader(sock)
        assert replies.reply().startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        assert b"CHUNKING" in replies.reply()
        sock.sendall(b"MAIL FROM:<someone@example.net>\r\nRCPT TO:<bob@example.org>\r\n")
        assert replies.reply().startswith(b"250 ") and replies.reply().startswith(b"250 ")
        sock.sendall(b"BDAT %d LAST\r\n" % len(payload) + payload)
        assert replies.reply() == (
            b"554 5.4.6 Too many hops (51 Received fields, at most 50): mail loop"
        )
    assert not stored(server, mark)


def test_hop_limit_holds_for_a_message_read_off_the_event_loop(mail_server):
    """Past INLINE_PARSE_LIMIT the header is read in a worker thread: same refusal."""
    server = mail_server()
    padding = ("X-Pad: " + "x" * 70 + "\r\n") * (INLINE_PARSE_LIMIT // 78 + 10)
    raw = loop_message("big", 51, padding)
    assert len(raw) > INLINE_PARSE_LIMIT
    assert send(server, raw) == (
        554, b"5.4.6 Too many hops (51 Received fields, at most 50): mail loop"
    )
