"""Memory exhaustion before login (issue 11): ``a LOGIN {65536+}`` followed by hundreds of
64 KiB literals made the server buffer ~44 MB per unauthenticated connection (8 connections:
418 MB RSS). Before login the literals of a command are now capped at 8 KiB together."""

from __future__ import annotations

import socket
from pathlib import Path

from mailstead.testing.server import Account, RunningServer

ACCOUNTS = [Account("alice@example.org", "alice-pw")]
CHUNK = b"x" * 65536
REFUSED = b"a BAD [TOOBIG] Command too large before login\r\n"


def rss_kib(server: RunningServer) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def flood(sock: socket.socket, rounds: int) -> int:
    """Send 64 KiB literals until the server stops taking them; returns the octets sent."""
    sent = 0
    try:
        for _ in range(rounds):
            sock.sendall(CHUNK + b" {65536+}\r\n")
            sent += len(CHUNK)
    except OSError:  # the server closed the connection: that is the point
        pass
    return sent


def test_login_literal_flood_is_refused_and_memory_stays_small(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    before = rss_kib(server)
    for _ in range(8):
        with socket.create_connection(server.imap_address, timeout=20) as sock:
            assert sock.recv(4096).startswith(b"* OK")
            sock.sendall(b"a LOGIN {65536+}\r\n")
            flood(sock, 300)  # ~19 MB offered per connection
            # RFC 7888 §4: a non-synchronizing literal the server will not take: BAD, then close
            assert read_until_closed(sock) == REFUSED + b"* BYE Too much input\r\n"
    grown = rss_kib(server) - before
    assert grown < 20 * 1024, f"RSS grew by {grown} KiB"


def test_login_literal_flood_over_parallel_connections(mail_server) -> None:
    """The same, with all eight connections open at once, each flooding."""
    server = mail_server(accounts=ACCOUNTS)
    before = rss_kib(server)
    socks = [socket.create_connection(server.imap_address, timeout=20) for _ in range(8)]
    try:
        for sock in socks:
            assert sock.recv(4096).startswith(b"* OK")
            sock.sendall(b"a LOGIN {65536+}\r\n" + CHUNK[:1000])
        for sock in socks:
            flood(sock, 100)
        peak = rss_kib(server)
        for sock in socks:
            assert read_until_closed(sock) == REFUSED + b"* BYE Too much input\r\n"
    finally:
        for sock in socks:
            sock.close()
    assert peak - before < 20 * 1024, f"RSS grew by {peak - before} KiB"


def test_synchronising_literal_past_the_cap_gets_no_continuation(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    with socket.create_connection(server.imap_address, timeout=20) as sock:
        assert sock.recv(4096).startswith(b"* OK")
        sock.sendall(b"a LOGIN {65536}\r\n")
        assert sock.recv(4096) == REFUSED  # no "+": the client never sends the octets
        # short literals, as a client sends credentials, still work
        sock.sendall(b"b LOGIN {17}\r\n")
        assert sock.recv(4096) == b"+ Ready for literal data\r\n"
        sock.sendall(b"alice@example.org {8+}\r\nalice-pw\r\n")
        assert sock.recv(4096).startswith(b"b OK [CAPABILITY ")
        # after login the ordinary limits apply
        sock.sendall(b"c CREATE {20000}\r\n")
        assert sock.recv(4096) == b"+ Ready for literal data\r\n"
