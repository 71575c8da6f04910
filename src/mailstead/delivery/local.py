"""Local delivery: one message, the accounts its recipients resolved to, one durable commit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailstead.directory import Resolution
from mailstead.store import DeliveryOutcome, DeliveryRequest, DeliveryTarget, Store


@dataclass(frozen=True, slots=True)
class Recipient:
    """One accepted RCPT TO: the address as given, where it resolved, its DSN parameters."""

    address: str
    resolution: Resolution
    notify: tuple[str, ...] = ()
    orcpt: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one transaction, kept with the stored message."""

    mail_from: str
    recipients: Sequence[Recipient]
    ret: str | None = None
    envid: str | None = None
    body: str | None = None
    smtputf8: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "mail_from": self.mail_from,
            "rcpt": [
                {
                    "to": r.address,
                    **({"notify": list(r.notify)} if r.notify else {}),
                    **({"orcpt": list(r.orcpt)} if r.orcpt else {}),
                }
                for r in self.recipients
            ],
            **({"ret": self.ret} if self.ret else {}),
            **({"envid": self.envid} if self.envid else {}),
            **({"body": self.body} if self.body else {}),
            **({"smtputf8": True} if self.smtputf8 else {}),
            **self.extra,
        }


def return_path_header(mail_from: str) -> bytes:
    """RFC 5321 §4.4: the final delivery adds ``Return-Path`` with the reverse-path."""
    return b"Return-Path: <" + mail_from.encode("utf-8") + b">\r\n"


JUNK = "\\Junk"  # RFC 6154 special use


class LocalDelivery:
    """Delivers a message to the INBOX of every local account its recipients resolved to."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def targets(self, envelope: Envelope, *, junk: bool = False) -> list[DeliveryTarget]:
        """One target per local account the recipients reach: its INBOX, or with ``junk`` its
        Junk folder (the mailbox with the \\Junk special use; INBOX when it has none).

        Two recipients that reach the same account (``alice`` and ``alice+tag``) give one copy.
        """
        targets: list[DeliveryTarget] = []
        seen: set[int] = set()
        for recipient in envelope.recipients:
            for account in recipient.resolution.accounts:
                if account.id not in seen:
                    seen.add(account.id)
                    mailbox = await self._junk_folder(account.id) if junk else "INBOX"
                    targets.append(DeliveryTarget(account.id, mailbox))
        return targets

    async def _junk_folder(self, account_id: int) -> str:
        for box in await self.store.list_mailboxes(account_id):
            if box.special_use == JUNK:
                return box.name
        return "INBOX"

    async def deliver(
        self,
        message: bytes,
        envelope: Envelope,
        *,
        internal_date: int | None = None,
        junk: bool = False,
    ) -> DeliveryOutcome:
        """Store ``message`` (Return-Path is prepended) once for all accounts, durably; into
        their Junk folders with ``junk`` (a DMARC quarantine)."""
        raw = return_path_header(envelope.mail_from) + message
        return await self.deliver_raw(raw, envelope, internal_date=internal_date, junk=junk)

    async def deliver_raw(
        self,
        raw: bytes,
        envelope: Envelope,
        *,
        internal_date: int | None = None,
        junk: bool = False,
    ) -> DeliveryOutcome:
        """:meth:`deliver` of a message that already starts with its Return-Path field."""
        targets = await self.targets(envelope, junk=junk)
        request = DeliveryRequest(
            raw=raw,
            targets=targets,
            internal_date=int(time.time()) if internal_date is None else internal_date,
            envelope=envelope.as_json(),
        )
        return await self.store.deliver(request)
