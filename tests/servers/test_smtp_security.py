"""Security regressions through a real socket: STARTTLS injection and SMTP smuggling."""

from __future__ import annotations

import socket
import ssl

import pytest

from mailstead.testing.replies import ReplyReader


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def connect(mail_server):
    server = mail_server()
    opened = []

    def _connect():
        sock = socket.create_connection(server.smtp_address, timeout=10)
        opened.append(sock)
        return sock

    _connect.server = server
    yield _connect
    for sock in opened:
        sock.close()


def test_starttls_injection_is_discarded(connect):
    """CVE-2011-0411: commands pipelined after STARTTLS must not run inside TLS."""
    sock = connect()
    lines = ReplyReader(sock)
    lines.reply()
    sock.sendall(b"EHLO x\r\n")
    lines.reply()
    sock.sendall(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
    assert lines.reply().startswith(b"220 2.0.0")
    assert lines.buffer == b""
    tls = _insecure().wrap_socket(sock, server_hostname="localhost")
    tls_lines = ReplyReader(tls)
    # Had the injected MAIL run, RCPT would be accepted; after TLS the session starts over.
    tls.sendall(b"RCPT TO:<alice@example.org>\r\n")
    assert tls_lines.reply().startswith(b"503")
    tls.sendall(b"EHLO x\r\nMAIL FROM:<real@example.net>\r\n")
    assert b"STARTTLS" not in tls_lines.reply()
    assert tls_lines.reply().startswith(b"250")
    tls.close()


@pytest.mark.parametrize(
    "smuggled",
    [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n\x00.\r\n"],
    ids=["lf-dot-lf", "lf-dot-crlf", "crlf-dot-lf", "cr-dot-crlf", "crlf-dot-cr", "nul"],
)
def test_smuggled_end_of_data_stays_inside_the_message(connect, smuggled):
    """No variant of a bare line ending ends DATA; the smuggled MAIL is never a command."""
    sock = connect()
    lines = ReplyReader(sock)
    lines.reply()
    for command in (b"EHLO x", b"MAIL FROM:<a@example.net>", b"RCPT TO:<alice@example.org>",
                    b"DATA"):  # fmt: skip
        sock.sendall(command + b"\r\n")
        lines.reply()
    sock.sendall(
        b"Subject: first\r\n\r\nbody"
        + smuggled
        + b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
        + b"Subject: smuggled\r\n\r\nevil\r\n.\r\n"
    )
    final = lines.reply()
    sock.sendall(b"QUIT\r\n")
    lines.reply()
    server = connect.server
    assert server.messages("bob@example.org") == []  # the smuggled transaction never ran
    stored = server.messages("alice@example.org")
    if final.startswith(b"250"):
        [message] = stored
        assert b"MAIL FROM:<evil@example.net>" in message
        assert b"\r" not in message.replace(b"\r\n", b"")  # only CRLF line endings stored
        assert b"\n" not in message.replace(b"\r\n", b"")
    else:  # refused outright (bare CR)
        assert final.startswith(b"554 5.6.0")
        assert stored == []
