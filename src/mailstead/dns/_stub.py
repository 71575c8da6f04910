"""The resolver Mailstead runs with: dnspython's async stub resolver behind our cache.

It asks the configured recursive nameservers (or those of ``/etc/resolv.conf``), which follow
CNAME chains and validate DNSSEC; dnspython reads the chain out of the response. Every
dnspython exception is turned into an ``Answer`` status here and nowhere else."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver

from mailstead.dns._answers import MX, SRV, TLSA, Answer, IPAddress, Status, combine_addresses
from mailstead.dns._cache import AnswerCache, CacheKey
from mailstead.dns._names import InvalidName, dns_name, name_text, reverse_name

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
DEFAULT_ATTEMPTS = 2
DEFAULT_CACHE_ENTRIES = 10_000
DEFAULT_MAX_TTL = 86_400
DEFAULT_MAX_NEGATIVE_TTL = 3_600
# RFC 9715 / DNS Flag Day 2020: a UDP payload size that avoids IP fragmentation.
EDNS_PAYLOAD = 1232

_NAMESERVER = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[0-9.]+))(?::(?P<port>[0-9]{1,5}))?$")


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"192.0.2.53"``, ``"127.0.0.1:5353"``, ``"[::1]:5353"`` or a bare IPv6 address as
    (address, port); the port defaults to 53. Raises ValueError."""
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        pass
    m = _NAMESERVER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an IP address with an optional port ([::1]:5353)")
    try:
        address = ipaddress.ip_address(m.group("v6") or m.group("v4"))
    except ValueError:
        raise ValueError(f"{text!r}: not an IP address") from None
    if m.group("v6") is not None and address.version != 6:
        raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
    port = int(m.group("port") or 53)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 1..65535")
    return str(address), port


def _target(rdata: Any) -> str:
    return name_text(rdata.target)


def _mx(rdata: Any) -> MX:
    return MX(int(rdata.preference), name_text(rdata.exchange))


def _ipv4(rdata: Any) -> IPv4Address:
    return IPv4Address(rdata.address)


def _ipv6(rdata: Any) -> IPv6Address:
    return IPv6Address(rdata.address)


def _txt(rdata: Any) -> bytes:
    return b"".join(rdata.strings)


def _tlsa(rdata: Any) -> TLSA:
    return TLSA(int(rdata.usage), int(rdata.selector), int(rdata.mtype), bytes(rdata.cert))


def _srv(rdata: Any) -> SRV:
    return SRV(int(rdata.priority), int(rdata.weight), int(rdata.port), name_text(rdata.target))


def _chain(response: dns.message.Message) -> tuple[tuple[str, ...], int | None]:
    """The CNAME targets followed in ``response`` and its minimum TTL (None if unreadable)."""
    if not isinstance(response, dns.message.QueryMessage):
        return (), None
    try:
        result = response.resolve_chaining()
    except dns.exception.DNSException:
        return (), None
    targets = tuple(name_text(rrset[0].target) for rrset in result.cnames if len(rrset))
    return targets, int(result.minimum_ttl)


_DO53 = re.compile(r"^Do53:(?P<address>.+)@(?P<port>[0-9]+)$")


def _problems(exc: dns.resolver.NoNameservers) -> str:
    """ "SERVFAIL from 127.0.0.1:53; REFUSED from ..." out of dnspython's error list."""
    parts = []
    for error in exc.kwargs.get("errors") or []:
        server, problem = str(error[0]), error[3]
        if m := _DO53.match(server):
            address, port = m.group("address"), m.group("port")
            server = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        parts.append(f"{problem} from {server}")
    return "; ".join(parts) or "no nameserver answered"


class StubResolver:
    """The ``Resolver`` over real nameservers.

    ``nameservers`` are ``"host:port"`` strings (see ``parse_nameserver``); empty means those of
    ``resolv_conf`` (only its nameservers are used; without any, every lookup is a temporary
    failure that says so). Each nameserver gets ``timeout`` seconds per query; a lookup goes
    round the nameservers ``attempts`` times and gives up, as a temporary failure, after
    ``timeout * attempts * len(nameservers)`` seconds at most. Concurrent lookups of the same
    question share one query. ``clock`` (monotonic seconds) drives the cache; tests pass a
    fake one."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        max_ttl: int = DEFAULT_MAX_TTL,
        max_negative_ttl: int = DEFAULT_MAX_NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        self.cache = AnswerCache(cache_entries, max_ttl, max_negative_ttl)
        self._clock = clock
        self._inflight: dict[CacheKey, asyncio.Future[Answer[Any]]] = {}
        self._setup_problem = ""
        servers = [parse_nameserver(text) for text in nameservers]
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(filename=resolv_conf, configure=True)
            except dns.exception.DNSException as exc:
                resolver = dns.asyncresolver.Resolver(configure=False)
                self._setup_problem = f"no nameservers ([dns] nameservers is empty; {exc})"
        resolver.cache = None  # ours keeps answers (with negative caching)
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        # RFC 6840 §5.7: AD in the query asks a validating resolver to say whether it validated.
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.timeout = timeout
        resolver.lifetime = timeout * attempts * max(1, len(resolver.nameservers))
        self._resolver = resolver

    def __repr__(self) -> str:
        return f"StubResolver({self.nameservers}, lifetime={self.lifetime:g})"

    @property
    def nameservers(self) -> list[str]:
        """The nameservers asked, as ``"host:port"``."""
        result = []
        for server in self._resolver.nameservers:
            if isinstance(server, dns.nameserver.AddressAndPortNameserver):
                address, port = server.address, server.port
            else:
                address, port = str(server), self._resolver.port
            result.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
        return result

    @property
    def lifetime(self) -> float:
        """The longest a lookup takes before it is a temporary failure."""
        return float(self._resolver.lifetime)

    # --- the Resolver protocol ---------------------------------------------------------------

    async def mx(self, domain: str) -> Answer[MX]:
        return await self._lookup(domain, dns.rdatatype.MX, _mx)

    async def a(self, host: str) -> Answer[IPv4Address]:
        return await self._lookup(host, dns.rdatatype.A, _ipv4)

    async def aaaa(self, host: str) -> Answer[IPv6Address]:
        return await self._lookup(host, dns.rdatatype.AAAA, _ipv6)

    async def addresses(self, host: str) -> Answer[IPAddress]:
        six, four = await asyncio.gather(self.aaaa(host), self.a(host))
        return combine_addresses(six.name, six, four)

    async def txt(self, name: str) -> Answer[bytes]:
        return await self._lookup(name, dns.rdatatype.TXT, _txt)

    async def tlsa(self, name: str) -> Answer[TLSA]:
        return await self._lookup(name, dns.rdatatype.TLSA, _tlsa)

    async def ptr(self, ip: str | IPAddress) -> Answer[str]:
        try:
            qname = reverse_name(ip)
        except InvalidName as exc:
            return Answer(Status.INVALID, str(ip), detail=str(exc))
        return await self._lookup(qname, dns.rdatatype.PTR, _target)

    async def srv(self, name: str) -> Answer[SRV]:
        return await self._lookup(name, dns.rdatatype.SRV, _srv)

    # --- one question --------------------------------------------------------------------------

    async def _lookup(
        self,
        name: str | dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[Any], T],
    ) -> Answer[T]:
        try:
            qname = name if isinstance(name, dns.name.Name) else dns_name(name)
        except InvalidName as exc:
            return Answer(Status.INVALID, str(name), detail=str(exc))
        key: CacheKey = (name_text(qname), int(rdtype))
        cached = self.cache.get(key, self._clock())
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(qname, key, rdtype, convert))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shielded: one caller giving up does not cancel the query the others wait for.
        answer: Answer[T] = await asyncio.shield(pending)
        return answer

    async def _ask(
        self,
        qname: dns.name.Name,
        key: CacheKey,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[Any], T],
    ) -> Answer[T]:
        answer = await self._query(qname, key[0], rdtype, convert)
        return self.cache.put(key, answer, self._clock())

    async def _query(
        self,
        qname: dns.name.Name,
        text: str,
        rdtype: dns.rdatatype.RdataType,
        convert: Callable[[Any], T],
    ) -> Answer[T]:
        if self._setup_problem:
            return Answer(Status.TEMPORARY, text, detail=self._setup_problem)
        kind = dns.rdatatype.to_text(rdtype)
        try:
            result = await self._resolver.resolve(
                qname, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[dns.name.Name, dns.message.Message] = exc.kwargs.get("responses", {})
            response = responses.get(qname)
            cnames, ttl = _chain(response) if response is not None else ((), None)
            return Answer(
                Status.NXDOMAIN,
                text,
                ttl=dns.message.NEGATIVE_TTL_WITHOUT_SOA if ttl is None else ttl,
                cnames=cnames,
                authentic=response is not None and bool(response.flags & dns.flags.AD),
            )
        except dns.exception.Timeout:
            detail = f"{kind} {text}: timed out after {self.lifetime:g} s"
            return Answer(Status.TEMPORARY, text, detail=detail)
        except dns.resolver.NoNameservers as exc:
            return Answer(Status.TEMPORARY, text, detail=f"{kind} {text}: {_problems(exc)}")
        except dns.resolver.YXDOMAIN:
            # RFC 6672 §2.2: a DNAME substitution made the name too long.
            detail = f"{kind} {text}: name too long after DNAME substitution"
            return Answer(Status.INVALID, text, detail=detail)
        except (dns.exception.DNSException, OSError) as exc:
            return Answer(Status.TEMPORARY, text, detail=f"{kind} {text}: {exc}")
        chaining = result.chaining_result
        cnames = tuple(name_text(rrset[0].target) for rrset in chaining.cnames if len(rrset))
        authentic = bool(result.response.flags & dns.flags.AD)
        ttl = int(chaining.minimum_ttl)
        rrset = chaining.answer
        if rrset is None or not len(rrset):
            return Answer(Status.NO_DATA, text, ttl=ttl, cnames=cnames, authentic=authentic)
        try:
            records = tuple(convert(rdata) for rdata in rrset)
        except (ValueError, AttributeError) as exc:
            return Answer(Status.TEMPORARY, text, detail=f"{kind} {text}: bad record: {exc}")
        return Answer(Status.FOUND, text, records, ttl, cnames, authentic)


if TYPE_CHECKING:
    from mailstead.dns._protocol import Resolver

    _conforms: Resolver = StubResolver()
