"""Half-close after pipelined commands: every reply owed is sent, and mail arrives once.

The attack (and Exim 4.96's habit on every delivery): a client pipelines the end of a
message (final dot, or BDAT LAST) with QUIT, then shuts down its sending side (TCP
``shutdown(SHUT_WR)``, over TLS a close_notify first). The server must still commit, answer
250 and 221, then close; a lost 250 makes the client send the message again.
"""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket
import ssl

import pytest

DEADLINE = 30.0
MESSAGE = b"From: x@example.net\r\nSubject: half-close\r\nMessage-ID: <%s@test>\r\n\r\nbody\r\n"


def _read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a deadline, not a sleep)."""
    sock.settimeout(DEADLINE)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _plain_exchange(address: tuple[str, int], commands: bytes) -> bytes:
    """Send ``commands`` in one write, shut the sending side, read until EOF."""
    with socket.create_connection(address, timeout=DEADLINE) as sock:
        sock.sendall(commands)
        sock.shutdown(socket.SHUT_WR)
        return _read_until_eof(sock)


class _TLSClient:
    """A TLS client over a MemoryBIO: exact control of when close_notify goes out
    (``unwrap``) while the TCP side stays open, then reads the rest until EOF."""

    def __init__(self, sock: socket.socket) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False)
        self.plain = bytearray()
        self.closed_by_peer = False
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._send_pending()

    def _send_pending(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _pump(self) -> bool:
        """Send what TLS wants sent, read one chunk from the socket; False at TCP EOF."""
        self._send_pending()
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._send_pending()

    def close_notify(self) -> None:
        """Send close_notify (TLS half-close) without waiting for the server's."""
        with contextlib.suppress(ssl.SSLWantReadError):  # the server's is not awaited
            self.tls.unwrap()
        self._send_pending()

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.plain:
            self._drain()
            if marker in self.plain:
                break
            if not self._pump():
                break
        return bytes(self.plain)

    def read_until_eof(self) -> bytes:
        """Application data until the server's close_notify or TCP EOF."""
        while True:
            self._drain()
            if self.closed_by_peer:
                break
            if not self._pump():
                self._drain()
                break
        return bytes(self.plain)

    def _drain(self) -> None:
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return
            except ssl.SSLError:  # a TCP EOF without close_notify: what came is what we have
                return
            if not chunk:
                self.closed_by_peer = True
                return
            self.plain += chunk


def _transaction(message_id: str) -> bytes:
    return (
        b"MAIL FROM:<x@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
        + MESSAGE % message_id.encode()
        + b".\r\nQUIT\r\n"
    )


def _bdat_transaction(message_id: str) -> bytes:
    content = MESSAGE % message_id.encode()
    return (
        b"MAIL FROM:<x@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
        + b"BDAT %d LAST\r\n" % len(content)
        + content
        + b"QUIT\r\n"
    )


def _replies(data: bytes) -> list[bytes]:
    return [line[:3] for line in data.split(b"\r\n") if line[3:4] == b" "]


def _count(server, message_id: str) -> int:
    needle = f"<{message_id}@test>".encode()
    return sum(needle in m for m in server.messages("alice@example.org"))


def _assert_committed_and_answered(server, out: bytes, message_id: str, *, greeted: bool) -> None:
    codes = _replies(out)
    assert b"Ok: queued as" in out, out
    # the replies of the pipelined group, all of them, with 250 to the end of data and 221
    expected = ([b"220", b"250"] if greeted else []) + [b"250", b"250", b"354", b"250", b"221"]
    if b"354" not in codes:  # BDAT: no 354
        expected.remove(b"354")
    assert codes == expected, out
    assert _count(server, message_id) == 1


@pytest.mark.parametrize("shape", ["data", "bdat"])
def test_half_close_after_end_of_data_and_quit_gets_250_and_221(mail_server, shape):
    server = mail_server()
    build = _transaction if shape == "data" else _bdat_transaction
    out = _plain_exchange(server.smtp_address, b"EHLO client.example.net\r\n" + build(shape))
    _assert_committed_and_answered(server, out, shape, greeted=True)


def _starttls(address: tuple[str, int]) -> _TLSClient:
    sock = socket.create_connection(address, timeout=DEADLINE)
    sock.sendall(b"EHLO client.example.net\r\n")
    buffer = b""
    while b"250 " not in buffer:
        buffer += sock.recv(4096)
    sock.sendall(b"STARTTLS\r\n")
    while b"220 2.0.0" not in buffer:
        buffer += sock.recv(4096)
    return _TLSClient(sock)


@pytest.mark.parametrize("shape", ["data", "bdat"])
def test_close_notify_after_end_of_data_and_quit_over_starttls(mail_server, shape):
    server = mail_server()
    client = _starttls(server.smtp_address)
    try:
        build = _transaction if shape == "data" else _bdat_transaction
        client.send(b"EHLO client.example.net\r\n" + build(f"tls-{shape}"))
        client.close_notify()
        client.sock.shutdown(socket.SHUT_WR)  # as Exim: close_notify, then the TCP FIN
        out = client.read_until_eof()
    finally:
        client.sock.close()
    codes = _replies(out)
    assert codes[-2:] == [b"250", b"221"], out
    assert b"Ok: queued as" in out, out
    assert _count(server, f"tls-{shape}") == 1


def test_close_notify_alone_after_bdat_last_over_implicit_tls_submission(mail_server):
    """Port 465, authenticated: close_notify after BDAT LAST + QUIT, TCP left open."""
    server = mail_server()
    sock = socket.create_connection(server.submissions_address, timeout=DEADLINE)
    try:
        client = _TLSClient(sock)
        client.read_until(b"220 ")
        client.send(b"EHLO client.example.net\r\n")
        client.read_until(b"250 ")
        token = base64.b64encode(b"\0alice@example.org\0alice-pw")
        client.send(b"AUTH PLAIN " + token + b"\r\n")
        client.read_until(b"235 ")
        content = (MESSAGE % b"submitted").replace(b"x@example.net", b"alice@example.org")
        client.send(
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<alice@example.org>\r\n"
            + b"BDAT %d LAST\r\n" % len(content)
            + content
            + b"QUIT\r\n"
        )
        client.close_notify()
        out = client.read_until_eof()
    finally:
        sock.close()
    assert _replies(out)[-2:] == [b"250", b"221"], out
    assert _count(server, "submitted") == 1


def _deliver(server, message_id: str) -> None:
    with smtplib.SMTP(*server.smtp_address, timeout=DEADLINE) as smtp:
        smtp.sendmail("x@example.net", ["alice@example.org"], MESSAGE % message_id.encode())


def test_imap_append_and_logout_then_half_close(mail_server):
    server = mail_server()
    message = MESSAGE % b"appended"
    out = _plain_exchange(
        server.imap_address,
        b"a LOGIN alice@example.org alice-pw\r\n"
        + b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n"
        + b"c LOGOUT\r\n",
    )  # fmt: skip
    assert b"\r\nb OK " in out, out
    assert b"* BYE" in out and out.endswith(b"c OK Logout completed\r\n"), out
    assert _count(server, "appended") == 1


def test_pop3_dele_and_quit_then_half_close(mail_server):
    server = mail_server()
    _deliver(server, "to-delete")
    assert _count(server, "to-delete") == 1
    out = _plain_exchange(
        server.pop3_address,
        b"USER alice@example.org\r\nPASS alice-pw\r\nDELE 1\r\nQUIT\r\n",
    )
    lines = out.split(b"\r\n")
    assert [line[:3] for line in lines if line] == [b"+OK"] * 5, out
    # the +OK to QUIT came after the update: the message is gone now
    assert _count(server, "to-delete") == 0


def test_imaps_append_and_logout_then_close_notify(mail_server):
    server = mail_server()
    message = MESSAGE % b"appended-tls"
    sock = socket.create_connection(server.imaps_address, timeout=DEADLINE)
    try:
        client = _TLSClient(sock)
        client.send(
            b"a LOGIN alice@example.org alice-pw\r\n"
            + b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n"
            + b"c LOGOUT\r\n"
        )  # fmt: skip
        client.close_notify()
        out = client.read_until_eof()
    finally:
        sock.close()
    assert b"\r\nb OK " in out, out
    assert b"* BYE" in out and out.endswith(b"c OK Logout completed\r\n"), out
    assert _count(server, "appended-tls") == 1


def test_pop3s_dele_and_quit_then_close_notify(mail_server):
    server = mail_server()
    _deliver(server, "to-delete-tls")
    sock = socket.create_connection(server.pop3s_address, timeout=DEADLINE)
    try:
        client = _TLSClient(sock)
        client.send(b"USER alice@example.org\r\nPASS alice-pw\r\nDELE 1\r\nQUIT\r\n")
        client.close_notify()
        sock.shutdown(socket.SHUT_WR)
        out = client.read_until_eof()
    finally:
        sock.close()
    assert [line[:3] for line in out.split(b"\r\n") if line] == [b"+OK"] * 5, out
    assert _count(server, "to-delete-tls") == 0
