"""Outbound TLS policy end to end: a relay (a second Mailstead's submission listener, AUTH over
TLS verified against its test certificate), MTA-STS (RFC 8461) with a private NSD and an HTTPS
policy server of the test's own CA, and DANE (RFC 7672) with a zone signed at test time behind
a validating unbound.

Every peer listens on loopback: the relay on its own free ports, MX hosts on 127.R.R.n (R random
per test) at ``[queue] remote_port``.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from mailstead.testing.dnssec import dnssec_missing, sign_zone, unbound_server
from mailstead.testing.nsd import nsd_missing, nsd_server
from mailstead.testing.pki import TestCA, cert_sha256, spki_sha256
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


# --- 2. MTA-STS ---------------------------------------------------------------------------------
class PolicyServer:
    """HTTPS (http.server in a thread) on ip:port with a certificate of ``ca`` for every
    ``mta-sts.<domain>``; answers the policy of the Host asked, 500 while ``failing``."""

    def __init__(self, ip: str, port: int, ca: TestCA, policies: dict[str, str], tmp: Path):
        self.policies = policies
        self.failing = False
        self.requests: list[str] = []
        names = [f"mta-sts.{d}" for d in policies]
        ca.issue(names, tmp / "https.pem", tmp / "https.key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "https.pem", tmp / "https.key")
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").removeprefix("mta-sts.")
                owner.requests.append(host)
                body = owner.policies.get(host)
                if owner.failing or body is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(500 if owner.failing else 404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((ip, port), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sts_policy(mode: str, *mx: str) -> str:
    return (
        f"version: STSv1\nmode: {mode}\n" + "".join(f"mx: {m}\n" for m in mx) + ("max_age: 86400\n")
    )


STS_DOMAINS = {  # domain: (its MX hosts, its policy)
    "enforce.test": (["10 mx.good"], sts_policy("enforce", "mx.good.test")),
    "notlisted.test": (["10 mx.good"], sts_policy("enforce", "mail.notlisted.test")),
    "badcert.test": (["10 mx.bad"], sts_policy("enforce", "mx.bad.test")),
    "trying.test": (["10 mx.bad"], sts_policy("testing", "*.test")),
    "cached.test": (["10 mx.bad", "20 mx.good"], sts_policy("enforce", "mx.good.test")),
}


class StsWorld:
    """NSD for *.test, a policy server, an MX with a certificate of the test CA (mx.good.test,
    127.R.R.2) and one with a self-signed certificate (mx.bad.test, 127.R.R.3)."""

    def __init__(self, peers: Peers, tmp_path: Path, prefix: str, nameserver: str) -> None:
        self.peers = peers
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.nameserver = nameserver
        self.port = free_port()
        self.https_port = free_port()
        self.ca = TestCA()
        self.ca_file = self.ca.write_ca(tmp_path / "ca.pem")
        policies = {domain: policy for domain, (_, policy) in STS_DOMAINS.items()}
        self.policy_server = PolicyServer(
            f"{prefix}.4", self.https_port, self.ca, policies, tmp_path
        )
        domains = list(STS_DOMAINS)
        self.good = self.mx("mx.good.test", 2, domains, trusted=True)
        self.bad = self.mx("mx.bad.test", 3, domains, trusted=False)

    def mx(self, name: str, n: int, domains: list[str], *, trusted: bool) -> RunningServer:
        data_dir = self.tmp_path / name
        if trusted:  # write_config keeps a certificate already there
            self.ca.issue([name], data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem")
        config = write_config(
            data_dir, hostname=name,
            overrides={"listen": {"smtp": [f"{self.prefix}.{n}:{self.port}"]}},
        )  # fmt: skip
        populate(config, domains, [Account(f"u@{d}", "pw") for d in domains])
        return self.peers.start(config)

    def sender(self) -> RunningServer:
        config = write_config(
            self.tmp_path / "sender",
            hostname="mx.example.org",
            overrides={
                "dns": {"nameservers": [self.nameserver]},
                "queue": {
                    "retry_schedule": ["1s"], "max_age": "1h", "connect_timeout": "5s",
                    "remote_port": self.port, "mta_sts_port": self.https_port,
                    "mta_sts_ca_file": str(self.ca_file),
                },
            },
        )  # fmt: skip
        if not (config.parent / "mailstead.db").exists():
            populate(config, ["example.org"], [Account(ALICE, ALICE_PW)])
        return self.peers.start(config)

    def close(self) -> None:
        self.policy_server.close()


def sts_zone(prefix: str) -> str:
    lines = [
        "$TTL 60",
        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
        "@ IN NS ns.test.",
        "ns IN A 127.0.0.1",
        f"mx.good IN A {prefix}.2",
        f"mx.bad IN A {prefix}.3",
    ]
    for domain, (mx, _) in STS_DOMAINS.items():
        label = domain.removesuffix(".test")
        lines += [f"{label} IN MX {m}" for m in mx]
        lines.append(f'_mta-sts.{label} IN TXT "v=STSv1; id=20260101"')
        lines.append(f"mta-sts.{label} IN A {prefix}.4")
    return "\n".join(lines) + "\n"


@pytest.fixture
def sts(peers, tmp_path) -> Iterator[StsWorld]:
    if nsd_missing():
        pytest.skip(str(nsd_missing()))
    prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    with nsd_server({"test": sts_zone(prefix)}, tmp_path / "nsd") as ns:
        world = StsWorld(peers, tmp_path, prefix, ns.nameserver)
        try:
            yield world
        finally:
            world.close()


def received_over_tls(copy: bytes) -> bool:
    return b" with ESMTPS id " in copy.split(b"\r\n\r\n", 1)[0]


def deferred_with(server: RunningServer, rcpt: str, text: str) -> bool:
    return any(r[0] == rcpt and r[1] == "deferred" and text in (r[3] or "")
               for r in queue_rows(server))  # fmt: skip


def test_mta_sts_enforce_and_testing(sts):
    sender = sts.sender()
    marks = {domain: marker() for domain in ("enforce", "notlisted", "badcert", "trying")}
    for label, mark in marks.items():
        submit(sender, [f"u@{label}.test"], message(mark, f"u@{label}.test"))
    # enforce, the MX in the policy, a certificate valid for its name: delivered over TLS
    [copy] = wait_for(lambda: with_marker(sts.good.messages("u@enforce.test"), marks["enforce"]),
                      "the enforced delivery")  # fmt: skip
    assert received_over_tls(copy)
    # testing: the bad certificate does not stop it
    [tried] = wait_for(lambda: with_marker(sts.bad.messages("u@trying.test"), marks["trying"]),
                       "the testing-mode delivery")  # fmt: skip
    assert received_over_tls(tried)
    # enforce, the MX not in the policy: deferred (never bounced, never sent)
    wait_for(lambda: deferred_with(sender, "u@notlisted.test", "MTA-STS"), "notlisted deferred")
    # enforce, a certificate the CA did not issue: deferred
    wait_for(
        lambda: deferred_with(sender, "u@badcert.test", "certificate verification failed"),
        "badcert deferred",
    )
    assert not with_marker(sts.good.messages("u@notlisted.test"), marks["notlisted"])
    assert not with_marker(sts.bad.messages("u@badcert.test"), marks["badcert"])
    assert not [m for m in sender.messages(ALICE) if b"multipart/report" in m]
    logged = [e for e in sender.log_lines() if e.get("msg") == "mta_sts.testing"]
    assert logged and logged[0]["domain"] == "trying.test"


def test_mta_sts_policy_survives_a_restart_and_a_failed_fetch(sts):
    sender = sts.sender()
    first = marker()
    submit(sender, ["u@cached.test"], message(first, "u@cached.test"))
    # the preferred MX (mx.bad) is not in the policy: mail goes to mx.good
    wait_for(lambda: with_marker(sts.good.messages("u@cached.test"), first), "first delivery")
    assert sts.policy_server.requests.count("cached.test") == 1
    cache_file = sender.data_dir / "mta-sts" / "cached.test.json"
    assert json.loads(cache_file.read_text())["mode"] == "enforce"

    # restart with the policy server down: the cached policy (same TXT id) is used, unfetched
    sender.stop()
    sts.policy_server.failing = True
    sender = sts.sender()
    second = marker()
    submit(sender, ["u@cached.test"], message(second, "u@cached.test"))
    wait_for(lambda: with_marker(sts.good.messages("u@cached.test"), second), "second delivery")
    assert sts.policy_server.requests.count("cached.test") == 1

    # a policy cached under an older id: the fetch (failing) is tried, the cached one applies
    sender.stop()
    data = json.loads(cache_file.read_text())
    cache_file.write_text(json.dumps({**data, "id": "older"}))
    sender = sts.sender()
    third = marker()
    submit(sender, ["u@cached.test"], message(third, "u@cached.test"))
    wait_for(lambda: with_marker(sts.good.messages("u@cached.test"), third), "third delivery")
    assert sts.policy_server.requests.count("cached.test") == 2
    assert not any(
        with_marker(sts.bad.messages("u@cached.test"), m) for m in (first, second, third)
    )
    failed = [e for e in sender.log_lines() if e.get("msg") == "mta_sts.fetch_failed"]
    assert failed and failed[0]["cached"] == "older"


# --- 3. DANE ------------------------------------------------------------------------------------
def dane_zone(prefix: str, tlsa: dict[str, str]) -> str:
    lines = [
        "$TTL 60",
        "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
        "@ IN NS ns.test.",
        "ns IN A 127.0.0.1",
    ]
    hosts = {"good": 2, "wrong": 3, "nostarttls": 4, "ta": 5, "bogus": 2}
    for label, n in hosts.items():
        lines += [f"{label} IN MX 10 mx.{label}", f"mx.{label} IN A {prefix}.{n}"]
        lines.append(f"_25._tcp.mx.{label} IN TLSA {tlsa[label]}")
    return "\n".join(lines) + "\n"


def plain_zone(prefix: str) -> str:
    return "\n".join([
        "$TTL 60",
        "@ IN SOA ns.plain. hostmaster.plain. 1 3600 600 86400 60",
        "@ IN NS ns.plain.",
        "ns IN A 127.0.0.1",
        "x IN MX 10 mx.x",
        f"mx.x IN A {prefix}.2",
        "_25._tcp.mx.x IN TLSA 3 1 1 " + "ab" * 32,  # unsigned: never used
    ]) + "\n"  # fmt: skip


def test_dane(peers, tmp_path):
    if nsd_missing() or dnssec_missing():
        pytest.skip(str(nsd_missing() or dnssec_missing()))
    prefix = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    port = free_port()
    ca = TestCA()

    def peer_config(name: str, n: int, domains: list[str], *, ca_issued: bool = False) -> Path:
        data_dir = tmp_path / name
        if ca_issued:  # the file holds the leaf and the CA: a DANE-TA server sends its anchor
            ca.issue([name], data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem")
        config = write_config(data_dir, hostname=name,
                              overrides={"listen": {"smtp": [f"{prefix}.{n}:{port}"]}})  # fmt: skip
        populate(config, domains, [Account(f"u@{d}", "pw") for d in domains])
        return config

    good = peer_config("mx.good.test", 2, ["good.test", "x.plain", "bogus.test"])
    wrong = peer_config("mx.wrong.test", 3, ["wrong.test"])
    anchored = peer_config("mx.ta.test", 5, ["ta.test"], ca_issued=True)
    good_cert = x509.load_pem_x509_certificate((good.parent / "tls" / "cert.pem").read_bytes())
    tlsa = {
        "good": f"3 1 1 {spki_sha256(good_cert)}",
        "wrong": f"3 1 1 {spki_sha256(good_cert)}",  # not mx.wrong's key
        "nostarttls": f"3 1 1 {spki_sha256(good_cert)}",
        "ta": f"2 0 1 {cert_sha256(ca.certificate)}",
        "bogus": f"3 1 1 {spki_sha256(good_cert)}",
    }
    signed = sign_zone("test", dane_zone(prefix, tlsa), tmp_path / "keys")
    # a record changed after signing: its signature no longer verifies (bogus: SERVFAIL)
    lines = signed.text.splitlines()
    [index] = [i for i, line in enumerate(lines)
               if line.startswith("_25._tcp.mx.bogus.test.") and "\tTLSA\t" in line]  # fmt: skip
    lines[index] = lines[index][:-8] + "00000000"
    zones = {"test": "\n".join(lines) + "\n", "plain": plain_zone(prefix)}
    with (
        nsd_server(zones, tmp_path / "nsd") as ns,
        unbound_server(ns, ["test", "plain"], signed.trust_anchor, tmp_path / "unbound",
                       signed=["test"]) as resolver,
    ):  # fmt: skip
        good_mx, wrong_mx, ta_mx = peers.start(good), peers.start(wrong), peers.start(anchored)
        sink = peers.sink(f"{prefix}.4", port)  # no STARTTLS
        sender = peers.sender(remote_port=port, toml=(
            ("dns", f'nameservers = ["{resolver.nameserver}"]'),))  # fmt: skip
        marks = {label: marker() for label in ("good", "wrong", "nostarttls", "ta", "bogus")}
        marks["plain"] = marker()
        to = {label: f"u@{label}.test" for label in marks} | {"plain": "u@x.plain"}
        for label, mark in marks.items():
            submit(sender, [to[label]], message(mark, to[label]))

        # DANE-EE 3 1 1 matching: delivered over TLS
        [copy] = wait_for(lambda: with_marker(good_mx.messages(to["good"]), marks["good"]),
                          "the DANE-EE delivery")  # fmt: skip
        assert received_over_tls(copy)
        # DANE-TA 2 0 1: the test CA in the chain, the name checked
        [copy] = wait_for(lambda: with_marker(ta_mx.messages(to["ta"]), marks["ta"]),
                          "the DANE-TA delivery")  # fmt: skip
        assert received_over_tls(copy)
        # an unsigned zone's TLSA records are ignored: opportunistic, delivered
        [copy] = wait_for(lambda: with_marker(good_mx.messages(to["plain"]), marks["plain"]),
                          "the unsigned zone's delivery")  # fmt: skip
        # a mismatching TLSA record: deferred, never sent
        wait_for(lambda: deferred_with(sender, to["wrong"], "DANE: no TLSA record"), "wrong")
        # TLSA records and no STARTTLS: deferred, never sent in clear
        wait_for(lambda: deferred_with(sender, to["nostarttls"], "STARTTLS was not offered"),
                 "nostarttls")  # fmt: skip
        # a TLSA lookup that fails on the signed zone: deferred
        wait_for(lambda: deferred_with(sender, to["bogus"], "TLSA lookup of"), "bogus")
        assert not with_marker(wrong_mx.messages(to["wrong"]), marks["wrong"])
        assert not dumped(sink, marks["nostarttls"])
        assert not with_marker(good_mx.messages(to["bogus"]), marks["bogus"])
        assert not [m for m in sender.messages(ALICE) if b"multipart/report" in m]
        plans = [e for e in sender.log_lines() if e.get("msg") == "queue.tls_policy"]
        planned = {(p["domain"], json.dumps(p["hosts"], sort_keys=True)) for p in plans}
        assert ("good.test", '{"mx.good.test": "dane"}') in planned
        assert ("ta.test", '{"mx.ta.test": "dane"}') in planned
        assert not any(domain == "x.plain" for domain, _ in planned)
        sender.stop()
