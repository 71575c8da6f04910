"""The LIST wildcard attack: ``LIST "" "*a*a*a*a*X"`` against a long mailbox name used to
backtrack in a regular expression on the event loop (18 s with 300 characters, every protocol
frozen meanwhile). The LIST must complete promptly and other connections must be served."""

from __future__ import annotations

import imaplib
import smtplib
import socket

from mailstead.testing.server import Account

ACCOUNTS = [Account("alice@example.org", "alice-pw")]
LONG_NAME = "a" * 900  # the old regex needed minutes for this one
DEADLINE = 20.0  # generous: a loaded CI machine; the old code needed far longer


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {data[-200:]!r}"
        data += chunk
    return data


def test_evil_list_pattern_does_not_freeze_the_server(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    client = imaplib.IMAP4(*server.imap_address, timeout=DEADLINE)
    try:
        client.login("alice@example.org", "alice-pw")
        assert client.create(LONG_NAME)[0] == "OK"
    finally:
        client.logout()

    with socket.create_connection(server.imap_address, timeout=DEADLINE) as sock:
        read_until(sock, b"\r\n")
        sock.sendall(b'a LOGIN "alice@example.org" "alice-pw"\r\n')
        read_until(sock, b"\r\n")
        for pattern in (b"*a*a*a*a*X", b"%a%a%a%a%X", b"*a%a*a%a*a%X"):
            sock.sendall(b'b LIST "" "' + pattern + b'"\r\n')
            # meanwhile another protocol is answered (the event loop is not blocked)
            with smtplib.SMTP(*server.smtp_address, timeout=DEADLINE) as smtp:
                assert smtp.noop()[0] == 250
            # and the LIST itself completes: nothing matches, and it says so
            assert read_until(sock, b"\r\n") == b"b OK List completed\r\n"
        sock.sendall(b'c LIST "" "*a"\r\n')
        reply = read_until(sock, b"c OK List completed\r\n")
        assert b'* LIST (\\HasNoChildren) "/" ' + LONG_NAME.encode() in reply


def test_list_with_a_pattern_past_the_limit_gets_no_limit(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    with socket.create_connection(server.imap_address, timeout=DEADLINE) as sock:
        read_until(sock, b"\r\n")
        sock.sendall(b'a LOGIN "alice@example.org" "alice-pw"\r\n')
        read_until(sock, b"\r\n")
        sock.sendall(b'b LIST "" "' + b"*a" * 1001 + b'"\r\n')
        assert read_until(sock, b"\r\n") == b"b NO [LIMIT] Pattern too long\r\n"
        patterns = b" ".join(b'"%d"' % i for i in range(65))
        sock.sendall(b'c LIST "" (' + patterns + b")\r\n")
        assert read_until(sock, b"\r\n") == b"c NO [LIMIT] Too many patterns\r\n"
        sock.sendall(b"d NOOP\r\n")
        assert read_until(sock, b"\r\n") == b"d OK NOOP completed\r\n"
