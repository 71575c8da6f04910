"""Real mail clients submit mail to a real `mailstead serve`: Python's smtplib, Debian's msmtp
(GNU SASL: PLAIN, LOGIN, SCRAM-SHA-256) and swaks, over STARTTLS (587's role) and TLS from the
first byte (465's role), with the account password and with an app password made by
`mailstead user app-password add`. What they send is read back from the recipients' INBOX
(through the store and through IMAP); what they must not do gets its exact reply.
"""

from __future__ import annotations

import base64
import imaplib
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.testing.server import (
    Account,
    populate,
    start_server,
    write_config,
)

pytestmark = [pytest.mark.interop]

ALICE, ALICE_PW = "alice@example.org", "alice-pw"
BOB = "bob@example.org"
ACCOUNTS = [Account(ALICE, ALICE_PW), Account(BOB, "bob-pw")]
ALIASES = [("team@example.org", ALICE)]
DOMAINS = ["example.org"]
CLIENT_TIMEOUT = 60
AUTH_FAILED = (535, b"5.7.8 Authentication credentials invalid")


def needs(binary: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which(binary) is None,
        reason=f"{binary} is not installed (scripts/install-test-deps installs it)",
    )


def mailstead_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstead")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailstead.cli.main"]


class Submission:
    """One server for the module: alice (password and an app password), bob, alias team."""

    def __init__(self, data_dir: Path) -> None:
        config = write_config(data_dir)
        populate(config, DOMAINS, ACCOUNTS, ALIASES)
        added = subprocess.run(
            [*mailstead_command(), "user", "app-password", "add", ALICE, "mail-client"],
            capture_output=True, text=True, timeout=60, check=True,
            env={**os.environ, "MAILSTEAD_CONFIG": str(config)},
        )  # fmt: skip
        self.app_password = added.stdout.strip()
        self.server = start_server(config)
        self.cert = data_dir / "tls" / "cert.pem"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def stored(self, user: str, marker: str) -> bytes:
        """The one message in ``user``'s INBOX that carries ``marker``."""
        found = [raw for raw in self.server.messages(user) if marker.encode() in raw]
        assert len(found) == 1, f"{len(found)} messages with {marker} for {user}"
        return found[0]


@pytest.fixture(scope="module")
def submission(tmp_path_factory) -> Iterator[Submission]:
    sub = Submission(tmp_path_factory.mktemp("submission"))
    yield sub
    sub.server.stop()


def message(marker: str, sender: str = ALICE, to: str = BOB) -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {marker}\r\n"
        f"Message-ID: <{marker}@client.example>\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
        f"\r\nHello from {marker}.\r\n"
    ).encode()


def new_marker(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as exc:
        out = f"{exc.stdout!r}\n{exc.stderr!r}"[-3000:]
        raise AssertionError(f"{argv[0]} timed out:\n{out}") from None


# -- smtplib -------------------------------------------------------------------------------------
def smtplib_client(sub: Submission, tls: str) -> smtplib.SMTP:
    if tls == "implicit":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            *sub.server.submissions_address, context=sub.context(), timeout=30
        )
        client.ehlo("client.example")
    else:
        client = smtplib.SMTP(*sub.server.submission_address, timeout=30)
        client.ehlo("client.example")
        client.starttls(context=sub.context())
        client.ehlo("client.example")
    return client


def smtplib_login(client: smtplib.SMTP, mechanism: str, user: str, password: str) -> None:
    """smtplib's own exchange for ``mechanism`` (``login()`` would pick the mechanism)."""
    client.user, client.password = user, password
    handler = client.auth_plain if mechanism == "PLAIN" else client.auth_login
    code, text = client.auth(mechanism, handler)
    assert (code, text) == (235, b"2.7.0 Authentication successful")


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtplib(submission, tls, mechanism):
    marker = new_marker(f"smtplib-{tls}-{mechanism}")
    with smtplib_client(submission, tls) as client:
        assert client.has_extn("auth")
        assert "SCRAM-SHA-256-PLUS" in client.esmtp_features["auth"].split()
        smtplib_login(client, mechanism, ALICE, ALICE_PW)
        refused = client.sendmail("team@example.org", [BOB, ALICE], message(marker))
        assert refused == {}
    for user in (BOB, ALICE):
        stored = submission.stored(user, marker)
        assert stored.startswith(b"Return-Path: <team@example.org>\r\nReceived: from ")
        assert b"with ESMTPSA id" in stored
        assert stored.endswith(message(marker))


def test_smtplib_login_picks_the_strongest_it_knows(submission):
    """smtplib.login() itself (it knows CRAM-MD5, PLAIN, LOGIN: PLAIN here) with an app
    password."""
    marker = new_marker("smtplib-app-password")
    with smtplib_client(submission, "implicit") as client:
        assert client.login(ALICE, submission.app_password) == (
            235, b"2.7.0 Authentication successful",
        )  # fmt: skip
        client.sendmail(ALICE, [BOB], message(marker))
    assert submission.stored(BOB, marker)


def test_delivered_mail_is_in_the_inbox_over_imap(submission):
    marker = new_marker("imap-check")
    with smtplib_client(submission, "starttls") as client:
        client.login(ALICE, ALICE_PW)
        client.sendmail(ALICE, [BOB], message(marker))
    imap = imaplib.IMAP4_SSL(*submission.server.imaps_address, ssl_context=submission.context())
    try:
        imap.login(BOB, "bob-pw")
        imap.select("INBOX", readonly=True)
        status, data = imap.search(None, "SUBJECT", marker)
        assert status == "OK" and len(data[0].split()) == 1
        status, fetched = imap.fetch(data[0], "(BODY.PEEK[TEXT])")
        assert status == "OK"
        assert isinstance(fetched[0], tuple)
        assert fetched[0][1] == f"Hello from {marker}.\r\n".encode()
    finally:
        imap.logout()


def test_smtplib_refusals_with_exact_replies(submission):
    sub = submission
    with smtplib_client(sub, "starttls") as client:
        # MAIL before AUTH
        assert client.mail(ALICE) == (530, b"5.7.0 Authentication required")
        # wrong password, unknown user: the same reply
        for user, password in ((ALICE, "wrong"), ("nobody@example.org", ALICE_PW)):
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                smtplib_login(client, "PLAIN", user, password)
            assert (info.value.smtp_code, info.value.smtp_error) == AUTH_FAILED
        # malformed base64, an aborted exchange
        assert client.docmd("AUTH", "PLAIN not-base64!") == (501, b"5.5.2 Invalid base64 data")
        assert client.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert client.docmd("*") == (501, b"5.0.0 Authentication cancelled")
        smtplib_login(client, "LOGIN", ALICE, ALICE_PW)
        # a sender that is not alice's
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            client.sendmail(BOB, [BOB], message("x", sender=BOB))
        assert (sender.value.smtp_code, sender.value.smtp_error) == (
            550, b"5.7.1 <bob@example.org>: sender address not owned by user alice@example.org",
        )  # fmt: skip
        # a From: header that is not alice's
        with pytest.raises(smtplib.SMTPDataError) as data:
            client.sendmail(ALICE, [BOB], message("x", sender=BOB))
        assert (data.value.smtp_code, data.value.smtp_error) == (
            550,
            b"5.7.1 <bob@example.org>: From: header address not owned by user alice@example.org",
        )
        # a remote recipient goes to the outbound queue with the local copy in the same commit
        marker = new_marker("mixed")
        assert client.sendmail(ALICE, ["friend@elsewhere.test", BOB], message(marker)) == {}
    # (the queue may already have tried it: the log says it was queued)
    queued = [line for line in sub.server.log_lines() if line.get("msg") == "queue.enqueued"]
    assert any(
        e.get("mail_from") == ALICE and e.get("rcpt") == ["friend@elsewhere.test"] for e in queued
    ), queued
    assert b"friend@elsewhere.test" not in sub.stored(BOB, marker).split(b"\r\n\r\n")[0]


def test_auth_before_tls_is_refused(mail_server):
    """Without auth.allow_plaintext_on_loopback, AUTH is not offered before STARTTLS and is
    refused if tried."""
    server = mail_server({"auth": {"allow_plaintext_on_loopback": False}}, accounts=ACCOUNTS)
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.ehlo("client.example")
        assert not client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login(ALICE, ALICE_PW)
        initial = base64.b64encode(f"\0{ALICE}\0{ALICE_PW}".encode()).decode()
        assert client.docmd("AUTH", f"PLAIN {initial}") == (
            538, b"5.7.11 Encryption required for requested authentication mechanism",
        )  # fmt: skip
        assert client.mail(ALICE) == (530, b"5.7.0 Authentication required")


# -- msmtp ---------------------------------------------------------------------------------------
MSMTPRC = """\
account default
host localhost
port {port}
from {sender}
auth {auth}
user {user}
password {password}
tls on
tls_starttls {starttls}
tls_trust_file {cert}
"""


@needs("msmtp")
@pytest.mark.parametrize(
    ("tls", "auth"),
    [("starttls", "plain"), ("starttls", "login"), ("starttls", "scram-sha-256"),
     ("implicit", "scram-sha-256"), ("implicit", "plain")],
)  # fmt: skip
def test_msmtp(submission, tmp_path, tls, auth):
    """msmtp (GNU SASL) with each mechanism Debian's build offers that we do too."""
    sub = submission
    marker = new_marker(f"msmtp-{tls}-{auth}")
    address = sub.server.submissions_address if tls == "implicit" else sub.server.submission_address
    rc = tmp_path / "msmtprc"
    rc.write_text(MSMTPRC.format(
        port=address[1], sender=ALICE, auth=auth, user=ALICE, password=ALICE_PW, cert=sub.cert,
        starttls="on" if tls == "starttls" else "off",
    ))  # fmt: skip
    rc.chmod(0o600)
    result = run(["msmtp", "-C", str(rc), "--debug", BOB], input=message(marker).decode(),
                 env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"--> AUTH {auth.upper()}" in log
    assert ("--> STARTTLS" in log) == (tls == "starttls")
    assert "235 2.7.0 Authentication successful" in log
    stored = sub.stored(BOB, marker)
    assert b"with ESMTPSA id" in stored


@needs("msmtp")
def test_msmtp_scram_with_an_app_password(submission, tmp_path):
    """SCRAM checks an app password through its SCRAM secret (same salt as the account's)."""
    sub = submission
    marker = new_marker("msmtp-app-password")
    rc = tmp_path / "msmtprc"
    rc.write_text(MSMTPRC.format(
        port=sub.server.submission_address[1], sender="team@example.org", auth="scram-sha-256",
        user=ALICE, password=sub.app_password, cert=sub.cert, starttls="on",
    ))  # fmt: skip
    rc.chmod(0o600)
    result = run(["msmtp", "-C", str(rc), BOB], input=message(marker, "team@example.org").decode(),
                 env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert sub.stored(BOB, marker).startswith(b"Return-Path: <team@example.org>")


@needs("msmtp")
def test_msmtp_reports_refusals(submission, tmp_path):
    sub = submission
    rc = tmp_path / "msmtprc"
    rc.write_text(MSMTPRC.format(
        port=sub.server.submission_address[1], sender=BOB, auth="plain", user=ALICE,
        password=ALICE_PW, cert=sub.cert, starttls="on",
    ))  # fmt: skip
    rc.chmod(0o600)
    result = run(["msmtp", "-C", str(rc), BOB], input=message("x", sender=BOB).decode(),
                 env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.returncode != 0
    assert "550 5.7.1 <bob@example.org>: sender address not owned by user alice@example.org" in (
        result.stdout + result.stderr
    )


# -- swaks ---------------------------------------------------------------------------------------
def swaks(sub: Submission, tls: str, *args: str) -> subprocess.CompletedProcess[str]:
    address = sub.server.submissions_address if tls == "tlsc" else sub.server.submission_address
    return run(["swaks", "--server", f"{address[0]}:{address[1]}", "--helo", "swaks.example",
                f"--{tls}", *args])  # fmt: skip


@needs("swaks")
@pytest.mark.parametrize(("tls", "auth"), [("tls", "PLAIN"), ("tls", "LOGIN"), ("tlsc", "PLAIN"),
                                           ("tlsc", "LOGIN")])  # fmt: skip
def test_swaks(submission, tls, auth):
    marker = new_marker(f"swaks-{tls}-{auth}")
    result = swaks(
        submission, tls, "--auth", auth, "--auth-user", ALICE, "--auth-password", ALICE_PW,
        "--from", ALICE, "--to", BOB, "--header", f"Subject: {marker}",
        "--header", f"From: <{ALICE}>",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    stored = submission.stored(BOB, marker)
    assert b"X-Mailer: swaks" in stored
    assert b"with ESMTPSA id" in stored


@needs("swaks")
def test_swaks_wrong_password(submission):
    result = swaks(submission, "tls", "--auth", "PLAIN", "--auth-user", ALICE,
                   "--auth-password", "wrong", "--from", ALICE, "--to", BOB)  # fmt: skip
    assert result.returncode != 0
    assert "535 5.7.8 Authentication credentials invalid" in result.stdout
