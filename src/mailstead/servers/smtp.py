"""Inbound SMTP (the MX role): an asyncio shell around :mod:`mailstead.protocols.smtp`.

The shell moves bytes, runs TLS, enforces time and connection limits, and turns the core's
decision events into directory lookups and durable deliveries. It never parses SMTP itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from mailstead.delivery import Envelope, LocalDelivery, Recipient, Spool
from mailstead.directory import Directory, RecipientStatus, Resolution
from mailstead.observability.ids import new_id
from mailstead.observability.log import log_event
from mailstead.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    DataChunk,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    Quit,
    RcptTo,
    Reply,
    Reset,
    ServerCore,
    ServerSettings,
    StartTLS,
    replies,
)
from mailstead.protocols.smtp.state import TRANSACTION_STATES
from mailstead.security.limits import client_key
from mailstead.servers.stream import StreamSession
from mailstead.store import StoreError, StoreErrorCode

log = logging.getLogger("mailstead.smtp")

# One table maps storage failures at end of data to SMTP replies.
STORE_ERROR_REPLIES: dict[StoreErrorCode, Reply] = {
    StoreErrorCode.OVERQUOTA: Reply(452, "4.2.2", "Mailbox full"),
    StoreErrorCode.TOOBIG: Reply(552, "5.2.2", "Message larger than the mailbox quota"),
    StoreErrorCode.NONEXISTENT: Reply(451, "4.3.0", "Mailbox unavailable, try again later"),
    StoreErrorCode.UNAVAILABLE: Reply(451, "4.3.0", "Temporary storage failure, try again later"),
}
_TEMP_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")

# Resolution verdicts at RCPT time.
RCPT_REPLIES: dict[RecipientStatus, Reply] = {
    RecipientStatus.NOT_LOCAL: Reply(554, "5.7.1", "Relay access denied"),
    RecipientStatus.UNKNOWN: Reply(550, "5.1.1", "User unknown"),
    RecipientStatus.DISABLED: Reply(550, "5.2.1", "Mailbox disabled"),
    RecipientStatus.LOOP: Reply(550, "5.4.6", "Alias expansion loop"),
    RecipientStatus.INVALID: Reply(501, "5.1.3", "Bad recipient address syntax"),
}
_FORWARDING_UNAVAILABLE = Reply(
    451, "4.3.0", "Forwarding to remote addresses is not available yet, try again later"
)
_MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full")
_TOO_BIG_FOR_QUOTA = Reply(552, "5.2.2", "Message larger than the mailbox quota")
_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down")
_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
_TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")


@dataclass(slots=True)
class SMTPLimits:
    """The shell's own limits (the core's are in ServerSettings)."""

    idle_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 1000
    max_connections_per_ip: int = 20


@dataclass(slots=True)
class SMTPServiceState:
    """What all sessions of one SMTP service share."""

    settings: ServerSettings
    limits: SMTPLimits
    tls_context: ssl.SSLContext | None
    directory: Directory
    delivery: LocalDelivery
    spool_dir: Any = None
    connections: int = 0
    per_ip: dict[str, int] = field(default_factory=dict)
    sessions: set[SMTPSession] = field(default_factory=set)
    shutting_down: bool = False
    messages_accepted: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def register(self, session: SMTPSession) -> None:
        self.connections += 1
        self.per_ip[session.client_key] = self.per_ip.get(session.client_key, 0) + 1
        self.sessions.add(session)
        self.idle.clear()

    def unregister(self, session: SMTPSession) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.connections -= 1
        count = self.per_ip.get(session.client_key, 1) - 1
        if count <= 0:
            self.per_ip.pop(session.client_key, None)
        else:
            self.per_ip[session.client_key] = count
        if not self.sessions:
            self.idle.set()


class SMTPSession(StreamSession):
    """One SMTP connection: the protocol callbacks feed a per-connection task."""

    def __init__(self, state: SMTPServiceState) -> None:
        super().__init__()
        self.state = state
        self.client_key = "unknown"
        self._task: asyncio.Task[None] | None = None
        self.in_transaction = False
        self.session_id = new_id()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.client_key = client_key(self.peer_ip)
        self.state.register(self)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _interrupted(self) -> bool:
        return self.state.shutting_down and not self.in_transaction

    async def _flush(self, core: ServerCore) -> None:
        await self.write(core.data_to_send())

    async def _run(self) -> None:
        state = self.state
        try:
            if state.shutting_down:
                await self._refuse(_SHUTTING_DOWN)
                return
            if state.connections > state.limits.max_connections or (
                state.per_ip.get(self.client_key, 0) > state.limits.max_connections_per_ip
            ):
                await self._refuse(_TOO_MANY_CONNECTIONS)
                return
            await self._serve()
        except Exception:
            log.exception("smtp session failed", extra={"fields": {"session": self.session_id}})
        finally:
            if self.transport is not None:
                self.transport.close()
            self.state.unregister(self)

    async def _refuse(self, reply: Reply) -> None:
        await self.write(_format(reply))
        log_event(log, "smtp.refused", client=self.peer_ip, reply=reply.code)

    async def _serve(self) -> None:
        state = self.state
        core = ServerCore(state.settings)
        core.start()
        tx = _Transaction(self.session_id)
        helo = ""
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                await self._flush(core)
                # Inside a transaction the client may be streaming content: the longer timeout.
                timeout = (
                    state.limits.data_timeout
                    if core.state in TRANSACTION_STATES
                    else state.limits.idle_timeout
                )
                data = await self.next_data(timeout, self._interrupted)
                if data is None:
                    if state.shutting_down:
                        core.close(_SHUTTING_DOWN, "shutdown")
                    else:
                        core.close(_TIMEOUT, "timeout")
                    continue
                core.receive_data(data)
                continue
            if event is PAUSED:  # a decision is pending that we did not take: a bug
                raise RuntimeError("SMTP core paused without a pending decision")
            if isinstance(event, DataChunk):
                tx.spool.write(event.data)
            elif isinstance(event, Hello):
                helo = event.domain
                tx.esmtp = event.verb == "EHLO"
            elif isinstance(event, MailFrom):
                tx.reset(self.state.spool_dir)
                tx.mail_from = event.reverse_path
                tx.mail_params = event.params
                self.in_transaction = True
                core.accept()
            elif isinstance(event, RcptTo):
                await self._rcpt(core, tx, event)
            elif isinstance(event, MessageComplete):
                await self._flush(core)
                await self._complete(core, tx, helo)
                self.in_transaction = False
                if state.shutting_down:
                    core.close(_SHUTTING_DOWN, "shutdown")
            elif isinstance(event, MessageAborted):
                self._abort(tx, event.reason)
            elif isinstance(event, Reset):
                self._abort(tx, "reset")
                self.in_transaction = False
            elif isinstance(event, StartTLS):
                self.prepare_tls()
                await self._flush(core)
                assert state.tls_context is not None
                if not await self.start_tls(state.tls_context, state.limits.idle_timeout):
                    log_event(log, "smtp.tls_failed", client=self.peer_ip)
                    return
                tx.tls = self.tls_description()
                core.tls_started()
                helo = ""
            elif isinstance(event, Quit | CloseConnection):
                await self._flush(core)
                self._abort(tx, "closed")
                return

    async def _rcpt(self, core: ServerCore, tx: _Transaction, event: RcptTo) -> None:
        try:
            resolution = await self.state.directory.resolve(event.forward_path)
        except StoreError:
            log.exception("directory lookup failed")
            core.reply(_TEMP_FAILURE)
            return
        reply = self._rcpt_verdict(resolution, tx)
        if reply is not None:
            tx.refused.append((event.forward_path, reply.code))
            core.reply(reply)
            return
        tx.recipients.append(
            Recipient(event.forward_path, resolution, event.params.notify, event.params.orcpt)
        )
        core.accept()

    @staticmethod
    def _rcpt_verdict(resolution: Resolution, tx: _Transaction) -> Reply | None:
        if resolution.status is not RecipientStatus.LOCAL:
            return RCPT_REPLIES[resolution.status]
        if resolution.remote:
            return _FORWARDING_UNAVAILABLE
        declared = tx.mail_params.size if tx.mail_params is not None else None
        for account in resolution.accounts:
            if not account.quota:
                continue
            if declared is not None and declared > account.quota:
                return _TOO_BIG_FOR_QUOTA
            if account.used + (declared or 0) >= account.quota:
                return _MAILBOX_FULL
        return None

    async def _complete(self, core: ServerCore, tx: _Transaction, helo: str) -> None:
        state = self.state
        started = time.monotonic()
        queue_id = new_id()
        received = self._received_header(tx, helo, queue_id)
        message = received + tx.spool.getvalue()
        params = tx.mail_params
        envelope = Envelope(
            mail_from=tx.mail_from,
            recipients=tuple(tx.recipients),
            ret=params.ret if params else None,
            envid=params.envid if params else None,
            body=params.body if params else None,
            smtputf8=bool(params and params.smtputf8),
            extra={"queue_id": queue_id, "client": self.peer_ip, "helo": helo},
        )
        reply: Reply | None
        try:
            outcome = await state.delivery.deliver(message, envelope)
        except StoreError as exc:
            reply = STORE_ERROR_REPLIES.get(exc.code, _TEMP_FAILURE)
        except Exception:
            log.exception("delivery failed")
            reply = _TEMP_FAILURE
        else:
            reply = self._outcome_reply(outcome.errors)
        if any(a.quota for r in tx.recipients for a in r.resolution.accounts):
            state.directory.forget_lookups()  # the next RCPT-time quota check reads fresh usage
        if reply is None:
            core.accept(text=f"Ok: queued as {queue_id}")
            state.messages_accepted += 1
            result = f"250 queued as {queue_id}"
        else:
            core.reply(reply)
            result = f"{reply.code} {reply.enhanced} {reply.text}"
        log_event(
            log,
            "smtp.transaction",
            id=queue_id,
            session=self.session_id,
            client=self.peer_ip,
            helo=helo,
            tls=bool(tx.tls),
            mail_from=tx.mail_from,
            rcpt=[r.address for r in tx.recipients],
            refused=[{"rcpt": a, "code": c} for a, c in tx.refused],
            size=len(message),
            result=result,
            ms=round((time.monotonic() - started) * 1000, 2),
        )
        tx.reset(state.spool_dir)

    @staticmethod
    def _outcome_reply(errors: tuple[StoreError | None, ...]) -> Reply | None:
        failures = [e for e in errors if e is not None]
        if not failures:
            return None
        # SMTP has one reply for DATA: permanent only if every target failed permanently.
        if all(e.code is StoreErrorCode.TOOBIG for e in failures) and len(failures) == len(errors):
            return STORE_ERROR_REPLIES[StoreErrorCode.TOOBIG]
        temporary = [e for e in failures if e.code is not StoreErrorCode.TOOBIG]
        code = temporary[0].code if temporary else StoreErrorCode.OVERQUOTA
        return STORE_ERROR_REPLIES.get(code, _TEMP_FAILURE)

    def _received_header(self, tx: _Transaction, helo: str, queue_id: str) -> bytes:
        """RFC 5321 §4.4 trace header, with the RFC 3848/6531 protocol keyword."""
        smtputf8 = bool(tx.mail_params and tx.mail_params.smtputf8)
        proto = ("UTF8SMTP" if smtputf8 else "ESMTP") if tx.esmtp else "SMTP"
        if tx.tls:
            proto += "S"
        lines = [f"Received: from {helo or 'unknown'} ([{self.peer_ip}])"]
        if tx.tls:
            lines.append(f"\t({tx.tls})")
        by = f"\tby {self.state.settings.hostname} (Mailstead) with {proto} id {queue_id}"
        if len(tx.recipients) == 1:
            lines.append(by)
            lines.append(f"\tfor <{tx.recipients[0].address}>;")
        else:
            lines.append(by + ";")
        lines[-1] += " " + email.utils.format_datetime(email.utils.localtime())
        text = "\r\n".join(lines) + "\r\n"
        return text.encode("utf-8")

    def _abort(self, tx: _Transaction, reason: str) -> None:
        tx.reset(self.state.spool_dir)


@dataclass(slots=True)
class _Transaction:
    session_id: str
    mail_from: str = ""
    mail_params: Any = None
    recipients: list[Recipient] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)
    spool: Spool = field(default_factory=lambda: Spool(None))
    esmtp: bool = False
    tls: str = ""

    def reset(self, spool_dir: Any) -> None:
        self.spool.discard()
        self.spool = Spool(spool_dir)
        self.mail_from = ""
        self.mail_params = None
        self.recipients = []
        self.refused = []


def _format(reply: Reply) -> bytes:
    return replies.format_reply(reply)


class SMTPService:
    """All listeners of one SMTP service (port 25) and their sessions."""

    def __init__(self, state: SMTPServiceState) -> None:
        self.state = state
        self.servers: list[asyncio.Server] = []

    def _session_factory(self) -> SMTPSession:
        return SMTPSession(self.state)

    async def start(self, addresses: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen on every ``(host, port)``; returns the bound addresses (port 0 → real port)."""
        loop = asyncio.get_running_loop()
        bound = []
        for host, port in addresses:
            server = await loop.create_server(
                self._session_factory, host, port, reuse_address=True, backlog=512
            )
            self.servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
        return bound

    async def shutdown(self, grace: float) -> None:
        """Finish in-flight transactions (new connections and idle ones get 421), then close."""
        state = self.state
        state.shutting_down = True
        for session in list(state.sessions):
            session.wakeup.set()
        if state.sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), grace)
        for server in self.servers:
            server.close()
        for session in list(state.sessions):
            if session.transport is not None:
                session.transport.abort()
        for server in self.servers:
            await server.wait_closed()
