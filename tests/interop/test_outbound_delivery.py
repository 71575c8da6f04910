"""The outbound queue end to end: a Mailstead that submits and forwards, a private NSD that
publishes MX and A records for the test domains on other loopback addresses, and real peers
behind them: a second Mailstead, Postfix, Postfix's smtp-sink (421, 451, 550), and a scripted
receiver that holds a transaction open so a SIGKILL lands mid-run.

Every destination listens on ``[queue] remote_port`` (a free port) of its own address
127.R.R.n (R random per test, so runs do not meet); loopback addresses work on Linux without
setup. The checks: MX failover (refused, 421), DKIM verified by dkimpy on the received copy,
forwarding of a remote alias target, a 550 turned into a report in the sender's INBOX, a 451
retried and delivered, a retry from the CLI noticed by the running server, and a SIGKILL during
a queue run followed by a restart: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import shutil
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim as dkimpy
import pytest

from mailstead.config import load_config
from mailstead.mailauth.dkim import generate_key, txt_value
from mailstead.store import open_sqlite
from mailstead.testing.nsd import nsd_missing, nsd_server
from mailstead.testing.server import (
    Account,
    RunningServer,
    populate,
    start_server,
    write_config,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(nsd_missing() is not None, reason=str(nsd_missing())),
]

SINK = "/usr/sbin/smtp-sink"
POSTFIX_PEER = Path(__file__).resolve().parents[3] / "shared" / "peers" / "postfix.sh"
DEADLINE = 45.0
ALICE, ALICE_PW = "alice@example.org", "alice-pw"
SELECTOR = "ms1"


def wait_for(check: Callable[[], object], what: str, deadline: float = DEADLINE) -> object:
    """Poll ``check`` until it returns something true (bounded)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A port free on the wildcard address (so free on every loopback address too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


class World:
    """NSD, the sending Mailstead and the peers of one test."""

    def __init__(self, tmp_path: Path, nameserver: str, prefix: str, port: int) -> None:
        self.tmp_path = tmp_path
        self.nameserver = nameserver
        self.prefix = prefix
        self.port = port
        self.servers: list[RunningServer] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.cleanups: list[Callable[[], None]] = []
        self.dkim_record = ""

    def ip(self, n: int) -> str:
        return f"{self.prefix}.{n}"

    # -- the sending server --------------------------------------------------------------------
    def sender(self, **queue: object) -> RunningServer:
        settings: dict[str, object] = {
            "remote_port": self.port,
            "retry_schedule": ["1s"],
            "max_age": "1h",
            "connect_timeout": "5s",
        }
        settings.update(queue)
        config = write_config(
            self.tmp_path / "sender",
            hostname="mx.example.org",
            overrides={"dns": {"nameservers": [self.nameserver]}, "queue": settings},
        )
        if not self.dkim_record:
            populate(
                config,
                ["example.org"],
                [Account(ALICE, ALICE_PW), Account("carol@example.org", "carol-pw")],
                [("fwd@example.org", "bob@remote.test")],
            )
            self.dkim_record = _add_dkim_key(config)
        return self.start(config)

    def start(self, config: Path) -> RunningServer:
        server = start_server(config)
        self.servers.append(server)
        return server

    # -- peers ----------------------------------------------------------------------------------
    def mailstead_peer(self, n: int) -> RunningServer:
        """A second Mailstead for remote.test (bob), listening on 127.R.R.n:port."""
        config = write_config(
            self.tmp_path / f"peer{n}",
            hostname="mx2.remote.test",
            overrides={"listen": {"smtp": [f"{self.ip(n)}:{self.port}"]}},
        )
        populate(config, ["remote.test"], [Account("bob@remote.test", "bob-pw")])
        return self.start(config)

    def sink(self, n: int, *options: str) -> Path:
        """smtp-sink on 127.R.R.n:port with ``options``; returns the directory it dumps to."""
        if not Path(SINK).exists():
            pytest.skip("smtp-sink not installed (Debian package postfix)")
        dumps = self.tmp_path / f"sink{n}-{len(self.processes)}"
        dumps.mkdir()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        process = subprocess.Popen(
            [SINK, *user, "-h", f"sink{n}.test", "-d", f"{dumps}/msg.", *options,
             f"{self.ip(n)}:{self.port}", "16"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.processes.append(process)
        wait_for(lambda: _accepts(self.ip(n), self.port), f"smtp-sink on {self.ip(n)}", 10)
        return dumps

    def close(self) -> None:
        for server in self.servers:
            server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM)
        for process in self.processes:
            process.kill()
            process.wait()
        for cleanup in reversed(self.cleanups):
            cleanup()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _add_dkim_key(config: Path) -> str:
    """Make an RSA key for example.org in the sender's store; its TXT record value."""
    pair = generate_key("rsa")

    async def main() -> None:
        store = open_sqlite(load_config(config).storage.path)
        await store.open()
        try:
            await store.add_dkim_key("example.org", SELECTOR, "rsa", pair.private_key_pem,
                                     pair.public_key)  # fmt: skip
        finally:
            await store.close()

    asyncio.run(main())
    return txt_value("rsa", pair.public_key)


def zone(prefix: str) -> str:
    hosts = {
        "mx1.remote": 2, "mx2.remote": 3, "mx.reject": 4, "mx.later": 5, "mx.postfix": 6,
        "mx.hold": 7, "mx.cli": 8,
    }  # fmt: skip
    lines = [
        "$TTL 60",
        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
        "@ IN NS ns.test.",
        "ns IN A 127.0.0.1",
        "remote IN MX 10 mx1.remote",
        "remote IN MX 20 mx2.remote",
        "reject IN MX 10 mx.reject",
        "later IN MX 10 mx.later",
        "postfix IN MX 10 mx.postfix",
        "hold IN MX 10 mx.hold",
        "cli IN MX 10 mx.cli",
    ]
    lines += [f"{name} IN A {prefix}.{n}" for name, n in hosts.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    with nsd_server({"test": zone(prefix)}, tmp_path / "nsd") as ns:
        w = World(tmp_path, ns.nameserver, prefix, free_port())
        try:
            yield w
        finally:
            w.close()


# -- clients and readers ---------------------------------------------------------------------
def marker() -> str:
    return uuid.uuid4().hex[:12]


def message(mark: str, to: str, sender: str = ALICE) -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: test {mark}\r\n"
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


def queue_rows(server: RunningServer) -> list[tuple[str, str, str, int, str | None]]:
    """(queue id, recipient, state, attempts, last reply) straight from the database."""
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    try:
        return db.execute(
            "SELECT q.queue_id, r.address, r.state, r.attempts, r.last_error"
            " FROM queue_recipients r JOIN queue_messages q ON q.id = r.message_id"
            " ORDER BY q.id, r.id"
        ).fetchall()
    finally:
        db.close()


def attempts_logged(server: RunningServer, rcpt: str) -> list[dict[str, object]]:
    return [e for e in server.log_lines() if e.get("msg") == "queue.attempt"
            and e.get("rcpt") == rcpt]  # fmt: skip


def with_marker(messages: list[bytes], mark: str) -> list[bytes]:
    return [m for m in messages if f"marker {mark}".encode() in m]


def dumped(dumps: Path, mark: str) -> list[str]:
    texts = [p.read_text("utf-8", "replace") for p in sorted(dumps.iterdir())]
    return [t for t in texts if f"marker {mark}" in t]


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILSTEAD_CONFIG": str(server.config_path)}
    return subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", *args],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )  # fmt: skip


# -- the tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("first_mx", ["refuses", "421"])
def test_second_mx_gets_it_signed_and_forwards_go_too(world, first_mx):
    if first_mx == "421":
        world.sink(2, "-Q", "CONNECT")  # 421 as the greeting
    peer = world.mailstead_peer(3)
    sender = world.sender()
    mark = marker()
    submit(sender, ["bob@remote.test", "carol@example.org"], message(mark, "bob@remote.test"))
    # the local copy is there at once (committed with the queue entry)
    assert with_marker(sender.messages("carol@example.org"), mark)
    [received] = wait_for(lambda: with_marker(peer.messages("bob@remote.test"), mark), "bob")
    assert received.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from ")
    signed = received[received.index(b"DKIM-Signature:") :]  # as the sender sent it

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.example.org.".encode()
        return world.dkim_record.encode()

    assert dkimpy.DKIM(signed).verify(dnsfunc=dnsfunc), "DKIM signature does not verify"
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")
    [attempt] = attempts_logged(sender, "bob@remote.test")
    assert attempt["state"] == "delivered" and attempt["remote_mta"] == "mx2.remote.test"

    # port 25: an alias with a remote target is forwarded through the queue, unsigned
    fwd = marker()
    with smtplib.SMTP(*sender.smtp_address, timeout=30) as client:
        client.sendmail("someone@outside.test", ["fwd@example.org"],
                        message(fwd, "fwd@example.org", sender="someone@outside.test"))  # fmt: skip
    [forwarded] = wait_for(lambda: with_marker(peer.messages("bob@remote.test"), fwd), "fwd")
    assert b"Return-Path: <someone@outside.test>" in forwarded
    assert b"DKIM-Signature" not in forwarded


def test_550_makes_a_report_in_the_senders_inbox(world):
    world.sink(4, "-f", "RCPT", "-B", "550 5.1.1 <x@reject.test>: Recipient address rejected")
    sender = world.sender()
    mark = marker()
    submit(sender, ["x@reject.test"], message(mark, "x@reject.test"))

    def report() -> list[bytes]:
        return [m for m in sender.messages(ALICE) if b"multipart/report" in m]

    [raw] = wait_for(report, "the DSN in alice's INBOX")
    assert raw.startswith(b"Return-Path: <>\r\n")
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    text, status, original = dsn.iter_parts()
    assert "x@reject.test" in text.get_content()
    fields = str(status)
    assert "Final-Recipient: rfc822; x@reject.test" in fields
    assert "Action: failed" in fields and "Status: 5.1.1" in fields
    assert "Remote-MTA: dns; mx.reject.test" in fields
    assert "Diagnostic-Code: smtp; 550 5.1.1 <x@reject.test>: Recipient address rejected" in fields
    assert original.get_content_type() == "text/rfc822-headers"
    assert f"Subject: test {mark}" in str(original)
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")


def test_451_is_retried_then_delivered(world):
    first = world.sink(5, "-r", "RCPT", "-b", "451 4.3.0 Try again later")
    sender = world.sender()
    mark = marker()
    submit(sender, ["u@later.test"], message(mark, "u@later.test"))

    def deferred() -> bool:
        return any(row[2] == "deferred" and "451 4.3.0 Try again later" in (row[4] or "")
                   for row in queue_rows(sender))  # fmt: skip

    wait_for(deferred, "the 451 recorded")
    assert not dumped(first, mark)
    world.processes[-1].kill()
    world.processes[-1].wait()
    second = world.sink(5)
    [copy] = wait_for(lambda: dumped(second, mark), "the retried delivery")
    assert f"Subject: test {mark}" in copy
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")
    states = [a["state"] for a in attempts_logged(sender, "u@later.test")]
    assert states[0] == "deferred" and states[-1] == "delivered"


def test_retry_from_the_cli_is_noticed_by_the_running_server(world):
    sender = world.sender(retry_schedule=["1h"])
    mark = marker()
    submit(sender, ["u@cli.test"], message(mark, "u@cli.test"))  # nobody listens yet
    wait_for(lambda: any(r[2] == "deferred" for r in queue_rows(sender)), "the deferral")
    [listed] = [json.loads(x) for x in cli(sender, "queue", "list", "--json").stdout.splitlines()]
    [rcpt] = listed["recipients"]
    assert (rcpt["state"], rcpt["attempts"]) == ("deferred", 1)
    assert "no host accepted the connection" in rcpt["last_reply"]
    dumps = world.sink(8)
    cli(sender, "queue", "retry", listed["id"])
    wait_for(lambda: dumped(dumps, mark), "the delivery after queue retry")
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")


def test_delivery_to_postfix(world):
    if os.geteuid() != 0 or not POSTFIX_PEER.exists():
        pytest.skip("the Postfix peer needs root and /work/shared/peers/postfix.sh")
    # Postfix's own users must reach these directories: not under pytest's 0700 tmp_path
    top = Path(tempfile.mkdtemp(prefix="mailstead-postfix-"))
    top.chmod(0o755)
    world.cleanups.append(lambda: shutil.rmtree(top, ignore_errors=True))
    base, mail_root = top / "postfix", top / "mail"
    env = {
        **os.environ, "PEER_POSTFIX_DIR": str(base), "PEER_MAIL_ROOT": str(mail_root),
        "SMTP_HOST": world.ip(6), "SMTP_PORT": str(world.port), "PEER_DOMAINS": "postfix.test",
        "PEER_USERS": "u1",
    }  # fmt: skip
    with (world.tmp_path / "postfix.out").open("wb") as out:
        started = subprocess.run([str(POSTFIX_PEER), "start"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, timeout=120, check=False)  # fmt: skip
    world.cleanups.append(
        lambda: subprocess.run(
            [str(POSTFIX_PEER), "stop"], env=env, capture_output=True, timeout=60, check=False
        )
    )
    if started.returncode != 0:
        pytest.skip(
            "the Postfix peer did not start: "
            + (world.tmp_path / "postfix.out").read_text(errors="replace")[-500:]
        )
    sender = world.sender()
    mark = marker()
    submit(sender, ["u1@postfix.test"], message(mark, "u1@postfix.test"))
    maildir = mail_root / "postfix.test" / "u1" / "Maildir" / "new"

    def delivered() -> list[bytes]:
        if not maildir.is_dir():
            return []
        return with_marker([p.read_bytes() for p in maildir.iterdir()], mark)

    [copy] = wait_for(delivered, "the message in Postfix's Maildir")
    assert b"DKIM-Signature: v=1; a=rsa-sha256;" in copy
    wait_for(lambda: queue_rows(sender) == [], "an empty queue")


class HoldingSink:
    """A minimal SMTP receiver on 127.R.R.n:port that takes ``take`` messages, then holds every
    later DATA unanswered until ``release()`` (so the sender is known to be waiting)."""

    def __init__(self, host: str, port: int, take: int) -> None:
        self.take = take
        self.messages: list[bytes] = []
        self.held = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.server = socket.create_server((host, port))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 hold.test ESMTP\r\n")
            f.flush()
            while line := f.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    f.write(b"250 hold.test\r\n")
                elif verb == b"DATA":
                    with self.lock:
                        hold = len(self.messages) >= self.take and not self.released.is_set()
                        self.held += hold
                    if hold:
                        self.released.wait()
                        return  # closed without a reply
                    f.write(b"354 go ahead\r\n")
                    f.flush()
                    body = b""
                    while (chunk := f.readline()) not in (b".\r\n", b""):
                        body += chunk
                    with self.lock:
                        self.messages.append(body)
                    f.write(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    f.write(b"221 2.0.0 Bye\r\n")
                    f.flush()
                    return
                else:
                    f.write(b"250 2.0.0 Ok\r\n")
                f.flush()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.close()


def test_sigkill_during_a_queue_run_loses_nothing_and_sends_nothing_twice(world):
    sink = HoldingSink(world.ip(7), world.port, take=3)
    world.cleanups.append(sink.close)
    sender = world.sender(per_destination_concurrency=1)
    marks = [marker() for _ in range(6)]
    # queued while the first deliveries already run: each 250 to DATA means durable
    for mark in marks:
        submit(sender, ["u@hold.test"], message(mark, "u@hold.test"))
    wait_for(lambda: sink.held == 1, "three messages taken and the fourth held")
    assert len(sink.messages) == 3
    sender.stop(signal.SIGKILL)
    rows = queue_rows(sender)
    assert len(rows) == 3 and all(r[2] == "pending" for r in rows), rows  # nothing lost
    sink.release()
    restarted = world.start(sender.config_path)

    def all_taken() -> bool:
        return len(sink.messages) >= 6

    wait_for(all_taken, "every message after the restart")
    wait_for(lambda: queue_rows(restarted) == [], "an empty queue")
    got = [m.decode() for m in sink.messages]
    assert len(got) == 6
    for mark in marks:  # each exactly once: nothing acknowledged was sent again
        assert sum(f"marker {mark}" in m for m in got) == 1, mark
