"""The asyncio SMTP client against real peers: a running Mailstead (port 25 and submission),
Postfix's smtp-sink with its extensions turned off one by one, a server that never speaks and
a port that refuses connections."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.message.addresses import normalize_domain, normalize_localpart
from mailstead.outbound.sender import (
    FailureKind,
    MessageResult,
    OutboundMessage,
    OutboundRecipient,
    RecipientStatus,
    SmtpAuth,
    Timeouts,
    TlsPolicy,
    send,
)
from mailstead.protocols.smtp import Reply

SINK = "/usr/sbin/smtp-sink"
HELO = "client.example"
FAST = Timeouts().scaled(1 / 1000)  # 0.3 s for a reply, 0.12 s for the 354, ...
QUICK = Timeouts().scaled(1 / 60)  # 5 s and more: no test waits that long unless it fails
NONE = TlsPolicy.none()


def message(
    *rcpts: str | OutboundRecipient,
    sender: str = "sender@client.example",
    subject: str = "test",
    body: str = "Hello.",
    **kw,
) -> OutboundMessage:
    content = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
    recipients = tuple(
        r if isinstance(r, OutboundRecipient) else OutboundRecipient(r) for r in rcpts
    )
    return OutboundMessage(sender, recipients, content, **kw)


def deliver(address: tuple[str, int], messages, **kw) -> list[MessageResult]:
    kw.setdefault("helo_name", HELO)
    kw.setdefault("tls_policy", NONE)
    kw.setdefault("timeouts", QUICK)
    return asyncio.run(send(address[0], address[1], messages, **kw))


def statuses(result: MessageResult) -> list[tuple[str, RecipientStatus, int]]:
    return [(r.address, r.status, r.reply.code) for r in result.recipients]


def subjects(server, address: str) -> list[str]:
    out = []
    for raw in server.messages(address):
        for line in raw.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


def envelopes(server, address: str) -> list[dict]:
    local, domain = address.rsplit("@", 1)
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    try:
        rows = db.execute(
            "SELECT m.envelope FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id"
            " JOIN accounts a ON a.id = x.account_id JOIN domains d ON d.id = a.domain_id"
            " WHERE a.local_key = ? AND d.name = ? ORDER BY m.uid",
            (normalize_localpart(local), normalize_domain(domain)),
        ).fetchall()
    finally:
        db.close()
    return [json.loads(row[0]) for row in rows]


# --- a real Mailstead -----------------------------------------------------------------------------
def test_one_message_to_mailstead(mail_server):
    server = mail_server()
    [result] = deliver(server.smtp_address, [message("alice@example.org", subject="one")])
    assert statuses(result) == [("alice@example.org", RecipientStatus.ACCEPTED, 250)]
    assert result.reply is not None
    assert result.reply.text.startswith("Ok: queued as ")
    assert result.failure is None
    assert not result.tls
    [stored] = server.messages("alice@example.org")
    assert b"Return-Path: <sender@client.example>\r\n" in stored
    assert stored.endswith(b"Subject: one\r\n\r\nHello.\r\n")


def test_several_messages_over_one_connection_with_a_refused_recipient(mail_server):
    server = mail_server()
    results = deliver(
        server.smtp_address,
        [
            message("alice@example.org", "bob@example.org", subject="first"),
            message("alice@example.org", "nobody@example.org", subject="second"),
            message("carol@example.org", subject="third"),
        ],
    )
    assert [statuses(r) for r in results] == [
        [
            ("alice@example.org", RecipientStatus.ACCEPTED, 250),
            ("bob@example.org", RecipientStatus.ACCEPTED, 250),
        ],
        [
            ("alice@example.org", RecipientStatus.ACCEPTED, 250),
            ("nobody@example.org", RecipientStatus.PERMANENT, 550),
        ],
        [("carol@example.org", RecipientStatus.ACCEPTED, 250)],
    ]
    assert results[1].recipients[1].reply == Reply(550, "5.1.1", "User unknown")
    assert subjects(server, "alice@example.org") == ["first", "second"]
    assert subjects(server, "bob@example.org") == ["first"]
    assert subjects(server, "carol@example.org") == ["third"]
    sessions = {e["session"] for e in server.log_lines() if e.get("msg") == "smtp.transaction"}
    assert len(sessions) == 1  # one connection


def test_each_result_is_reported_before_the_next_message_goes(mail_server):
    server = mail_server({"smtp": {"max_message_size": 4096}})
    seen: list[tuple[int, RecipientStatus, list[str]]] = []

    async def on_result(index: int, result: MessageResult) -> None:
        stored = subjects(server, "alice@example.org")
        seen.append((index, result.recipients[0].status, stored))

    results = deliver(
        server.smtp_address,
        [
            message("alice@example.org", subject="first"),
            message("alice@example.org", subject="too big", body="x" * 5000),
            message("alice@example.org", subject="third"),
        ],
        on_result=on_result,
    )
    assert seen == [
        (0, RecipientStatus.ACCEPTED, ["first"]),
        (1, RecipientStatus.PERMANENT, ["first"]),
        (2, RecipientStatus.ACCEPTED, ["first", "third"]),
    ]
    assert [r.recipients[0].status for r in results] == [s for _, s, _ in seen]


def test_bdat_and_data_pipelined_and_lock_step(mail_server):
    server = mail_server()
    for chunking in (True, False):
        for pipelining in (True, False):
            trace: list[str] = []
            subject = f"chunking={chunking} pipelining={pipelining}"
            body = ".leading dot\r\n" + ("x" * 98 + "\r\n") * 2000 + ".\r\n..\r\nend"
            [result] = deliver(
                server.smtp_address,
                [message("alice@example.org", subject=subject, body=body)],
                use_chunking=chunking,
                use_pipelining=pipelining,
                trace=trace.append,
            )
            assert statuses(result) == [("alice@example.org", RecipientStatus.ACCEPTED, 250)]
            text = "\n".join(trace)
            assert ("C: BDAT " in text) is chunking
            assert ("C: DATA" in text) is not chunking
            grouped = any("C: MAIL FROM" in e and "C: RCPT TO" in e for e in trace)
            assert grouped is pipelining
            stored = server.messages("alice@example.org")[-1]
            assert stored.endswith(f"Subject: {subject}\r\n\r\n{body}\r\n".encode())


def test_8bitmime_and_smtputf8(mail_server):
    server = mail_server()
    eightbit = message("alice@example.org", subject="8bit", body="Grüße aus Köln")
    utf8 = message(
        "jürgen@bücher.example", sender="jürgen@bücher.example", subject="utf8", smtputf8=True
    )
    results = deliver(server.smtp_address, [eightbit, utf8])
    assert [r.recipients[0].status for r in results] == [RecipientStatus.ACCEPTED] * 2
    [stored] = server.messages("alice@example.org")
    assert stored.endswith("Grüße aus Köln\r\n".encode())
    assert envelopes(server, "alice@example.org")[0]["body"] == "8BITMIME"
    [envelope] = envelopes(server, "jürgen@bücher.example")
    assert envelope["smtputf8"] is True
    assert envelope["mail_from"] == "jürgen@bücher.example"
    assert b"with UTF8SMTP id" in server.messages("jürgen@bücher.example")[0]


def test_dsn_parameters_reach_the_stored_envelope(mail_server):
    server = mail_server()
    dsn = message(
        OutboundRecipient("alice@example.org", ("SUCCESS", "DELAY"), ("rfc822", "a+x@old.example")),
        OutboundRecipient("bob@example.org", ("NEVER",)),
        ret="HDRS",
        envid="QID 42+x",
    )
    [result] = deliver(server.smtp_address, [dsn])
    assert result.dsn
    [envelope] = envelopes(server, "alice@example.org")
    assert envelope["ret"] == "HDRS"
    assert envelope["envid"] == "QID 42+x"
    assert envelope["rcpt"] == [
        {
            "to": "alice@example.org",
            "notify": ["SUCCESS", "DELAY"],
            "orcpt": ["rfc822", "a+x@old.example"],
        },
        {"to": "bob@example.org", "notify": ["NEVER"]},
    ]


def test_size_over_the_remote_limit_is_refused_before_sending(mail_server):
    server = mail_server({"smtp": {"max_message_size": 4096}})
    big = message("alice@example.org", subject="big", body="x" * 5000)
    small = message("alice@example.org", subject="small")
    trace: list[str] = []
    big_result, small_result = deliver(server.smtp_address, [big, small], trace=trace.append)
    [refused] = big_result.recipients
    assert refused.status is RecipientStatus.PERMANENT
    assert (refused.reply.code, refused.reply.enhanced) == (552, "5.3.4")
    assert "exceeds the remote limit" in refused.reply.text
    assert not refused.remote
    assert small_result.recipients[0].status is RecipientStatus.ACCEPTED
    assert subjects(server, "alice@example.org") == ["small"]
    assert sum("C: MAIL FROM" in e for e in trace) == 1  # the big one never went out


def test_starttls_opportunistic(mail_server):
    server = mail_server()
    trace: list[str] = []
    [result] = deliver(
        server.smtp_address,
        [message("alice@example.org")],
        tls_policy=TlsPolicy.opportunistic(),
        trace=trace.append,
    )
    assert result.tls
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    assert "C: STARTTLS" in "\n".join(trace)
    assert b" with ESMTPS id " in server.messages("alice@example.org")[0]


def test_starttls_required_verifies_the_name(mail_server):
    server = mail_server()
    ca = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))
    [ok] = deliver(
        server.smtp_address,
        [message("alice@example.org", subject="verified")],
        tls_policy=TlsPolicy.required("mx.example.org"),
        ssl_context=ca,
    )
    assert ok.tls
    assert ok.recipients[0].status is RecipientStatus.ACCEPTED
    [wrong] = deliver(
        server.smtp_address,
        [message("alice@example.org", subject="wrong name")],
        tls_policy=TlsPolicy.required("mx.other.example"),
        ssl_context=ca,
    )
    assert wrong.failure is not None
    assert wrong.failure.kind is FailureKind.TLS_FAILED
    assert "certificate verification failed" in wrong.failure.detail
    assert "mismatch" in wrong.failure.detail.lower()
    [recipient] = wrong.recipients
    assert recipient.status is RecipientStatus.TEMPORARY
    assert recipient.reply.enhanced == "4.7.5"
    [untrusted] = deliver(
        server.smtp_address,
        [message("alice@example.org", subject="untrusted")],
        tls_policy=TlsPolicy.required("mx.example.org"),
    )  # the system's CAs do not know the test certificate
    assert untrusted.failure is not None
    assert untrusted.failure.kind is FailureKind.TLS_FAILED
    assert subjects(server, "alice@example.org") == ["verified"]


def test_required_context_must_verify():
    with pytest.raises(ValueError, match="verifies host names"):
        asyncio.run(
            send(
                "127.0.0.1",
                9,
                [],
                helo_name=HELO,
                tls_policy=TlsPolicy.required("mx.example.org"),
                ssl_context=ssl._create_unverified_context(),
            )
        )


def test_auth_to_mailstead_submission(mail_server):
    server = mail_server()  # one server for every mechanism: starting one is the slow part
    mechanisms = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]
    for mechanism in mechanisms:
        trace: list[str] = []
        [result] = deliver(
            server.submission_address,
            [message("bob@example.org", sender="alice@example.org", subject=mechanism)],
            tls_policy=TlsPolicy.opportunistic(),
            auth=SmtpAuth("alice@example.org", "alice-pw", mechanisms=(mechanism,)),
            trace=trace.append,
        )
        assert result.failure is None, mechanism
        assert result.recipients[0].status is RecipientStatus.ACCEPTED
        text = "\n".join(trace)
        assert f"C: AUTH {mechanism}" in text
        assert "alice-pw" not in text
    assert subjects(server, "bob@example.org") == mechanisms
    assert all(b"with ESMTPSA id" in m for m in server.messages("bob@example.org"))


def test_auth_failures(mail_server):
    server = mail_server()
    [wrong] = deliver(
        server.submission_address,
        [message("bob@example.org", sender="alice@example.org")],
        tls_policy=TlsPolicy.opportunistic(),
        auth=SmtpAuth("alice@example.org", "wrong", mechanisms=("PLAIN",)),
    )
    assert wrong.failure is not None
    assert wrong.failure.kind is FailureKind.AUTH
    assert wrong.failure.reply == Reply(535, "5.7.8", "Authentication credentials invalid")
    assert wrong.recipients[0].status is RecipientStatus.TEMPORARY
    [plaintext] = deliver(
        server.submission_address,
        [message("bob@example.org", sender="alice@example.org")],
        auth=SmtpAuth("alice@example.org", "alice-pw"),
    )
    assert plaintext.failure is not None
    assert plaintext.failure.detail == "no TLS: credentials not sent"
    [no_common] = deliver(
        server.submission_address,
        [message("bob@example.org", sender="alice@example.org")],
        tls_policy=TlsPolicy.opportunistic(),
        auth=SmtpAuth("alice@example.org", "alice-pw", mechanisms=("CRAM-MD5",)),
    )
    assert no_common.failure is not None
    assert no_common.failure.detail.startswith("no common AUTH mechanism (offered: SCRAM-SHA-256")
    assert server.messages("bob@example.org") == []


# --- Postfix's smtp-sink --------------------------------------------------------------------------
class Sink:
    def __init__(self, process: subprocess.Popen[bytes], port: int, dumps: Path) -> None:
        self.process = process
        self.address = ("127.0.0.1", port)
        self.dumps = dumps

    def dumped(self, count: int, deadline: float = 10.0) -> list[str]:
        """The transactions smtp-sink wrote (-d), once ``count`` of them are complete."""
        end = time.monotonic() + deadline
        while True:
            files = sorted(self.dumps.iterdir(), key=lambda p: p.stat().st_mtime_ns)
            texts = [p.read_text("utf-8", "replace") for p in files]
            if len(texts) >= count and all("Received: " in t for t in texts):
                return texts
            if time.monotonic() > end:
                raise AssertionError(f"smtp-sink wrote {len(texts)} of {count} transactions")
            time.sleep(0.01)


def _listening_port(pid: int, deadline: float = 10.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        with open("/proc/net/tcp") as table:
            for line in table.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return int(fields[1].rsplit(":", 1)[1], 16)
        time.sleep(0.01)
    raise AssertionError("smtp-sink is not listening")


@pytest.fixture
def sink(tmp_path) -> Iterator:
    """``sink("-p", "-e")`` starts smtp-sink on a free loopback port with those options."""
    if not Path(SINK).exists():
        if os.environ.get("CI"):  # scripts/install-test-deps installs it
            pytest.fail("smtp-sink not installed (Debian package postfix)")
        pytest.skip("smtp-sink not installed (Debian package postfix)")
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> Sink:
        dumps = tmp_path / f"sink{len(started)}"
        dumps.mkdir()
        user = ["-u", "root"] if os.geteuid() == 0 else []  # required when run as root
        process = subprocess.Popen(
            [
                SINK,
                *user,
                "-h",
                "sink.example",
                "-d",
                f"{dumps}/msg.",
                *options,
                "127.0.0.1:0",
                "16",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return Sink(process, _listening_port(process.pid), dumps)

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.interop
def test_sink_delivery_with_dsn_arguments_and_no_smtputf8(sink):
    server = sink()
    dsn = message(
        OutboundRecipient(
            "u1@example.test", ("SUCCESS", "FAILURE"), ("rfc822", "u1+old@example.test")
        ),
        ret="FULL",
        envid="id+1",
    )
    utf8 = message("u2@example.test", sender="jürgen@bücher.example")
    dsn_result, utf8_result = deliver(server.address, [dsn, utf8])
    assert dsn_result.recipients[0].status is RecipientStatus.ACCEPTED
    assert dsn_result.dsn
    [refused] = utf8_result.recipients
    assert refused.status is RecipientStatus.PERMANENT
    assert refused.reply.enhanced == "5.6.7"
    assert "cannot take internationalised mail (RFC 6531)" in refused.reply.text
    [dump] = server.dumped(1)
    assert "X-Mail-Args: <sender@client.example> RET=FULL ENVID=id+2B1\n" in dump
    assert (
        "X-Rcpt-Args: <u1@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u1+2Bold@example.test\n"
        in dump
    )
    assert "X-Client-Proto: ESMTP\n" in dump


@pytest.mark.interop
def test_sink_helo_fallback(sink):
    server = sink("-e")  # no ESMTP: EHLO gets 500
    trace: list[str] = []
    [result] = deliver(server.address, [message("u1@example.test")], trace=trace.append)
    assert result.recipients[0].status is RecipientStatus.ACCEPTED
    text = "\n".join(trace)
    assert "S: 500 5.5.1 Error: unknown command\nC: HELO client.example" in text
    [dump] = server.dumped(1)
    assert "X-Client-Proto: SMTP\n" in dump
    assert "X-Helo-Args: client.example\n" in dump


@pytest.mark.interop
def test_sink_without_pipelining_goes_lock_step(sink):
    server = sink("-p")
    trace: list[str] = []
    results = deliver(
        server.address,
        [message("u1@example.test", "u2@example.test"), message("u3@example.test")],
        trace=trace.append,
    )
    assert all(r.status is RecipientStatus.ACCEPTED for m in results for r in m.recipients)
    commands = [e for e in trace if e.startswith("C: ") and "octets" not in e]
    assert all("\n" not in e for e in commands), commands  # one command per write
    assert len(server.dumped(2)) == 2


@pytest.mark.interop
def test_sink_without_8bitmime_refuses_8bit_content(sink):
    server = sink("-8")
    eightbit = message("u1@example.test", body="Grüße")
    plain = message("u2@example.test")
    refused, sent = deliver(server.address, [eightbit, plain])
    assert refused.recipients[0].status is RecipientStatus.PERMANENT
    assert refused.recipients[0].reply.enhanced == "5.6.3"
    assert sent.recipients[0].status is RecipientStatus.ACCEPTED
    assert "X-Rcpt-Args: <u2@example.test>" in server.dumped(1)[0]


@pytest.mark.interop
@pytest.mark.parametrize(
    ("option", "kind", "code"),
    [("-f", FailureKind.GREETING_PERMANENT, 500), ("-r", FailureKind.GREETING_TEMPORARY, 450)],
)
def test_sink_greeting_refused(sink, option, kind, code):
    server = sink(option, "CONNECT")
    results = deliver(server.address, [message("u1@example.test"), message("u2@example.test")])
    for result in results:
        assert result.failure is not None
        assert result.failure.kind is kind
        assert result.failure.reply is not None
        assert result.failure.reply.code == code
        assert result.recipients[0].status is RecipientStatus.TEMPORARY  # next MX, or later


@pytest.mark.interop
@pytest.mark.parametrize(
    ("option", "status", "code"),
    [("-f", RecipientStatus.PERMANENT, 500), ("-r", RecipientStatus.TEMPORARY, 450)],
)
def test_sink_recipients_refused(sink, option, status, code):
    server = sink(option, "RCPT")
    results = deliver(server.address, [message("u1@example.test", "u2@example.test")] * 2)
    for result in results:
        assert result.failure is None
        assert statuses(result) == [
            ("u1@example.test", status, code),
            ("u2@example.test", status, code),
        ]


@pytest.mark.interop
def test_sink_421_closes_the_session(sink):
    server = sink("-Q", "RCPT")
    first, second = deliver(
        server.address, [message("u1@example.test"), message("u2@example.test")]
    )
    assert first.failure is not None
    assert first.failure.kind is FailureKind.CLOSED_BY_SERVER
    assert statuses(first) == [("u1@example.test", RecipientStatus.TEMPORARY, 421)]
    assert second.failure == first.failure
    assert second.recipients[0].status is RecipientStatus.TEMPORARY


@pytest.mark.interop
def test_sink_disconnect_after_the_final_dot(sink):
    server = sink("-q", ".")
    [result] = deliver(server.address, [message("u1@example.test")])
    assert result.failure is not None
    assert result.failure.kind is FailureKind.CONNECTION_LOST
    [recipient] = result.recipients
    assert recipient.status is RecipientStatus.TEMPORARY
    assert "data-end reply" in recipient.reply.text


@pytest.mark.interop
def test_sink_slow_data_reply_times_out(sink):
    server = sink("-w", "30")  # waits 30 s before answering DATA
    started = time.monotonic()
    [result] = deliver(
        server.address, [message("u1@example.test")], timeouts=FAST, use_pipelining=False
    )
    assert time.monotonic() - started < 5
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    assert result.failure.detail == "no data-init reply within 0.12 s"
    assert result.recipients[0].status is RecipientStatus.TEMPORARY


# --- connections that never get going -------------------------------------------------------------
def test_server_that_never_speaks_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever answers
        started = time.monotonic()
        [result] = deliver(listener.getsockname(), [message("a@example.net")], timeouts=FAST)
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TIMEOUT
    assert result.failure.detail == "no greeting reply within 0.3 s"
    assert result.recipients[0].status is RecipientStatus.TEMPORARY
    assert result.recipients[0].reply.enhanced == "4.4.2"


def test_refused_connection():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        results = deliver(
            closed.getsockname(), [message("a@example.net"), message("b@example.net")]
        )
    assert len(results) == 2
    for result in results:
        assert result.failure is not None
        assert result.failure.kind is FailureKind.CONNECT
        assert "Connection refused" in result.failure.detail
        assert result.recipients[0].reply.enhanced == "4.4.1"
