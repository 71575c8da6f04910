"""Attack: idle connections to port 25 from many addresses used up the one SMTP connection budget,
and submission (587, 465) answered 421 to every user. Submission now has its own budget; idle
clients get a short time before EHLO and every session a deadline."""

from __future__ import annotations

import select
import smtplib
import socket
import ssl
import time

import pytest

from mailstead.testing.replies import ReplyReader
from mailstead.testing.server import RunningServer

PORT25_BUDGET = 10
PER_ADDRESS = 2
FLOODERS = [f"127.0.0.{10 + n}" for n in range(PORT25_BUDGET // PER_ADDRESS)]
BUSY_COMMANDS = 10_000_000
MESSAGE = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nstill here\r\n"


class Line:
    """A line-level SMTP client from a chosen source address."""

    def __init__(self, address: tuple[str, int], source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(address, timeout=30, source_address=(source, 0))
        self.replies = ReplyReader(self.sock)
        _OPEN.append(self)

    def reply(self) -> bytes:
        return self.replies.reply()

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def quiet(self) -> bool:
        """Open, and nothing more sent by the server."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable and not self.replies.buffer

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


_OPEN: list[Line] = []


@pytest.fixture(autouse=True)
def _close_lines():
    yield
    while _OPEN:
        _OPEN.pop().sock.close()


def context(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))


def test_idle_port25_connections_do_not_lock_out_submission(mail_server):
    server = mail_server(
        {
            "smtp": {
                "max_connections": PORT25_BUDGET,
                "max_connections_per_ip": PER_ADDRESS,
                "helo_timeout": "10m",  # the flood stays for the whole test
            },
            "submission": {"max_connections": 5, "max_connections_per_ip": 2},
            "auth": {"allow_plaintext_on_loopback": False},
        }
    )
    flood = [Line(server.smtp_address, source) for source in FLOODERS for _ in range(PER_ADDRESS)]
    for idle in flood:
        assert idle.reply().startswith(b"220 ")
    # port 25's budget is spent: the next stranger is turned away
    late = Line(server.smtp_address, "127.0.0.99")
    assert late.reply() == b"421 4.7.0 Too many connections, try again later"
    assert late.closed()

    # a user still submits, on 587 (STARTTLS) and on 465 (implicit TLS), from the same address
    # as the flood and from another
    for source in ("127.0.0.10", "127.0.0.1"):
        with smtplib.SMTP(*server.submission_address, timeout=30,
                          source_address=(source, 0)) as smtp:  # fmt: skip
            smtp.starttls(context=context(server))
            smtp.login("alice@example.org", "alice-pw")
            assert smtp.sendmail("alice@example.org", ["bob@example.org"], MESSAGE) == {}
        with smtplib.SMTP_SSL(*server.submissions_address, context=context(server), timeout=30,
                              source_address=(source, 0)) as smtp:  # fmt: skip
            smtp.login("alice@example.org", "alice-pw")
            assert smtp.sendmail("alice@example.org", ["bob@example.org"], MESSAGE) == {}
    assert len(server.messages("bob@example.org")) == 4
    assert all(idle.quiet() for idle in flood)  # the flood was held all along

    # submission's own budget has its own per-address limit (2 here)
    held = [Line(server.submission_address, "127.0.0.20") for _ in range(2)]
    for connection in held:
        assert connection.reply().startswith(b"220 ")
    third = Line(server.submission_address, "127.0.0.20")
    assert third.reply() == b"421 4.7.0 Too many connections, try again later"


def test_no_ehlo_in_time_closes_the_connection(mail_server):
    server = mail_server({"smtp": {"helo_timeout": "1s", "idle_timeout": "5m"}})
    for address in (server.smtp_address, server.submission_address):
        silent = Line(address)
        greeted = Line(address)
        assert silent.reply().startswith(b"220 ")
        assert greeted.reply().startswith(b"220 ")
        assert greeted.command(b"EHLO client.example").startswith(b"250")
        started = time.monotonic()
        assert silent.reply() == b"421 4.4.2 Timeout, closing connection"
        assert time.monotonic() - started < 30
        assert silent.closed()
        # after EHLO the (long) idle timeout applies: the other one is still served
        assert greeted.quiet()
        assert greeted.command(b"NOOP").startswith(b"250")


def test_session_deadline_ends_a_busy_session(mail_server):
    server = mail_server(
        {
            # a NOOP takes well under a millisecond: the command limit must not come first
            "smtp": {"session_timeout": "2s", "max_commands": BUSY_COMMANDS},
            "submission": {"session_timeout": "3s"},
        }
    )
    for address in (server.smtp_address, server.submission_address):
        busy = Line(address)
        assert busy.reply().startswith(b"220 ")
        assert busy.command(b"EHLO client.example").startswith(b"250")
        deadline = time.monotonic() + 60
        reply = b""
        while time.monotonic() < deadline:  # never idle: only the session's deadline ends it
            reply = busy.command(b"NOOP")
            if not reply.startswith(b"250"):
                break
        assert reply == b"421 4.4.2 Session timeout, closing connection"
        assert busy.closed()


def test_session_deadline_is_per_role(mail_server):
    """Port 25's short deadline does not apply to submission."""
    server = mail_server(
        {
            "smtp": {"session_timeout": "1s", "max_commands": BUSY_COMMANDS},
            "submission": {"session_timeout": "1h"},
        }
    )
    mx, user = Line(server.smtp_address), Line(server.submission_address)
    assert mx.reply().startswith(b"220 ") and user.reply().startswith(b"220 ")
    assert user.command(b"EHLO client.example").startswith(b"250")
    deadline = time.monotonic() + 60
    reply = b""
    while time.monotonic() < deadline:
        reply = mx.command(b"NOOP")
        if not reply.startswith(b"250"):
            break
    assert reply == b"421 4.4.2 Session timeout, closing connection"
    assert user.command(b"NOOP").startswith(b"250")
