"""Outbound TLS policy end to end: a relay (a second Mailstead's submission listener, AUTH over
TLS verified against its test certificate), MTA-STS (RFC 8461) with a private NSD and an HTTPS
policy server of the test's own CA, and DANE (RFC 7672) with a zone signed at test time behind
a validating unbound.

Every peer listens on loopback: the relay on its own free ports, MX hosts on 127.R.R.n (R random
per test) at ``[queue] remote_port``.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead.testing.server import (
    Account,
    RunningServer,
    populate,
    start_server,
    write_config,
)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

SINK = "/usr/sbin/smtp-sink"
DEADLINE = 45.0
ALICE, ALICE_PW = "alice@example.org", "alice-pw"
RELAY_USER, RELAY_PW = "relayuser@relay.test", "relay-secret"


def wait_for(check: Callable[[], object], what: str, deadline: float = DEADLINE) -> object:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def marker() -> str:
    return uuid.uuid4().hex[:12]


def message(mark: str, to: str) -> bytes:
    return (
        f"From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: test {mark}\r\n"
        f"Message-ID: <{mark}@example.org>\r\n\r\nmarker {mark}\r\n"
    ).encode()


def submit(server: RunningServer, to: list[str], body: bytes) -> None:
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.starttls(context=context)
        client.login(ALICE, ALICE_PW)
        assert client.sendmail(ALICE, to, body) == {}


def with_marker(messages: list[bytes], mark: str) -> list[bytes]:
    return [m for m in messages if f"marker {mark}".encode() in m]


def queue_rows(server: RunningServer) -> list[tuple[str, str, int, str | None]]:
    """(recipient, state, attempts, last reply) straight from the database."""
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    try:
        return db.execute(
            "SELECT r.address, r.state, r.attempts, r.last_error FROM queue_recipients r"
            " ORDER BY r.id"
        ).fetchall()
    finally:
        db.close()


def set_toml(config: Path, section: str, line: str) -> None:
    """Add ``line`` (a key = TOML value the test writes itself) under ``[section]``."""
    text = config.read_text("utf-8")
    header = f"[{section}]\n"
    config.write_text(text.replace(header, header + line + "\n", 1), "utf-8")


class Peers:
    """The servers and processes of one test, stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[RunningServer] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, config: Path) -> RunningServer:
        server = start_server(config)
        self.servers.append(server)
        return server

    def sender(self, *, toml: tuple[tuple[str, str], ...] = (), **queue: object) -> RunningServer:
        """The sending Mailstead (alice@example.org submits to it)."""
        settings: dict[str, object] = {"retry_schedule": ["1s"], "max_age": "1h",
                                       "connect_timeout": "5s"}  # fmt: skip
        settings.update(queue)
        config = write_config(
            self.tmp_path / "sender", hostname="mx.example.org", overrides={"queue": settings}
        )
        for section, line in toml:
            set_toml(config, section, line)
        populate(config, ["example.org"], [Account(ALICE, ALICE_PW)])
        return self.start(config)

    def relay(self) -> RunningServer:
        """A second Mailstead as the relay: faraway.test is its own (bob), and the relay user
        may send as anyone on its submission listeners (STARTTLS and implicit TLS)."""
        config = write_config(
            self.tmp_path / "relay",
            hostname="relay.test",
            overrides={"submission": {"allow_any_sender_for": [RELAY_USER]}},
        )
        populate(
            config,
            ["faraway.test", "relay.test"],
            [Account("bob@faraway.test", "bob-pw"), Account(RELAY_USER, RELAY_PW)],
        )
        return self.start(config)

    def sink(self, host: str, port: int) -> Path:
        """smtp-sink on host:port; returns the directory it dumps messages to."""
        if not Path(SINK).exists():
            pytest.skip("smtp-sink not installed (Debian package postfix)")
        dumps = self.tmp_path / f"sink-{host}-{port}"
        dumps.mkdir()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        process = subprocess.Popen(
            [SINK, *user, "-d", f"{dumps}/msg.", f"{host}:{port}", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.processes.append(process)
        wait_for(lambda: accepts(host, port), f"smtp-sink on {host}:{port}", 10)
        return dumps

    def close(self) -> None:
        for server in self.servers:
            server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM)
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def peers(tmp_path) -> Iterator[Peers]:
    p = Peers(tmp_path)
    try:
        yield p
    finally:
        p.close()


def dumped(dumps: Path, mark: str) -> list[str]:
    texts = [p.read_text("utf-8", "replace") for p in sorted(dumps.iterdir())]
    return [t for t in texts if f"marker {mark}" in t]


# --- 1. relays (smarthosts) ---------------------------------------------------------------------
def password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "relay-password"
    path.write_text(password + "\n", "utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mode", ["auto", "implicit"])
def test_relay_with_auth_over_verified_tls_carries_mail_anywhere(peers, tmp_path, mode):
    relay = peers.relay()
    host, port = relay.submissions_address if mode == "implicit" else relay.submission_address
    sender = peers.sender(
        relay_host=f"[{host}]:{port}",
        relay_tls=mode,
        relay_username=RELAY_USER,
        relay_password_file=str(password_file(tmp_path, RELAY_PW)),
        relay_ca_file=str(relay.data_dir / "tls" / "cert.pem"),
    )
    mark = marker()
    # faraway.test is in no DNS the sender asks: only the relay can take it
    submit(sender, ["bob@faraway.test"], message(mark, "bob@faraway.test"))
    [copy] = wait_for(lambda: with_marker(relay.messages("bob@faraway.test"), mark), "bob's copy")
    # the relay saw an authenticated submission over TLS (RFC 3848 ESMTPSA)
    assert b"with ESMTPSA" in copy.split(b"\r\n\r\n", 1)[0]
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")
    sessions = [e for e in sender.log_lines() if e.get("msg") == "smtp.client.session"]
    assert sessions and all(e["tls"] and e["port"] == port for e in sessions)


def test_wrong_relay_password_defers_with_the_relays_reply(peers, tmp_path):
    relay = peers.relay()
    host, port = relay.submission_address
    sender = peers.sender(
        relay_host=f"[{host}]:{port}",
        relay_username=RELAY_USER,
        relay_password_file=str(password_file(tmp_path, "not-the-password")),
        relay_ca_file=str(relay.data_dir / "tls" / "cert.pem"),
        retry_schedule=["1h"],
    )
    mark = marker()
    submit(sender, ["bob@faraway.test"], message(mark, "bob@faraway.test"))
    [row] = wait_for(lambda: [r for r in queue_rows(sender) if r[1] == "deferred"], "deferral")
    assert row[0] == "bob@faraway.test" and row[2] == 1
    assert "535" in (row[3] or ""), row  # the relay's own refusal, kept for the sender to see
    assert not with_marker(relay.messages("bob@faraway.test"), mark)
    assert not [m for m in sender.messages(ALICE) if b"multipart/report" in m]  # no bounce


def test_relay_for_a_domain_wins_over_the_global_relay(peers, tmp_path):
    relay = peers.relay()
    host, port = relay.submission_address
    sink_port = free_port()
    dumps = peers.sink("127.0.0.1", sink_port)
    sender = peers.sender(
        relay_host=f"[{host}]:{port}",
        relay_username=RELAY_USER,
        relay_password_file=str(password_file(tmp_path, RELAY_PW)),
        relay_ca_file=str(relay.data_dir / "tls" / "cert.pem"),
        toml=(("queue", f'relay_domains = {{ "other.test" = "[127.0.0.1]:{sink_port}" }}'),),
    )
    inside, outside = marker(), marker()
    submit(sender, ["u@other.test"], message(inside, "u@other.test"))
    submit(sender, ["bob@faraway.test"], message(outside, "bob@faraway.test"))
    [copy] = wait_for(lambda: dumped(dumps, inside), "the copy at the domain's relay")
    assert "u@other.test" in copy
    wait_for(lambda: with_marker(relay.messages("bob@faraway.test"), outside), "bob's copy")
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")
    assert not dumped(dumps, outside)
