"""`mailstead user app-password add|list|remove` through the real console script; the password
it prints logs in over IMAP to a real `mailstead serve`, until it is removed."""

from __future__ import annotations

import imaplib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailstead.testing.server import start_server, write_config


def mailstead_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstead")
    if script.exists():
        return [str(script)]
    found = shutil.which("mailstead")
    return [found] if found else [sys.executable, "-m", "mailstead.cli.main"]


@pytest.fixture
def cli(tmp_path):
    """Runs `mailstead ARGS` against a fresh installation (domain example.test)."""
    config = write_config(tmp_path / "data")

    def run(*args: str, stdin: str | None = None, check: bool = True):
        result = subprocess.run(
            [*mailstead_command(), *args],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "MAILSTEAD_CONFIG": str(config)},
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"mailstead {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    run.config = config
    run("domain", "add", "example.test")
    run("user", "add", "alice@example.test", "--password-stdin", stdin="main-pw\n")
    return run


def imap_login(server, user: str, password: str) -> bool:
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.shutdown()
    return True


def test_app_password_lifecycle(cli):
    added = cli("user", "app-password", "add", "alice@example.test", "phone")
    password = added.stdout.strip()
    assert re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", password)  # the password alone
    assert "phone" in added.stderr
    assert "shown only now" in added.stderr
    cli("user", "app-password", "add", "alice@example.test", "laptop")

    listing = cli("user", "app-password", "list", "alice@example.test", "--json").stdout
    records = [json.loads(line) for line in listing.splitlines()]
    assert [r["name"] for r in records] == ["phone", "laptop"]
    assert all(set(r) == {"name", "created"} for r in records)
    assert records[0]["created"].endswith("+00:00")
    text = cli("user", "app-password", "list", "alice@example.test").stdout
    assert text.splitlines()[0].startswith("phone\t")
    assert password not in listing + text  # never shown again

    server = start_server(cli.config)
    try:
        assert imap_login(server, "alice@example.test", password)
        assert imap_login(server, "alice@example.test", "main-pw")
        assert not imap_login(server, "alice@example.test", "wrong")
        cli("user", "app-password", "remove", "alice@example.test", "phone")
        assert not imap_login(server, "alice@example.test", password)
    finally:
        assert server.stop() == 0
    listing = cli("user", "app-password", "list", "alice@example.test", "--json").stdout
    assert [json.loads(line)["name"] for line in listing.splitlines()] == ["laptop"]


def test_app_password_errors(cli):
    cli("user", "app-password", "add", "alice@example.test", "phone")
    result = cli("user", "app-password", "add", "alice@example.test", "phone", check=False)
    assert result.returncode == 1
    assert "exists" in result.stderr
    assert result.stdout == ""  # no password printed for a failure
    result = cli("user", "app-password", "remove", "alice@example.test", "tablet", check=False)
    assert result.returncode == 1
    assert "no app password" in result.stderr
    result = cli("user", "app-password", "add", "bob@example.test", "phone", check=False)
    assert result.returncode == 1
    assert "no account" in result.stderr
    result = cli("user", "app-password", "add", "alice@example.test", " ", check=False)
    assert result.returncode == 1
    assert "name" in result.stderr
    # no subcommand: the group's usage, status 2
    assert cli("user", "app-password", check=False).returncode == 2
    # passwords are set by `user passwd` too, and app passwords survive it
    cli("user", "passwd", "alice@example.test", "--password-stdin", stdin="new-pw\n")
    assert "phone" in cli("user", "app-password", "list", "alice@example.test").stdout
