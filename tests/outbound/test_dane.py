"""DANE (RFC 7672): which TLSA records are usable, when they apply to an MX host, and the
certificate chain checks (DANE-EE without names or dates, DANE-TA with both)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress

import pytest
from cryptography.hazmat.primitives import serialization

from mailstead.dns import TLSA
from mailstead.outbound import dane
from mailstead.outbound.policy import OutboundTls, TlsPlan
from mailstead.outbound.routing import Failover, Hop, route
from mailstead.outbound.sender import TlsMode
from mailstead.testing.dns import FakeResolver
from mailstead.testing.pki import TestCA, cert_sha256, spki_sha256

MX = "mx.example.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca = TestCA()
    leaf = ca.issue([MX], tmp / "leaf.pem", tmp / "leaf.key")
    expired = ca.issue([MX], tmp / "old.pem", tmp / "old.key", expired=True)
    other = TestCA("Another CA")
    return ca, leaf, expired, other


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def tlsa(usage, selector, mtype, data) -> TLSA:
    return TLSA(usage, selector, mtype, bytes.fromhex(data) if isinstance(data, str) else data)


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        ((3, 1, 1), True), ((3, 0, 2), True), ((2, 0, 1), True), ((2, 1, 0), True),
        ((0, 0, 1), False), ((1, 1, 1), False),  # §3.1.3: PKIX-TA and PKIX-EE are unusable
        ((3, 2, 1), False), ((3, 1, 3), False), ((4, 1, 1), False),
    ],
)  # fmt: skip
def test_usable_records(record, ok):
    assert dane.usable(tlsa(*record, b"x")) is ok


def test_dane_ee_matches_the_servers_key_or_certificate(pki):
    ca, leaf, expired, _ = pki
    chain = [der(leaf), ca.der]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for record in (
        tlsa(3, 1, 1, spki_sha256(leaf)),
        tlsa(3, 0, 1, cert_sha256(leaf)),
        tlsa(3, 1, 0, spki),
        tlsa(3, 1, 2, hashlib.sha512(spki).hexdigest()),
    ):
        assert dane.verify(chain, [record], ["any.name.example"]) is None
    wrong = tlsa(3, 1, 1, spki_sha256(expired))
    assert "no TLSA record (3 1 1) matches" in dane.verify(chain, [wrong], [MX])
    # §3.1.1: no name and no date checks for DANE-EE
    assert dane.verify([der(expired)], [tlsa(3, 1, 1, spki_sha256(expired))], ["x.test"]) is None
    # one matching record among several is enough
    assert dane.verify(chain, [wrong, tlsa(3, 1, 1, spki_sha256(leaf))], [MX]) is None


def test_dane_ta_needs_the_anchor_in_the_chain_a_name_and_valid_dates(pki):
    ca, leaf, expired, other = pki
    anchor = tlsa(2, 0, 1, cert_sha256(ca.certificate))
    assert dane.verify([der(leaf), ca.der], [anchor], [MX]) is None
    assert dane.verify([der(leaf), ca.der], [tlsa(2, 1, 1, spki_sha256(ca.certificate))],
                       ["other.test", MX]) is None  # fmt: skip
    assert dane.verify([der(leaf), ca.der], [anchor], ["other.test"]) is not None  # name
    assert dane.verify([der(leaf)], [anchor], [MX]) is not None  # anchor not sent
    assert dane.verify([der(expired), ca.der], [anchor], [MX]) is not None  # dates
    foreign = tlsa(2, 0, 1, cert_sha256(other.certificate))
    assert dane.verify([der(leaf), ca.der], [foreign], [MX]) is not None
    # a PKIX-EE record would match the key, but is never used for SMTP
    assert dane.verify([der(leaf)], [tlsa(1, 1, 1, spki_sha256(leaf))], [MX]) is not None
    assert dane.verify([], [anchor], [MX]) is not None
    assert dane.verify([der(leaf)], [], [MX]) is None  # records all unusable: TLS, no auth


def hop(dnssec: bool, alias_of: str | None = None) -> Hop:
    return Hop(MX, 10, (ipaddress.ip_address("127.0.0.1"),), 25, alias_of, dnssec)


def look(h: Hop, resolver: FakeResolver) -> dane.DaneLookup:
    return asyncio.run(dane.lookup(h, resolver))


def test_when_tlsa_records_apply():
    records = {f"_25._tcp.{MX}": {"TLSA": [(3, 1, 1, "ab" * 32), (1, 1, 1, "cd" * 32)]}}
    signed = FakeResolver(records, authentic=True)
    found = look(hop(True), signed)
    assert (found.outcome, found.names) == ("dane", (MX,))
    assert found.records == (tlsa(3, 1, 1, "ab" * 32),)  # the PKIX-EE record dropped
    assert look(hop(False), signed).outcome == "none"  # the MX or address lookup was insecure
    assert signed.queries[-1] == f"TLSA _25._tcp.{MX}"
    assert look(hop(True), FakeResolver(records)).outcome == "none"  # TLSA not validated
    assert look(hop(True), FakeResolver({}, authentic=True)).outcome == "none"
    failing = FakeResolver(records, authentic=True, temporary={f"TLSA _25._tcp.{MX}"})
    assert look(hop(True), failing).outcome == "temporary"
    # an alias: the canonical name's records first, then the name's own
    aliased = FakeResolver({"_25._tcp.real.example.test": {"TLSA": [(3, 1, 1, "ab" * 32)]}},
                           authentic=True)  # fmt: skip
    found = look(hop(True, "real.example.test"), aliased)
    assert (found.outcome, found.names) == ("dane", (MX, "real.example.test"))


def test_routes_carry_the_dnssec_status_and_dane_applies():
    records = {
        "example.test": {"MX": [(10, MX)]},
        MX: {"A": "127.0.0.1"},
        f"_25._tcp.{MX}": {"TLSA": [(3, 1, 1, "ab" * 32)]},
    }

    async def main(resolver):
        found = await route("example.test", resolver)
        return found, await OutboundTls(dane_resolver=resolver).plan(found)

    found, plan = asyncio.run(main(FakeResolver(records, authentic=True)))
    assert found.hops[0].dnssec
    assert isinstance(plan, TlsPlan)
    [target] = list(Failover(plan.route))
    connection = plan.connection(target)
    assert connection.source == "dane" and connection.tls.mode is TlsMode.REQUIRED
    assert connection.tls.dane == (tlsa(3, 1, 1, "ab" * 32),)

    found, plan = asyncio.run(main(FakeResolver(records)))  # unsigned: opportunistic
    assert not found.hops[0].dnssec
    [target] = list(Failover(plan.route))
    assert plan.connection(target).tls.mode is TlsMode.OPPORTUNISTIC

    failing = FakeResolver(records, authentic=True, temporary={f"TLSA _25._tcp.{MX}"})
    failure = asyncio.run(main(failing))[1]
    assert (failure.code, failure.status, failure.permanent) == (451, "4.4.3", False)
