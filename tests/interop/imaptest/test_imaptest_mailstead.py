"""Dovecot's ImapTest scripted tests against Mailstead's IMAP server (issue 3's conformance suite).

Every script runs in a fresh `imaptest` mailbox of one account. Scripts for extensions Mailstead
does not offer are skipped: CATENATE, URLAUTH and NOTIFY, by decision. Known failures are strict
xfails with their reason, so a fix shows up as an unexpected pass and the list must shrink.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.testing.imaptest import list_scripts, load_script, run_script
from mailstead.testing.server import Account, RunningServer, populate, start_server, write_config

REPO = Path(__file__).resolve().parents[3]
TESTS_DIR = REPO.parent / "shared" / "testdata" / "imaptest-tests"

pytestmark = [pytest.mark.interop]

NOT_OFFERED = {"CATENATE", "URLAUTH", "NOTIFY"}

KNOWN_FAILURES: dict[str, str] = {}


def _script_names() -> list[str]:
    if not TESTS_DIR.is_dir():
        return ["<no scripts>"]
    return [p.name for p in list_scripts(TESTS_DIR)]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    if not TESTS_DIR.is_dir():
        pytest.skip(f"ImapTest scripts not found at {TESTS_DIR}")
    data = tmp_path_factory.mktemp("imaptest")
    config = write_config(data)
    populate(
        config,
        ["example.org"],
        [Account("u1@example.org", "pass"), Account("u2@example.org", "pass")],
    )
    running = start_server(config)
    yield running
    running.stop()


@pytest.mark.parametrize("name", _script_names())
def test_script_against_mailstead(server: RunningServer, name: str) -> None:
    def connect() -> socket.socket:
        return socket.create_connection(server.imap_address, timeout=10)

    script = load_script(TESTS_DIR / name)
    result = run_script(
        script, connect, "u1@example.org", "pass", user2="u2@example.org",
        skip_extensions=NOT_OFFERED, timeout=10,
    )  # fmt: skip
    if result.status == "skip":
        pytest.skip(f"{name}: {result.reason}")
    if name in KNOWN_FAILURES:
        if result.status == "pass":
            pytest.fail(f"{name} passes now: remove it from KNOWN_FAILURES")
        pytest.xfail(KNOWN_FAILURES[name])
    assert result.status == "pass", result.report()
