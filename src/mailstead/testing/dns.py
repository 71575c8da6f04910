"""``FakeResolver``: the ``mailstead.dns.Resolver`` interface answered from a record map.

    resolver = FakeResolver({
        "example.org": {"MX": [(10, "mx1.example.org"), "20 mx2.example.org"]},
        "mx1.example.org": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
        "www.example.org": {"CNAME": "example.org"},
        "192.0.2.1": {"PTR": ["mx1.example.org"]},       # an address key means its reverse name
        "_25._tcp.mx1.example.org": {"TLSA": [(3, 1, 1, "ab12...")]},
        "_imaps._tcp.example.org": {"SRV": ["0 1 993 mx1.example.org", (0, 0, 0, ".")]},
        "example.org.": {"TXT": ["v=spf1 -all"]},         # keys are normalised like queries
    }, temporary={"MX broken.example", "down.example"})

Names are compared as the real resolver asks them (U-labels become A-labels, case and the
final dot do not matter). A name that is a key, or has a key below it (an empty non-terminal),
exists: a type it lacks is ``NO_DATA``; any other name is ``NXDOMAIN``. CNAMEs are followed
for every other type and reported in ``cnames``. ``temporary`` holds "TYPE name" or "name"
(every type) that fail with ``TEMPORARY``. ``queries`` records every question asked, as
"TYPE name", in order, so tests can check what was (not) asked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TypeVar

import dns.reversename

from mailstead.dns import (
    MX,
    SRV,
    TLSA,
    Answer,
    InvalidName,
    IPAddress,
    Status,
    combine_addresses,
    normalize_name,
)

T = TypeVar("T")

TYPES = ("A", "AAAA", "MX", "TXT", "TLSA", "PTR", "SRV", "CNAME")
MAX_CHAIN = 16


def _key(name: str, rtype: str = "") -> str:
    """A record-map key as the resolver would ask it; for PTR an IP address stands for its
    reverse name."""
    if rtype == "PTR":
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            return normalize_name(dns.reversename.from_address(str(address)).to_text())
    return normalize_name(name)


def _mx(value: Any) -> MX:
    if isinstance(value, MX):
        return value
    if isinstance(value, str):
        preference, host = value.split()
        value = (int(preference), host)
    preference, host = value
    return MX(int(preference), "." if host in (".", "") else normalize_name(host))


def _tlsa(value: Any) -> TLSA:
    if isinstance(value, TLSA):
        return value
    usage, selector, matching_type, data = value
    raw = bytes.fromhex(data) if isinstance(data, str) else bytes(data)
    return TLSA(int(usage), int(selector), int(matching_type), raw)


def _srv(value: Any) -> SRV:
    if isinstance(value, SRV):
        return value
    if isinstance(value, str):
        value = value.split()
    priority, weight, port, target = value
    target = "." if target in (".", "") else normalize_name(target)
    return SRV(int(priority), int(weight), int(port), target)


def _records(rtype: str, values: Any) -> tuple[Any, ...] | str:
    if rtype == "CNAME":
        return normalize_name(values)
    single = isinstance(values, str | bytes | tuple) and rtype != "MX"
    if single and rtype == "SRV" and isinstance(values, tuple):
        single = bool(values) and isinstance(values[0], int)  # (0, 1, 993, "host")
    if single:
        values = [values]
    if rtype == "A":
        return tuple(IPv4Address(v) for v in values)
    if rtype == "AAAA":
        return tuple(IPv6Address(v) for v in values)
    if rtype == "MX":
        return tuple(_mx(v) for v in values)
    if rtype == "TXT":
        return tuple(v.encode() if isinstance(v, str) else bytes(v) for v in values)
    if rtype == "TLSA":
        return tuple(_tlsa(v) for v in values)
    if rtype == "SRV":
        return tuple(_srv(v) for v in values)
    return tuple(normalize_name(v) for v in values)  # PTR


class FakeResolver:
    """A ``Resolver`` over a record map (see the module docstring). Mutate it with ``add`` and
    ``temporary`` between lookups; nothing is cached."""

    def __init__(
        self,
        records: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        temporary: Iterable[str] = (),
        ttl: int = 300,
        negative_ttl: int = 60,
        authentic: bool = False,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.authentic = authentic
        self.records: dict[str, dict[str, Any]] = {}
        self.temporary: set[str] = set()
        self.queries: list[str] = []
        for name, types in (records or {}).items():
            for rtype, values in types.items():
                self.add(name, rtype, values)
        for item in temporary:
            self.fail(item)

    def add(self, name: str, rtype: str, values: Any) -> None:
        """Set the ``rtype`` records of ``name`` (replacing earlier ones)."""
        rtype = rtype.upper()
        if rtype not in TYPES:
            raise ValueError(f"FakeResolver knows {', '.join(TYPES)}, not {rtype}")
        self.records.setdefault(_key(name, rtype), {})[rtype] = _records(rtype, values)

    def fail(self, question: str) -> None:
        """Make "TYPE name" (or every type of "name") fail temporarily."""
        parts = question.split()
        if len(parts) == 2:
            self.temporary.add(f"{parts[0].upper()} {_key(parts[1], parts[0].upper())}")
        else:
            self.temporary.add(_key(question))

    def _exists(self, name: str) -> bool:
        return name in self.records or any(key.endswith("." + name) for key in self.records)

    def _answer(self, name: str, rtype: str) -> Answer[Any]:
        self.queries.append(f"{rtype} {name}")
        try:
            current = _key(name, rtype)
        except InvalidName as exc:
            return Answer(Status.INVALID, name, detail=str(exc))
        asked = current
        cnames: list[str] = []
        for _ in range(MAX_CHAIN):
            if current in self.temporary or f"{rtype} {current}" in self.temporary:
                detail = f"{rtype} {current}: temporary failure (FakeResolver)"
                return Answer(Status.TEMPORARY, asked, cnames=tuple(cnames), detail=detail)
            types = self.records.get(current, {})
            if rtype in types:
                return Answer(
                    Status.FOUND,
                    asked,
                    types[rtype],
                    ttl=self.ttl,
                    cnames=tuple(cnames),
                    authentic=self.authentic,
                )
            if "CNAME" in types:
                current = types["CNAME"]
                cnames.append(current)
                continue
            status = Status.NO_DATA if self._exists(current) else Status.NXDOMAIN
            return Answer(
                status, asked, ttl=self.negative_ttl, cnames=tuple(cnames), authentic=self.authentic
            )
        detail = f"{rtype} {asked}: CNAME chain too long"
        return Answer(Status.TEMPORARY, asked, detail=detail)

    # --- the Resolver protocol ---------------------------------------------------------------

    async def mx(self, domain: str) -> Answer[MX]:
        return self._answer(domain, "MX")

    async def a(self, host: str) -> Answer[IPv4Address]:
        return self._answer(host, "A")

    async def aaaa(self, host: str) -> Answer[IPv6Address]:
        return self._answer(host, "AAAA")

    async def addresses(self, host: str) -> Answer[IPAddress]:
        six, four = await self.aaaa(host), await self.a(host)
        return combine_addresses(six.name, six, four)

    async def txt(self, name: str) -> Answer[bytes]:
        return self._answer(name, "TXT")

    async def tlsa(self, name: str) -> Answer[TLSA]:
        return self._answer(name, "TLSA")

    async def ptr(self, ip: str | IPAddress) -> Answer[str]:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            self.queries.append(f"PTR {ip}")
            return Answer(Status.INVALID, str(ip), detail=f"{str(ip)!r} is not an IP address")
        return self._answer(str(address), "PTR")

    async def srv(self, name: str) -> Answer[SRV]:
        return self._answer(name, "SRV")


if TYPE_CHECKING:
    from mailstead.dns import Resolver

    _conforms: Resolver = FakeResolver()
