"""The one interface every DNS consumer uses (routing, SPF, DKIM, DMARC, DANE, iprev)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from mailstead.dns._answers import MX, SRV, TLSA, Answer, IPAddress


class Resolver(Protocol):
    """Async DNS lookups that never raise for a DNS outcome: every failure is an ``Answer``
    with a ``Status``. Names may be U-labels or A-labels; answers carry A-labels."""

    async def mx(self, domain: str) -> Answer[MX]:
        """The MX records of ``domain``, in the order the server gave them."""
        ...

    async def a(self, host: str) -> Answer[IPv4Address]:
        """The A records of ``host``."""
        ...

    async def aaaa(self, host: str) -> Answer[IPv6Address]:
        """The AAAA records of ``host``."""
        ...

    async def addresses(self, host: str) -> Answer[IPAddress]:
        """AAAA and A of ``host`` asked together, IPv6 first (see ``combine_addresses``)."""
        ...

    async def txt(self, name: str) -> Answer[bytes]:
        """TXT records, each with its character-strings concatenated (RFC 7208 §3.3, RFC 6376
        §3.6.2.2)."""
        ...

    async def tlsa(self, name: str) -> Answer[TLSA]:
        """TLSA records of e.g. ``_25._tcp.mx.example.org`` (RFC 6698, RFC 7672)."""
        ...

    async def ptr(self, ip: str | IPAddress) -> Answer[str]:
        """The names of ``ip`` (its in-addr.arpa or ip6.arpa PTR records)."""
        ...

    async def srv(self, name: str) -> Answer[SRV]:
        """SRV records of e.g. ``_submissions._tcp.example.org`` (RFC 2782, RFC 6186)."""
        ...
