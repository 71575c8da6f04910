"""check_host() (RFC 7208 §4): record lookup and selection, mechanisms, modifiers, the
processing limits, and the results.

One evaluation walks the record of the checked domain and, through include and redirect, the
records they name; the limits (§4.6.4) count over the whole walk. Perm- and temperrors end the
walk at once, as an exception caught at the top (``_Abort``)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TypeVar

from mailstead.dns import Answer, InvalidName, IPAddress, Resolver, Status, normalize_name
from mailstead.mailauth.spf._macros import MacroUnavailable, MacroValues, expand, fit_name
from mailstead.mailauth.spf._record import (
    DomainSpec,
    Mechanism,
    SpfSyntaxError,
    is_spf_record,
    parse_explanation,
    parse_record,
)

LOOKUP_LIMIT = 10  # §4.6.4: terms that cause DNS queries, per check
VOID_LIMIT = 2  # §4.6.4: lookups answered NXDOMAIN or with no records, per check
NAME_LIMIT = 10  # §4.6.4: MX names per "mx", PTR names per "ptr" or %{p}
T = TypeVar("T")

TIME_LIMIT = 20.0  # §4.6.4: "at least 20 seconds" before the result is temperror
MAX_NESTING = 32  # include/redirect depth; the lookup limit ends loops first unless raised a lot


class SpfResult(enum.StrEnum):
    """The results of check_host() (§2.6)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


QUALIFIER_RESULTS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}


@dataclass(frozen=True, slots=True)
class SpfCheck:
    """One check_host() result. ``domain`` is the domain checked (lower case, no final dot);
    ``explanation`` the expanded ``exp=`` text of a fail (None: use a default one);
    ``mechanism`` the term that matched (None when none did); ``problem`` says what went wrong
    for temperror and permerror."""

    result: SpfResult
    domain: str
    explanation: str | None = None
    mechanism: str | None = None
    problem: str | None = None


class _Abort(Exception):
    """Ends the evaluation with a temperror or permerror."""

    def __init__(self, result: SpfResult, problem: str) -> None:
        super().__init__(problem)
        self.result = result
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: SpfResult
    mechanism: str | None = None
    explanation: str | None = None


def checkable_domain(domain: str) -> str | None:
    """``domain`` without its final dot and in lower case, or None when §4.3 makes the result
    "none" at once: not a multi-label name, an empty label, a label over 63 octets, a name
    over 253 characters, or an address literal."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or name.startswith("[") or len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 2 or not all(labels):
        return None
    try:
        normalize_name(name)
    except InvalidName:
        return None
    return name.lower()


def _connection_address(ip: str | IPAddress) -> IPAddress:
    """The client address; an IPv4-mapped IPv6 address is the IPv4 address (§5)."""
    address = ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def split_sender(sender: str) -> tuple[str, str]:
    """(local-part, domain) of ``sender``; a missing local-part is "postmaster" (§4.3)."""
    local, at, domain = sender.rpartition("@")
    if not at:
        return "postmaster", sender
    return local or "postmaster", domain


class _Evaluation:
    """The state of one check_host() call: its inputs and the limit counters."""

    def __init__(
        self,
        resolver: Resolver,
        ip: IPAddress,
        sender: str,
        helo: str,
        receiver: str,
        now: float | None,
        lookup_limit: int,
        void_limit: int,
    ) -> None:
        self.resolver = resolver
        self.ip = ip
        self.lookup_limit = lookup_limit
        self.void_limit = void_limit
        self.lookups = 0
        self.voids = 0
        self.depth = 0
        local, domain = split_sender(sender)
        self.macros = MacroValues(
            sender=f"{local}@{domain}",
            local_part=local,
            sender_domain=domain,
            ip=ip,
            helo=helo,
            receiver=receiver,
            now=now,
            validated_name=self.validated_name,
        )

    # --- check_host() ------------------------------------------------------------------------

    async def check(self, domain: str, *, explain: bool) -> _Outcome:
        """§4: the result for ``domain``; raises ``_Abort`` for temperror and permerror."""
        if self.depth >= MAX_NESTING:
            raise _Abort(SpfResult.PERMERROR, f"{domain}: include/redirect nested too deep")
        self.depth += 1
        try:
            return await self._check(domain, explain=explain)
        finally:
            self.depth -= 1

    async def _check(self, domain: str, *, explain: bool) -> _Outcome:
        name = checkable_domain(domain)
        if name is None:
            return _Outcome(SpfResult.NONE)
        text = await self.find_record(name)
        if text is None:
            return _Outcome(SpfResult.NONE)
        try:
            record = parse_record(text)
        except SpfSyntaxError as exc:
            raise _Abort(SpfResult.PERMERROR, f"{name}: {exc}") from None
        for mechanism in record.mechanisms:
            if await self.matches(mechanism, name):
                result = QUALIFIER_RESULTS[mechanism.qualifier]
                explanation = None
                if result is SpfResult.FAIL and explain and record.explanation is not None:
                    explanation = await self.explanation(record.explanation, name)
                return _Outcome(result, mechanism.text, explanation)
        if record.redirect is not None:  # §6.1: only when no mechanism matched
            self.count_lookup(f"redirect={record.redirect.text}")
            target = await self.target(record.redirect, name)
            outcome = await self.check(target, explain=explain)
            if outcome.result is SpfResult.NONE:
                raise _Abort(SpfResult.PERMERROR, f"redirect={target}: no SPF record there")
            return outcome
        return _Outcome(SpfResult.NEUTRAL)  # §4.7

    async def find_record(self, name: str) -> str | None:
        """§4.4, §4.5: the one v=spf1 TXT record of ``name``, or None."""
        answer = await self.resolver.txt(name)
        if answer.temporary:
            raise _Abort(SpfResult.TEMPERROR, answer.detail or f"TXT {name}: DNS failure")
        records = [text for text in answer.records if is_spf_record(text)]
        if not records:
            return None
        if len(records) > 1:
            raise _Abort(SpfResult.PERMERROR, f"{name} has {len(records)} v=spf1 records")
        try:
            return records[0].decode("ascii")
        except UnicodeDecodeError:  # §3.1: 7-bit ASCII only
            raise _Abort(SpfResult.PERMERROR, f"{name}: the record is not ASCII") from None

    # --- mechanisms (§5) ---------------------------------------------------------------------

    async def matches(self, mechanism: Mechanism, domain: str) -> bool:
        kind = mechanism.kind
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            network = mechanism.network
            return (
                network is not None and self.ip.version == network.version and (self.ip in network)
            )
        self.count_lookup(mechanism.text)
        target = domain if mechanism.target is None else await self.target(mechanism.target, domain)
        if kind == "include":
            return await self.include(target, mechanism)
        if kind == "a":
            return self.in_networks(await self.addresses(target, mechanism), mechanism)
        if kind == "mx":
            return await self.mx(target, mechanism)
        if kind == "ptr":
            return await self.ptr(target, mechanism)
        answer = await self.resolver.a(target)  # exists: always A (§5.7)
        return bool(self.records(answer, mechanism.text))

    async def include(self, target: str, mechanism: Mechanism) -> bool:
        """§5.2: pass matches; fail, softfail and neutral do not; none is a permerror."""
        outcome = await self.check(target, explain=False)
        if outcome.result is SpfResult.NONE:
            raise _Abort(SpfResult.PERMERROR, f"{mechanism.text}: no SPF record at {target}")
        return outcome.result is SpfResult.PASS

    async def mx(self, target: str, mechanism: Mechanism) -> bool:
        """§5.4: the addresses of the MX hosts; more than 10 MX records is a permerror."""
        hosts = self.records(await self.resolver.mx(target), mechanism.text)
        if len(hosts) > NAME_LIMIT:
            raise _Abort(
                SpfResult.PERMERROR,
                f"{mechanism.text}: {target} has {len(hosts)} MX records (at most {NAME_LIMIT})",
            )
        names = [mx.host for mx in hosts if not mx.is_null]  # RFC 7505 null MX: no host
        answers = await asyncio.gather(*(self.family_lookup(name) for name in names))
        for answer in answers:
            if answer.temporary:
                raise _Abort(SpfResult.TEMPERROR, f"{mechanism.text}: {answer.detail}")
            if self.in_networks(answer.records, mechanism):
                return True
        return False

    async def ptr(self, target: str, mechanism: Mechanism) -> bool:
        """§5.5: a validated name of the client that is ``target`` or below it. A DNS error on
        the PTR lookup means no match; one on an address lookup skips that name."""
        answer = await self.resolver.ptr(self.ip)
        if answer.status in (Status.NXDOMAIN, Status.NO_DATA):
            self.count_void(mechanism.text)
        suffix = "." + target.lower()
        names = [
            name
            for name in answer.records[:NAME_LIMIT]
            if name == target.lower() or name.endswith(suffix)
        ]
        return bool(await self.validated(names))

    async def validated(self, names: Sequence[str]) -> list[str]:
        """The ``names`` whose addresses include the client's (§5.5), in order."""
        answers = await asyncio.gather(*(self.family_lookup(name) for name in names))
        pairs = zip(names, answers, strict=True)
        return [name for name, answer in pairs if self.ip in answer.records]

    async def validated_name(self, domain: str) -> str:
        """%{p} (§7.3): ``domain`` itself if validated, else a validated name below it, else
        any validated name, else "unknown"."""
        answer = await self.resolver.ptr(self.ip)
        names = await self.validated(answer.records[:NAME_LIMIT])
        domain = domain.lower()
        for name in names:
            if name == domain:
                return name
        for name in names:
            if name.endswith("." + domain):
                return name
        return names[0] if names else "unknown"

    # --- helpers -----------------------------------------------------------------------------

    async def addresses(self, name: str, mechanism: Mechanism) -> tuple[IPAddress, ...]:
        return self.records(await self.family_lookup(name), mechanism.text)

    async def family_lookup(self, name: str) -> Answer[IPAddress]:
        """§5: A for an IPv4 client, AAAA for an IPv6 one."""
        if isinstance(self.ip, IPv4Address):
            four: Answer[IPAddress] = await self.resolver.a(name)
            return four
        six: Answer[IPAddress] = await self.resolver.aaaa(name)
        return six

    def records(self, answer: Answer[T], term: str) -> tuple[T, ...]:
        """The records of a mechanism's lookup: NXDOMAIN and NO_DATA are void lookups (§4.6.4),
        a temporary failure is a temperror (§5), a name that cannot be asked matches nothing."""
        if answer.temporary:
            raise _Abort(SpfResult.TEMPERROR, f"{term}: {answer.detail or 'DNS failure'}")
        if answer.status in (Status.NXDOMAIN, Status.NO_DATA):
            self.count_void(term)
        return answer.records

    def in_networks(self, addresses: Sequence[IPAddress], mechanism: Mechanism) -> bool:
        length = mechanism.cidr4 if isinstance(self.ip, IPv4Address) else mechanism.cidr6
        return any(
            address.version == self.ip.version and ip_network_contains(address, length, self.ip)
            for address in addresses
        )

    async def target(self, spec: DomainSpec, domain: str) -> str:
        """The name a domain-spec expands to for ``domain`` (§7.3, §4.8)."""
        try:
            return fit_name(await expand(spec.tokens, self.macros, domain))
        except MacroUnavailable as exc:  # cannot happen: "t" is not allowed in domain-specs
            raise _Abort(SpfResult.PERMERROR, str(exc)) from None

    async def explanation(self, spec: DomainSpec, domain: str) -> str | None:
        """§6.2: the expanded TXT text at the exp= name, or None when there is no usable one
        (DNS trouble, not exactly one record, not ASCII, a syntax error). Not counted against
        the limits."""
        name = await self.target(spec, domain)
        answer = await self.resolver.txt(name)
        if not answer.found or len(answer.records) != 1:
            return None
        try:
            tokens = parse_explanation(answer.records[0].decode("ascii"))
            return await expand(tokens, self.macros, domain)
        except (UnicodeDecodeError, SpfSyntaxError, MacroUnavailable):
            return None

    def count_lookup(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > self.lookup_limit:
            raise _Abort(
                SpfResult.PERMERROR,
                f"{term}: more than {self.lookup_limit} DNS-querying terms (RFC 7208 §4.6.4)",
            )

    def count_void(self, term: str) -> None:
        self.voids += 1
        if self.voids > self.void_limit:
            raise _Abort(
                SpfResult.PERMERROR,
                f"{term}: more than {self.void_limit} void lookups (RFC 7208 §4.6.4)",
            )


def ip_network_contains(address: IPAddress, length: int, ip: IPAddress) -> bool:
    """Whether ``ip`` is in ``address``/``length``."""
    bits = address.max_prefixlen - length
    return (int(address) >> bits) == (int(ip) >> bits)


async def check_host(
    resolver: Resolver,
    ip: str | IPAddress,
    domain: str,
    sender: str,
    *,
    helo: str,
    receiver: str = "",
    lookup_limit: int = LOOKUP_LIMIT,
    void_limit: int = VOID_LIMIT,
    now: float | None = None,
    time_limit: float = TIME_LIMIT,
) -> SpfCheck:
    """RFC 7208 §4 check_host(): may ``ip`` send mail for ``domain``?

    ``sender`` is the identity being checked (``local@domain``; ``postmaster@`` is assumed
    without a local-part), ``helo`` the client's HELO/EHLO name and ``receiver`` our host name
    (macros ``h`` and ``r``). ``now`` (Unix seconds) is what ``%{t}`` expands to in
    explanations; without it an explanation using ``%{t}`` is not used. The evaluation gives up
    with temperror after ``time_limit`` seconds. Raises ValueError only for an ``ip`` that is
    not an IP address."""
    address = _connection_address(ip)
    checked = domain[:-1] if domain.endswith(".") else domain
    checked = checked.lower()
    evaluation = _Evaluation(
        resolver, address, sender, helo, receiver, now, lookup_limit, void_limit
    )
    try:
        async with asyncio.timeout(time_limit):
            outcome = await evaluation.check(checked, explain=True)
    except _Abort as abort:
        return SpfCheck(abort.result, checked, problem=abort.problem)
    except TimeoutError:
        problem = f"no result within {time_limit:g} s (RFC 7208 §4.6.4)"
        return SpfCheck(SpfResult.TEMPERROR, checked, problem=problem)
    return SpfCheck(outcome.result, checked, outcome.explanation, outcome.mechanism)
