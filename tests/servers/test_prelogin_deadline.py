"""Attack: a client that never logs in but keeps talking (IMAP NOOP, POP3 CAPA) held its
connection slot forever; the idle timeout before login never fired. Now the time before login is
bounded in all (``login_timeout``); a logged-in session is not affected."""

from __future__ import annotations

import imaplib
import poplib
import socket
import time

import pytest


class Talker:
    """Sends one line after another, never logging in."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def closed(self) -> bool:
        """EOF, or a reset (a command sent as the server closed arrives too late)."""
        try:
            return self.file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def server(mail_server):
    return mail_server({"imap": {"login_timeout": "2s"}, "pop3": {"login_timeout": "2s"}})


def test_imap_client_that_never_logs_in_is_let_go(server):
    user = imaplib.IMAP4(*server.imap_address, timeout=30)  # connects first, logs in
    assert user.login("alice@example.org", "alice-pw")[0] == "OK"
    talker = Talker(server.imap_address)
    try:
        assert talker.line().startswith(b"* OK")
        deadline = time.monotonic() + 60
        line = b""
        n = 0
        while time.monotonic() < deadline:  # never idle: only the login deadline ends it
            n += 1
            talker.sock.sendall(b"a%d NOOP\r\n" % n)
            line = talker.line()
            if line.startswith(b"* BYE"):
                break
            assert line.startswith(b"a%d OK" % n)
        assert line == b"* BYE Login timeout"
        assert talker.closed()
        # connected before the talker, past the same deadline: logged in, still served
        assert user.noop()[0] == "OK"
        user.logout()
    finally:
        talker.close()


def test_pop3_client_that_never_logs_in_is_let_go(server):
    user = poplib.POP3(*server.pop3_address, timeout=30)  # connects first, logs in
    user.user("alice@example.org")
    assert user.pass_("alice-pw").startswith(b"+OK")
    talker = Talker(server.pop3_address)
    try:
        assert talker.line().startswith(b"+OK")
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline:
            talker.sock.sendall(b"CAPA\r\n")
            line = talker.line()
            if line.startswith(b"-ERR"):
                break
            while line != b".":  # the capability list
                line = talker.line()
        assert line == b"-ERR Login timeout"
        assert talker.closed()
        assert user.noop().startswith(b"+OK")
        user.quit()
    finally:
        talker.close()
