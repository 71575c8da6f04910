"""STARTTLS command injection (CVE-2011-0411): commands sent in plaintext after STARTTLS, in the
same packet, must not be executed after the TLS handshake (RFC 3207 §4.2 / §6)."""

from __future__ import annotations

from mailstead.protocols.smtp import (
    NEED_DATA,
    Hello,
    MailFrom,
    ServerCore,
    StartTLS,
    replies,
)

from .transcript import SETTINGS, run


def test_pipelined_commands_after_starttls_are_discarded():
    out, events, _core = run(
        [
            b"EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n"
            b"RCPT TO:<victim@mx.example.org>\r\n",
            b"EHLO c.example\r\nMAIL FROM:<real@c.example>\r\n",
        ]
    )
    assert [e for e in events if isinstance(e, MailFrom)] == [MailFrom("real@c.example")]
    assert events[:2] == [Hello("EHLO", "c.example"), StartTLS()]
    assert out.count(b"220 2.0.0 Ready to start TLS\r\n") == 1
    assert out.endswith(b"250 2.1.0 Ok\r\n")
    assert b"injected" not in out


def test_bytes_received_before_tls_started_are_discarded():
    core = ServerCore(SETTINGS)
    core.start()
    core.receive_data(b"EHLO c.example\r\nSTARTTLS\r\n")
    assert core.next_event() == Hello("EHLO", "c.example")
    assert core.next_event() == StartTLS()
    assert core.next_event() is NEED_DATA
    core.receive_data(b"MAIL FROM:<injected@evil.example>\r\n")  # arrives during the handshake
    assert core.next_event() is NEED_DATA
    core.tls_started()
    core.receive_data(b"MAIL FROM:<a@b.example>\r\n")
    assert core.next_event() is NEED_DATA  # no EHLO after TLS yet
    assert core.data_to_send().endswith(b"503 5.5.1 Send HELO/EHLO first\r\n")


def test_starttls_rules():
    out, _, _ = run(
        [
            b"STARTTLS\r\nEHLO c.example\r\nSTARTTLS now\r\nMAIL FROM:<a@b.example>\r\n"
            b"STARTTLS\r\nRSET\r\nSTARTTLS\r\n",
            b"EHLO again.example\r\nSTARTTLS\r\n",
        ]
    )
    tail = out.split(b"250 HELP\r\n")
    assert b"503 5.5.1 Send EHLO first\r\n250-mx.example.org\r\n" in tail[0]
    assert tail[1] == (
        b"501 5.5.4 Syntax error in parameters or arguments\r\n"
        b"250 2.1.0 Ok\r\n"
        b"503 5.5.1 Mail transaction in progress\r\n"
        b"250 2.0.0 Ok\r\n"
        b"220 2.0.0 Ready to start TLS\r\n250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 52428800"
        b"\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n"
    )
    assert tail[2] == b"503 5.5.1 TLS already active\r\n"


def test_starttls_not_offered():
    from .transcript import settings

    out, _, _ = run([b"EHLO c.example\r\nSTARTTLS\r\n"], config=settings(starttls=False))
    assert b"STARTTLS\r\n" not in out.split(b"250 HELP")[0]
    assert out.endswith(b"250 HELP\r\n" + b"454 4.7.0 TLS not available\r\n")


def test_mail_requires_tls():
    from .transcript import settings

    out, _, _ = run(
        [b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"],
        config=settings(require_tls_for_mail=True),
    )
    assert out.endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
    assert replies.MUST_STARTTLS.code == 530
