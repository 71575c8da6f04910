"""Inbound mail authentication end to end: a real Mailstead with ``[mailauth] verify = true``
asks a private NSD on loopback for the SPF, DKIM and DMARC records of the test domains; the
messages are signed by an independent signer (dkimpy's ``dkim.sign`` and ``dkim.arc_sign``, with
keys made here), sent with smtplib and swaks from 127.0.0.1 to the port-25 listener, and each
outcome is read from the SMTP reply or from the stored message's Authentication-Results field
(parsed by the ``authres`` package), over IMAP for the Junk folder.

The domains (zone ``test`` unless said otherwise; the client is 127.0.0.1):

- ``pass.test`` (``ip4:127.0.0.1 -all``), ``fail.test`` (``-all``), ``soft.test`` (``~all``),
  ``neutral.test`` (``?all``), ``nospf.test`` (no SPF, no DMARC), ``perm.test`` (a record with
  an unknown mechanism); ``broken.test`` is declared to NSD without data (SERVFAIL) and
  ``unserved.example`` is in no zone (REFUSED): both are temporary DNS failures; so is the
  DKIM selector ``broken`` of monitor.test, quar.test and forwarder.test (SERVFAIL zones).
- ``strict.test`` (p=reject), ``quar.test`` (p=quarantine), ``monitor.test`` (p=none), all
  ``-all`` and with RSA (and for strict.test Ed25519) DKIM keys; ``other.test`` (a key, no
  DMARC); ``forwarder.test`` and ``lists.test``, mailing lists that ARC-seal what they pass on
  (only forwarder.test is a trusted sealer).
- ``example.org`` (our domain: its DKIM key made by ``mailstead dkim generate``) and
  ``remote.test`` whose MX nobody answers on, so forwarded mail waits in the queue.
"""

from __future__ import annotations

import base64
import email
import email.policy
import imaplib
import json
import os
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import authres
import dkim as dkimpy
import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailstead.store.sqlite.backend import decode_blob
from mailstead.testing.nsd import NsdServer, nsd_missing, nsd_server
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

HOSTNAME = "mx.example.org"  # the authserv-id
ALICE, ALICE_PW = "alice@example.org", "alice-pw"
FORWARD = "fwd@example.org"  # an alias of a remote address (bob@remote.test)
HELO = "client.test"
DEADLINE = 30.0


# -- keys and zones ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """A DKIM key for dkimpy (``private``) and its TXT record value."""

    private: bytes
    record: str
    algorithm: bytes

    @classmethod
    def rsa(cls) -> Key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode(), b"rsa-sha256")

    @classmethod
    def ed25519(cls) -> Key:
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )  # fmt: skip
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(public).decode()
        return cls(base64.b64encode(seed), record, b"ed25519-sha256")


def txt(name: str, value: str) -> str:
    """A TXT record in zone-file form, the value split into 200-octet character-strings."""
    chunks = [value[i : i + 200] for i in range(0, len(value), 200)]
    return f"{name} IN TXT ( " + " ".join(f'"{c}"' for c in chunks) + " )"


SOA = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ IN NS ns.test.\n"


def zone_test(keys: dict[tuple[str, str], Key], mx_ip: str) -> str:
    lines = [
        "$TTL 60",
        SOA,
        "ns IN A 127.0.0.1",
        "client IN A 127.0.0.1",
        txt("pass", "v=spf1 ip4:127.0.0.1 -all"),
        txt("fail", "v=spf1 -all"),
        txt("soft", "v=spf1 ~all"),
        txt("neutral", "v=spf1 ?all"),
        "nospf IN A 127.0.0.9",
        txt("perm", "v=spf1 ip4:127.0.0.1 bogus:x -all"),
        txt("strict", "v=spf1 -all"),
        txt("_dmarc.strict", "v=DMARC1; p=reject"),
        txt("quar", "v=spf1 -all"),
        txt("_dmarc.quar", "v=DMARC1; p=quarantine"),
        txt("monitor", "v=spf1 -all"),
        txt("_dmarc.monitor", "v=DMARC1; p=none"),
        "other IN A 127.0.0.9",
        txt("forwarder", "v=spf1 ip4:127.0.0.1 -all"),
        txt("lists", "v=spf1 ip4:127.0.0.1 -all"),
        "remote IN MX 10 mx.remote",
        f"mx.remote IN A {mx_ip}",
    ]
    for (domain, selector), key in keys.items():
        lines.append(txt(f"{selector}._domainkey.{domain.removesuffix('.test')}", key.record))
    return "\n".join(lines) + "\n"


def org_zone(dkim_record: str) -> str:
    return "\n".join(["$TTL 60", SOA, "mx IN A 127.0.0.1", dkim_record]) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def cli(config: Path, *args: str) -> str:
    env = {**os.environ, "MAILSTEAD_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- the world: NSD and the servers --------------------------------------------------------------
class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: dict[tuple[str, str], Key] = {
            ("strict.test", "rsa"): Key.rsa(),
            ("strict.test", "ed"): Key.ed25519(),
            ("monitor.test", "rsa"): Key.rsa(),
            ("quar.test", "rsa"): Key.rsa(),
            ("other.test", "rsa"): Key.rsa(),
            ("forwarder.test", "arc"): Key.rsa(),
            ("lists.test", "arc"): Key.rsa(),
        }
        self.ns: NsdServer | None = None
        self.servers: list[RunningServer] = []
        self.queue_port = free_port()  # nobody listens there: forwarded mail stays queued

    def configure(
        self, name: str, nameserver: str = "", timeout: str = "2s", **mailauth: object
    ) -> Path:
        """Write the configuration of server ``name``: [dns] at our NSD (once it runs) or at
        ``nameserver``."""
        dns: dict[str, object] = {"timeout": timeout, "attempts": 1}
        if nameserver or self.ns is not None:
            dns["nameservers"] = [nameserver or (self.ns and self.ns.nameserver)]
        overrides: dict[str, dict[str, object]] = {
            "mailauth": {"verify": True, **mailauth},
            "queue": {"remote_port": self.queue_port, "connect_timeout": "2s"},
            "dns": dns,
        }
        return write_config(self.root / name, hostname=HOSTNAME, overrides=overrides)

    def start(self, name: str, **mailauth: object) -> RunningServer:
        assert self.ns is not None
        config = self.root / name / "mailstead.toml"
        if not config.exists():
            self.configure(name, **mailauth)
            populate(
                config, ["example.org"], [Account(ALICE, ALICE_PW)], [(FORWARD, "bob@remote.test")]
            )
        self.configure(name, **mailauth)  # now with the nameserver
        server = start_server(config)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop(signal.SIGTERM)

    # -- DNS as dkimpy sees it (the same NSD) ----------------------------------------------------
    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes:
        assert self.ns is not None
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        response = dns.query.udp(query, self.ns.host, port=self.ns.port, timeout=timeout)
        for rrset in response.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)
        return b""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("mailauth"))
    # the main server's store holds example.org's DKIM key before NSD publishes it
    config = w.configure("main", arc_trusted_sealers=["forwarder.test"])
    populate(config, ["example.org"], [Account(ALICE, ALICE_PW)], [(FORWARD, "bob@remote.test")])
    record = cli(config, "dkim", "generate", "example.org", "--selector", "s1")
    zones: dict[str, str | None] = {
        "test": zone_test(w.keys, "127.0.0.1"),
        "broken.test": None,  # declared without data: SERVFAIL
        "broken._domainkey.monitor.test": None,  # a DKIM key that cannot be read
        "broken._domainkey.quar.test": None,
        "broken._domainkey.forwarder.test": None,
        "example.org": org_zone(record),
    }
    with nsd_server(zones, w.root / "nsd") as ns:
        w.ns = ns
        try:
            yield w
        finally:
            w.stop()


@pytest.fixture(scope="module")
def server(world) -> RunningServer:
    return world.start("main", arc_trusted_sealers=["forwarder.test"])


# -- messages ----------------------------------------------------------------------------------
def marker() -> str:
    return uuid.uuid4().hex[:12]


def message(mark: str, author: str, *, extra: str = "", to: str = ALICE) -> bytes:
    return (
        f"{extra}From: <{author}>\r\nTo: <{to}>\r\nSubject: test {mark}\r\n"
        f"Date: Mon, 23 Nov 2026 19:00:00 +0000\r\nMessage-ID: <{mark}@{author.split('@')[1]}>\r\n"
        f"\r\nmarker {mark}\r\nSecond line.\r\n"
    ).encode()


def signed(raw: bytes, world: World, domain: str, selector: str) -> bytes:
    key = world.keys[(domain, selector)]
    field = dkimpy.sign(
        raw, selector.encode(), domain.encode(), key.private, signature_algorithm=key.algorithm,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )  # fmt: skip
    return field + raw


def arc_sealed(raw: bytes, world: World, sealer: str, selector: str = "arc") -> bytes:
    """What a mailing list at ``sealer`` passes on: its own Authentication-Results, a footer
    added to the body (so the author's DKIM signature breaks), and its ARC set."""
    results = (
        f"Authentication-Results: {sealer}; dkim=pass header.d=strict.test header.s=rsa;"
        " spf=pass smtp.mailfrom=strict.test; dmarc=pass header.from=strict.test\r\n"
    ).encode()
    changed = results + raw + b"-- \r\nThe list footer\r\n"
    key = world.keys[(sealer, "arc")]
    fields = dkimpy.arc_sign(changed, selector.encode(), sealer.encode(), key.private,
                             sealer.encode())  # fmt: skip
    assert fields, "dkimpy made no ARC set"
    return b"".join(fields) + changed


def send(
    server: RunningServer, mail_from: str, raw: bytes, to: str = ALICE, helo: str = HELO
) -> tuple[int, str]:
    """Send with smtplib; the reply to the end of DATA (250 when accepted)."""
    with smtplib.SMTP(*server.smtp_address, local_hostname=helo, timeout=DEADLINE) as client:
        try:
            client.sendmail(mail_from, [to], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, ""


def stored(server: RunningServer, mark: str, mailbox: str = "INBOX") -> list[bytes]:
    return [m for m in server.messages(ALICE, mailbox) if f"marker {mark}".encode() in m]


def results_fields(raw: bytes) -> list[authres.AuthenticationResultsHeader]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields = []
    for value in msg.get_all("Authentication-Results", []):
        text = " ".join(str(value).split())
        fields.append(authres.AuthenticationResultsHeader.parse("Authentication-Results: " + text))
    return fields


def our_results(raw: bytes) -> dict[str, list[authres.core.AuthenticationResult]]:
    """Our one Authentication-Results field: method -> its results."""
    ours = [f for f in results_fields(raw) if f.authserv_id == HOSTNAME]
    assert len(ours) == 1, raw.decode(errors="replace")
    by_method: dict[str, list[authres.core.AuthenticationResult]] = {}
    for result in ours[0].results:
        by_method.setdefault(result.method, []).append(result)
    return by_method


def prop(result: authres.core.AuthenticationResult, ptype: str, name: str) -> str:
    for p in result.properties:
        if p.type == ptype and p.name == name:
            return str(p.value)
    raise AssertionError(f"no {ptype}.{name} in {result}")


def delivered(
    server: RunningServer, mark: str
) -> dict[str, list[authres.core.AuthenticationResult]]:
    [raw] = stored(server, mark)
    return our_results(raw)


def wait_for(check: Callable[[], object], what: str) -> object:
    end = time.monotonic() + DEADLINE
    while not (value := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


# -- SPF -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("bounce@pass.test", "pass"),
        ("bounce@fail.test", "fail"),
        ("bounce@soft.test", "softfail"),
        ("bounce@neutral.test", "neutral"),
        ("bounce@nospf.test", "none"),
        ("bounce@perm.test", "permerror"),
        ("bounce@broken.test", "temperror"),  # SERVFAIL
        ("bounce@unserved.example", "temperror"),  # REFUSED
    ],
)
def test_spf_result_is_recorded(server, sender, expected):
    mark = marker()
    # the author's domain has no DMARC record: SPF alone decides nothing here
    assert send(server, sender, message(mark, "author@nospf.test")) == (250, "")
    results = delivered(server, mark)
    [spf] = results["spf"]
    assert spf.result == expected
    assert prop(spf, "smtp", "mailfrom") == sender.split("@")[1]
    [dmarc] = results["dmarc"]
    assert dmarc.result == "none"


def test_null_sender_is_checked_by_its_helo(server):
    """MAIL FROM:<> (a bounce): SPF checks postmaster@<HELO> (RFC 7208 §2.4)."""
    mark = marker()
    assert send(server, "", message(mark, "author@nospf.test"), helo="pass.test") == (250, "")
    [spf] = delivered(server, mark)["spf"]
    assert (spf.result, prop(spf, "smtp", "helo")) == ("pass", "pass.test")


def test_spf_with_swaks(server):
    """swaks as the client: SPF pass for its MAIL FROM, and the field is where clients see it."""
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    mark = marker()
    host, port = server.smtp_address
    done = subprocess.run(
        ["swaks", "--server", f"{host}:{port}", "--helo", HELO, "--from", "list@pass.test",
         "--to", ALICE, "--header", "From: <author@nospf.test>", "--body", f"marker {mark}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [spf] = delivered(server, mark)["spf"]
    assert spf.result == "pass"


# -- DKIM ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selector", "algorithm"), [("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")]
)
def test_dkim_pass_satisfies_dmarc_reject(server, world, selector, algorithm):
    """SPF fails (strict.test publishes -all), the aligned DKIM signature passes: DMARC pass."""
    mark = marker()
    raw = signed(message(mark, "author@strict.test"), world, "strict.test", selector)
    assert send(server, "bounce@strict.test", raw) == (250, "")
    results = delivered(server, mark)
    assert [r.result for r in results["spf"]] == ["fail"]
    [sig] = results["dkim"]
    assert sig.result == "pass"
    assert prop(sig, "header", "d") == "strict.test"
    assert prop(sig, "header", "s") == selector
    assert prop(sig, "header", "a") == algorithm
    [dmarc] = results["dmarc"]
    assert (dmarc.result, prop(dmarc, "header", "from")) == ("pass", "strict.test")


def test_tampered_body_fails_dkim_and_p_none_delivers(server, world):
    """DMARC p=none: a failing message is delivered to INBOX with dmarc=fail."""
    mark = marker()
    raw = signed(message(mark, "author@monitor.test"), world, "monitor.test", "rsa")
    raw = raw.replace(b"Second line.", b"Second line, changed.")
    assert send(server, "bounce@monitor.test", raw) == (250, "")
    results = delivered(server, mark)
    [sig] = results["dkim"]
    assert (sig.result, prop(sig, "header", "d")) == ("fail", "monitor.test")
    [dmarc] = results["dmarc"]
    assert (dmarc.result, prop(dmarc, "header", "from")) == ("fail", "monitor.test")
    assert not stored(server, mark, "Junk")


def test_signature_of_another_domain_is_not_aligned(server, world):
    """A valid signature by other.test on a message From monitor.test: dkim=pass for
    other.test, dmarc=fail."""
    mark = marker()
    raw = signed(message(mark, "author@monitor.test"), world, "other.test", "rsa")
    assert send(server, "bounce@monitor.test", raw) == (250, "")
    results = delivered(server, mark)
    [sig] = results["dkim"]
    assert (sig.result, prop(sig, "header", "d")) == ("pass", "other.test")
    [dmarc] = results["dmarc"]
    assert dmarc.result == "fail"


@pytest.mark.parametrize(
    ("author", "mailbox"), [("author@monitor.test", "INBOX"), ("author@quar.test", None)]
)
def test_unreadable_key_of_an_aligned_signature(server, world, author, mailbox):
    """dkim=temperror for the author's domain (SERVFAIL for the key): the DMARC outcome
    depends on it, so p=quarantine waits (451); p=none delivers whatever the key says."""
    mark = marker()
    domain = author.split("@")[1]
    raw = signed(message(mark, author), world, domain, "rsa")
    raw = raw.replace(b" s=rsa;", b" s=broken;", 1)  # the same signature, another selector
    code, text = send(server, f"bounce@{domain}", raw)
    if mailbox is None:
        assert (code, text[:6]) == (451, "4.4.3 ")
        assert not stored(server, mark) and not stored(server, mark, "Junk")
        return
    assert code == 250, text
    results = delivered(server, mark)
    assert [(r.result, prop(r, "header", "s")) for r in results["dkim"]] == [
        ("temperror", "broken")
    ]
    assert [r.result for r in results["dmarc"]] == ["temperror"]


def test_several_transactions_in_one_session(server, world):
    """Each transaction gets its own SPF check; a refused one leaves the next unaffected."""
    marks = [marker() for _ in range(3)]
    with smtplib.SMTP(*server.smtp_address, local_hostname=HELO, timeout=DEADLINE) as client:
        client.sendmail("bounce@pass.test", [ALICE], message(marks[0], "author@nospf.test"))
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("bounce@strict.test", [ALICE], message(marks[1], "author@strict.test"))
        assert refused.value.smtp_code == 550
        client.rset()
        client.mail("bounce@fail.test")
        client.rset()  # an abandoned transaction: its SPF check is dropped
        client.sendmail("bounce@soft.test", [ALICE], message(marks[2], "author@nospf.test"))
    assert [r.result for r in delivered(server, marks[0])["spf"]] == ["pass"]
    assert not stored(server, marks[1])
    [spf] = delivered(server, marks[2])["spf"]
    assert (spf.result, prop(spf, "smtp", "mailfrom")) == ("softfail", "soft.test")


def test_quarantine_of_a_message_that_is_also_forwarded(server):
    """A local recipient and a forwarding alias: the local copy goes to Junk, the forwarded
    one waits in the queue, ARC-sealed."""
    mark = marker()
    with smtplib.SMTP(*server.smtp_address, local_hostname=HELO, timeout=DEADLINE) as client:
        assert client.sendmail("bounce@quar.test", [ALICE, FORWARD],
                               message(mark, "author@quar.test")) == {}  # fmt: skip
    assert stored(server, mark, "Junk") and not stored(server, mark)
    [(_, content)] = wait_for(lambda: queued(server, mark), "the queued copy")
    assert content.startswith(b"ARC-Seal: ")


# -- DMARC ---------------------------------------------------------------------------------------
def test_dmarc_reject_is_refused_at_the_end_of_data(server, world):
    mark = marker()
    raw = signed(message(mark, "author@strict.test"), world, "other.test", "rsa")
    code, text = send(server, "bounce@strict.test", raw)
    assert code == 550
    assert text == "5.7.1 Message rejected by the DMARC policy of strict.test"
    assert not stored(server, mark) and not stored(server, mark, "Junk")


def test_dmarc_reject_with_swaks(server):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    mark = marker()
    host, port = server.smtp_address
    done = subprocess.run(
        ["swaks", "--server", f"{host}:{port}", "--helo", HELO, "--from", "author@strict.test",
         "--to", ALICE, "--body", f"marker {mark}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "<** 550 5.7.1 Message rejected by the DMARC policy of strict.test" in done.stdout
    assert not stored(server, mark)


def test_dmarc_quarantine_goes_to_junk(server):
    mark = marker()
    assert send(server, "bounce@quar.test", message(mark, "author@quar.test")) == (250, "")
    assert not stored(server, mark)
    # as a mail client sees it: the \Junk mailbox holds it
    host, port = server.imap_address
    with imaplib.IMAP4(host, port, timeout=DEADLINE) as imap:
        imap.login(ALICE, ALICE_PW)
        status, listing = imap.list()
        assert status == "OK"
        junk = [line.decode() for line in listing if isinstance(line, bytes) and b"\\Junk" in line]
        assert len(junk) == 1 and junk[0].endswith("Junk")
        assert imap.select("Junk")[0] == "OK"
        status, found = imap.search(None, "BODY", mark)
        [uid] = found[0].split()
        status, data = imap.fetch(uid, "(BODY.PEEK[HEADER])")
        assert status == "OK"
        header = data[0][1]
        assert imap.select("INBOX")[0] == "OK"
        assert imap.search(None, "BODY", mark)[1] == [b""]
        imap.logout()
    [dmarc] = our_results(header)["dmarc"]
    assert (dmarc.result, prop(dmarc, "header", "from")) == ("fail", "quar.test")


@pytest.mark.parametrize("author", ["author@broken.test", "author@unserved.example"])
def test_dmarc_lookup_failure_defers(server, author):
    """SERVFAIL or REFUSED for _dmarc.<From domain>: 451, never 5xx, nothing stored."""
    mark = marker()
    code, text = send(server, "bounce@pass.test", message(mark, author))
    assert code == 451
    assert text.startswith("4.4.3 ")
    assert not stored(server, mark) and not stored(server, mark, "Junk")


# -- the DMARC bypass with a malformed From (issue 11) -------------------------------------------
def spoof(mark: str, from_fields: str) -> bytes:
    return (
        f"{from_fields}To: <{ALICE}>\r\nSubject: test {mark}\r\n"
        f"Message-ID: <{mark}@strict.test>\r\n\r\nmarker {mark}\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("from_fields", "why"),
    [
        ("From: <ceo@monitor.test>\r\nFrom: <ceo@strict.test>\r\n", "2 From header fields"),
        ("From: <ceo@strict.test>, nobody\r\n", "the From field is invalid"),
        ("From: someone@nospf.test <ceo@strict.test>\r\n", "the From field is invalid"),
        ("From: someone@nospf.test; ceo@strict.test\r\n", "the From field is invalid"),
        ("Sender: <ceo@strict.test>\r\n", "no From header field"),
    ],
)
def test_malformed_from_does_not_bypass_dmarc_reject(server, from_fields, why):
    """Each form used to give dmarc=permerror and land in INBOX; now 550 at the end of DATA."""
    mark = marker()
    code, text = send(server, "bounce@fail.test", spoof(mark, from_fields))
    assert code == 550
    assert text.startswith(f"5.7.1 Message refused: {why}"), text
    assert not stored(server, mark) and not stored(server, mark, "Junk")


@pytest.mark.parametrize(
    "authors", ["<ceo@strict.test>, <a@monitor.test>", "<a@nospf.test>, <ceo@strict.test>"]
)
def test_several_from_domains_get_the_strictest_policy(server, authors):
    mark = marker()
    code, text = send(server, "bounce@fail.test", spoof(mark, f"From: {authors}\r\n"))
    assert (code, text) == (550, "5.7.1 Message rejected by the DMARC policy of strict.test")
    assert not stored(server, mark) and not stored(server, mark, "Junk")


# -- ARC -----------------------------------------------------------------------------------------
def test_trusted_arc_sealer_overrides_dmarc_reject(server, world):
    mark = marker()
    original = signed(message(mark, "author@strict.test"), world, "strict.test", "rsa")
    raw = arc_sealed(original, world, "forwarder.test")
    assert send(server, "list-bounces@forwarder.test", raw) == (250, "")
    [stored_raw] = stored(server, mark)
    results = our_results(stored_raw)
    assert [r.result for r in results["dkim"]] == ["fail"]
    assert [r.result for r in results["dmarc"]] == ["fail"]
    assert [r.result for r in results["arc"]] == ["pass"]
    # the list's own field is not ours: kept
    assert [f.authserv_id for f in results_fields(stored_raw)] == [HOSTNAME, "forwarder.test"]


def test_unreadable_key_of_a_trusted_sealer_defers(server, world):
    """The trusted sealer's key cannot be read (SERVFAIL): its chain might pass when asked
    again, so a DMARC p=reject failure waits (451) rather than being refused for good."""
    mark = marker()
    original = signed(message(mark, "author@strict.test"), world, "strict.test", "rsa")
    raw = arc_sealed(original, world, "forwarder.test", selector="broken")
    code, text = send(server, "list-bounces@forwarder.test", raw)
    assert (code, text[:6]) == (451, "4.4.3 ")
    assert not stored(server, mark)


def test_untrusted_arc_sealer_does_not(server, world):
    mark = marker()
    original = signed(message(mark, "author@strict.test"), world, "strict.test", "rsa")
    raw = arc_sealed(original, world, "lists.test")
    code, text = send(server, "list-bounces@lists.test", raw)
    assert (code, text) == (550, "5.7.1 Message rejected by the DMARC policy of strict.test")
    assert not stored(server, mark)


# -- Authentication-Results of others ----------------------------------------------------------
def test_forged_results_of_ours_are_removed(server):
    mark = marker()
    forged = (
        f"Authentication-Results: {HOSTNAME}; dkim=pass header.d=strict.test\r\n"
        "Authentication-Results: (sneaky) MX.Example.ORG;\r\n"
        " dmarc=pass header.from=strict.test\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=nospf.test\r\n"
    )
    raw = message(mark, "author@nospf.test", extra=forged)
    assert send(server, "bounce@nospf.test", raw) == (250, "")
    [stored_raw] = stored(server, mark)
    ids = [f.authserv_id for f in results_fields(stored_raw)]
    assert ids == [HOSTNAME, "other.example"]
    results = our_results(stored_raw)
    assert [r.result for r in results["dkim"]] == ["none"]
    assert [r.result for r in results["dmarc"]] == ["none"]
    assert b"sneaky" not in stored_raw


@pytest.mark.parametrize(
    "forged",
    [
        f"Authentication-Results: {HOSTNAME}.; dmarc=pass header.from=strict.test\r\n",
        f'Authentication-Results: "{HOSTNAME}; dmarc=pass header.from=strict.test\r\n',
    ],
)
def test_forged_results_with_trailing_dot_or_unclosed_quote_are_removed(server, forged):
    mark = marker()
    raw = message(mark, "author@nospf.test", extra=forged)
    assert send(server, "bounce@nospf.test", raw) == (250, "")
    [stored_raw] = stored(server, mark)
    assert stored_raw.count(b"Authentication-Results:") == 1
    assert f"Authentication-Results: {HOSTNAME};".encode() in stored_raw
    assert b"dmarc=pass" not in stored_raw


def arc_tags(header: str, name: str) -> dict[str, str]:
    """The tags of the first ``name`` field in ``header``."""
    msg = email.message_from_string(header + "\r\n", policy=email.policy.compat32)
    value = "".join(str(msg[name]).split())
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


# -- ARC sealing of forwarded mail ---------------------------------------------------------------
def queued(server: RunningServer, mark: str) -> list[tuple[str, bytes]]:
    db = sqlite3.connect(server.data_dir / "mailstead.db")
    try:
        rows = db.execute(
            "SELECT q.queue_id, b.codec, b.data FROM queue_messages q"
            " JOIN blobs b ON b.id = q.blob_id ORDER BY q.id"
        ).fetchall()
    finally:
        db.close()
    found = [(qid, decode_blob(codec, data)) for qid, codec, data in rows]
    return [(qid, raw) for qid, raw in found if f"marker {mark}".encode() in raw]


@pytest.mark.parametrize("chain", ["new", "extended"])
def test_forwarded_mail_is_arc_sealed(server, world, chain):
    mark = marker()
    if chain == "new":
        raw, mail_from = message(mark, "author@nospf.test", to=FORWARD), "bounce@pass.test"
    else:  # a list's chain (i=1) that we extend (i=2)
        original = signed(
            message(mark, "author@strict.test", to=FORWARD), world, "strict.test", "rsa"
        )
        raw, mail_from = (
            arc_sealed(original, world, "forwarder.test"),
            "list-bounces@forwarder.test",
        )
    assert send(server, mail_from, raw, to=FORWARD) == (250, "")
    [(queue_id, content)] = wait_for(lambda: queued(server, mark), "the queued copy")
    shown = json.loads(cli(server.config_path, "queue", "show", queue_id, "--json"))
    instance = 1 if chain == "new" else 2
    # the newest set is in front, sealed by the alias's domain with its key
    assert shown["header"].startswith("ARC-Seal: ")
    seal = arc_tags(shown["header"], "ARC-Seal")
    assert (seal["i"], seal["d"], seal["s"]) == (str(instance), "example.org", "s1")
    assert seal["cv"] == ("none" if chain == "new" else "pass")
    cv, sets, reason = dkimpy.arc_verify(content, dnsfunc=world.dnsfunc)
    assert cv == dkimpy.CV_Pass, reason
    assert len(sets) == instance
    # the AAR of our set carries our results
    aar = [
        line
        for line in content.split(b"\r\n")
        if line.startswith(b"ARC-Authentication-Results: i=%d" % instance)
    ]
    assert aar and HOSTNAME.encode() in aar[0]


# -- other configurations ------------------------------------------------------------------------
@pytest.mark.parametrize(("choice", "mailbox"), [("none", "INBOX"), ("quarantine", "Junk")])
def test_admin_may_deliver_what_dmarc_would_reject(world, choice, mailbox):
    lenient = world.start(f"reject-{choice}", dmarc_reject=choice, dmarc_quarantine="none")
    mark = marker()
    assert send(lenient, "bounce@strict.test", message(mark, "author@strict.test")) == (250, "")
    [raw] = stored(lenient, mark, mailbox)
    [dmarc] = our_results(raw)["dmarc"]
    assert (dmarc.result, prop(dmarc, "header", "from")) == ("fail", "strict.test")
    # dmarc_quarantine = "none": p=quarantine mail is delivered as usual
    mark = marker()
    assert send(lenient, "bounce@quar.test", message(mark, "author@quar.test")) == (250, "")
    assert stored(lenient, mark) and not stored(lenient, mark, "Junk")


def test_dns_timeout_defers(world):
    """A nameserver that never answers: SPF and DMARC time out; 451, never 5xx."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        config = world.configure("silent", nameserver=f"127.0.0.1:{port}", timeout="1s")
        populate(config, ["example.org"], [Account(ALICE, ALICE_PW)])
        deaf = start_server(config)
        world.servers.append(deaf)
        mark = marker()
        started = time.monotonic()
        code, text = send(deaf, "bounce@strict.test", message(mark, "author@strict.test"))
        assert (code, text[:6]) == (451, "4.4.3 ")
        assert time.monotonic() - started < DEADLINE
        assert not stored(deaf, mark) and not stored(deaf, mark, "Junk")
        [line] = [e for e in deaf.log_lines() if e.get("msg") == "smtp.transaction"]
        auth = line["auth"]
        assert isinstance(auth, dict)
        assert (auth["spf"], auth["dmarc"], auth["action"]) == ("temperror", "temperror", "defer")


def test_trusted_network_is_not_checked(world):
    trusting = world.start("trusting", trusted_networks=["127.0.0.0/8"])
    mark = marker()
    assert send(trusting, "bounce@strict.test", message(mark, "author@strict.test")) == (250, "")
    [raw] = stored(trusting, mark)
    assert b"Authentication-Results:" not in raw
