"""DANE for SMTP (RFC 7672): when TLSA records apply to an MX host, and whether a server's
certificate chain matches them.

- ``lookup(hop, resolver)``: DANE applies only when the MX lookup and the host's address lookup
  were DNSSEC-validated (``Hop.dnssec``, §2.2) and the TLSA RRset at ``_25._tcp.<host>`` is
  too (the AD bit). For an MX target that is an alias, the TLSA records of the canonical name
  are asked first, then those of the name itself (§2.2.2). No records, or records the DNS does
  not vouch for: no DANE. A lookup that fails (``TEMPORARY``) on a signed host: the host cannot
  be used now (its records may exist; going on without them would be a downgrade).
- Usable records (§3.1): DANE-TA(2) and DANE-EE(3), selector 0 (certificate) or 1 (public
  key), matching type 0 (exact), 1 (SHA-256) or 2 (SHA-512). PKIX-TA(0) and PKIX-EE(1) are
  unusable for SMTP (§3.1.3). TLSA records, all unusable: TLS is still mandatory, without
  authentication (§2.2).
- ``verify(chain, records, names)``: DANE-EE matches the server's own certificate, with no
  name or date checks (§3.1.1). DANE-TA matches a certificate of the chain the server sent,
  which must then issue the server's certificate through the rest of that chain, with a name
  matching one of ``names`` (the MX host name and the TLSA base domain, §3.2.2) and valid
  dates; checked with ``cryptography``'s X.509 path validation.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from mailstead.dns import TLSA, Resolver, Status
from mailstead.outbound.routing import Hop

SMTP_PORT = 25
DANE_TA = 2
DANE_EE = 3

Outcome = Literal["dane", "none", "temporary"]


@dataclass(frozen=True, slots=True)
class DaneLookup:
    """What the DNS says about one MX host. ``outcome``: ``dane`` (``records`` apply, only the
    usable ones kept; empty means mandatory TLS without authentication), ``none`` (no DANE for
    this host) or ``temporary`` (the TLSA lookup failed on a signed host). ``names`` are the
    reference identifiers for DANE-TA; ``detail`` says why, for logs and replies."""

    outcome: Outcome
    records: tuple[TLSA, ...] = ()
    names: tuple[str, ...] = ()
    detail: str = ""


def usable(record: TLSA) -> bool:
    """RFC 7672 §3.1: DANE-TA and DANE-EE only, with a selector and matching type we know."""
    return (
        record.usage in (DANE_TA, DANE_EE)
        and record.selector in (0, 1)
        and record.matching_type in (0, 1, 2)
    )


async def lookup(hop: Hop, resolver: Resolver, port: int = SMTP_PORT) -> DaneLookup:
    if not hop.dnssec:
        return DaneLookup("none", detail=f"{hop.host}: MX or address records not DNSSEC-signed")
    bases = [hop.alias_of, hop.host] if hop.alias_of else [hop.host]
    for base in bases:
        name = f"_{port}._tcp.{base}"
        answer = await resolver.tlsa(name)
        if answer.status is Status.TEMPORARY:
            return DaneLookup("temporary", detail=f"TLSA lookup of {name} failed: {answer.detail}")
        if not answer.found:
            continue
        if not answer.authentic:
            return DaneLookup("none", detail=f"{name}: TLSA records not DNSSEC-validated")
        records = tuple(r for r in answer.records if usable(r))
        names = tuple(dict.fromkeys((hop.host, base)))
        return DaneLookup("dane", records, names, f"{name}: {len(records)} usable TLSA records")
    return DaneLookup("none", detail=f"{hop.host}: no TLSA records")


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matches(record: TLSA, cert: x509.Certificate) -> bool:
    data = _selected(cert, record.selector)
    if record.matching_type == 1:
        data = hashlib.sha256(data).digest()
    elif record.matching_type == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def _issued_through(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchor: x509.Certificate,
    names: Sequence[str],
    now: datetime.datetime,
) -> bool:
    for name in names:
        verifier = (
            PolicyBuilder()
            .store(Store([anchor]))
            .time(now)
            .build_server_verifier(x509.DNSName(name))
        )
        try:
            verifier.verify(leaf, intermediates)
        except (VerificationError, ValueError):
            continue
        return True
    return False


def verify(
    chain: Sequence[bytes],
    records: Sequence[TLSA],
    names: Sequence[str],
    *,
    now: datetime.datetime | None = None,
) -> str | None:
    """None when the chain (DER, the server's certificate first) matches one of ``records``;
    else why not. An empty ``records`` asks for no authentication (None)."""
    if not records:
        return None
    if not chain:
        return "DANE: the server sent no certificate"
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        return f"DANE: unreadable certificate: {exc}"
    leaf = certs[0]
    for record in records:
        if record.usage == DANE_EE and _matches(record, leaf):
            return None  # §3.1.1: the key is the identity; no name or expiry checks
    when = now or datetime.datetime.now(datetime.UTC)
    for record in records:
        if record.usage != DANE_TA:
            continue
        for i, cert in enumerate(certs[1:], start=1):
            if _matches(record, cert) and _issued_through(leaf, certs[1:i], cert, names, when):
                return None
    usages = sorted({f"{r.usage} {r.selector} {r.matching_type}" for r in records})
    return f"DANE: no TLSA record ({', '.join(usages)}) matches the server's certificate chain"
