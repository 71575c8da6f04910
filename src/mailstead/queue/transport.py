"""Delivering queued messages over SMTP: route the destination domain (MX, RFC 5321 §5.1, or
the relay `Relays` names for it, with its TLS mode and AUTH credentials), walk the addresses
with `Failover`, hand each message to :func:`mailstead.outbound.sender.send` and
turn its replies into one `Attempt` per recipient.

The messages of a batch go over one connection. The next address or MX host is tried, for the
messages not done yet, when a session failed before any of their recipients got a reply from
the server (no connection, a 4xx or 5xx greeting, a 421, TLS trouble, a timeout); once a
server has answered for a recipient, that answer stands for this attempt. Each message's
outcome is recorded (``record``, through the sender's ``on_result``) before the next message
is sent, so a delivered recipient is durable before anything else happens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from mailstead.dns import Resolver
from mailstead.observability.log import log_event
from mailstead.outbound import sender
from mailstead.outbound.policy import Connection, OutboundTls
from mailstead.outbound.relay import Relays
from mailstead.outbound.routing import (
    SMTP_PORT,
    Failover,
    Route,
    RouteFailure,
    Smarthost,
    Target,
    route,
)
from mailstead.outbound.sender import (
    DEFAULT_TIMEOUTS,
    MessageResult,
    OutboundMessage,
    OutboundRecipient,
    RecipientStatus,
    Timeouts,
    TlsPolicy,
)
from mailstead.protocols.smtp import Reply
from mailstead.queue.service import Attempt, Outcome, Outgoing, status_of

log = logging.getLogger("mailstead.queue.transport")

Record = Callable[[Outgoing, Sequence[Attempt]], Awaitable[None]]
"""Called once per message, as soon as its outcome is known, with an attempt per recipient."""

SendFunction = Callable[..., Awaitable[list[MessageResult]]]


class Transport(Protocol):
    """Delivers messages for one destination domain; calls ``record`` exactly once for each
    message of ``batch``, in order, awaiting it before going on."""

    async def deliver(self, domain: str, batch: Sequence[Outgoing], record: Record) -> None: ...


_OUTCOMES = {
    RecipientStatus.ACCEPTED: Outcome.DELIVERED,
    RecipientStatus.TEMPORARY: Outcome.TEMPORARY,
    RecipientStatus.PERMANENT: Outcome.PERMANENT,
}


def reply_text(reply: Reply) -> str:
    """A reply on one line, as logs and reports show it."""
    text = " ".join(reply.text.split())
    head = f"{reply.code} {reply.enhanced}" if reply.enhanced else str(reply.code)
    return f"{head} {text}" if text else head


def outbound_message(outgoing: Outgoing) -> OutboundMessage:
    """The sender's view of a queued message (DSN parameters dropped if they are unusable)."""
    item = outgoing.item
    recipients = []
    for r in outgoing.recipients:
        try:
            recipients.append(OutboundRecipient(r.address, r.notify or (), r.orcpt))
        except ValueError:
            recipients.append(OutboundRecipient(r.address))
    values = {
        "reverse_path": item.mail_from,
        "recipients": tuple(recipients),
        "content": outgoing.content,
        "eightbit": (item.body or "").upper() in ("8BITMIME", "BINARYMIME"),
        "smtputf8": item.smtputf8,
        "ret": item.ret,
        "envid": item.envid,
    }
    try:
        return OutboundMessage(**values)  # type: ignore[arg-type]
    except ValueError:
        values["envid"] = None
        return OutboundMessage(**values)  # type: ignore[arg-type]


def attempts_of(result: MessageResult, host: str) -> list[Attempt]:
    """One attempt per recipient of a message the server (or the session) answered."""
    out = []
    for r in result.recipients:
        outcome = _OUTCOMES[r.status]
        default = {"delivered": "2.0.0", "temporary": "4.0.0", "permanent": "5.0.0"}
        text = reply_text(r.reply)
        out.append(
            Attempt(
                outcome,
                text,
                r.reply.enhanced or status_of(text, default[outcome.value]),
                remote_mta=host if r.remote else None,
                notify_passed=result.dsn,
            )
        )
    return out


def try_elsewhere(result: MessageResult) -> bool:
    """The session failed before the server answered for any recipient: another address or
    MX host may do better (RFC 5321 §5.1)."""
    return result.failure is not None and not any(r.remote for r in result.recipients)


class SmtpTransport:
    """`Transport` over SMTP to the domain's MX hosts, or to a relay (``relays``), with the TLS
    ``tls`` plans for the MX hosts (MTA-STS, DANE). ``port``
    replaces 25 for every MX (tests and labs only); ``local_names`` are our own names (MX loop
    avoidance)."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        helo_name: str,
        local_names: Collection[str] = (),
        port: int = SMTP_PORT,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        relays: Relays | None = None,
        tls: OutboundTls | None = None,
        send: SendFunction = sender.send,
    ) -> None:
        self.resolver = resolver
        self.helo_name = helo_name
        self.local_names = tuple(local_names)
        self.port = port
        self.timeouts = timeouts
        self.relays = relays or Relays()
        self.tls = tls or OutboundTls()
        self.send = send
        self._relay_contexts: dict[TlsPolicy, ssl.SSLContext | None] = {}

    async def deliver(self, domain: str, batch: Sequence[Outgoing], record: Record) -> None:
        relay = self.relays.for_domain(domain)
        found = await route(domain, self.resolver, smarthost=relay, local_names=self.local_names)
        if isinstance(found, RouteFailure):
            await self._fail(domain, batch, record, found)
            return
        plan = await self.tls.plan(found)
        if isinstance(plan, RouteFailure):
            await self._fail(domain, batch, record, plan)
            return
        failover = Failover(self._ported(plan.route))
        remaining = list(batch)
        while remaining:
            target = failover.next()
            if target is None:
                failure = failover.failure()
                attempt = Attempt(Outcome.TEMPORARY, failure.reply, failure.status)
                for outgoing in remaining:
                    await record(outgoing, [attempt] * len(outgoing.recipients))
                return
            if relay is not None and found.kind == "smarthost":
                connection = await self._relay_connection(relay, target)
            else:
                connection = plan.connection(target)
            retry, why = await self._send(target, remaining, record, connection)
            if retry:
                failover.failed(target, why)
            remaining = retry

    async def _fail(
        self, domain: str, batch: Sequence[Outgoing], record: Record, found: RouteFailure
    ) -> None:
        outcome = Outcome.PERMANENT if found.permanent else Outcome.TEMPORARY
        attempt = Attempt(outcome, found.reply, found.status)
        log_event(log, "queue.route_failed", domain=domain, reply=found.reply)
        for outgoing in batch:
            await record(outgoing, [attempt] * len(outgoing.recipients))

    async def _relay_connection(self, relay: Smarthost, target: Target) -> Connection:
        policy = self.relays.tls_policy(relay, target.host)
        if policy not in self._relay_contexts:  # the CA file is read once, off the loop
            context = await asyncio.to_thread(self.relays.ssl_context, policy)
            self._relay_contexts[policy] = context
        context = self._relay_contexts[policy]
        return Connection(policy, context, self.relays.auth_for(relay), source="relay")

    def _ported(self, found: Route) -> Route:
        if self.port == SMTP_PORT or found.kind == "smarthost":
            return found
        hops = tuple(dataclasses.replace(hop, port=self.port) for hop in found.hops)
        return dataclasses.replace(found, hops=hops)

    async def _send(
        self, target: Target, batch: list[Outgoing], record: Record, connection: Connection
    ) -> tuple[list[Outgoing], str]:
        """Send ``batch`` over one connection to ``target``, recording each message as it is
        done; returns the messages to try elsewhere and why."""
        retry: list[Outgoing] = []
        why = ""

        async def on_result(index: int, result: MessageResult) -> None:
            nonlocal why
            outgoing = batch[index]
            if try_elsewhere(result):
                assert result.failure is not None
                retry.append(outgoing)
                why = result.failure.detail
            else:
                await record(outgoing, attempts_of(result, target.host))

        await self.send(
            target.address,
            target.port,
            [outbound_message(o) for o in batch],
            helo_name=self.helo_name,
            tls_policy=connection.tls,
            ssl_context=connection.context,
            auth=connection.auth,
            timeouts=self.timeouts,
            on_result=on_result,
        )
        return retry, why
