"""Where mail for a domain goes: MX selection (RFC 5321 §5.1) and failover between addresses.

``route(domain, resolver)`` returns a ``Route`` (hosts in the order to try, each with its
addresses in the order to try) or a ``RouteFailure`` that says whether the message must bounce
now or wait:

- MX records sorted by preference; hosts of equal preference in random order (§5.1: "MUST
  randomize them to spread the load"; ``rng`` makes it repeatable in tests).
- No MX records (NOERROR, no data): the domain itself is the one host, an implicit MX of
  preference 0 (§5.1). No MX and no address either: permanent ``5.1.2``.
- The domain does not exist (NXDOMAIN): permanent ``5.1.2``, without asking anything else.
- A lone MX whose target is "." is a null MX (RFC 7505): permanent ``556 5.1.10`` at once.
  A "." among other MX records is skipped.
- An MX target that is an alias (CNAME) is followed (§5.1 forbids aliases there, but they work
  in practice) and noted. An MX target without addresses is skipped; when none has any, the
  failure is temporary (``4.4.3``) if any of those lookups failed temporarily, else permanent
  (``5.4.4``). Any temporary DNS failure of the MX lookup itself is ``4.4.3``: DNS trouble
  never bounces mail.
- Our own names (``local_names``) in the MX list: that host and every less preferred one are
  dropped (§5.1, loop avoidance); if we are the most preferred, ``5.4.6`` (mail loops).
- Each host's addresses: IPv6 first, then IPv4, each family in the order DNS gave. No
  happy-eyeballs interleaving yet; a host without working IPv6 costs one failed connection
  per IPv6 address before IPv4 is tried. Unspecified (0.0.0.0, ::) and multicast addresses
  are dropped (connecting to 0.0.0.0 reaches this machine). Loopback and private addresses
  are allowed (the tests deliver to 127.0.0.x); a later ``[outbound]`` setting may refuse
  them for MX routes.
- At most ``MAX_MX_HOSTS`` hosts are considered (a hostile domain could list hundreds).
- An address literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, RFC 5321 §4.1.3) is its own
  route. A ``Smarthost`` replaces MX routing altogether: its name is resolved to addresses
  (``[relay.example.net]``), or routed by its own MX records (``relay.example.net``, as
  Postfix's ``relayhost``), and any failure to do so is temporary (a configuration problem
  must not bounce mail).

``Failover`` then walks a route's addresses for one delivery attempt: the delivery agent
asks for the next target, and reports each connection failure or 4xx greeting before asking
again (RFC 5321 §5.1: try the next address, then the next MX host).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Literal

from mailstead.dns import (
    Answer,
    InvalidName,
    IPAddress,
    Resolver,
    Status,
    normalize_name,
)

SMTP_PORT = 25
# Bounds the DNS work (one address lookup per host) a domain's MX list can cause.
MAX_MX_HOSTS = 16
# How many addresses one delivery attempt tries before giving up until the next retry.
DEFAULT_MAX_ADDRESSES = 10

RouteKind = Literal["mx", "implicit", "literal", "smarthost"]


@dataclass(frozen=True, slots=True)
class Hop:
    """One host to try. ``preference`` is the MX preference (0 for an implicit MX, None for a
    smarthost or an address literal); ``alias_of`` is the canonical name when the MX target
    was an alias (CNAME). ``dnssec``: the MX lookup (or, for an implicit MX, the domain's
    lookup) and this host's address lookup were both DNSSEC-validated (the AD bit), the
    condition for DANE (RFC 7672 §2.2)."""

    host: str
    preference: int | None
    addresses: tuple[IPAddress, ...]
    port: int = SMTP_PORT
    alias_of: str | None = None
    dnssec: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """The hosts to try for ``domain``, in order; ``notes`` says what was skipped or followed
    on the way (for logs and the message trace)."""

    domain: str
    kind: RouteKind
    hops: tuple[Hop, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """No route: ``code`` and ``status`` (RFC 3463) as the DSN or the SMTP reply would give
    them. A temporary failure keeps the message queued; a permanent one bounces it."""

    domain: str
    code: int
    status: str
    message: str

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.message}"


@dataclass(frozen=True, slots=True)
class Smarthost:
    """A relay that takes mail instead of the MX hosts. Credentials and TLS policy belong
    to the delivery agent; routing needs only where it is. ``mx``: the relay's name is looked
    up as a domain (its MX records, Postfix's ``relayhost`` without brackets); otherwise its
    addresses are used directly (``[relay.example.net]``)."""

    host: str
    port: int = SMTP_PORT
    mx: bool = False

    def __str__(self) -> str:
        if self.mx:
            return f"{self.host}:{self.port}"
        return f"[{self.host}]:{self.port}"


_BRACKETED = re.compile(r"^\[(?P<inner>[^\]]+)\](?::(?P<port>[0-9]{1,5}))?$")
_BARE = re.compile(r"^(?P<host>[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?$")


def parse_smarthost(text: str) -> Smarthost:
    """A relay as Postfix's ``relayhost`` writes it: ``"[smtp.example.net]:587"`` (brackets:
    the name's addresses, no MX lookup), ``"example.net"`` (the MX hosts of example.net, port
    25), ``"192.0.2.7:587"``, ``"[192.0.2.7]"``, ``"[2001:db8::7]:587"`` or
    ``"[IPv6:2001:db8::7]"``; raises ValueError."""
    text = text.strip()
    m = _BRACKETED.match(text) or _BARE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not host:port ([name]:port skips the MX lookup; IPv6 "
                         "as [2001:db8::1]:587)")  # fmt: skip
    port = int(m.group("port") or SMTP_PORT)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 1..65535")
    bracketed = "inner" in m.groupdict()
    host = m.group("inner") if bracketed else m.group("host")
    if bracketed and host[:5].lower() == "ipv6:":
        host = host[5:]
    try:
        return Smarthost(str(ipaddress.ip_address(host)), port)
    except ValueError:
        if not bracketed and ":" in host:
            raise ValueError(f"{text!r}: IPv6 addresses go in brackets") from None
    try:
        return Smarthost(normalize_name(host), port, mx=not bracketed)
    except InvalidName as exc:
        raise ValueError(f"{text!r}: {exc}") from None


def _failure(domain: str, status: str, message: str) -> RouteFailure:
    code = 451 if status.startswith("4") else 550
    return RouteFailure(domain, code, status, message)


def _why(answer: Answer[object]) -> str:
    if answer.detail:
        return answer.detail
    return {
        Status.NXDOMAIN: "no such name",
        Status.NO_DATA: "no address records",
    }.get(answer.status, answer.status.value)


def order_addresses(addresses: Collection[IPAddress]) -> tuple[IPAddress, ...]:
    """Addresses in the order to try: IPv6 first, then IPv4, each in the given order, without
    duplicates, unspecified or multicast addresses."""
    usable = [a for a in dict.fromkeys(addresses) if not (a.is_unspecified or a.is_multicast)]
    return tuple(a for a in usable if a.version == 6) + tuple(a for a in usable if a.version == 4)


def _skipped(answer: Answer[IPAddress]) -> str:
    """Why a host's address lookup gave nothing to connect to."""
    if not answer.found:
        return _why(answer)
    return "unusable addresses " + ", ".join(str(a) for a in answer.records)


def _address_literal(domain: str) -> IPAddress:
    """The address of ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3); raises
    ValueError for a malformed literal."""
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        return ipaddress.IPv6Address(inner[5:])
    return ipaddress.IPv4Address(inner)


async def _hop_for(
    name: str, preference: int | None, port: int, resolver: Resolver, *, secure: bool = False
) -> tuple[Hop | None, Answer[IPAddress]]:
    answer = await resolver.addresses(name)
    if not answer.found:
        return None, answer
    addresses = order_addresses(answer.records)
    if not addresses:
        return None, answer
    alias = answer.canonical_name if answer.cnames else None
    dnssec = secure and answer.authentic
    return Hop(name, preference, addresses, port, alias, dnssec), answer


async def _smarthost_route(
    domain: str,
    smarthost: Smarthost,
    resolver: Resolver,
    local_names: Collection[str],
    rng: random.Random | None,
) -> Route | RouteFailure:
    # Any failure is temporary: a wrong smarthost name is ours to fix, not the sender's.
    try:
        address = ipaddress.ip_address(smarthost.host)
    except ValueError:
        pass
    else:
        return Route(domain, "smarthost", (Hop(smarthost.host, None, (address,), smarthost.port),))
    if smarthost.mx:
        found = await route(smarthost.host, resolver, local_names=local_names, rng=rng)
        if isinstance(found, RouteFailure):
            return _failure(domain, "4.4.3", f"smarthost {smarthost}: {found.message}")
        hops = tuple(dataclasses.replace(hop, port=smarthost.port) for hop in found.hops)
        return Route(domain, "smarthost", hops, found.notes)
    hop, answer = await _hop_for(smarthost.host, None, smarthost.port, resolver)
    if hop is None:
        return _failure(domain, "4.4.3", f"smarthost {smarthost}: {_skipped(answer)}")
    notes = (f"smarthost {smarthost.host} is an alias of {hop.alias_of}",) if hop.alias_of else ()
    return Route(domain, "smarthost", (hop,), notes)


async def route(
    domain: str,
    resolver: Resolver,
    *,
    smarthost: Smarthost | None = None,
    local_names: Collection[str] = (),
    rng: random.Random | None = None,
) -> Route | RouteFailure:
    """Where to deliver mail for ``domain`` (see the module docstring for the rules).
    ``local_names`` are this server's own host names, ``rng`` shuffles equal preferences."""
    if domain.startswith("[") and domain.endswith("]"):
        try:
            address = _address_literal(domain)
        except ValueError:
            return _failure(domain, "5.1.3", f"{domain} is not a valid address literal")
        if address.is_unspecified or address.is_multicast:
            return _failure(domain, "5.1.2", f"{domain} cannot receive mail")
        return Route(domain, "literal", (Hop(str(address), None, (address,)),))
    try:
        name = normalize_name(domain)
    except InvalidName as exc:
        return _failure(domain, "5.1.3", f"invalid domain: {exc}")
    if smarthost is not None:
        return await _smarthost_route(name, smarthost, resolver, local_names, rng)

    mx = await resolver.mx(name)
    notes: list[str] = []
    if mx.cnames:
        notes.append(f"{name} is an alias of {mx.canonical_name}")
    if mx.status is Status.TEMPORARY:
        return _failure(name, "4.4.3", f"DNS lookup of the MX records failed: {_why(mx)}")
    if mx.status is Status.INVALID:
        return _failure(name, "5.1.3", f"invalid domain: {_why(mx)}")
    if mx.status is Status.NXDOMAIN:
        return _failure(name, "5.1.2", f"domain {name} does not exist")
    if mx.status is Status.NO_DATA:
        return await _implicit_route(name, resolver, notes, secure=mx.authentic)

    records = list(mx.records)
    if len(records) == 1 and records[0].is_null:
        # RFC 7505 §3-4: the domain accepts no mail; §4.3 gives the reply.
        return RouteFailure(name, 556, "5.1.10", "Recipient address has null MX")
    if any(r.is_null for r in records):
        notes.append('MX "." among other MX records ignored (RFC 7505 §3)')
        records = [r for r in records if not r.is_null]

    generator = rng if rng is not None else random.SystemRandom()
    by_preference: dict[int, list[str]] = {}
    for record in records:
        by_preference.setdefault(record.preference, []).append(record.host)
    ordered: list[tuple[int, str]] = []
    seen: set[str] = set()
    for preference in sorted(by_preference):
        hosts = [h for h in dict.fromkeys(by_preference[preference]) if h not in seen]
        generator.shuffle(hosts)
        seen.update(hosts)
        ordered += [(preference, host) for host in hosts]

    ours = {normalize_name(n) for n in local_names}
    own = [p for p, host in ordered if host in ours]
    if own:
        # RFC 5321 §5.1: discard our own entry and every one not more preferred than it.
        ordered = [(p, host) for p, host in ordered if p < min(own)]
        if not ordered:
            return _failure(name, "5.4.6", f"mail for {name} loops back to myself")
        notes.append(f"this server is an MX of {name} (preference {min(own)}): better ones only")
    if len(ordered) > MAX_MX_HOSTS:
        notes.append(f"{len(ordered) - MAX_MX_HOSTS} MX hosts beyond the first {MAX_MX_HOSTS}")
        ordered = ordered[:MAX_MX_HOSTS]

    results = await asyncio.gather(
        *(_hop_for(h, p, SMTP_PORT, resolver, secure=mx.authentic) for p, h in ordered)
    )
    hops: list[Hop] = []
    temporary: list[str] = []
    for (_, host), (hop, answer) in zip(ordered, results, strict=True):
        if hop is None:
            why = _skipped(answer)
            notes.append(f"MX host {host} skipped: {why}")
            if answer.temporary:
                temporary.append(f"{host}: {why}")
            continue
        if hop.alias_of:
            notes.append(f"MX host {host} is an alias of {hop.alias_of} (RFC 5321 §5.1)")
        hops.append(hop)
    if not hops:
        if temporary:
            return _failure(name, "4.4.3", "no MX host address found: " + "; ".join(temporary))
        return _failure(name, "5.4.4", f"no MX host of {name} has an address")
    return Route(name, "mx", tuple(hops), tuple(notes))


async def _implicit_route(
    name: str, resolver: Resolver, notes: list[str], *, secure: bool
) -> Route | RouteFailure:
    hop, answer = await _hop_for(name, 0, SMTP_PORT, resolver, secure=secure)
    if hop is not None:
        if hop.alias_of:
            notes.append(f"{name} is an alias of {hop.alias_of}")
        return Route(name, "implicit", (hop,), tuple(notes))
    if answer.temporary:
        return _failure(name, "4.4.3", f"DNS lookup of the addresses failed: {_why(answer)}")
    if answer.found:
        return _failure(name, "5.1.2", f"{name} has no MX and no usable address")
    return _failure(name, "5.1.2", f"{name} has no MX and no address records")


# --- failover within one delivery attempt ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One address to connect to, and the host it stands for (the name for TLS and logs)."""

    host: str
    address: IPAddress
    port: int
    preference: int | None


class Failover:
    """The addresses of a route in the order to try, for one delivery attempt.

    ``next()`` gives the next target (None when done); the delivery agent connects to it and,
    on a connection failure, a timeout or a 4xx greeting, calls ``failed(target, reason)`` and
    asks again: the next address of the same host, then the next host. An address listed under
    several hosts is tried once. At most ``max_addresses`` are tried (RFC 5321 §5.1 asks for
    at least two when there are two). ``failure()`` sums up an attempt where all failed."""

    def __init__(self, route: Route, *, max_addresses: int = DEFAULT_MAX_ADDRESSES) -> None:
        self.route = route
        self.max_addresses = max_addresses
        self.failures: list[tuple[Target, str]] = []
        self._targets = self._walk()
        self._given = 0

    def _walk(self) -> Iterator[Target]:
        seen: set[tuple[IPAddress, int]] = set()
        for hop in self.route.hops:
            for address in hop.addresses:
                if (address, hop.port) in seen:
                    continue
                seen.add((address, hop.port))
                yield Target(hop.host, address, hop.port, hop.preference)

    def next(self) -> Target | None:
        if self._given >= self.max_addresses:
            return None
        target = next(self._targets, None)
        if target is not None:
            self._given += 1
        return target

    def failed(self, target: Target, reason: str) -> None:
        self.failures.append((target, reason))

    def __iter__(self) -> Iterator[Target]:
        while (target := self.next()) is not None:
            yield target

    def failure(self) -> RouteFailure:
        """A temporary ``4.4.1`` naming the last failures (the message waits for a retry)."""
        if not self.failures:
            return _failure(self.route.domain, "4.4.1", "no address to try")
        shown = [f"{t.host} [{t.address}]:{t.port}: {reason}" for t, reason in self.failures[-3:]]
        more = len(self.failures) - len(shown)
        if more:
            shown.insert(0, f"{more} more")
        return _failure(
            self.route.domain, "4.4.1", "no host accepted the connection: " + "; ".join(shown)
        )
