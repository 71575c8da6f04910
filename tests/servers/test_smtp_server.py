"""Inbound SMTP end to end, through Python's smtplib against a real `mailstead serve`."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import sqlite3
import ssl
import time

import pytest

from mailstead.testing.replies import ReplyReader
from mailstead.testing.server import Account

MESSAGE = (
    "From: Bob <bob@example.net>\r\n"
    "To: Alice <alice@example.org>\r\n"
    "Subject: hello\r\n"
    "Message-ID: <{mid}@example.net>\r\n"
    "\r\n"
    "Hi Alice.\r\n"
)


def message(mid: str = "m1") -> str:
    return MESSAGE.format(mid=mid)


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_OPEN: list[Raw] = []


@pytest.fixture(autouse=True)
def _close_raw_clients():
    yield
    while _OPEN:
        _OPEN.pop().close()


class Raw:
    """A line-level SMTP client for what smtplib cannot do (bad input, BDAT, pipelining)."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.replies = ReplyReader(self.sock)
        _OPEN.append(self)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        return self.replies.reply()

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()


def test_smtplib_delivers_to_inbox_with_trace_headers(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.smtp_address) as client:
        code, _ = client.ehlo("client.example.net")
        assert code == 250
        for extension in (
            "pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls",
            "chunking", "dsn",
        ):  # fmt: skip
            assert client.has_extn(extension), extension
        refused = client.sendmail("bob@example.net", ["alice@example.org"], message())
        assert refused == {}
    [stored] = server.messages("alice@example.org")
    assert stored.startswith(b"Return-Path: <bob@example.net>\r\nReceived: from client.example.net")
    assert b"for <alice@example.org>;" in stored
    assert b"with ESMTP id " in stored
    assert stored.endswith(message().encode())


def test_starttls_then_delivery(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        code, _ = client.starttls(context=insecure_context())
        assert code == 220
        client.ehlo()
        assert not client.has_extn("starttls")  # RFC 3207 §4.2: not offered twice
        client.sendmail("bob@example.net", ["alice@example.org"], message())
    [stored] = server.messages("alice@example.org")
    assert b"with ESMTPS id" in stored
    assert b"using TLSv1." in stored


def test_unknown_users_and_relaying_are_refused(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        client.mail("bob@example.net")
        assert client.rcpt("nobody@example.org") == (550, b"5.1.1 User unknown")
        assert client.rcpt("someone@elsewhere.test") == (554, b"5.7.1 Relay access denied")
        assert client.rcpt("alice@EXAMPLE.org")[0] == 250
        client.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("bob@example.net", ["nobody@example.org"], message())
    assert server.messages("alice@example.org") == []


def test_aliases_catch_all_and_plus_addressing(mail_server):
    server = mail_server(
        aliases=[
            ("postmaster@example.org", "alice@example.org"),
            ("team@example.org", "alice@example.org"),
            ("team@example.org", "bob@example.org"),
            ("@example.org", "carol@example.org"),
        ]
    )
    with smtplib.SMTP(*server.smtp_address) as client:
        client.sendmail("x@example.net", ["postmaster@example.org"], message("a"))
        client.sendmail("x@example.net", ["alice+news@example.org"], message("b"))
        client.sendmail("x@example.net", ["team@example.org"], message("c"))
        client.sendmail("x@example.net", ["whoever@example.org"], message("d"))
        # two addresses of one account in one transaction: one copy
        client.sendmail("x@example.net", ["alice@example.org", "ALICE+x@example.org"], message("e"))
    ids = [m.split(b"Message-ID: <")[1][:1] for m in server.messages("alice@example.org")]
    assert ids == [b"a", b"b", b"c", b"e"]
    assert len(server.messages("bob@example.org")) == 1
    assert len(server.messages("carol@example.org")) == 1


def test_message_for_several_local_recipients_is_stored_once(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.smtp_address) as client:
        client.sendmail(
            "x@example.net",
            ["alice@example.org", "bob@example.org", "carol@example.org"],
            message(),
        )
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    assert db.execute("SELECT count(*), sum(refs) FROM blobs").fetchone() == (1, 3)


def test_smtputf8_and_idna(mail_server):
    server = mail_server()
    body = "From: ü@example.net\r\nTo: jürgen@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n"
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        client.sendmail(
            "ü@example.net",
            ["jürgen@bücher.example", "JÜRGEN@xn--bcher-kva.example"],
            body.encode("utf-8"),
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    # without SMTPUTF8 a non-ASCII address is refused
    raw = Raw(server.smtp_address)
    raw.reply()
    raw.command(b"EHLO x")
    assert raw.command("MAIL FROM:<ü@example.net>".encode())[:9] == b"553 5.6.7"
    [stored] = server.messages("jürgen@bücher.example")
    assert "Grüße".encode() in stored
    assert b"with UTF8SMTP id" in stored


def test_message_size_limit(mail_server):
    server = mail_server({"smtp": {"max_message_size": 4096}})
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "4096"
        code, text = client.docmd("MAIL FROM:<x@example.net> SIZE=5000")
        assert (code, text[:5]) == (552, b"5.3.4")
        client.rset()
        big = message() + "x" * 5000 + "\r\n"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:  # smtplib sends SIZE=
            client.sendmail("x@example.net", ["alice@example.org"], big)
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (552, b"5.3.4")
        # without SIZE= the content is refused as it streams
        client.mail("x@example.net")
        client.rcpt("alice@example.org")
        assert client.data(big) == (552, b"5.3.4 Message too big")
        # the session is still usable
        assert client.sendmail("x@example.net", ["alice@example.org"], message()) == {}
    assert len(server.messages("alice@example.org")) == 1


def test_recipient_limit(mail_server):
    server = mail_server({"smtp": {"max_recipients": 2}})
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        client.mail("x@example.net")
        assert client.rcpt("alice@example.org")[0] == 250
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.rcpt("carol@example.org") == (452, b"4.5.3 Too many recipients")


def test_line_length_limits(mail_server):
    server = mail_server({"smtp": {"max_line_length": 1000}})
    raw = Raw(server.smtp_address)
    raw.reply()
    assert raw.command(b"EHLO x")[:3] == b"250"
    assert raw.command(b"NOOP " + b"x" * 600)[:9] == b"500 5.5.2"
    assert raw.command(b"MAIL FROM:<x@example.net>")[:3] == b"250"
    assert raw.command(b"RCPT TO:<alice@example.org>")[:3] == b"250"
    assert raw.command(b"DATA")[:3] == b"354"
    raw.send(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n")
    assert raw.reply()[:9] == b"554 5.6.0"
    raw.close()
    assert server.messages("alice@example.org") == []


def test_command_and_error_limits_close_the_connection(mail_server):
    server = mail_server({"smtp": {"max_commands": 5, "max_errors": 3}})
    raw = Raw(server.smtp_address)
    raw.reply()
    replies = [raw.command(b"NOOP") for _ in range(5)]
    assert all(r.startswith(b"250") for r in replies)
    assert raw.command(b"NOOP")[:9] == b"421 4.7.0"
    assert raw.closed()
    raw = Raw(server.smtp_address)
    raw.reply()
    for _ in range(3):
        assert raw.command(b"BOGUS")[:3] == b"500"
    assert raw.command(b"BOGUS")[:3] == b"500"  # past the limit: the reply, then 421
    assert raw.reply()[:9] == b"421 4.7.0"
    assert raw.closed()


def test_idle_timeout(mail_server):
    server = mail_server({"smtp": {"idle_timeout": 1}})
    raw = Raw(server.smtp_address, timeout=10)
    raw.reply()
    started = time.monotonic()
    assert raw.reply()[:9] == b"421 4.4.2"  # blocks until the server gives up on us
    assert time.monotonic() - started >= 0.9
    assert raw.closed()


def test_connections_per_ip(mail_server):
    server = mail_server({"smtp": {"max_connections_per_ip": 2}})
    first, second = Raw(server.smtp_address), Raw(server.smtp_address)
    assert first.reply()[:3] == b"220"
    assert second.reply()[:3] == b"220"
    third = Raw(server.smtp_address)
    assert third.reply()[:9] == b"421 4.7.0"
    assert third.closed()
    first.command(b"QUIT")
    first.close()
    deadline = time.monotonic() + 10
    while True:  # the slot frees once the server has seen the first connection close
        fourth = Raw(server.smtp_address)
        greeting = fourth.reply()
        fourth.close()
        if greeting.startswith(b"220") or time.monotonic() > deadline:
            break
    assert greeting.startswith(b"220")
    second.close()


def test_bdat_and_dsn_parameters_are_kept(mail_server):
    server = mail_server()
    raw = Raw(server.smtp_address)
    raw.reply()
    raw.command(b"EHLO client.example.net")
    body = message("bdat").encode()
    half = len(body) // 2
    raw.send(
        b"MAIL FROM:<x@example.net> RET=HDRS ENVID=abc+2Bdef\r\n"
        b"RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2B@example.org\r\n"
        + b"BDAT %d\r\n" % half
        + body[:half]
        + b"BDAT %d LAST\r\n" % (len(body) - half)
        + body[half:]
    )
    assert raw.reply()[:3] == b"250"
    assert raw.reply()[:3] == b"250"
    assert raw.reply() == b"250 2.0.0 %d octets received" % half
    final = raw.reply()
    assert final.startswith(b"250 2.0.0 Ok: queued as ")
    raw.close()
    [stored] = server.messages("alice@example.org")
    assert stored.endswith(body)
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    (envelope,) = db.execute("SELECT envelope FROM messages").fetchone()
    envelope = json.loads(envelope)
    assert envelope["ret"] == "HDRS"
    assert envelope["envid"] == "abc+def"
    assert envelope["rcpt"] == [
        {"to": "alice@example.org", "notify": ["SUCCESS", "FAILURE"],
         "orcpt": ["rfc822", "alice+@example.org"]}
    ]  # fmt: skip


def test_pipelined_transaction(mail_server):
    server = mail_server()
    raw = Raw(server.smtp_address)
    raw.reply()
    raw.command(b"EHLO client.example.net")
    raw.send(
        b"MAIL FROM:<x@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
        b"RCPT TO:<nobody@example.org>\r\nDATA\r\n"
    )
    assert [raw.reply()[:3] for _ in range(4)] == [b"250", b"250", b"550", b"354"]
    raw.send(message("p").encode() + b".\r\nQUIT\r\n")
    assert raw.reply()[:3] == b"250"
    assert raw.reply()[:3] == b"221"
    assert len(server.messages("alice@example.org")) == 1


def test_quota(mail_server):
    server = mail_server(accounts=[Account("alice@example.org", "pw", quota=3000)])
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo()
        assert client.docmd("MAIL FROM:<x@example.net> SIZE=5000")[0] == 250
        assert client.rcpt("alice@example.org") == (
            552,
            b"5.2.2 Message larger than the mailbox quota",
        )
        client.rset()
        half = message() + "z" * 1500 + "\r\n"
        client.sendmail("x@example.net", ["alice@example.org"], half)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:  # SIZE= says: won't fit
            client.sendmail("x@example.net", ["alice@example.org"], half)
        assert refused.value.recipients["alice@example.org"] == (452, b"4.2.2 Mailbox full")
        # without SIZE= the quota is checked at end of data
        client.mail("x@example.net")
        assert client.rcpt("alice@example.org")[0] == 250
        assert client.data(half)[0] == 452
        client.mail("x@example.net")
        assert client.rcpt("alice@example.org")[0] == 250
        code, text = client.data(message() + "z" * 4000 + "\r\n")  # larger than the quota
        assert (code, text[:5]) == (552, b"5.2.2")
    assert len(server.messages("alice@example.org")) == 1


def test_one_log_line_per_transaction(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.smtp_address) as client:
        client.ehlo("client.example.net")
        client.mail("bob@example.net")
        client.rcpt("nobody@example.org")
        client.rcpt("alice@example.org")
        client.data(message())
    server.stop()
    [entry] = [e for e in server.log_lines() if e["msg"] == "smtp.transaction"]
    assert entry["client"] == "127.0.0.1"
    assert entry["mail_from"] == "bob@example.net"
    assert entry["rcpt"] == ["alice@example.org"]
    assert entry["refused"] == [{"rcpt": "nobody@example.org", "code": 550}]
    assert entry["size"] > len(message())
    assert str(entry["result"]).startswith("250 queued as ")
    assert entry["id"] and entry["helo"] == "client.example.net"


def test_sigterm_finishes_transactions_and_refuses_new_connections(mail_server):
    server = mail_server()
    busy = Raw(server.smtp_address)
    busy.reply()
    busy.command(b"EHLO x")
    busy.command(b"MAIL FROM:<x@example.net>")
    busy.command(b"RCPT TO:<alice@example.org>")
    assert busy.command(b"DATA")[:3] == b"354"
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    idle = Raw(server.smtp_address)
    idle.reply()
    server.process.send_signal(signal.SIGTERM)
    assert idle.reply()[:9] == b"421 4.3.2"  # idle sessions are told at once
    late = Raw(server.smtp_address)
    assert late.reply()[:9] == b"421 4.3.2"
    busy.send(b"second half\r\n.\r\n")
    assert busy.reply()[:3] == b"250"
    assert busy.reply()[:9] == b"421 4.3.2"
    assert server.process.wait(30) == 0
    [stored] = server.messages("alice@example.org")
    assert stored.endswith(b"first half\r\nsecond half\r\n")


def test_sighup_reloads_configuration(mail_server):
    server = mail_server()
    text = server.config_path.read_text()
    server.config_path.write_text(text.replace("[smtp]", '[smtp]\nbanner = "ESMTP reloaded"', 1))
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any(e["msg"] == "config.reloaded" for e in server.log_lines()):
        assert time.monotonic() < deadline, "no config.reloaded in the log"
    raw = Raw(server.smtp_address)
    assert raw.reply().endswith(b"ESMTP reloaded")
    raw.close()
    # an invalid file keeps the running configuration
    server.config_path.write_text(text.replace("[smtp]", "[smtp]\nmax_recipients = 'x'", 1))
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any(e["msg"] == "config.reload_failed" for e in server.log_lines()):
        assert time.monotonic() < deadline
    raw = Raw(server.smtp_address)
    assert raw.reply().endswith(b"ESMTP reloaded")
    assert server.process.poll() is None
