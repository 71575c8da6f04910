"""Submission (RFC 6409, 587 with STARTTLS; RFC 8314, 465 with TLS from the first byte) end to
end against a real `mailstead serve`, with a line-level client and exact replies."""

from __future__ import annotations

import base64
import socket
import ssl
from pathlib import Path

import pytest

from mailstead import sasl
from mailstead.config._schema import SenderList
from mailstead.config._values import Invalid
from mailstead.testing.replies import ReplyReader
from mailstead.testing.server import Account, RunningServer

ACCOUNTS = [
    Account("alice@example.org", "alice-pw"),
    Account("bob@example.org", "bob-pw"),
    Account("carol@example.org", "carol-pw"),
]
ALIASES = [
    ("team@example.org", "alice@example.org"),
    ("team@example.org", "bob@example.org"),
    ("sales@example.org", "bob@example.org"),
    ("@example.org", "alice@example.org"),  # the catch-all owns nothing
]
NO_PLAINTEXT = {"auth": {"allow_plaintext_on_loopback": False}}
AUTH_FAILED = b"535 5.7.8 Authentication credentials invalid"


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def message(sender: str = "alice@example.org", extra: str = "") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: Bob <bob@example.org>\r\nSubject: hi\r\n{extra}\r\n"
        "Hello Bob.\r\n"
    ).encode()


class Client:
    """A line-level submission client: what smtplib cannot say (bad input, exact replies)."""

    def __init__(self, server: RunningServer, *, implicit: bool = False) -> None:
        self.context = ssl.create_default_context(cafile=str(cert(server)))
        address = server.submissions_address if implicit else server.submission_address
        sock = socket.create_connection(address, timeout=10)
        if implicit:
            sock = self.context.wrap_socket(sock, server_hostname="localhost")
        self.sock: socket.socket = sock
        self.replies = ReplyReader(sock)
        self.greeting = self.reply()

    def reply(self) -> bytes:
        return self.replies.reply()

    def command(self, line: bytes | str) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        assert self.command("STARTTLS") == b"220 2.0.0 Ready to start TLS"
        self.sock = self.context.wrap_socket(self.sock, server_hostname="localhost")
        self.replies = ReplyReader(self.sock)

    def ehlo(self) -> list[bytes]:
        reply = self.command("EHLO client.example")
        return [line[4:] for line in reply.split(b"\r\n")]

    def login(self, user: str = "alice@example.org", password: str = "alice-pw") -> None:
        assert self.command(b"AUTH PLAIN " + plain(user, password)) == (
            b"235 2.7.0 Authentication successful"
        )

    def send(self, sender: str, recipients: list[str], content: bytes) -> bytes:
        assert self.command(f"MAIL FROM:<{sender}>").startswith(b"250 ")
        for rcpt in recipients:
            assert self.command(f"RCPT TO:<{rcpt}>").startswith(b"250 ")
        assert self.command("DATA").startswith(b"354 ")
        return self.command(content + b".")

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()


def cert(server: RunningServer) -> Path:
    return server.data_dir / "tls" / "cert.pem"


@pytest.fixture
def clients():
    opened: list[Client] = []

    def connect(server: RunningServer, *, implicit: bool = False) -> Client:
        client = Client(server, implicit=implicit)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def test_starttls_then_auth_then_mail_with_exact_replies(mail_server, clients):
    server = mail_server(NO_PLAINTEXT, accounts=ACCOUNTS, aliases=ALIASES)
    c = clients(server)
    assert c.greeting == b"220 mx.example.org ESMTP Mailstead"
    before = c.ehlo()
    assert b"STARTTLS" in before
    assert not any(line.startswith(b"AUTH") for line in before)  # RFC 4954 §4: not before TLS
    assert c.command(b"AUTH PLAIN " + plain("alice@example.org", "alice-pw")) == (
        b"538 5.7.11 Encryption required for requested authentication mechanism"
    )
    assert c.command("MAIL FROM:<alice@example.org>") == b"530 5.7.0 Authentication required"
    c.starttls()
    after = c.ehlo()
    assert b"AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN" in after
    assert b"STARTTLS" not in after
    assert c.command("MAIL FROM:<alice@example.org>") == b"530 5.7.0 Authentication required"
    # wrong password and unknown user: one reply
    assert c.command(b"AUTH PLAIN " + plain("alice@example.org", "nope")) == AUTH_FAILED
    assert c.command(b"AUTH PLAIN " + plain("nobody@example.org", "alice-pw")) == AUTH_FAILED
    assert c.command("AUTH PLAIN %%%") == b"501 5.5.2 Invalid base64 data"
    assert c.command("AUTH LOGIN") == b"334 VXNlcm5hbWU6"
    assert c.command("*") == b"501 5.0.0 Authentication cancelled"
    assert c.command("AUTH CRAM-MD5") == b"504 5.5.4 Unrecognized authentication type"
    assert c.command("AUTH LOGIN") == b"334 VXNlcm5hbWU6"
    assert c.command(b64("alice@example.org")) == b"334 UGFzc3dvcmQ6"
    assert c.command(b64("alice-pw")) == b"235 2.7.0 Authentication successful"
    assert c.command("AUTH LOGIN") == b"503 5.5.1 Already authenticated"
    # sender rules
    assert c.command("MAIL FROM:<bob@example.org>") == (
        b"550 5.7.1 <bob@example.org>: sender address not owned by user alice@example.org"
    )
    assert c.command("MAIL FROM:<team@example.org>") == b"250 2.1.0 Ok"
    # a remote recipient goes to the outbound queue (issue 5)
    assert c.command("RCPT TO:<friend@elsewhere.test>") == b"250 2.1.5 Ok"
    assert c.command("RCPT TO:<nobody@xn--bcher-kva.example>") == b"550 5.1.1 User unknown"
    assert c.command("RCPT TO:<bob@example.org>") == b"250 2.1.5 Ok"
    assert c.command("DATA").startswith(b"354 ")
    assert c.command(message("bob@example.org") + b".") == (
        b"550 5.7.1 <bob@example.org>: From: header address not owned by user alice@example.org"
    )
    reply = c.send("team@example.org", ["bob@example.org"], message("team@example.org"))
    assert reply.startswith(b"250 2.0.0 Ok: queued as ")
    assert c.command("QUIT") == b"221 2.0.0 Bye"
    [stored] = server.messages("bob@example.org")
    head, _, body = stored.partition(b"\r\n\r\n")
    assert head.startswith(b"Return-Path: <team@example.org>\r\nReceived: from client.example")
    assert b"with ESMTPSA id " in head
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head and b"@mx.example.org>" in head
    assert body == b"Hello Bob.\r\n"
    server.stop()
    log = (server.data_dir / "mailstead.log").read_text()
    assert "alice-pw" not in log and "nope" not in log
    [login] = [e for e in server.log_lines() if e["msg"] == "login.succeeded"]
    assert login["user"] == "alice@example.org" and login["mechanism"] == "LOGIN"
    assert login["protocol"] == "smtp"
    assert login["credential"] == "password"
    failed = [e for e in server.log_lines() if e["msg"] == "login.failed"]
    assert [(e["user"], e["reason"]) for e in failed] == [
        ("alice@example.org", "invalid credentials"),
        ("nobody@example.org", "invalid credentials"),
        ("", "invalid base64"),
        ("", "cancelled by the client"),
    ]
    [tx] = [e for e in server.log_lines() if e["msg"] == "smtp.transaction"
            and str(e["result"]).startswith("250")]  # fmt: skip
    assert tx["user"] == "alice@example.org"


def test_submissions_is_tls_from_the_first_byte(mail_server, clients):
    server = mail_server(NO_PLAINTEXT, accounts=ACCOUNTS)
    c = clients(server, implicit=True)
    assert c.greeting == b"220 mx.example.org ESMTP Mailstead"
    lines = c.ehlo()
    assert b"AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN" in lines
    assert b"STARTTLS" not in lines
    assert c.command("STARTTLS") == b"503 5.5.1 TLS already active"
    assert c.command("MAIL FROM:<carol@example.org>") == b"530 5.7.0 Authentication required"
    c.login("carol@example.org", "carol-pw")
    reply = c.send("carol@example.org", ["alice@example.org", "bob@example.org"],
                   message("carol@example.org", "Message-ID: <m1@client.example>\r\n"))  # fmt: skip
    assert reply.startswith(b"250 ")
    for user in ("alice@example.org", "bob@example.org"):
        [stored] = server.messages(user)
        assert stored.count(b"Message-ID:") == 1 and b"<m1@client.example>" in stored
        assert b"with ESMTPSA id" in stored and b"using TLSv1." in stored


def test_plaintext_auth_on_loopback_only_when_allowed(mail_server, clients):
    """auth.allow_plaintext_on_loopback (the test default): AUTH before TLS, never -PLUS."""
    server = mail_server(accounts=ACCOUNTS)
    c = clients(server)
    assert b"AUTH SCRAM-SHA-256 PLAIN LOGIN" in c.ehlo()
    c.login()
    assert c.send("alice@example.org", ["bob@example.org"], message()).startswith(b"250 ")
    [stored] = server.messages("bob@example.org")
    assert b"with ESMTPA id" in stored  # authenticated, no TLS


def test_port_25_offers_no_auth(mail_server):
    server = mail_server(accounts=ACCOUNTS)
    with socket.create_connection(server.smtp_address, timeout=10) as sock:
        replies = ReplyReader(sock)
        replies.reply()
        sock.sendall(b"EHLO client.example\r\n")
        assert b"AUTH" not in replies.reply()
        sock.sendall(b"AUTH PLAIN " + plain("alice@example.org", "alice-pw") + b"\r\n")
        assert replies.reply() == b"502 5.5.1 Command not implemented"


def test_sender_rules(mail_server, clients):
    """Own address (+extension), aliases that deliver to the user, the null sender; not other
    users, not an alias of someone else, not what only the catch-all reaches."""
    server = mail_server(accounts=ACCOUNTS, aliases=ALIASES)
    c = clients(server)
    c.ehlo()
    c.login("alice@example.org", "alice-pw")
    for allowed in ("alice@example.org", "ALICE+lists@Example.ORG", "team@example.org",
                    "team+x@example.org", ""):  # fmt: skip
        assert c.command(f"MAIL FROM:<{allowed}>") == b"250 2.1.0 Ok", allowed
        assert c.command("RSET") == b"250 2.0.0 Ok"
    for refused in ("bob@example.org", "sales@example.org", "random@example.org",
                    "alice@elsewhere.test", "alice@[127.0.0.1]"):  # fmt: skip
        assert c.command(f"MAIL FROM:<{refused}>") == (
            f"550 5.7.1 <{refused}>: sender address not owned by user alice@example.org".encode()
        )
    # the From: header: every address must be the user's; a missing From: gets the sender
    two = "From: alice@example.org, bob@example.org\r\nSubject: x\r\n\r\nx\r\n"
    assert c.command("MAIL FROM:<alice@example.org>").startswith(b"250")
    assert c.command("RCPT TO:<carol@example.org>").startswith(b"250")
    assert c.command("DATA").startswith(b"354")
    assert c.command(two.encode() + b".") == (
        b"550 5.7.1 <bob@example.org>: From: header address not owned by user alice@example.org"
    )
    reply = c.send("team@example.org", ["carol@example.org"], b"Subject: no from\r\n\r\nx\r\n")
    assert reply.startswith(b"250 ")
    reply = c.send("", ["carol@example.org"], message("alice+news@example.org"))
    assert reply.startswith(b"250 ")
    first, second = server.messages("carol@example.org")
    assert b"\r\nFrom: <team@example.org>\r\n" in first
    assert second.startswith(b"Return-Path: <>\r\n")


def test_allow_any_sender_for(mail_server, clients):
    server = mail_server({"submission": {"allow_any_sender_for": ["carol@example.org"]}},
                         accounts=ACCOUNTS)  # fmt: skip
    c = clients(server)
    c.ehlo()
    c.login("carol@example.org", "carol-pw")
    assert c.send("newsletter@elsewhere.test", ["bob@example.org"],
                  message("boss@elsewhere.test")).startswith(b"250 ")  # fmt: skip
    d = clients(server)
    d.ehlo()
    d.login("bob@example.org", "bob-pw")
    assert d.command("MAIL FROM:<newsletter@elsewhere.test>").startswith(b"550 5.7.1 ")


def test_sender_list_config_values():
    spec = SenderList()
    assert spec.parse(["*", "@example.org", " a@b.example "], "k") == (
        "*", "@example.org", "a@b.example",
    )  # fmt: skip
    with pytest.raises(Invalid) as info:
        spec.parse(["nobody", 3], "submission.allow_any_sender_for")
    assert info.value.problems == [
        'submission.allow_any_sender_for[0]: expected an address, "@domain" or "*", got \'nobody\'',
        'submission.allow_any_sender_for[1]: expected an address, "@domain" or "*", got 3',
    ]


def test_over_long_auth_line(mail_server, clients):
    server = mail_server(accounts=ACCOUNTS)
    c = clients(server)
    c.ehlo()
    assert c.command("AUTH PLAIN") == b"334 "
    assert c.command(b"A" * 20000) == b"500 5.5.6 Authentication Exchange line is too long"
    c.login()


@pytest.mark.parametrize("implicit", [False, True])
def test_scram_sha_256_plus_over_tls(mail_server, clients, implicit):
    """SCRAM-SHA-256-PLUS bound to our certificate (tls-server-end-point, RFC 5929): the
    server's final message comes as a last 334, answered with an empty line (RFC 4954 §4)."""
    server = mail_server(NO_PLAINTEXT, accounts=ACCOUNTS)
    c = clients(server, implicit=implicit)
    c.ehlo()
    if not implicit:
        c.starttls()
        c.ehlo()
    binding = sasl.tls_server_end_point(cert(server).read_bytes())
    client = sasl.SaslClient("SCRAM-SHA-256-PLUS", authcid="alice@example.org",
                             password="alice-pw",
                             channel_binding=(sasl.TLS_SERVER_END_POINT, binding))  # fmt: skip
    initial = client.initial_response()
    assert initial is not None
    reply = c.command(b"AUTH SCRAM-SHA-256-PLUS " + base64.b64encode(initial))
    assert reply.startswith(b"334 ")
    reply = c.command(base64.b64encode(client.respond(base64.b64decode(reply[4:]))))
    assert reply.startswith(b"334 ")
    assert client.respond(base64.b64decode(reply[4:])) == b""  # checks the server's proof
    assert client.server_verified
    assert c.command(b"") == b"235 2.7.0 Authentication successful"
    assert c.command("MAIL FROM:<alice@example.org>") == b"250 2.1.0 Ok"


def test_brute_force_ban(mail_server, clients):
    """auth.max_failures failed AUTHs ban the client: the next AUTH gets 421 and the
    connection closes, even with the right password, also on a new connection; an exchange
    already under way when the ban falls is not accepted either."""
    server = mail_server({"auth": {"max_failures": 3}}, accounts=ACCOUNTS)
    waiting = clients(server)
    waiting.ehlo()
    assert waiting.command("AUTH LOGIN") == b"334 VXNlcm5hbWU6"
    assert waiting.command(b64("alice@example.org")) == b"334 UGFzc3dvcmQ6"
    c = clients(server)
    c.ehlo()
    for _ in range(3):
        assert c.command(b"AUTH PLAIN " + plain("alice@example.org", "guess")) == AUTH_FAILED
    assert c.command(b"AUTH PLAIN " + plain("alice@example.org", "alice-pw")) == (
        b"421 4.7.0 Too many authentication failures, try again later"
    )
    assert c.closed()
    assert waiting.command(b64("alice-pw")) == (
        b"421 4.7.0 Too many authentication failures, try again later"
    )
    d = clients(server)
    d.ehlo()
    assert d.command(b"AUTH PLAIN " + plain("alice@example.org", "alice-pw")) == (
        b"421 4.7.0 Too many authentication failures, try again later"
    )
