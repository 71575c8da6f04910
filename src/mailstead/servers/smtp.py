"""SMTP: an asyncio shell around :mod:`mailstead.protocols.smtp`, for two roles.

- **MX** (the ``smtp`` listeners, port 25): mail for our users from anywhere; no AUTH, no relay.
- **Submission** (``submission``, port 587 with STARTTLS, RFC 6409; ``submissions``, port 465
  with TLS from the first byte, RFC 8314): mail from our users' clients. AUTH (RFC 4954) is
  required before MAIL, and offered only over TLS (on loopback also without, when
  ``auth.allow_plaintext_on_loopback``); the user may send only as an address of their own (an
  alias that delivers to them counts); local recipients are delivered at once, remote ones go
  to the outbound queue (in the same durable commit); Date and Message-ID are added when
  missing. On port 25, aliases with remote targets are forwarded through the queue too.

The shell moves bytes, runs TLS, enforces time and connection limits, and turns the core's
decision events into directory lookups and durable deliveries. It never parses SMTP itself.
`AuthExchange` joins the core's AUTH framing to the login service (:mod:`mailstead.login`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import ipaddress
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstead import sasl
from mailstead.delivery import Envelope, LocalDelivery, Recipient, Spool, loops, return_path_header
from mailstead.directory import Directory, RecipientStatus, Resolution
from mailstead.directory.service import DirectoryError, normalize_address
from mailstead.dns import Resolver
from mailstead.login import (
    Client,
    LoggedIn,
    LoginFailed,
    LoginRefused,
    LoginService,
    SaslLogin,
    SaslOutcome,
)
from mailstead.mailauth import inbound
from mailstead.mailauth.author import AuthorError, parse_mailbox_list
from mailstead.mailauth.spf import SpfVerdict
from mailstead.message.headers import get_all, parse_header_fields, split_header_body
from mailstead.observability.ids import new_id
from mailstead.observability.log import log_event
from mailstead.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    AuthAborted,
    AuthResponse,
    AuthStart,
    CloseConnection,
    DataChunk,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    ProtocolError,
    Quit,
    RcptTo,
    Reply,
    Reset,
    ServerCore,
    ServerSettings,
    StartTLS,
    replies,
)
from mailstead.protocols.smtp.state import TRANSACTION_STATES, State
from mailstead.queue.service import Queue
from mailstead.security.limits import client_key
from mailstead.security.memory import MemoryBudget
from mailstead.servers.stream import StreamSession, listen
from mailstead.store import (
    Account,
    DeliveryOutcome,
    DeliveryRequest,
    QueueRecipientRequest,
    StoreError,
    StoreErrorCode,
)

log = logging.getLogger("mailstead.smtp")

# One table maps storage failures at end of data to SMTP replies.
STORE_ERROR_REPLIES: dict[StoreErrorCode, Reply] = {
    StoreErrorCode.OVERQUOTA: Reply(452, "4.2.2", "Mailbox full"),
    StoreErrorCode.TOOBIG: Reply(552, "5.2.2", "Message larger than the mailbox quota"),
    StoreErrorCode.NONEXISTENT: Reply(451, "4.3.0", "Mailbox unavailable, try again later"),
    StoreErrorCode.UNAVAILABLE: Reply(451, "4.3.0", "Temporary storage failure, try again later"),
}
_TEMP_FAILURE = Reply(451, "4.3.0", "Temporary failure, try again later")
# RFC 3463 4.3.1: the server-wide memory budget for large messages stayed full too long
_MEMORY_FULL = Reply(452, "4.3.1", "Insufficient system resources, try again later")
MEMORY_WAIT = 120.0  # seconds a large message waits for the memory budget before 452

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
_SESSION_TIMEOUT = Reply(421, "4.4.2", "Session timeout, closing connection")
# Messages longer than this have their header read for loops in a worker thread.
INLINE_PARSE_LIMIT = 64 * 1024


@dataclass(slots=True)
class SMTPLimits:
    """The shell's own limits (the core's are in ServerSettings)."""

    idle_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    max_received_headers: int = loops.DEFAULT_MAX_RECEIVED  # RFC 5321 §6.3
    # before EHLO/HELO (after the greeting, and again after STARTTLS), every listener
    helo_timeout: float = 30.0
    session_timeout: float = 1800.0  # the whole session, port 25
    handshake_timeout: float = 10.0  # every TLS handshake (465, STARTTLS): [tls]
    # submission (587, 465) has its own connection budget: port 25 cannot lock users out
    submission_max_connections: int = 1000
    submission_max_connections_per_ip: int = 20
    submission_session_timeout: float = 1800.0


class SubmissionPolicy:
    """What submission offers and allows, beyond the core's settings.

    ``allow_any_sender_for`` lists who may send as any address: ``"*"`` (everyone: no sender
    check at all), ``"@domain"`` (every account of the domain) or an account's address.
    ``channel_bindings`` are the SCRAM-SHA-256-PLUS bindings of our certificate (offered only
    when not empty).
    """

    def __init__(
        self,
        *,
        allow_any_sender_for: Iterable[str] = (),
        allow_plaintext_on_loopback: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None,
    ) -> None:
        self.allow_plaintext_on_loopback = allow_plaintext_on_loopback
        self.channel_bindings = dict(channel_bindings or {})
        self._everyone = False
        self._domains: set[str] = set()
        self._accounts: set[tuple[str, str]] = set()
        for entry in allow_any_sender_for:
            entry = entry.strip()
            if entry == "*":
                self._everyone = True
            else:
                try:  # the config schema checked the shape, not the domain
                    addr = normalize_address(entry, allow_catch_all=True)
                except DirectoryError as exc:
                    log_event(log, "submission.bad_sender_entry", logging.WARNING,
                              entry=entry, error=str(exc))  # fmt: skip
                    continue
                if entry.startswith("@"):
                    self._domains.add(addr.domain)
                else:
                    self._accounts.add((addr.domain, addr.local_key))

    def mechanisms(self) -> tuple[str, ...]:
        """SASL mechanisms for submission, strongest first; the core offers them once TLS is
        active (before it only on loopback when allowed, and never the -PLUS ones)."""
        names = sasl.mechanisms(
            tls=True, allow_plaintext=False, channel_binding=bool(self.channel_bindings)
        )
        return tuple(names)

    def any_sender(self, account: Account) -> bool:
        """Whether ``account`` may use any address as sender."""
        if self._everyone:
            return True
        addr = normalize_address(account.address)
        return addr.domain in self._domains or (addr.domain, addr.local_key) in self._accounts


@dataclass(frozen=True)
class InboundChecks:
    """How port 25 checks mail ([mailauth]): the resolver, the policy, who is trusted."""

    resolver: Resolver
    policy: inbound.InboundPolicy
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    arc_seal: bool = True

    def trusts(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)


@dataclass(slots=True)
class SMTPServiceState:
    """What all sessions of one SMTP service (MX and submission listeners) share."""

    settings: ServerSettings
    limits: SMTPLimits
    tls_context: ssl.SSLContext | None
    directory: Directory
    delivery: LocalDelivery
    spool_dir: Any = None
    submission: SubmissionPolicy = field(default_factory=SubmissionPolicy)
    # the one login path (bans, credentials, log events), shared with the other services;
    # None: one over the directory without bans
    login: LoginService | None = None
    # the outbound queue: remote recipients of submission and remote alias targets (None:
    # refused with 451, as before the queue existed)
    queue: Queue | None = None
    # checks of inbound mail on port 25 (SPF, DKIM, ARC, DMARC); None: not checked
    mailauth: InboundChecks | None = None
    # the addresses our listeners are bound to: never a destination of an address literal
    own_addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=set)
    # asks for the addresses of our host name (address literals of this host are refused)
    resolver: Resolver | None = None
    # large messages in flight, server-wide (shared with IMAP)
    memory: MemoryBudget = field(default_factory=lambda: MemoryBudget(128 << 20))
    connections: int = 0
    per_ip: dict[str, int] = field(default_factory=dict)
    sessions: set[SMTPSession] = field(default_factory=set)
    shutting_down: bool = False
    messages_accepted: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    # submission's connections, counted apart from port 25's (``connections``, ``per_ip``)
    submission_connections: int = 0
    submission_per_ip: dict[str, int] = field(default_factory=dict)

    def register(self, session: SMTPSession) -> None:
        per_ip = self.submission_per_ip if session.submission else self.per_ip
        if session.submission:
            self.submission_connections += 1
        else:
            self.connections += 1
        per_ip[session.client_key] = per_ip.get(session.client_key, 0) + 1
        self.sessions.add(session)
        self.idle.clear()

    def unregister(self, session: SMTPSession) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        per_ip = self.submission_per_ip if session.submission else self.per_ip
        if session.submission:
            self.submission_connections -= 1
        else:
            self.connections -= 1
        count = per_ip.get(session.client_key, 1) - 1
        if count <= 0:
            per_ip.pop(session.client_key, None)
        else:
            per_ip[session.client_key] = count
        if not self.sessions:
            self.idle.set()

    def over_limit(self, session: SMTPSession) -> bool:
        """Whether ``session`` (registered) is over its role's connection budget."""
        limits = self.limits
        if session.submission:
            return self.submission_connections > limits.submission_max_connections or (
                self.submission_per_ip.get(session.client_key, 0)
                > limits.submission_max_connections_per_ip
            )
        return self.connections > limits.max_connections or (
            self.per_ip.get(session.client_key, 0) > limits.max_connections_per_ip
        )


class AuthExchange:
    """One AUTH exchange (RFC 4954 §4): the core's framing around a login service exchange.

    The shell hands it the core's `AuthStart` and `AuthResponse` events. It decodes the client's
    lines (`sasl.decode_response`), passes them to the :class:`~mailstead.login.SaslLogin`
    (which checks bans and credentials, records and logs the outcome), and sends its answer
    through the core: a 334 challenge, 235, 535, 501, or 421 for a banned client. ``outcome``
    tells how an exchange that ended went; ``done`` when nothing more is expected.
    """

    def __init__(self, core: ServerCore, login: SaslLogin) -> None:
        self.core = core
        self.login = login
        self.mechanism = login.mechanism
        self.outcome: LoggedIn | LoginFailed | LoginRefused | None = None
        self._final: LoggedIn | None = None  # SCRAM: success sent as a last 334

    @property
    def done(self) -> bool:
        return self.outcome is not None and self._final is None

    async def start(self, event: AuthStart) -> None:
        if event.initial_response is None:
            self._answer(await self.login.start(None))
            return
        data = sasl.decode_response(event.initial_response)  # "=": empty (RFC 4954 §4)
        if not isinstance(data, bytes):
            self._refuse(data)
            return
        self._answer(await self.login.start(data))

    async def respond(self, event: AuthResponse) -> None:
        data = sasl.decode_response(event.line)
        if not isinstance(data, bytes):
            self._refuse(data)
            return
        success = self._final
        if success is not None:  # the answer to the server's final data must be empty
            self._final = None
            if data:
                self.outcome = self.login.cancel("data after the final challenge", malformed=True)
                self.core.reply(replies.AUTH_BAD_DATA)
                return
            self.core.accept()
            return
        self._answer(await self.login.respond(data))

    def _answer(self, outcome: SaslOutcome) -> None:
        core = self.core
        if isinstance(outcome, sasl.Challenge):
            core.auth_challenge(outcome.data)
            return
        self.outcome = outcome
        if isinstance(outcome, LoggedIn):
            if outcome.final_data is not None:
                # RFC 4954 §4: no room for data in 235: a last challenge, answered empty
                self._final = outcome
                core.auth_challenge(outcome.final_data)
            else:
                core.accept()  # 235
        elif isinstance(outcome, LoginRefused):
            core.reply(replies.AUTH_BANNED)  # 421: the core closes
        else:
            core.reply(replies.AUTH_BAD_DATA if outcome.malformed else replies.AUTH_FAILED)

    def _refuse(self, problem: sasl.Aborted | sasl.Malformed) -> None:
        """The client's "*" (RFC 4954 §4: 501) or a line that is not base64 (501 5.5.2)."""
        self._final = None
        if isinstance(problem, sasl.Aborted):
            self.outcome = self.login.cancel("cancelled by the client", malformed=False)
            self.core.reply(replies.AUTH_CANCELLED)
        else:
            self.outcome = self.login.cancel(problem.reason, malformed=True)
            self.core.reply(replies.AUTH_BAD_BASE64)


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class SMTPSession(StreamSession):
    """One SMTP connection: the protocol callbacks feed a per-connection task.

    ``submission`` marks a submission listener (587/465); ``implicit_tls`` one whose TLS
    started with the connection (465).
    """

    def __init__(
        self, state: SMTPServiceState, *, submission: bool = False, implicit_tls: bool = False
    ) -> None:
        super().__init__()
        self.state = state
        self.submission = submission
        self.implicit_tls = implicit_tls
        self.client_key = "unknown"
        self._task: asyncio.Task[None] | None = None
        self.in_transaction = False
        self.session_id = new_id()
        self.account: Account | None = None  # authenticated as (submission)
        self._exchange: AuthExchange | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.client_key = client_key(self.peer_ip)
        state = self.state
        state.register(self)
        if self.implicit_tls:
            # counted at accept, before the handshake: over a limit the connection is closed
            # at once (no reply can go out before TLS), so idle clients cannot hold descriptors
            if state.shutting_down or state.over_limit(self):
                state.unregister(self)
                log_event(log, "smtp.refused", client=self.peer_ip, reply=None)
                self.transport.abort()
                return
            self.begin_tls(state.tls_context)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _interrupted(self) -> bool:
        return self.state.shutting_down and not self.in_transaction

    async def _flush(self, core: ServerCore) -> None:
        await self.write(core.data_to_send())

    async def _run(self) -> None:
        state = self.state
        try:
            if self.implicit_tls and not await self.tls_handshake(state.limits.handshake_timeout):
                log_event(log, "smtp.tls_failed", client=self.peer_ip)
                return
            if state.shutting_down:
                await self._refuse(_SHUTTING_DOWN)
                return
            if state.over_limit(self):
                await self._refuse(_TOO_MANY_CONNECTIONS)
                return
            await self._serve()
        except Exception:
            log.exception("smtp session failed", extra={"fields": {"session": self.session_id}})
        finally:
            self.close()
            self.state.unregister(self)

    async def _refuse(self, reply: Reply) -> None:
        await self.write(_format(reply))
        log_event(log, "smtp.refused", client=self.peer_ip, reply=reply.code)

    def _core_settings(self) -> ServerSettings:
        """Port 25's settings, or for submission the same with AUTH required and offered."""
        state = self.state
        settings = state.settings
        if not self.submission:
            return settings
        policy = state.submission
        return dataclasses.replace(
            settings,
            starttls=state.tls_context is not None and not self.implicit_tls,
            tls_active=self.implicit_tls,
            require_tls_for_mail=False,  # AUTH is required, and AUTH requires TLS
            auth_mechanisms=policy.mechanisms(),
            auth_plaintext=policy.allow_plaintext_on_loopback and is_loopback(self.peer_ip),
            auth_required=True,
        )

    async def _serve(self) -> None:
        state = self.state
        core = ServerCore(self._core_settings())
        core.start()
        tx = _Transaction(self.session_id)
        if self.implicit_tls:
            tx.tls = self.tls_description()
        helo = ""
        limits = state.limits
        session_timeout = limits.submission_session_timeout if self.submission else (
            limits.session_timeout
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        ends = loop.time() + session_timeout
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                await self._flush(core)
                limits = state.limits  # a reload applies to the next wait
                # Inside a transaction the client may be streaming content: the longer timeout.
                if core.state in TRANSACTION_STATES:
                    timeout = limits.data_timeout
                elif core.state is State.GREETED:  # no EHLO yet: little patience
                    timeout = min(limits.helo_timeout, limits.idle_timeout)
                else:
                    timeout = limits.idle_timeout
                left = ends - loop.time()
                # the session's deadline is checked whenever a command or chunk is awaited: a
                # message being committed (after its final dot) is never cut
                data = await self.next_data(min(timeout, left), self._interrupted)
                if data and left <= 0:
                    data = None  # a client that always has more input still meets the deadline
                if data is None:
                    if state.shutting_down:
                        core.close(_SHUTTING_DOWN, "shutdown")
                    elif loop.time() >= ends:
                        core.close(_SESSION_TIMEOUT, "session-timeout")
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
                if self.account is not None:
                    refusal = await self._sender_refusal(event.reverse_path)
                    if refusal is not None:
                        core.reply(refusal)
                        continue
                tx.mail_from = event.reverse_path
                tx.mail_params = event.params
                self.in_transaction = True
                tx.spf = self._start_spf(helo, event.reverse_path)
                core.accept()
            elif isinstance(event, RcptTo):
                await self._guarded(core, self._rcpt(core, tx, event), _TEMP_FAILURE)
            elif isinstance(event, MessageComplete):
                await self._flush(core)
                if not await self._guarded(
                    core, self._complete_in_budget(core, tx, helo), _TEMP_FAILURE
                ):
                    tx.reset(state.spool_dir)
                self.in_transaction = False
                if state.shutting_down:
                    core.close(_SHUTTING_DOWN, "shutdown")
            elif isinstance(event, MessageAborted):
                self._abort(tx, event.reason)
            elif isinstance(event, Reset):
                self._abort(tx, "reset")
                self.in_transaction = False
            elif isinstance(event, AuthStart):
                await self._guarded(core, self._auth_start(core, event), replies.AUTH_TEMP_FAILURE)
            elif isinstance(event, AuthResponse):
                exchange = self._exchange
                assert exchange is not None, "AuthResponse without an exchange"
                step = self._auth_step(exchange, exchange.respond(event))
                await self._guarded(core, step, replies.AUTH_TEMP_FAILURE)
            elif isinstance(event, AuthAborted):
                if self._exchange is not None and not self._exchange.done:
                    self._exchange.login.cancel(event.reason, malformed=True)
                self._exchange = None
            elif isinstance(event, StartTLS):
                self.account = None  # RFC 3207 §4.2 (the core forgets it too)
                self.prepare_tls()
                await self._flush(core)
                assert state.tls_context is not None
                if not await self.start_tls(state.tls_context, state.limits.handshake_timeout):
                    log_event(log, "smtp.tls_failed", client=self.peer_ip)
                    return
                tx.tls = self.tls_description()
                core.tls_started()
                helo = ""
            elif isinstance(event, Quit | CloseConnection):
                await self._flush(core)
                self._abort(tx, "closed")
                return

    async def _guarded(self, core: ServerCore, step: Awaitable[None], failure: Reply) -> bool:
        """Await one command's handling. An unexpected exception is logged and, when the core
        still awaits the answer, answered with ``failure`` (a 4xx: mail that was not committed
        is never acknowledged); the session goes on. False when it failed."""
        try:
            await step
        except Exception:
            log.error("smtp.command_failed", exc_info=True, extra={"fields": {
                "client": self.peer_ip, "session": self.session_id}})  # fmt: skip
            self._exchange = None
            with contextlib.suppress(ProtocolError):  # no answer owed: it was given already
                core.reply(failure)
            return False
        return True

    # -- AUTH (submission) -------------------------------------------------------------------------
    def _login_service(self) -> LoginService:
        state = self.state
        if state.login is None:
            state.login = LoginService(state.directory)
        return state.login

    async def _auth_start(self, core: ServerCore, event: AuthStart) -> None:
        bindings = self.state.submission.channel_bindings if core.settings.tls_active else {}
        try:
            login = self._login_service().sasl_exchange(
                Client("smtp", self.peer_ip), event.mechanism, bindings
            )
        except sasl.UnknownMechanism:
            core.reply(replies.AUTH_UNKNOWN_MECHANISM)
            return
        exchange = AuthExchange(core, login)
        self._exchange = exchange
        await self._auth_step(exchange, exchange.start(event))

    async def _auth_step(self, exchange: AuthExchange, step: Awaitable[None]) -> None:
        """Run one step of the exchange; once it is over, take the account it logged in."""
        try:
            await step
        except StoreError:  # logged by the login service
            exchange.core.reply(replies.AUTH_TEMP_FAILURE)
            self._exchange = None
            return
        if exchange.done:
            self._exchange = None
            outcome = exchange.outcome
            if isinstance(outcome, LoggedIn):
                self.account = outcome.account

    # -- sender rules (submission) -----------------------------------------------------------------
    async def _sender_refusal(self, address: str, header: str = "") -> Reply | None:
        """None if the authenticated user may use ``address`` (MAIL FROM, or an address of the
        ``header`` field: From, Sender, Resent-From, Resent-Sender), else the reply refusing
        it."""
        account = self.account
        assert account is not None
        try:
            allowed = await self._may_send_as(address)
        except StoreError:
            log.exception("directory lookup failed")
            return _TEMP_FAILURE
        if allowed:
            return None
        log_event(log, "smtp.sender_refused", logging.WARNING, client=self.peer_ip,
                  user=account.address, address=address,
                  field=header or "MAIL FROM")  # fmt: skip
        if header:
            return replies.from_header_not_owned(address, account.address, header)
        return replies.sender_not_owned(address, account.address)

    async def _may_send_as(self, address: str) -> bool:
        """Whether the authenticated user may use ``address`` as sender: the null sender, their
        own address (with a +extension), an alias that delivers to them (not a catch-all), or
        anything when ``submission.allow_any_sender_for`` names them."""
        account = self.account
        assert account is not None
        if not address or self.state.submission.any_sender(account):
            return True
        directory = self.state.directory
        try:
            addr = normalize_address(address)
            own = normalize_address(account.address)
        except DirectoryError:
            return False
        keys = [addr.local_key]
        base = _base_key(addr.local_key, directory.recipient_delimiter)
        if base is not None:
            keys.append(base)
        if addr.domain == own.domain and own.local_key in keys:
            return True
        resolution = await directory.resolve(address)
        if resolution.status is not RecipientStatus.LOCAL:
            return False
        if account.id not in {a.id for a in resolution.accounts}:
            return False
        # reached through an alias of that name, not merely caught by the catch-all
        records = await directory.store.lookup_addresses(addr.domain, keys)
        return any(key in records.aliases for key in keys)

    async def _submitted_message(self, content: bytes, mail_from: str) -> bytes | Reply:
        """RFC 6409 §8: check the From: header addresses, add Date and Message-ID (and From,
        with the sender's address) when missing. The content with its additions, or the
        refusal."""
        account = self.account
        assert account is not None
        end = split_header_body(content)
        fields = parse_header_fields(content, 0, end)
        added: list[str] = []
        if not get_all(fields, "From"):
            added.append(f"From: <{mail_from or account.address}>")
        # every author field, read strictly: a lenient reading would check one address while
        # the recipient's client shows another (``a@x <b@y>``, ``a@x; b@y``)
        for name in _AUTHOR_FIELDS:
            values = get_all(fields, name)
            if len(values) > 1 and name in ("From", "Sender"):  # RFC 5322 §3.6: at most one
                return Reply(550, "5.7.1", f"Message has {len(values)} {name}: header fields")
            for value in values:
                try:
                    mailboxes = parse_mailbox_list(value)
                except AuthorError as exc:
                    return Reply(550, "5.7.1", f"{name}: header field cannot be parsed ({exc})")
                if not mailboxes:
                    return replies.from_header_not_owned("", account.address, name)
                for mailbox in mailboxes:
                    refusal = await self._sender_refusal(mailbox.addr_spec, header=name)
                    if refusal is not None:
                        return refusal
        if not get_all(fields, "Date"):
            added.append("Date: " + email.utils.format_datetime(email.utils.localtime()))
        if not get_all(fields, "Message-ID"):
            hostname = self.state.settings.hostname
            added.append(f"Message-ID: <{secrets.token_hex(16)}@{hostname}>")
        if not added:
            return content
        return "".join(line + "\r\n" for line in added).encode("utf-8") + content

    async def _rcpt(self, core: ServerCore, tx: _Transaction, event: RcptTo) -> None:
        try:
            resolution = await self.state.directory.resolve(event.forward_path)
        except StoreError:
            log.exception("directory lookup failed")
            core.reply(_TEMP_FAILURE)
            return
        forwarding = self.state.queue is not None
        reply = self._rcpt_verdict(resolution, tx, forwarding=forwarding)
        if self.submission and resolution.status is RecipientStatus.NOT_LOCAL:
            # an authenticated user's remote recipient goes to the outbound queue; without a
            # queue it is never relayed nor dropped: the client hears it
            reply = None if forwarding else replies.remote_delivery_unavailable(event.forward_path)
            reply = reply or await self._literal_refusal(event.forward_path)
        if reply is not None:
            tx.refused.append((event.forward_path, reply.code))
            core.reply(reply)
            return
        tx.recipients.append(
            Recipient(event.forward_path, resolution, event.params.notify, event.params.orcpt)
        )
        core.accept()

    async def _literal_refusal(self, address: str) -> Reply | None:
        """550 5.1.2 for an address literal (RFC 5321 §4.1.3) the queue must not connect to:
        this server's own listening addresses and those of its host name, and anything not
        globally routable (loopback, unspecified, link-local, private, reserved, multicast,
        IPv4-mapped forms of these)."""
        domain = address.rpartition("@")[2]
        if not domain.startswith("["):
            return None
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:  # a general address literal: nothing the queue can connect to
            ip = None
        if ip is not None and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if (
            ip is not None
            and ip.is_global
            and not ip.is_multicast
            and ip not in self.state.own_addresses
            and not await self._is_our_name(ip)
        ):
            return None
        log_event(log, "smtp.literal_refused", logging.WARNING, client=self.peer_ip,
                  rcpt=address)  # fmt: skip
        return Reply(550, "5.1.2", f"<{address}>: address literal of this host or a "
                     "non-global network refused")  # fmt: skip

    async def _is_our_name(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether ``ip`` is an address of ``server.hostname`` (a wildcard listener's public
        address); DNS trouble says no (the resolver caches the answer)."""
        resolver = self.state.resolver
        if resolver is None:
            return False
        answer = await resolver.addresses(self.state.settings.hostname)
        return answer.found and ip in answer.records

    @staticmethod
    def _rcpt_verdict(
        resolution: Resolution, tx: _Transaction, *, forwarding: bool = False
    ) -> Reply | None:
        if resolution.status is not RecipientStatus.LOCAL:
            return RCPT_REPLIES[resolution.status]
        if resolution.remote and not forwarding:
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

    def _checks(self) -> InboundChecks | None:
        """The inbound checks that apply to this session: port 25, an untrusted client."""
        checks = self.state.mailauth
        if checks is None or self.submission or self.account is not None:
            return None
        if checks.trusts(self.peer_ip):
            return None
        return checks

    def _start_spf(self, helo: str, mail_from: str) -> asyncio.Task[SpfVerdict] | None:
        """SPF runs while the client sends RCPT and DATA (RFC 7208 §2.4: at MAIL FROM)."""
        checks = self._checks()
        if checks is None:
            return None
        coro = inbound.check_spf(
            checks.resolver, self.peer_ip, helo=helo, mail_from=mail_from,
            receiver=self.state.settings.hostname,
        )  # fmt: skip
        return asyncio.get_running_loop().create_task(coro)

    async def _authenticate_message(
        self, tx: _Transaction, content: bytes
    ) -> tuple[bytes, inbound.InboundVerdict | None]:
        """``content`` without forged Authentication-Results of ours (the same object when
        there were none), and the verdict of the checks (None when they do not apply); its
        Authentication-Results field goes in front of the content."""
        checks = self.state.mailauth
        if checks is None or self.account is not None:
            return content, None
        content = inbound.strip_own_results(content, checks.policy.authserv_id)
        if self._checks() is None:
            return content, None
        spf = None
        if tx.spf is not None:
            try:
                spf = await tx.spf
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a check must not lose mail: no result, logged
                log.exception("SPF check failed")
            tx.spf = None
        try:
            verdict = await inbound.check_message(
                checks.resolver, content, spf=spf, policy=checks.policy
            )
        except Exception:
            log.exception("message authentication failed")
            return content, None
        return content, verdict  # the caller puts verdict.header in front

    async def _complete_in_budget(self, core: ServerCore, tx: _Transaction, helo: str) -> None:
        """:meth:`_complete` once the memory budget has room for the message (a large one is
        held in memory once until it is committed); 452 4.3.1 when it stays full too long."""
        budget = self.state.memory
        charge = await budget.acquire(tx.spool.size, MEMORY_WAIT)
        if charge is None:
            core.reply(_MEMORY_FULL)
            self._log_transaction(tx, helo, new_id(), tx.spool.size, _MEMORY_FULL, time.monotonic())
            tx.reset(self.state.spool_dir)
            return
        try:
            await self._complete(core, tx, helo)
        finally:
            budget.release(charge)

    async def _complete(self, core: ServerCore, tx: _Transaction, helo: str) -> None:
        state = self.state
        started = time.monotonic()
        queue_id = new_id()
        content = tx.spool.getvalue()
        spooled = content  # the content as received: the final message is read again after it
        verdict: inbound.InboundVerdict | None = None
        if len(content) > INLINE_PARSE_LIMIT:  # a header this long is parsed off the event loop
            looping = await asyncio.to_thread(self._loop_refusal, tx, content)
        else:
            looping = self._loop_refusal(tx, content)
        if looping is not None:
            core.reply(looping)
            self._log_transaction(tx, helo, queue_id, len(content), looping, started)
            tx.reset(state.spool_dir)
            return
        if self.account is not None:
            checked = await self._submitted_message(content, tx.mail_from)
            if isinstance(checked, Reply):
                core.reply(checked)
                self._log_transaction(tx, helo, queue_id, len(content), checked, started)
                tx.reset(state.spool_dir)
                return
            content = checked
        else:
            content, verdict = await self._authenticate_message(tx, content)
            refusal = _refusal_for(verdict)
            if refusal is not None:
                core.reply(refusal)
                self._log_transaction(
                    tx, helo, queue_id, len(content), refusal, started, verdict=verdict
                )
                tx.reset(state.spool_dir)
                return
        junk = verdict is not None and verdict.action is inbound.Action.JUNK
        received = self._received_header(tx, helo, queue_id)
        if verdict is not None:
            received += verdict.header
        size = len(received) + len(content)
        params = tx.mail_params
        extra: dict[str, object] = {"queue_id": queue_id, "client": self.peer_ip, "helo": helo}
        if self.account is not None:
            extra["user"] = self.account.address
        envelope = Envelope(
            mail_from=tx.mail_from,
            recipients=tuple(tx.recipients),
            ret=params.ret if params else None,
            envid=params.envid if params else None,
            body=params.body if params else None,
            smtputf8=bool(params and params.smtputf8),
            extra=extra,
        )
        reply: Reply | None
        try:
            remote = self._remote_recipients(tx)
            if remote:
                message = received + content
                del content, spooled
                outcome = await self._enqueue(
                    message, envelope, remote, queue_id, junk=junk, verdict=verdict
                )
                del message
            else:
                # One copy of a large message in memory: the final one (Return-Path and the
                # fields above the content in front) is made straight from the spool file when
                # the checks left the content as it came.
                prefix = return_path_header(envelope.mail_from) + received
                unchanged = content is spooled
                del spooled
                if unchanged:
                    del content
                    raw = tx.spool.getvalue(prefix)
                else:
                    raw = prefix + content
                    del content
                outcome = await state.delivery.deliver_raw(raw, envelope, junk=junk)
                del raw
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
            if not self.can_write:  # the client will not hear the 250 and may send it again
                log_event(log, "smtp.reply_lost", logging.WARNING, id=queue_id,
                          session=self.session_id, client=self.peer_ip)  # fmt: skip
        else:
            core.reply(reply)
        self._log_transaction(tx, helo, queue_id, size, reply, started, verdict=verdict)
        tx.reset(state.spool_dir)

    def _loop_refusal(self, tx: _Transaction, content: bytes) -> Reply | None:
        """554 5.4.6 for a message that has looped: more Received fields than allowed (RFC
        5321 §6.3), or back for an alias whose forwarded copy it is (its Delivered-To)."""
        limit = self.state.limits.max_received_headers
        hops = loops.count_received(content)
        if hops > limit:
            text = f"Too many hops ({hops} Received fields, at most {limit}): mail loop"
            return Reply(554, "5.4.6", text)
        forwarders = [r.address for r in tx.recipients if r.resolution.remote]
        looped = loops.forwarding_loop(content, forwarders) if forwarders else None
        if looped is not None:
            return Reply(554, "5.4.6", f"Mail forwarding loop for <{looped}>")
        return None

    @staticmethod
    def _remote_recipients(tx: _Transaction) -> list[QueueRecipientRequest]:
        """What goes to the outbound queue: submission's remote recipients, and the remote
        targets of aliases (each with the RCPT's NOTIFY, and its ORCPT or else the address the
        client gave, RFC 3461 §5.2.1), each address once."""
        out: dict[str, QueueRecipientRequest] = {}
        for r in tx.recipients:
            if r.resolution.status is RecipientStatus.NOT_LOCAL:
                targets: tuple[str, ...] = (r.address,)
                orcpt = r.orcpt
            else:
                targets = r.resolution.remote
                orcpt = r.orcpt or ("rfc822", r.address)
            notify = r.notify or None
            for target in targets:
                out.setdefault(target.lower(), QueueRecipientRequest(target, notify, orcpt))
        return list(out.values())

    async def _enqueue(
        self,
        message: bytes,
        envelope: Envelope,
        remote: list[QueueRecipientRequest],
        queue_id: str,
        *,
        junk: bool = False,
        verdict: inbound.InboundVerdict | None = None,
    ) -> DeliveryOutcome:
        """Queue ``message`` for ``remote`` and deliver it to the local recipients in the same
        transaction: one durable commit before the one reply to DATA."""
        queue = self.state.queue
        assert queue is not None
        targets = await self.state.delivery.targets(envelope, junk=junk)
        # the forwarded copy names the aliases it went through: if it comes back, it loops
        forwarders = [r.address for r in envelope.recipients if r.resolution.remote]
        forwarded = loops.delivered_to_fields(forwarders) + message
        if verdict is not None and self.state.mailauth is not None and self.state.mailauth.arc_seal:
            forwarded = await self._arc_sealed(forwarded, envelope, verdict)
        local = None
        if targets:
            local = DeliveryRequest(
                raw=return_path_header(envelope.mail_from) + message,
                targets=targets,
                internal_date=int(time.time()),
                envelope=envelope.as_json(),
            )
        ret = envelope.ret.upper() if envelope.ret else None
        _, outcome = await queue.enqueue(
            forwarded,
            envelope.mail_from,
            remote,
            queue_id=queue_id,
            envid=envelope.envid,
            ret="FULL" if ret == "FULL" else "HDRS" if ret == "HDRS" else None,
            smtputf8=envelope.smtputf8,
            body=envelope.body,
            origin="submission" if self.account is not None else "forward",
            local=local,
            sign=self.account is not None,  # never sign what came from outside
        )
        return outcome if outcome is not None else DeliveryOutcome((), ())

    async def _arc_sealed(
        self, message: bytes, envelope: Envelope, verdict: inbound.InboundVerdict
    ) -> bytes:
        """``message`` with an ARC set of the forwarding alias's domain in front (RFC 8617
        §5.1), or as it was when that domain has no DKIM key."""
        queue, checks = self.state.queue, self.state.mailauth
        assert queue is not None
        assert checks is not None
        forwarders = [r.address for r in envelope.recipients if r.resolution.remote]
        if not forwarders or verdict.arc is None:
            return message
        domain = forwarders[0].rpartition("@")[2].lower()
        try:
            return await queue.arc_seal(
                message,
                domain,
                authserv_id=checks.policy.authserv_id,
                results=verdict.results,
                chain=verdict.arc,
            )
        except Exception:  # forwarding without a seal beats not forwarding
            log.exception("ARC sealing failed")
            return message

    def _log_transaction(
        self,
        tx: _Transaction,
        helo: str,
        queue_id: str,
        size: int,
        reply: Reply | None,
        started: float,
        *,
        verdict: inbound.InboundVerdict | None = None,
    ) -> None:
        """One line per transaction; ``reply`` None when the message was accepted."""
        if reply is None:
            result = f"250 queued as {queue_id}"
        else:
            result = f"{reply.code} {reply.enhanced} {reply.text}"
        log_event(
            log,
            "smtp.transaction",
            id=queue_id,
            session=self.session_id,
            client=self.peer_ip,
            helo=helo,
            tls=bool(tx.tls),
            user=self.account.address if self.account is not None else None,
            mail_from=tx.mail_from,
            rcpt=[r.address for r in tx.recipients],
            refused=[{"rcpt": a, "code": c} for a, c in tx.refused],
            size=size,
            result=result,
            auth=verdict.log if verdict is not None else None,
            ms=round((time.monotonic() - started) * 1000, 2),
        )

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
        if self.account is not None:
            proto += "A"  # RFC 3848: ESMTPA / ESMTPSA, authenticated submission
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
    # SPF of HELO and MAIL FROM, started at MAIL FROM, awaited at the end of DATA
    spf: asyncio.Task[SpfVerdict] | None = None

    def reset(self, spool_dir: Any) -> None:
        self.spool.discard()
        self.spool = Spool(spool_dir)
        self.mail_from = ""
        self.mail_params = None
        self.recipients = []
        self.refused = []
        if self.spf is not None:
            self.spf.cancel()
            self.spf = None


# RFC 5322 §3.6.2/§3.6.6: the fields that say who wrote or sent a message (checked on submission)
_AUTHOR_FIELDS = ("From", "Sender", "Resent-From", "Resent-Sender")

_DMARC_TEMPORARY = "Sender authentication could not be checked (DNS), try again later"


def _refusal_for(verdict: inbound.InboundVerdict | None) -> Reply | None:
    """The reply to DATA when the checks refuse the message (RFC 7489 §6.7: reject at the
    end of DATA; a DNS timeout only ever defers)."""
    if verdict is None:
        return None
    if verdict.action is inbound.Action.REJECT and verdict.malformed_from:
        # RFC 5322 §3.6: one From field of addresses; anything else would dodge DMARC
        return Reply(550, "5.7.1", f"Message refused: {verdict.malformed_from}")
    if verdict.action is inbound.Action.REJECT:
        domain = verdict.from_domain or "the sender's domain"
        return Reply(550, "5.7.1", f"Message rejected by the DMARC policy of {domain}")
    if verdict.action is inbound.Action.DEFER:
        return Reply(451, "4.4.3", _DMARC_TEMPORARY)
    return None


def _format(reply: Reply) -> bytes:
    return replies.format_reply(reply)


def _base_key(local_key: str, delimiters: str) -> str | None:
    """``alice+tag`` -> ``alice`` (as the directory resolves plus-addresses)."""
    cuts = [local_key.find(c) for c in delimiters if c in local_key]
    cut = min(cuts) if cuts else 0
    return local_key[:cut] if cut > 0 else None


class SMTPService:
    """All listeners of one SMTP service (MX and submission) and their sessions."""

    def __init__(self, state: SMTPServiceState) -> None:
        self.state = state
        self.servers: list[asyncio.Server] = []

    def _session_factory(self) -> SMTPSession:
        return SMTPSession(self.state)

    async def start(self, addresses: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Listen on every ``(host, port)`` as an MX; returns the bound addresses (port 0 → real
        port)."""
        return await self._listen(addresses, submission=False, implicit_tls=False)

    async def start_submission(
        self, plain: list[tuple[str, int]], implicit: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Listen for submission: ``plain`` with STARTTLS (587), ``implicit`` with TLS from the
        first byte (465; skipped without a certificate). Returns the bound addresses of each."""
        bound_plain = await self._listen(plain, submission=True, implicit_tls=False)
        if implicit and self.state.tls_context is None:
            log_event(log, "submissions.disabled", logging.WARNING, reason="no certificate")
            return bound_plain, []
        bound_implicit = await self._listen(implicit, submission=True, implicit_tls=True)
        return bound_plain, bound_implicit

    async def _listen(
        self, addresses: list[tuple[str, int]], *, submission: bool, implicit_tls: bool
    ) -> list[tuple[str, int]]:
        state = self.state
        servers, bound = await listen(
            lambda: SMTPSession(state, submission=submission, implicit_tls=implicit_tls),
            addresses,
        )
        self.servers += servers
        for host, _ in bound:
            with contextlib.suppress(ValueError):
                state.own_addresses.add(ipaddress.ip_address(host.split("%")[0]))
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
