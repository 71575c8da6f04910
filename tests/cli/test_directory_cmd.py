"""The issue's command sequence, through the real `mailstead` console script."""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from mailstead.testing.server import start_server


def mailstead_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstead")
    if script.exists():
        return [str(script)]
    found = shutil.which("mailstead")
    return [found] if found else [sys.executable, "-m", "mailstead.cli.main"]


def cli(*args: str, stdin: str | None = None, env=None, check: bool = True):
    result = subprocess.run(
        [*mailstead_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mailstead {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


@pytest.fixture
def installation(tmp_path):
    data = tmp_path / "var"
    cli("init", "--dev", "--data", str(data), "--domain", "example.test")
    config = data / "mailstead.toml"
    # free ports instead of the dev ports, so tests never collide
    text = config.read_text().replace('"127.0.0.1:10025"', '"127.0.0.1:0"')
    config.write_text(text)
    return config


def test_the_issue_walkthrough(installation):
    config = str(installation)
    env = {"MAILSTEAD_CONFIG": config}
    cli("domain", "add", "example.org", env=env)
    out = cli("user", "add", "alice@example.org", "--password-stdin", "--quota", "2G",
              stdin="s3cret\n", env=env).stdout  # fmt: skip
    assert "alice@example.org" in out
    cli("alias", "add", "postmaster@example.org", "alice@example.org", "--config", config)
    domains = cli("domain", "list", "--json", env=env).stdout.splitlines()
    assert [json.loads(d)["domain"] for d in domains] == ["example.org", "example.test"]
    users = cli("user", "list", "--json", env=env).stdout.splitlines()
    [user] = [json.loads(line) for line in users]
    assert user == {
        "address": "alice@example.org", "quota": 2 << 30, "used": 0, "role": "user",
        "enabled": True,
    }  # fmt: skip
    assert "s3cret" not in cli("user", "list", env=env).stdout

    server = start_server(installation)
    try:
        with smtplib.SMTP(*server.smtp_address) as client:
            client.sendmail(
                "bob@example.net",
                ["postmaster@example.org"],
                "From: Bob <bob@example.net>\r\nTo: postmaster@example.org\r\n"
                "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <walk@example.net>\r\n"
                "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello!\r\n",
            )
    finally:
        assert server.stop() == 0

    boxes = cli("mailbox", "list", "alice@example.org", "--json", env=env).stdout.splitlines()
    boxes = {json.loads(b)["name"]: json.loads(b) for b in boxes}
    assert set(boxes) == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
    assert boxes["INBOX"]["messages"] == 1
    assert "INBOX" in cli("mailbox", "list", "alice@example.org", env=env).stdout

    listing = cli("message", "list", "alice@example.org", "INBOX", "--json", env=env).stdout
    [line] = listing.splitlines()
    record = json.loads(line)
    assert record["uid"] == 1
    assert record["subject"] == "Grüße"
    assert "bob@example.net" in record["from"]
    assert "postmaster@example.org" in record["to"]
    assert record["message_id"] in ("<walk@example.net>", "walk@example.net")
    assert record["date"].startswith("2026-11-23T10:00:00")
    assert record["flags"] == []
    assert record["size"] > 100

    raw = subprocess.run(
        [*mailstead_command(), "message", "show", "alice@example.org", "INBOX", "1"],
        capture_output=True, timeout=60, check=True, env={**os.environ, **env},
    ).stdout  # fmt: skip
    assert raw.startswith(b"Return-Path: <bob@example.net>\r\nReceived: ")
    assert raw.endswith(b"Hello!\r\n")


def test_user_management(installation):
    env = {"MAILSTEAD_CONFIG": str(installation)}
    cli("user", "add", "dave@example.test", "--password-stdin", stdin="pw1\n", env=env)
    cli("user", "passwd", "dave@example.test", "--password-stdin", stdin="pw2\n", env=env)
    cli("user", "quota", "dave@example.test", "500M", env=env)
    cli("user", "disable", "dave@example.test", env=env)
    [user] = [json.loads(x) for x in cli("user", "list", "--json", env=env).stdout.splitlines()]
    assert (user["quota"], user["enabled"]) == (500 << 20, False)
    cli("user", "enable", "dave@example.test", env=env)
    # errors are clear and non-zero
    result = cli("user", "add", "dave@example.test", "--password-stdin", stdin="x\n", env=env,
                 check=False)  # fmt: skip
    assert result.returncode == 1
    assert "exists" in result.stderr
    result = cli("user", "add", "x@nowhere.test", "--password-stdin", stdin="x\n", env=env,
                 check=False)  # fmt: skip
    assert result.returncode == 1
    assert "no domain" in result.stderr
    result = cli("domain", "remove", "example.test", env=env, check=False)
    assert result.returncode == 1
    assert "account" in result.stderr
    cli("user", "remove", "dave@example.test", env=env)
    cli("domain", "remove", "example.test", env=env)
    assert cli("domain", "list", env=env).stdout == ""


def test_passwords_never_come_from_argv(installation):
    result = cli("user", "add", "eve@example.test", "--password", "x", "--config",
                 str(installation), check=False)  # fmt: skip
    assert result.returncode == 2  # argparse: no such option
    # without a terminal and without --password-stdin there is nothing to prompt
    result = cli("user", "add", "eve@example.test", "--config", str(installation), stdin="",
                 check=False)  # fmt: skip
    assert result.returncode == 1
    assert "--password-stdin" in result.stderr


def test_alias_and_catch_all_commands(installation):
    env = {"MAILSTEAD_CONFIG": str(installation)}
    cli("user", "add", "fred@example.test", "--password-stdin", stdin="pw\n", env=env)
    cli("alias", "add", "@example.test", "fred@example.test", env=env)
    cli("alias", "add", "list@example.test", "fred@example.test", "someone@remote.test", env=env)
    aliases = [json.loads(x) for x in cli("alias", "list", "--json", env=env).stdout.splitlines()]
    assert {(a["source"], a["target"]) for a in aliases} == {
        ("@example.test", "fred@example.test"),
        ("list@example.test", "fred@example.test"),
        ("list@example.test", "someone@remote.test"),
    }
    cli("alias", "remove", "list@example.test", "someone@remote.test", env=env)
    cli("alias", "remove", "@example.test", env=env)
    aliases = cli("alias", "list", env=env).stdout.splitlines()
    assert aliases == ["list@example.test\tfred@example.test"]


def test_missing_configuration_is_reported(tmp_path):
    result = subprocess.run(
        [*mailstead_command(), "domain", "list"],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "MAILSTEAD_CONFIG"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "MAILSTEAD_CONFIG" in result.stderr
