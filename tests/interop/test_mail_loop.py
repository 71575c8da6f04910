"""A mail loop between two real servers (issue 11): aliases on two Mailsteads that forward to
each other used to pass one message back and forth 1,188 times in 50 s, without end.

A private NSD publishes ``a.test`` (MX on 127.R.R.2) and ``b.test`` (MX on 127.R.R.3); each
Mailstead listens on its own address at the same free port, which is also its ``[queue]
remote_port``. ``fwd@a.test`` forwards to ``fwd@b.test`` and back. One message sent to A goes
to B (with ``Delivered-To: fwd@a.test``), back to A (which refuses it: ``554 5.4.6 Mail
forwarding loop``), and B's queue bounces it to the sender, alice@a.test, whose INBOX gets the
report. The count of attempts in both queues' logs shows it stopped there.
"""

from __future__ import annotations

import email
import email.policy
import random
import signal
import smtplib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailstead.testing.nsd import nsd_missing, nsd_server
from mailstead.testing.server import Account, RunningServer, populate, start_server, write_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(nsd_missing() is not None, reason=str(nsd_missing())),
]

DEADLINE = 45.0


def wait_for(check: Callable[[], object], what: str) -> object:
    end = time.monotonic() + DEADLINE
    while not (value := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def zone(prefix: str) -> str:
    return "\n".join([
        "$TTL 60",
        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
        "@ IN NS ns.test.",
        "ns IN A 127.0.0.1",
        "a IN MX 10 mx.a",
        f"mx.a IN A {prefix}.2",
        "b IN MX 10 mx.b",
        f"mx.b IN A {prefix}.3",
    ]) + "\n"  # fmt: skip


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    port = free_port()
    servers: list[RunningServer] = []
    with nsd_server({"test": zone(prefix)}, tmp_path / "nsd") as ns:
        try:
            for name, n, other in (("a", 2, "b"), ("b", 3, "a")):
                config = write_config(
                    tmp_path / name,
                    hostname=f"mx.{name}.test",
                    overrides={
                        "listen": {"smtp": [f"{prefix}.{n}:{port}"]},
                        "dns": {"nameservers": [ns.nameserver]},
                        "queue": {"remote_port": port, "retry_schedule": ["1s"],
                                  "connect_timeout": "5s"},
                    },
                )  # fmt: skip
                populate(
                    config,
                    [f"{name}.test"],
                    [Account(f"alice@{name}.test", "alice-pw")],
                    [(f"fwd@{name}.test", f"fwd@{other}.test")],
                )
                servers.append(start_server(config))
            yield servers[0], servers[1]
        finally:
            for server in servers:
                server.stop(signal.SIGTERM)


def attempts(server: RunningServer) -> list[dict[str, object]]:
    return [e for e in server.log_lines() if e.get("msg") == "queue.attempt"]


def transactions(server: RunningServer, rcpt: str) -> list[dict[str, object]]:
    return [e for e in server.log_lines()
            if e.get("msg") == "smtp.transaction" and e.get("rcpt") == [rcpt]]  # fmt: skip


def test_aliases_forwarding_to_each_other_stop_after_one_round(pair):
    a, b = pair
    mark = uuid.uuid4().hex[:12]
    raw = (
        f"From: <alice@a.test>\r\nTo: <fwd@a.test>\r\nSubject: loop {mark}\r\n"
        f"Message-ID: <{mark}@a.test>\r\n\r\nmarker {mark}\r\n"
    ).encode()
    with smtplib.SMTP(*a.smtp_address, timeout=30) as client:
        assert client.sendmail("alice@a.test", ["fwd@a.test"], raw) == {}

    def report() -> list[bytes]:
        return [m for m in a.messages("alice@a.test") if b"multipart/report" in m]

    [dsn_raw] = wait_for(report, "the bounce in alice's INBOX")
    dsn = email.message_from_bytes(dsn_raw, policy=email.policy.default)
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mx.b.test>"
    _, status, _ = dsn.get_payload()
    [_, recipient] = status.get_payload()
    assert recipient["Final-Recipient"] == "rfc822; fwd@a.test"
    assert recipient["Action"] == "failed" and recipient["Status"] == "5.4.6"
    assert recipient["Diagnostic-Code"] == ("smtp; 554 5.4.6 Mail forwarding loop for <fwd@a.test>")

    # both queues drain: A sent it to B once, B tried A once and bounced (then sent the report)
    def drained() -> bool:
        return all(e.get("state") != "deferred" for e in attempts(a) + attempts(b)) and bool(
            [e for e in attempts(b) if e.get("rcpt") == "alice@a.test"]
        )

    wait_for(drained, "both queues to finish")
    assert [(e["rcpt"], e["state"]) for e in attempts(a)] == [("fwd@b.test", "delivered")]
    assert [(e["rcpt"], e["state"]) for e in attempts(b)] == [
        ("fwd@a.test", "failed"), ("alice@a.test", "delivered")
    ]  # fmt: skip
    # A saw the message twice: from the client, then back from B (refused)
    results = [str(e["result"]) for e in transactions(a, "fwd@a.test")]
    assert results[0].startswith("250 ")
    assert results[1:] == ["554 5.4.6 Mail forwarding loop for <fwd@a.test>"]
    [forwarded] = [e for e in transactions(b, "fwd@b.test")]
    assert str(forwarded["result"]).startswith("250 ")
    assert not [m for m in a.messages("alice@a.test") if f"marker {mark}".encode() in m
                and b"multipart/report" not in m]  # fmt: skip
