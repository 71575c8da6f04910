"""IMAP LOGIN with a user name (or password) that is not UTF-8 used to drop the connection
with an unhandled exception (issue 11): it is a failed login, and the session goes on."""

from __future__ import annotations

import socket

import pytest

from mailstead.testing.server import Account

ACCOUNTS = [Account("alice@example.org", "alice-pw")]
READY = b"+ Ready for literal data\r\n"


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize(
    ("user", "password"),
    [(b"\xff\xfe", b"alice-pw"), (b"alice\xc3@example.org", b"x"), (b"alice@example.org", b"\xff")],
)
def test_login_with_bytes_that_are_not_utf8(mail_server, user: bytes, password: bytes) -> None:
    server = mail_server(accounts=ACCOUNTS)
    with socket.create_connection(server.imap_address, timeout=30) as sock:
        assert read_line(sock).startswith(b"* OK")
        sock.sendall(b"a LOGIN {%d}\r\n" % len(user))
        assert read_line(sock) == READY
        sock.sendall(user + b" {%d+}\r\n" % len(password) + password + b"\r\n")
        assert read_line(sock) == b"a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        sock.sendall(b"b LOGIN alice@example.org alice-pw\r\n")
        assert read_line(sock).startswith(b"b OK [CAPABILITY ")
