"""Memory before login on POP3 and SMTP AUTH (issue 11): an unauthenticated client sending
one endless command line, or an endless AUTH response line, is refused with the protocol's
reply while the line is discarded as it streams; the server's memory stays small."""

from __future__ import annotations

import socket
from pathlib import Path

from mailstead.testing.server import Account, RunningServer

ACCOUNTS = [Account("alice@example.org", "alice-pw")]
FLOOD = b"A" * (4 * 1024 * 1024)  # one line, no end in sight


def rss_kib(server: RunningServer) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def read_reply(sock: socket.socket) -> bytes:
    """One SMTP reply, all its lines."""
    out = read_line(sock)
    while out.splitlines()[-1][3:4] == b"-":
        out += read_line(sock)
    return out


def test_pop3_endless_lines_before_login(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    before = rss_kib(server)
    with socket.create_connection(server.pop3_address, timeout=30) as sock:
        assert read_line(sock).startswith(b"+OK")
        sock.sendall(FLOOD + b"\r\n")
        assert read_line(sock) == b"-ERR Line too long\r\n"  # RFC 2449 §4: 255 octets
        sock.sendall(b"AUTH PLAIN\r\n")
        assert read_line(sock) == b"+ \r\n"
        sock.sendall(FLOOD + b"\r\n")
        assert read_line(sock) == b"-ERR Invalid authentication data\r\n"  # 12 KiB at most
        sock.sendall(b"CAPA\r\n")
        assert read_line(sock) == b"+OK Capability list follows\r\n"
    assert rss_kib(server) - before < 20 * 1024


def test_smtp_endless_command_and_auth_lines_before_login(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    before = rss_kib(server)
    with socket.create_connection(server.submission_address, timeout=30) as sock:
        assert read_reply(sock).startswith(b"220 ")
        sock.sendall(b"EHLO client.example\r\n")
        assert b"AUTH" in read_reply(sock)
        sock.sendall(FLOOD + b"\r\n")
        assert read_reply(sock) == b"500 5.5.2 Line too long\r\n"  # RFC 5321 §4.5.3.1.4
        sock.sendall(b"AUTH PLAIN\r\n")
        assert read_reply(sock) == b"334 \r\n"
        sock.sendall(FLOOD + b"\r\n")
        # RFC 4954 §4: the exchange ends
        assert read_reply(sock) == b"500 5.5.6 Authentication Exchange line is too long\r\n"
        sock.sendall(b"NOOP\r\n")
        assert read_reply(sock).startswith(b"250 ")
    assert rss_kib(server) - before < 20 * 1024
