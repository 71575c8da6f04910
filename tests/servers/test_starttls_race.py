"""A client that starts its TLS handshake the instant it reads the go-ahead (most do) must get
a handshake, not a hang: the ClientHello must not be read as plaintext and thrown away."""

from __future__ import annotations

import socket
import ssl

import pytest


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_immediate_handshake_after_starttls(mail_server, protocol):
    server = mail_server()
    address = server.smtp_address if protocol == "smtp" else server.imap_address
    for _ in range(10):
        sock = socket.create_connection(address, timeout=5)
        try:
            if protocol == "smtp":
                _line(sock)
                sock.sendall(b"EHLO x\r\n")
                while not _line(sock).startswith(b"250 "):
                    pass
                sock.sendall(b"STARTTLS\r\n")
                assert _line(sock).startswith(b"220")
            else:
                _line(sock)
                sock.sendall(b"a STARTTLS\r\n")
                assert _line(sock).startswith(b"a OK")
            tls = _context().wrap_socket(sock, server_hostname="localhost")  # at once
            tls.sendall(b"EHLO x\r\n" if protocol == "smtp" else b"b NOOP\r\n")
            assert _line(tls)[:1] in (b"2", b"b", b"*")
            tls.close()
        finally:
            sock.close()
