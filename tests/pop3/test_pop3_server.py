"""POP3 through the asyncio shell of a real `mailstead serve`: raw bytes on the wire, TLS,
limits, shutdown, the session log line, and IMAP hearing of POP3's deletions."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import time

import pytest

from mailstead.testing.server import Account

USER, PASSWORD = "alice@example.org", "alice-pw"
ACCOUNTS = [Account(USER, PASSWORD)]
GREETING = b"+OK mx.example.org Mailstead POP3 ready\r\n"
DEADLINE = 10.0


def tls_context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))


class Wire:
    """A raw client socket: send bytes, expect exact bytes back."""

    def __init__(self, address, context: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(address, timeout=DEADLINE)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, expected: bytes) -> None:
        while len(self.buffer) < len(expected):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        got, self.buffer = self.buffer[: len(expected)], self.buffer[len(expected) :]
        assert got == expected

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed after {self.buffer!r}"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def eof(self) -> bool:
        """True once the server closed the connection (and sent nothing more)."""
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk == b"" and self.buffer == b""

    def starttls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


def deliver(server, count: int, start: int = 0) -> None:
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        for n in range(start, start + count):
            client.sendmail("x@example.net", [USER], f"Subject: m{n}\r\n\r\nbody {n}\r\n.\r\n")


def wait_for_log(server, event: str) -> list[dict]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = [line for line in server.log_lines() if line.get("msg") == event]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {event} in the log")


@pytest.fixture
def server(mail_server):
    return mail_server(accounts=ACCOUNTS)


@pytest.fixture
def wire():
    """``wire(address, context=None)`` opens a `Wire`; all are closed after the test."""
    opened: list[Wire] = []

    def _open(address, context: ssl.SSLContext | None = None) -> Wire:
        opened.append(Wire(address, context))
        return opened[-1]

    yield _open
    for each in opened:
        each.close()


def test_pipelined_session_exact_bytes(server, wire):
    deliver(server, 2)
    size = len(server.messages(USER)[0])
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    conn.send(
        f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nRETR 1\r\nQUIT\r\n".encode()
    )
    body = server.messages(USER)[0]
    conn.expect(
        b"+OK Send PASS\r\n"
        + f"+OK Logged in, 2 messages ({2 * size} octets)\r\n".encode()
        + f"+OK 2 {2 * size}\r\n".encode()
        + f"+OK {size} octets\r\n".encode()
        + body.replace(b"\r\n.\r\n", b"\r\n..\r\n")
        + b".\r\n"
        + b"+OK Message 1 deleted\r\n"
        + b"-ERR Message 1 is deleted\r\n"
        + b"+OK Bye, 1 deleted, 1 left\r\n"
    )
    assert conn.eof()
    assert len(server.messages(USER)) == 1


def test_bad_input_exact_replies(server, wire):
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    too_long = b"USER " + b"a" * 249 + b"\r\n"  # 256 octets with CRLF (RFC 2449 §4: 255)
    conn.send(b"XYZZY\r\n" + too_long + b"STAT\r\nPASS x\r\nRETR one\r\n")
    conn.expect(
        b"-ERR Unknown command\r\n-ERR Line too long\r\n-ERR Log in first\r\n"
        b"-ERR Send USER first\r\n-ERR Log in first\r\n"
    )
    conn.send(f"USER {USER}\r\nPASS wrong\r\nUSER nobody@example.org\r\nPASS wrong\r\n".encode())
    conn.expect(
        b"+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n"
        b"+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n"
    )
    conn.send(b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!!\r\n")
    conn.expect(
        b"+ \r\n-ERR Authentication cancelled\r\n+ \r\n-ERR Invalid base64 data\r\n"
    )
    conn.send(b"NOOP\r\nNOOP\r\n")  # the 10th error (default [pop3] max_errors) closes
    conn.expect(
        b"-ERR Log in first\r\n-ERR Log in first\r\n"
        b"-ERR Too many errors, closing connection\r\n"
    )
    assert conn.eof()


def test_tls_is_required_for_passwords(mail_server, wire):
    server = mail_server({"auth": {"allow_plaintext_on_loopback": False}}, accounts=ACCOUNTS)
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    conn.send(f"USER {USER}\r\nAUTH PLAIN\r\nCAPA\r\n".encode())
    refused = b"-ERR [AUTH] Plaintext authentication disallowed, use STLS first\r\n"
    conn.expect(
        refused + refused + b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION Mailstead\r\n.\r\n"
    )
    conn.send(b"STLS\r\n")
    conn.expect(b"+OK Begin TLS negotiation\r\n")
    conn.starttls(tls_context(server))
    conn.send(f"CAPA\r\nUSER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    conn.expect(
        b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
        b"PIPELINING\r\nUSER\r\nSASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN\r\n"
        b"IMPLEMENTATION Mailstead\r\n.\r\n"
        b"+OK Send PASS\r\n+OK Logged in, 0 messages (0 octets)\r\n"
    )
    conn.send(b"QUIT\r\n")
    conn.expect(b"+OK Bye, 0 deleted, 0 left\r\n")
    implicit = poplib.POP3_SSL(*server.pop3s_address, context=tls_context(server), timeout=10)
    try:
        assert "USER" in implicit.capa()
        implicit.user(USER)
        assert implicit.pass_(PASSWORD).startswith(b"+OK Logged in")
    finally:
        implicit.quit()


def test_stls_injection_is_not_executed(mail_server, wire):
    server = mail_server({"auth": {"allow_plaintext_on_loopback": False}}, accounts=ACCOUNTS)
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    conn.send(b"STLS\r\nCAPA\r\n")  # CAPA in plaintext, pipelined before the handshake
    conn.expect(b"+OK Begin TLS negotiation\r\n")
    conn.starttls(tls_context(server))
    conn.send(b"NOOP\r\n")
    conn.expect(b"-ERR Log in first\r\n")  # the first reply under TLS is NOOP's, not CAPA's


def test_connection_limit_per_client(mail_server, wire):
    server = mail_server({"pop3": {"max_connections_per_ip": 2}}, accounts=ACCOUNTS)
    first, second = wire(server.pop3_address), wire(server.pop3_address)
    first.expect(GREETING)
    second.expect(GREETING)
    third = wire(server.pop3_address)
    third.expect(b"-ERR [SYS/TEMP] Too many connections\r\n")
    assert third.eof()
    first.send(b"QUIT\r\n")
    first.expect(b"+OK Bye\r\n")
    assert first.eof()
    deadline = time.monotonic() + DEADLINE
    while True:  # the slot frees once the server has seen the close
        fourth = wire(server.pop3_address)
        if fourth.line() == GREETING:
            break
        assert time.monotonic() < deadline


def test_idle_timeout_after_login_deletes_nothing(mail_server, wire):
    server = mail_server({"pop3": {"idle_timeout": "1s"}}, accounts=ACCOUNTS)
    deliver(server, 1)
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    conn.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
    assert conn.line() == b"+OK Send PASS\r\n"
    assert conn.line().startswith(b"+OK Logged in")
    assert conn.line() == b"+OK Message 1 deleted\r\n"
    assert conn.line() == b"-ERR Idle timeout\r\n"  # after a second without a command
    assert conn.eof()
    assert len(server.messages(USER)) == 1
    (line,) = wait_for_log(server, "pop3.session")
    assert line["closed"] == "timeout" and line["deleted"] == 0


def test_shutdown_closes_sessions_without_deleting(mail_server, wire):
    server = mail_server(accounts=ACCOUNTS)
    deliver(server, 1)
    conn = wire(server.pop3_address)
    conn.expect(GREETING)
    conn.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
    conn.line(), conn.line(), conn.line()
    assert server.stop() == 0
    assert conn.line() == b"-ERR Server shutting down\r\n"
    assert conn.eof()
    assert len(server.messages(USER)) == 1


def test_one_log_line_per_session(server):
    deliver(server, 3)
    client = poplib.POP3(*server.pop3_address, timeout=10)
    client.user(USER)
    client.pass_(PASSWORD)
    client.retr(1)
    client.retr(2)
    client.dele(3)
    client.quit()
    (line,) = wait_for_log(server, "pop3.session")
    assert line["user"] == USER
    assert (line["retrieved"], line["deleted"], line["closed"]) == (2, 1, "quit")
    assert line["octets"] > 0 and line["client"] == "127.0.0.1" and line["tls"] is None
    assert "alice-pw" not in (server.data_dir / "mailstead.log").read_text()


def test_imap_idle_hears_of_pop3_deletions(server):
    deliver(server, 3)
    imap = imaplib.IMAP4(*server.imap_address, timeout=10)
    try:
        imap.login(USER, PASSWORD)
        imap.select("INBOX")
        tag = imap._new_tag().decode()
        imap.send(f"{tag} IDLE\r\n".encode())
        assert imap.readline().startswith(b"+ ")
        pop = poplib.POP3(*server.pop3_address, timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        pop.retr(1)
        pop.dele(2)
        pop.quit()
        imap.sock.settimeout(DEADLINE)
        heard = []  # \Seen on 1, \Deleted on 2, then its expunge
        while not heard or heard[-1] != b"* 2 EXPUNGE\r\n":
            heard.append(imap.readline())
        assert b"* 1 FETCH (FLAGS (\\Seen \\Recent) UID 1)\r\n" in heard
        imap.send(b"DONE\r\n")
        while not (line := imap.readline()).startswith(tag.encode()):
            pass
        assert b"OK" in line
    finally:
        imap.logout()


def test_a_client_that_stops_reading_is_dropped(mail_server, wire):
    server = mail_server({"pop3": {"idle_timeout": "1s"}}, accounts=ACCOUNTS)
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        line = "x" * 76 + "\r\n"
        client.sendmail("x@example.net", [USER], "Subject: big\r\n\r\n" + line * 40000)  # 3 MB
    conn = wire(server.pop3_address)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.expect(GREETING)
    conn.send(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    conn.line(), conn.line()
    conn.send(b"RETR 1\r\n" * 20)  # 60 MB of replies, and the client reads none of them
    (log,) = wait_for_log(server, "pop3.session")
    assert log["closed"] == "write-timeout"
    pop = poplib.POP3(*server.pop3_address, timeout=10)  # the maildrop is free again
    pop.user(USER)
    assert pop.pass_(PASSWORD).startswith(b"+OK Logged in, 1 messages")
    pop.quit()
