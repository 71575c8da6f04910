"""Attack: many idle TCP connections (no ClientHello) from one address to the implicit-TLS ports
(993, 995, 465). They used to be counted only once their handshake ended, i.e. never: 5,000 of
them were held open. Now they count from accept, the excess is closed at once, and the ones held
are closed when the handshake time runs out; other clients are served meanwhile."""

from __future__ import annotations

import imaplib
import os
import poplib
import select
import smtplib
import socket
import ssl

from mailstead.testing.server import RunningServer

HELD = 3  # max_connections_per_ip of each service in this test
EXCESS = 40  # connections beyond it, per port
HANDSHAKE = 8  # seconds a connection may take to start TLS
FD_SLACK = 6  # descriptors the server may open meanwhile for other reasons (log, database)
OTHER = "127.0.0.2"  # another client: the loopback /8 gives us several addresses


def open_descriptors(server: RunningServer) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def idle_connection(address: tuple[str, int]) -> socket.socket:
    """A TCP connection that never says anything (no ClientHello)."""
    return socket.create_connection(address, timeout=30, source_address=("127.0.0.1", 0))


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(sock: socket.socket) -> bool:
    """Nothing to read, not even an EOF: the server holds the connection."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def tls_context(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))


class IMAPFrom(imaplib.IMAP4_SSL):
    """imaplib over TLS from a chosen source address."""

    def __init__(self, source: str, *args: object, **kwargs: object) -> None:
        self.source = source
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class POP3From(poplib.POP3_SSL):
    """poplib over TLS from a chosen source address."""

    def __init__(self, source: str, *args: object, **kwargs: object) -> None:
        self.source = source
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )
        return self.context.wrap_socket(sock, server_hostname=self.host)


def served(server: RunningServer, source: str) -> None:
    """A real client of each implicit-TLS port logs in (and submits) from ``source``."""
    context = tls_context(server)
    imap = IMAPFrom(source, *server.imaps_address, ssl_context=context, timeout=30)
    assert imap.login("alice@example.org", "alice-pw")[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    pop = POP3From(source, *server.pop3s_address, context=context, timeout=30)
    pop.user("alice@example.org")
    assert pop.pass_("alice-pw").startswith(b"+OK")
    pop.quit()
    with smtplib.SMTP_SSL(
        *server.submissions_address, context=context, timeout=30, source_address=(source, 0)
    ) as smtp:
        smtp.login("alice@example.org", "alice-pw")
        refused = smtp.sendmail(
            "alice@example.org",
            ["bob@example.org"],
            b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nserved\r\n",
        )
        assert refused == {}


def test_idle_connections_to_implicit_tls_ports_are_bounded(mail_server):
    limit = {"max_connections_per_ip": HELD}
    server = mail_server(
        {
            "imap": limit,
            "pop3": limit,
            "submission": limit,
            "tls": {"handshake_timeout": f"{HANDSHAKE}s"},
        }
    )
    ports = [server.imaps_address, server.pop3s_address, server.submissions_address]
    before = open_descriptors(server)

    held = [idle_connection(address) for address in ports for _ in range(HELD)]
    for address in ports:
        for _ in range(EXCESS):
            sock = idle_connection(address)
            try:
                assert closed_by_server(sock), f"connection {address} beyond the limit held"
            finally:
                sock.close()
    # the excess went while the connections opened before it are still held: it was refused
    # at accept, not timed out
    assert all(still_open(sock) for sock in held)
    during = open_descriptors(server)
    assert during <= before + len(held) + FD_SLACK, (before, during)

    served(server, OTHER)  # another client is served meanwhile, on every port

    for sock in held:  # the handshake never came: the server lets them go
        try:
            assert closed_by_server(sock)
        finally:
            sock.close()
    # the server's descriptor went with its FIN: nothing is left over
    assert open_descriptors(server) <= before + FD_SLACK
    served(server, "127.0.0.1")  # the flooding address's slots are free again
    assert len(server.messages("bob@example.org")) == 2
