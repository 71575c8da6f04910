"""IMAP AUTHENTICATE on the shared SASL layer: PLAIN and LOGIN through imaplib, SCRAM-SHA-256
through GNU SASL's client (gsasl), SCRAM-SHA-256-PLUS bound to the TLS certificate, app
passwords, and the ban after repeated failures (shared with SMTP and POP3)."""

from __future__ import annotations

import base64
import imaplib
import shutil
import socket
import ssl
import subprocess

import pytest

from mailstead import sasl

ALICE, PASSWORD = "alice@example.org", "alice-pw"


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def server(mail_server):
    return mail_server({"auth": {"max_failures": 3}})


def test_capability_lists_the_mechanisms(server):
    client = imaplib.IMAP4_SSL(*server.imaps_address, ssl_context=_tls(), timeout=10)
    caps = set(client.capabilities)
    assert {"AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256", "AUTH=SCRAM-SHA-256-PLUS"} <= caps
    client.logout()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_imaplib_authenticates(server, mechanism):
    client = imaplib.IMAP4_SSL(*server.imaps_address, ssl_context=_tls(), timeout=10)
    if mechanism == "PLAIN":
        typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    else:
        answers = iter([ALICE.encode(), PASSWORD.encode()])
        typ, _ = client.authenticate("LOGIN", lambda _: next(answers))
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


@pytest.mark.skipif(shutil.which("gsasl") is None, reason="gsasl (Debian package gsasl) missing")
def test_gsasl_logs_in_with_scram_sha_256(server):
    host, port = server.imap_address  # plaintext allowed on loopback by the test config
    done = subprocess.run(
        ["gsasl", "--imap", "--connect", f"{host}:{port}", "--no-starttls",
         "--mechanism", "SCRAM-SHA-256", "--authentication-id", ALICE, "--password", PASSWORD,
         "--quiet"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    wrong = subprocess.run(
        ["gsasl", "--imap", "--connect", f"{host}:{port}", "--no-starttls",
         "--mechanism", "SCRAM-SHA-256", "--authentication-id", ALICE, "--password", "nope",
         "--quiet"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert wrong.returncode != 0


def _line(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, "connection closed"
        data += chunk
    return data


def test_scram_sha_256_plus_binds_to_the_certificate(server):
    raw = socket.create_connection(server.imaps_address, timeout=10)
    sock = _tls().wrap_socket(raw)
    _line(sock)  # greeting
    binding = sasl.tls_server_end_point(sock.getpeercert(binary_form=True) or b"")
    client = sasl.SaslClient(
        "SCRAM-SHA-256-PLUS", authcid=ALICE, password=PASSWORD,
        channel_binding=(sasl.TLS_SERVER_END_POINT, binding),
    )  # fmt: skip
    first = client.initial_response()
    assert first is not None
    sock.sendall(b"a1 AUTHENTICATE SCRAM-SHA-256-PLUS " + base64.b64encode(first) + b"\r\n")
    while True:
        line = _line(sock)
        if line.startswith(b"+ "):
            challenge = base64.b64decode(line[2:].strip())
            if client.server_verified or challenge.startswith(b"v="):
                client.verify_final(challenge)
                sock.sendall(b"\r\n")
            else:
                sock.sendall(base64.b64encode(client.respond(challenge)) + b"\r\n")
            continue
        if line.startswith(b"a1 "):
            break
    assert line.startswith(b"a1 OK"), line
    assert client.server_verified
    sock.close()


def test_repeated_failures_ban_the_client_even_with_the_right_password(server):
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    for _ in range(3):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(ALICE, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        client.login(ALICE, PASSWORD)
    other = imaplib.IMAP4(*server.imap_address, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        other.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    events = [line.get("msg") for line in server.log_lines()]
    assert "login.banned" in events
    client.shutdown()
    other.shutdown()


def test_wrong_user_and_wrong_password_get_the_same_answer(server):
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    answers = []
    for user, password in [(ALICE, "wrong"), ("nobody@example.org", "wrong")]:
        try:
            client.authenticate("PLAIN", lambda _, u=user, p=password: f"\0{u}\0{p}".encode())
        except imaplib.IMAP4.error as exc:
            answers.append(str(exc))
    assert len(answers) == 2 and answers[0] == answers[1]
    client.shutdown()
