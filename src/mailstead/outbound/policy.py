"""Which TLS each MX host of a route gets: DANE (RFC 7672) where the DNS vouches for TLSA
records, else the domain's MTA-STS policy (RFC 8461), else opportunistic TLS (RFC 7435).

``OutboundTls.plan(route)`` returns a `TlsPlan`: the route, less the MX hosts a policy rules
out, with a `Connection` (TLS policy and the context that checks it) per host; or a temporary
`RouteFailure` when no host is left. Nothing here ever makes mail bounce: every refusal a
policy causes is temporary (RFC 8461 §5.1, RFC 7672 §2.2), and no refusal ever falls back to
plaintext.

- DANE first (RFC 8461 §2: DANE wins where both apply), host by host: see `mailstead.outbound.
  dane` for when TLSA records apply. A host whose TLSA lookup failed on a signed zone is left
  out for this attempt (its records may exist: trying it without them would be a downgrade).
- MTA-STS ``enforce``: only MX hosts matching the policy's ``mx`` patterns, each with STARTTLS
  required and its certificate verified against the MX host name (``context``); ``testing``:
  delivered as without a policy, and what enforce would refuse is logged
  (``mta_sts.testing``); ``none`` or no policy: opportunistic.
- Relays, address literals and any route that is not the domain's MX hosts get no policy here
  (the relay settings decide theirs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.config import Config
from mailstead.dns import Resolver
from mailstead.observability.log import log_event
from mailstead.outbound import dane
from mailstead.outbound.mta_sts import MtaSts, Policy, PolicyCache
from mailstead.outbound.routing import Route, RouteFailure, Target
from mailstead.outbound.sender import SmtpAuth, TlsPolicy

log = logging.getLogger("mailstead.outbound.policy")


@dataclass(frozen=True, slots=True)
class Connection:
    """How to talk to one host: its TLS policy, the context that checks it (None: the
    sender's default for the policy), AUTH credentials (relays only), and what chose the policy
    (``dane``, ``mta-sts``, ``relay``, ``opportunistic``)."""

    tls: TlsPolicy
    context: ssl.SSLContext | None = None
    auth: SmtpAuth | None = None
    source: str = "opportunistic"


@dataclass(frozen=True, slots=True)
class TlsPlan:
    route: Route
    connections: Mapping[str, Connection] = field(default_factory=dict)

    def connection(self, target: Target) -> Connection:
        found = self.connections.get(target.host)
        if found is not None:
            return found
        return Connection(TlsPolicy.opportunistic(target.host))


class OutboundTls:
    """Plans the TLS of MX routes (see the module docstring). ``dane_resolver`` None: DANE is
    not used (the resolver must be a validating one for it to ever apply); ``mta_sts`` None:
    policies are not looked at. ``verify_context`` gives the context verifying MX certificates
    under an enforced MTA-STS policy (built on first use, off the event loop)."""

    def __init__(
        self,
        *,
        dane_resolver: Resolver | None = None,
        mta_sts: MtaSts | None = None,
        verify_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
    ) -> None:
        self.dane_resolver = dane_resolver
        self.mta_sts = mta_sts
        self._verify_context = verify_context
        self._context: ssl.SSLContext | None = None

    async def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = await asyncio.to_thread(self._verify_context)
        return self._context

    async def plan(self, route: Route) -> TlsPlan | RouteFailure:
        if route.kind not in ("mx", "implicit"):
            return TlsPlan(route)
        lookups: dict[str, dane.DaneLookup] = {}
        if self.dane_resolver is not None:
            resolver = self.dane_resolver
            found = await asyncio.gather(*(dane.lookup(hop, resolver) for hop in route.hops))
            lookups = {hop.host: result for hop, result in zip(route.hops, found, strict=True)}
        policy = await self.mta_sts.policy(route.domain) if self.mta_sts is not None else None
        if policy is not None and policy.mode == "testing":
            self._log_testing(route, policy)
            policy = None
        hops = []
        connections: dict[str, Connection] = {}
        notes = list(route.notes)
        temporary: list[str] = []
        for hop in route.hops:
            lookup = lookups.get(hop.host)
            if lookup is not None and lookup.outcome == "dane":  # RFC 8461 §2: DANE first
                tls = TlsPolicy.with_dane(hop.host, lookup.records, lookup.names)
                connections[hop.host] = Connection(tls, source="dane")
            elif lookup is not None and lookup.outcome == "temporary":
                notes.append(f"MX host {hop.host} skipped: {lookup.detail} (RFC 7672 §2.2)")
                temporary.append(lookup.detail)
                continue
            elif policy is not None:
                if not policy.matches(hop.host):
                    notes.append(f"MX host {hop.host} is not in the MTA-STS policy (RFC 8461 §4.1)")
                    continue
                tls = TlsPolicy.required(hop.host)
                connections[hop.host] = Connection(tls, await self.context(), source="mta-sts")
            hops.append(hop)
        if connections:
            log_event(
                log, "queue.tls_policy", domain=route.domain,
                hosts={host: c.source for host, c in connections.items()},
            )  # fmt: skip
        if hops:
            return TlsPlan(dataclasses.replace(route, hops=tuple(hops), notes=tuple(notes)),
                           connections)  # fmt: skip
        if temporary:
            return RouteFailure(route.domain, 451, "4.4.3", "; ".join(temporary))
        assert policy is not None
        log_event(
            log, "mta_sts.no_mx_allowed", logging.WARNING, domain=route.domain,
            mx=[hop.host for hop in route.hops], policy=list(policy.mx), id=policy.id,
        )  # fmt: skip
        return RouteFailure(
            route.domain,
            451,
            "4.7.5",
            f"no MX host of {route.domain} matches its MTA-STS policy "
            f"(mx: {', '.join(policy.mx)}; RFC 8461 §4.1)",
        )

    def _log_testing(self, route: Route, policy: Policy) -> None:
        outside = [hop.host for hop in route.hops if not policy.matches(hop.host)]
        log_event(
            log, "mta_sts.testing", domain=route.domain, id=policy.id, mx_not_in_policy=outside,
            note="testing mode: delivered with opportunistic TLS",
        )  # fmt: skip


def load_outbound_tls(config: Config, resolver: Resolver) -> OutboundTls:
    """The TLS planner of ``config``'s ``[queue]`` section."""
    queue = config.queue
    ca_file: Path | None = queue.mta_sts_ca_file
    planner = OutboundTls(
        verify_context=functools.partial(
            ssl.create_default_context, cafile=str(ca_file) if ca_file else None
        )
    )
    if queue.dane:
        planner.dane_resolver = resolver
    if queue.mta_sts:
        cache = PolicyCache(config.server.data_dir / "mta-sts")
        planner.mta_sts = MtaSts(resolver, cache, planner.context, port=queue.mta_sts_port)
    return planner
