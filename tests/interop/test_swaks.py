"""Debian's swaks as the SMTP client: plain, STARTTLS, pipelining, 8-bit and UTF-8."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed"),
]


def swaks(server, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = server.smtp_address
    return subprocess.run(
        ["swaks", "--server", f"{host}:{port}", "--helo", "swaks.example.net", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plain_delivery(mail_server):
    server = mail_server()
    result = swaks(server, "--from", "x@example.net", "--to", "alice@example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    [stored] = server.messages("alice@example.org")
    assert b"X-Mailer: swaks" in stored


def test_starttls_and_pipelining(mail_server):
    server = mail_server()
    result = swaks(
        server, "--from", "x@example.net", "--to", "bob@example.org", "--tls", "--pipeline",
        "--header", "Subject: over TLS",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS started" in result.stdout
    [stored] = server.messages("bob@example.org")
    assert b"Subject: over TLS" in stored
    assert b"ESMTPS" in stored


def test_refusals_are_reported(mail_server):
    server = mail_server()
    result = swaks(server, "--from", "x@example.net", "--to", "nobody@example.org")
    assert result.returncode != 0
    assert "550 5.1.1" in result.stdout
    result = swaks(server, "--from", "x@example.net", "--to", "victim@elsewhere.test")
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout


def test_eight_bit_body(mail_server):
    server = mail_server()
    body = "Grüße aus Köln\r\n"
    result = swaks(
        server, "--from", "x@example.net", "--to", "carol@example.org",
        "--body", body, "--add-header", "Content-Type: text/plain; charset=utf-8",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [stored] = server.messages("carol@example.org")
    assert "Grüße aus Köln".encode() in stored
