"""The queue service: what goes in (DKIM-signed once, durably), what an attempt's outcome does
to each recipient (delivered, deferred by the retry schedule, failed, expired), and the
delivery status notifications owed to senders.

It does no network I/O: a transport (:mod:`mailstead.queue.transport`) turns a batch of
`Outgoing` messages into one `Attempt` per recipient, and the runner
(:mod:`mailstead.queue.runner`) hands them to :meth:`Queue.record` as soon as each message's
last reply is in. Reports follow RFC 3461/3464: by default (no NOTIFY) a failure report, and
a delay warning when ``delay_warning`` is set; ``NOTIFY=SUCCESS`` gets a "relayed" report when
the next server did not take the DSN parameters; ``NOTIFY=NEVER`` gets nothing; a message from
the null sender ``<>`` never causes a report (RFC 3461 §6.2, RFC 5321 §4.5.5). A report for a
local sender is delivered to their mailbox at once, for a remote one it is queued from ``<>``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailstead.directory import Directory, RecipientStatus
from mailstead.mailauth import arc, dkim
from mailstead.message.addresses import AddressError, normalize_domain, parse_address_list
from mailstead.message.headers import get_all, parse_header_fields, split_header_body
from mailstead.observability.ids import new_id
from mailstead.observability.log import log_event
from mailstead.protocols.smtp.grammar import xtext_encode
from mailstead.queue.dsn import RecipientReport, Report, build
from mailstead.queue.schedule import RetrySchedule
from mailstead.store import (
    Account,
    DeliveryOutcome,
    DeliveryRequest,
    DeliveryTarget,
    QueueItem,
    QueueRecipient,
    QueueRecipientRequest,
    QueueRequest,
    QueueState,
    QueueUpdate,
    ReportAction,
    Store,
    StoreError,
)

log = logging.getLogger("mailstead.queue")

# RFC 3461 §4.1: without NOTIFY, the MTA reports failures and may report delays.
DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})
EXPIRED_STATUS = "4.4.7"  # RFC 3463: delivery time expired
# Parsed private keys are kept this long (a rotation is seen within it).
KEY_CACHE_TTL = 60.0


class Outcome(enum.Enum):
    """What one attempt did for one recipient."""

    DELIVERED = "delivered"  # a 2xx at the end of the data
    TEMPORARY = "temporary"  # 4xx, no connection, timeout, DNS trouble: try again later
    PERMANENT = "permanent"  # 5xx (or a permanent routing failure): give up, report


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one attempt for one recipient. ``reply`` is the reply text as it goes into
    logs and reports (``"550 5.1.1 <x@y>: no such user"``); ``status`` its RFC 3463 code;
    ``notify_passed`` that the next server took the DSN parameters (it reports from now on)."""

    outcome: Outcome
    reply: str
    status: str
    remote_mta: str | None = None
    notify_passed: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One queued message going out to some of its recipients (all in one domain)."""

    item: QueueItem
    recipients: tuple[QueueRecipient, ...]
    content: bytes


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How the queue behaves; ``hostname`` names us in reports (Reporting-MTA, From:)."""

    hostname: str
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    delay_warning: float = 0.0  # seconds in the queue before a delay warning; 0: never


def wanted_reports(notify: tuple[str, ...] | None) -> frozenset[str]:
    """The NOTIFY keywords in force for a recipient (RFC 3461 §4.1)."""
    if notify is None:
        return DEFAULT_NOTIFY
    if "NEVER" in notify:
        return frozenset()
    return frozenset(notify)


def status_of(reply: str, default: str) -> str:
    """The enhanced status code in ``reply`` (``"550 5.1.1 ..."``), else one derived from its
    basic code class, else ``default``."""
    words = reply.split(maxsplit=2)
    if len(words) >= 2 and words[1][:1] in "245" and words[1].count(".") == 2:
        return words[1]
    if words and words[0][:1] in "245" and words[0].isdigit():
        return f"{words[0][0]}.0.0"
    return default


def _sender_domain(raw: bytes, mail_from: str) -> list[str]:
    """Domains that may sign, in order: the From: header's, then the envelope sender's."""
    domains: list[str] = []
    end = split_header_body(raw)
    for value in get_all(parse_header_fields(raw, 0, end), "From")[:1]:
        for address in parse_address_list(value):
            if address.domain and not address.is_group_marker:
                domains.append(address.domain)
                break
    if "@" in mail_from:
        domains.append(mail_from.rpartition("@")[2])
    out: list[str] = []
    for domain in domains:
        try:
            name = normalize_domain(domain)
        except AddressError:
            continue
        if name not in out:
            out.append(name)
    return out


class Queue:
    """The outbound queue over the store. ``wake`` is called when new work may be due (the
    runner sets it); ``clock`` gives Unix time (tests pass a fake one)."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        settings: QueueSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.clock = clock
        self.wake: Callable[[], None] = lambda: None
        self._keys: dict[str, tuple[float, dkim.SigningKey]] = {}

    # -- in ------------------------------------------------------------------------------------
    async def enqueue(
        self,
        raw: bytes,
        mail_from: str,
        recipients: Sequence[QueueRecipientRequest],
        *,
        queue_id: str | None = None,
        envid: str | None = None,
        ret: Literal["FULL", "HDRS"] | None = None,
        smtputf8: bool = False,
        body: str | None = None,
        origin: str = "",
        local: DeliveryRequest | None = None,
        sign: bool = True,
    ) -> tuple[str, DeliveryOutcome | None]:
        """Queue ``raw`` for ``recipients`` durably (with ``local``, that delivery in the same
        transaction); mail from one of our domains is DKIM-signed first. Returns the queue id
        and the local delivery's outcome (when it was refused, nothing was queued)."""
        now = self.clock()
        if sign:
            raw = await self.sign(raw, mail_from, now)
        request = QueueRequest(
            queue_id=queue_id or new_id(),
            raw=raw,
            mail_from=mail_from,
            recipients=recipients,
            queued_at=now,
            envid=envid,
            ret=ret,
            smtputf8=smtputf8,
            body=body,
            origin=origin,
        )
        outcome = await self.store.enqueue(request, local=local)
        if outcome is None or not local or outcome.ok or not local.all_or_nothing:
            log_event(log, "queue.enqueued", id=request.queue_id, origin=origin,
                      mail_from=mail_from, rcpt=[r.address for r in recipients],
                      size=len(raw))  # fmt: skip
            self.wake()
        return request.queue_id, outcome

    async def sign(self, raw: bytes, mail_from: str, now: float) -> bytes:
        """``raw`` with DKIM-Signature fields of the first local domain (From: header, then
        envelope sender) that has active keys; unchanged when there is none."""
        for domain in _sender_domain(raw, mail_from):
            if not await self.directory.is_local_domain(domain):
                continue
            keys = await self._signing_keys(domain, now)
            if not keys:
                continue
            try:  # CPU work (about 1 ms per RSA signature): off the event loop
                header = await asyncio.to_thread(
                    dkim.sign, raw, domain, keys, timestamp=int(now)
                )
            except dkim.DkimError as exc:
                log_event(log, "queue.dkim_failed", logging.WARNING, domain=domain,
                          error=str(exc))  # fmt: skip
                return raw
            return header + raw
        return raw

    async def _signing_keys(self, domain: str, now: float) -> list[dkim.SigningKey]:
        """The domain's active keys, parsed (cached for a while: parsing costs milliseconds)."""
        keys = []
        for key in await self.store.active_dkim_keys(domain):
            signing = self._key(key.selector, key.private_key, now)
            if signing is None:
                signing = await asyncio.to_thread(
                    dkim.SigningKey.from_pem, key.selector, key.private_key
                )
                self._keys[key.private_key] = (now, signing)
            keys.append(signing)
        return keys

    async def arc_seal(
        self,
        raw: bytes,
        domain: str,
        *,
        authserv_id: str,
        results: str,
        chain: arc.ArcVerdict,
        now: float | None = None,
    ) -> bytes:
        """``raw`` with the next ARC set (RFC 8617 §5.1) sealed with ``domain``'s key (RSA
        preferred, the algorithm receivers verify most widely); unchanged when the domain has
        no key or the chain may not be extended."""
        now = time.time() if now is None else now
        keys = await self._signing_keys(domain, now)
        if not keys:
            return raw
        key = next((k for k in keys if k.algorithm == "rsa"), keys[0])
        fields = await asyncio.to_thread(
            arc.seal, raw, key=key, domain=domain, authserv_id=authserv_id,
            authentication_results=results, chain=chain, timestamp=int(now),
        )  # fmt: skip
        if fields:
            log_event(log, "queue.arc_sealed", domain=domain, instance=chain.instances + 1)
        return fields + raw

    def _key(self, selector: str, pem: str, now: float) -> dkim.SigningKey | None:
        cached = self._keys.get(pem)
        if cached is None or now - cached[0] > KEY_CACHE_TTL or cached[1].selector != selector:
            return None
        return cached[1]

    # -- results -------------------------------------------------------------------------------
    def update(
        self, item: QueueItem, recipient: QueueRecipient, attempt: Attempt, now: float
    ) -> QueueUpdate:
        """What ``attempt`` makes of ``recipient`` (a pure function of its arguments)."""
        attempts = recipient.attempts + 1
        wants = wanted_reports(recipient.notify) if item.mail_from else frozenset()

        def made(
            state: QueueState,
            report: ReportAction | None,
            *,
            next_attempt: float = recipient.next_attempt,
            reply: str = attempt.reply,
            status: str = attempt.status,
            delay_warned: bool = recipient.delay_warned,
        ) -> QueueUpdate:
            return QueueUpdate(
                recipient_id=recipient.id,
                state=state,
                attempts=attempts,
                next_attempt=next_attempt,
                last_attempt=now,
                last_error=reply,
                status=status,
                remote_mta=attempt.remote_mta,
                delay_warned=delay_warned,
                report=report,
            )

        if attempt.outcome is Outcome.DELIVERED:
            # RFC 3461 §5.2.2: relayed to a server without DSN: we report success ourselves
            relayed = "SUCCESS" in wants and not attempt.notify_passed
            return made(QueueState.DELIVERED, "relayed" if relayed else None)
        failed: ReportAction | None = "failed" if "FAILURE" in wants else None
        if attempt.outcome is Outcome.PERMANENT:
            return made(QueueState.FAILED, failed)
        when = self.settings.schedule.next_attempt(item.queued_at, attempts, now)
        if when is None:
            age = _age(now - item.queued_at)
            reply = f"{attempt.reply} (gave up after {attempts} attempts in {age})"
            return made(QueueState.FAILED, failed, reply=reply, status=EXPIRED_STATUS)
        warn = (
            self.settings.delay_warning > 0
            and not recipient.delay_warned
            and now - item.queued_at >= self.settings.delay_warning
            and "DELAY" in wants
        )
        return made(
            QueueState.DEFERRED,
            "delayed" if warn else None,
            next_attempt=when,
            delay_warned=recipient.delay_warned or warn,
        )

    async def record(self, outgoing: Outgoing, attempts: Sequence[Attempt]) -> None:
        """Record one message's outcome for its recipients durably (call it as soon as the
        message's last reply is in: a delivered recipient must never be tried again)."""
        now = self.clock()
        item = outgoing.item
        updates = [
            self.update(item, r, a, now)
            for r, a in zip(outgoing.recipients, attempts, strict=True)
        ]
        await self.store.record_queue_results(updates)
        for r, u in zip(outgoing.recipients, updates, strict=True):
            log_event(log, "queue.attempt", id=item.queue_id, rcpt=r.address,
                      state=u.state.value, attempts=u.attempts, reply=u.last_error,
                      remote_mta=u.remote_mta,
                      next_attempt=round(u.next_attempt, 3) if u.state is QueueState.DEFERRED
                      else None)  # fmt: skip

    # -- reports -------------------------------------------------------------------------------
    async def send_reports(self, limit: int = 100) -> int:
        """Make the reports owed to senders (at most ``limit`` recipients' worth); returns
        how many recipients were settled."""
        settled = 0
        for item in await self.store.owed_reports(limit):
            ids = [r.id for r in item.recipients]
            if not item.mail_from:  # never a report to <> (RFC 3461 §6.2)
                await self.store.settle_reports(ids)
            else:
                await self._report(item, ids)
            settled += len(ids)
        return settled

    async def _report(self, item: QueueItem, ids: list[int]) -> None:
        now = self.clock()
        original = await self.store.read_blob(item.blob_id)
        schedule = self.settings.schedule
        recipients = [
            RecipientReport(
                address=r.address,
                action=r.report or "failed",
                status=r.status or ("4.0.0" if r.report == "delayed" else "5.0.0"),
                diagnostic=r.last_error,
                remote_mta=r.remote_mta,
                original_recipient=(r.orcpt[0], xtext_encode(r.orcpt[1])) if r.orcpt else None,
                last_attempt=r.last_attempt,
                will_retry_until=item.queued_at + schedule.max_age
                if r.report == "delayed"
                else None,
            )
            for r in item.recipients
        ]
        report = Report(
            reporting_mta=self.settings.hostname,
            sender=item.mail_from,
            recipients=recipients,
            original=original,
            arrival=item.queued_at,
            envid=xtext_encode(item.envid) if item.envid else None,
            ret=item.ret,
            smtputf8=item.smtputf8,
        )
        raw = build(report, now=now)
        actions = sorted({r.action for r in recipients})
        dsn_id = new_id()
        resolution = await self.directory.resolve(item.mail_from)
        remote: list[str] = []
        if resolution.status is RecipientStatus.NOT_LOCAL:
            remote = [item.mail_from]
        elif resolution.status is RecipientStatus.LOCAL:
            remote = list(resolution.remote)
            if resolution.accounts:
                await self._deliver_locally(item, dsn_id, raw, resolution.accounts, now)
        else:
            log_event(log, "queue.report_dropped", logging.WARNING, id=item.queue_id,
                      sender=item.mail_from, reason=resolution.status.value)  # fmt: skip
        dsn = None
        if remote:
            dsn = QueueRequest(
                queue_id=dsn_id,
                raw=raw,
                mail_from="",
                recipients=[QueueRecipientRequest(a) for a in remote],
                queued_at=now,
                smtputf8=item.smtputf8,
                origin="dsn",
            )
        await self.store.settle_reports(ids, dsn)
        log_event(log, "queue.report", id=item.queue_id, dsn=dsn_id, sender=item.mail_from,
                  actions=actions, rcpt=[r.address for r in recipients],
                  queued=bool(dsn))  # fmt: skip
        if dsn is not None:
            self.wake()

    async def _deliver_locally(
        self, item: QueueItem, dsn_id: str, raw: bytes, accounts: Sequence[Account], now: float
    ) -> None:
        targets = [DeliveryTarget(a.id) for a in accounts]
        request = DeliveryRequest(
            raw=b"Return-Path: <>\r\n" + raw,
            targets=targets,
            internal_date=int(now),
            envelope={
                "mail_from": "",
                "rcpt": [{"to": item.mail_from}],
                "queue_id": dsn_id,
                "report_for": item.queue_id,
            },
            all_or_nothing=False,
        )
        try:
            outcome = await self.store.deliver(request)
        except StoreError as exc:
            log_event(log, "queue.report_failed", logging.WARNING, id=item.queue_id,
                      error=str(exc))  # fmt: skip
            raise
        if not outcome.ok:  # a full mailbox: the report is lost, and said so
            log_event(log, "queue.report_undeliverable", logging.WARNING, id=item.queue_id,
                      sender=item.mail_from,
                      errors=[str(e) for e in outcome.errors if e is not None])  # fmt: skip


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
