"""What a lookup returns: one ``Answer`` type for every record type, with an explicit outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

T = TypeVar("T", covariant=True)  # an Answer[MX] is an Answer[object]

IPAddress = IPv4Address | IPv6Address


class Status(enum.Enum):
    """The outcome of one lookup. Only ``TEMPORARY`` may change by asking again soon."""

    FOUND = "found"
    """Records of the type asked exist (``records`` is not empty)."""
    NXDOMAIN = "nxdomain"
    """The name does not exist (rcode NXDOMAIN; after CNAMEs, the last name in the chain)."""
    NO_DATA = "no-data"
    """The name exists but has no record of the type asked (NOERROR, empty answer)."""
    TEMPORARY = "temporary"
    """No usable answer: timeout, SERVFAIL, REFUSED, no nameserver reachable. Never read as a
    permanent result."""
    INVALID = "invalid"
    """The name cannot be asked at all (empty label, over 63/255 octets, bad IDNA); no query
    was sent."""


@dataclass(frozen=True, slots=True)
class MX:
    """One MX record. ``host`` is "." for the root (RFC 7505 null MX)."""

    preference: int
    host: str

    @property
    def is_null(self) -> bool:
        return self.host == "."


@dataclass(frozen=True, slots=True)
class TLSA:
    """One TLSA record (RFC 6698 §2.1)."""

    usage: int
    selector: int
    matching_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SRV:
    """One SRV record (RFC 2782). ``target`` is "." when the service is decidedly not offered
    (RFC 2782, RFC 6186 §3.4)."""

    priority: int
    weight: int
    port: int
    target: str

    @property
    def is_null(self) -> bool:
        return self.target == "."


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """The answer to one question. Names are A-labels in lower case without the final dot.

    ``ttl`` is how many more seconds the answer may be reused: the smallest TTL of the records
    and CNAMEs for ``FOUND``, the negative TTL (RFC 2308 §5) for ``NXDOMAIN`` and ``NO_DATA``,
    0 for ``TEMPORARY`` and ``INVALID``. ``cnames`` lists the names the answer was reached
    through, in order, when the asked name is an alias; the last is the canonical name.
    ``authentic`` is the AD bit of the response: a DNSSEC-validating resolver vouches for it
    (meaningful only when the path to that resolver is trusted, e.g. loopback)."""

    status: Status
    name: str
    records: tuple[T, ...] = ()
    ttl: int = 0
    cnames: tuple[str, ...] = ()
    authentic: bool = False
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.status is Status.FOUND

    @property
    def temporary(self) -> bool:
        return self.status is Status.TEMPORARY

    @property
    def canonical_name(self) -> str:
        return self.cnames[-1] if self.cnames else self.name


def combine_addresses(
    name: str, six: Answer[IPv6Address], four: Answer[IPv4Address]
) -> Answer[IPAddress]:
    """The AAAA and A answers for ``name`` as one: IPv6 addresses first. Records of one family
    are enough for ``FOUND`` (the other family's trouble is kept in ``detail``); without any, a
    temporary failure of either makes the whole temporary."""
    parts: tuple[Answer[IPv6Address] | Answer[IPv4Address], ...] = (six, four)
    records: tuple[IPAddress, ...] = (*six.records, *four.records)
    problems = "; ".join(
        f"{kind}: {part.detail or part.status.value}"
        for kind, part in zip(("AAAA", "A"), parts, strict=True)
        if part.status in (Status.TEMPORARY, Status.INVALID)
    )
    cnames = next((part.cnames for part in parts if part.cnames), ())
    if records:
        found = [part for part in parts if part.found]
        return Answer(
            Status.FOUND,
            name,
            records,
            ttl=min(part.ttl for part in found),
            cnames=cnames,
            authentic=all(part.authentic for part in found),
            detail=problems,
        )
    if any(part.temporary for part in parts):
        return Answer(Status.TEMPORARY, name, cnames=cnames, detail=problems)
    if any(part.status is Status.INVALID for part in parts):
        return Answer(Status.INVALID, name, detail=problems)
    status = Status.NXDOMAIN if all(p.status is Status.NXDOMAIN for p in parts) else Status.NO_DATA
    return Answer(
        status,
        name,
        ttl=min(part.ttl for part in parts),
        cnames=cnames,
        authentic=all(part.authentic for part in parts),
    )
