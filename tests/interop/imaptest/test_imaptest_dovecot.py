"""The ImapTest runner checked against the real Dovecot: every script ImapTest passes there
must pass here too (scripts needing an extension Dovecot lacks are skipped by capability).

A private Dovecot (the shared peer script) runs for the module on free loopback ports, with
its state and mail under a temporary directory; it is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailstead.testing.imaptest import list_scripts, load_script, run_script

REPO = Path(__file__).resolve().parents[3]
TESTS_DIR = REPO.parent / "shared" / "testdata" / "imaptest-tests"
PEER = REPO.parent / "shared" / "peers" / "dovecot.sh"

pytestmark = [pytest.mark.interop, pytest.mark.slow]

# Scripts Dovecot 2.3 genuinely fails (a version difference, not the runner): none so far.
DOVECOT_FAILS: dict[str, str] = {}


def _script_names() -> list[str]:
    if not TESTS_DIR.is_dir():
        return ["<no scripts>"]
    return [p.name for p in list_scripts(TESTS_DIR)]


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Dovecot:
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not TESTS_DIR.is_dir():
        pytest.skip(f"ImapTest scripts not found at {TESTS_DIR}")
    if not PEER.is_file():
        pytest.skip(f"Dovecot peer script not found at {PEER}")
    if os.geteuid() != 0:
        pytest.skip("the Dovecot peer must be started as root")
    # not under pytest's 0700 tmp dirs: Dovecot's mail processes (uid 5000) need to get in
    base = Path(tempfile.mkdtemp(prefix="mailstead-imaptest-"))
    base.chmod(0o755)
    imap, imaps, pop3, pop3s, lmtp = _free_ports(5)
    env = {
        **os.environ,
        "PEER_DOVECOT_DIR": str(base / "dovecot"),
        "PEER_MAIL_ROOT": str(base / "mail"),
        "IMAP_PORT": str(imap),
        "IMAPS_PORT": str(imaps),
        "POP3_PORT": str(pop3),
        "POP3S_PORT": str(pop3s),
        "LMTP_PORT": str(lmtp),
    }
    log = base / "peer.log"
    try:
        # the first start may install Debian's dovecot packages; output goes to a file, as
        # the daemon inherits it and a pipe would never reach EOF
        with log.open("w") as out:
            started = subprocess.run(
                [str(PEER), "start"], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=900, check=False,
            )  # fmt: skip
        if started.returncode != 0:
            pytest.fail(f"Dovecot peer did not start:\n{log.read_text()}")
        yield Dovecot(imap)
    finally:
        subprocess.run(
            [str(PEER), "stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", _script_names())
def test_script_against_dovecot(dovecot: Dovecot, name: str) -> None:
    if name in DOVECOT_FAILS:
        pytest.xfail(DOVECOT_FAILS[name])
    script = load_script(TESTS_DIR / name)
    result = run_script(
        script, dovecot.connect, "u1@example.test", "pass", user2="u2@example.test"
    )  # fmt: skip
    if result.status == "skip":
        pytest.skip(f"{name}: {result.reason}")
    assert result.status == "pass", result.report()
