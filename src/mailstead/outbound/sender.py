"""The SMTP client over asyncio: one connection to one address, one or more messages over it.

`send` connects, drives `mailstead.protocols.smtp.client.ClientCore` (which decides everything
the protocol decides), runs TLS and SASL for it, enforces the RFC 5321 §4.5.3.2 time limits and
returns one `MessageResult` per message, in order. Several messages to one destination share
the connection (RSET between them). A session that cannot go on (connection refused, greeting
4xx/5xx, TLS failure, timeout, ...) is reported on every message it left unfinished as a
`SessionFailure` whose ``kind`` tells the caller to try the next address or MX host.

TLS follows a `TlsPolicy`: ``none``; ``opportunistic`` (STARTTLS when offered, the certificate
not checked: most MX certificates would not pass, RFC 7435); ``required`` (STARTTLS or fail, the
certificate checked against ``hostname``), or required with the chain matched against DANE
TLSA records instead of the CAs; `mailstead.outbound.policy` chooses it per destination. AUTH
(for smarthosts) runs `mailstead.sasl.SaslClient`; the SCRAM work runs in a
thread so a hostile iteration count cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from mailstead.dns import TLSA
from mailstead.observability.log import log_event
from mailstead.outbound import dane
from mailstead.protocols.smtp import NEED_DATA, Reply
from mailstead.protocols.smtp.client import (
    SEND_MORE,
    AuthChallenge,
    Authenticated,
    ClientCore,
    ClientEvent,
    ClientSettings,
    FailureKind,
    OutboundMessage,
    OutboundRecipient,
    Phase,
    Ready,
    RecipientResult,
    RecipientStatus,
    SessionClosed,
    SessionFailed,
    SessionFailure,
    TlsHandshake,
    TlsMode,
    TransactionDone,
)
from mailstead.sasl import TLS_SERVER_END_POINT, SaslClient, SaslClientError, tls_server_end_point
from mailstead.servers.stream import StreamSession

__all__ = [
    "DEFAULT_TIMEOUTS",
    "FailureKind",
    "MessageResult",
    "OutboundMessage",
    "OutboundRecipient",
    "RecipientResult",
    "RecipientStatus",
    "ResultHook",
    "SessionFailure",
    "SmtpAuth",
    "Timeouts",
    "TlsMode",
    "TlsPolicy",
    "send",
]

log = logging.getLogger("mailstead.outbound.sender")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DER = 2  # _ssl.ENCODING_DER: the internal chain's certificates as DER
ResultHook = Callable[[int, "MessageResult"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """What TLS a destination gets (`mailstead.outbound.policy` picks it: DANE, MTA-STS).

    ``hostname`` is the name the certificate must match under ``required`` (and the SNI name in
    any mode; an MX host name, never the recipient's domain unless MTA-STS says so)."""

    mode: TlsMode
    hostname: str | None = None
    implicit: bool = False  # TLS from the first byte (a relay's port 465, RFC 8314 §3.3)
    # DANE (RFC 7672): the chain is checked against these TLSA records instead of the CAs
    # (an empty tuple: TLS without authentication); ``dane_names`` for DANE-TA name checks.
    dane: tuple[TLSA, ...] | None = None
    dane_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode is TlsMode.REQUIRED and not self.hostname:
            raise ValueError("a required TLS policy names the host the certificate must match")
        if self.implicit and self.mode is TlsMode.NONE:
            raise ValueError("implicit TLS needs a TLS mode")
        if self.dane is not None and (self.mode is not TlsMode.REQUIRED or self.implicit):
            raise ValueError("DANE is for STARTTLS with TLS required")

    @classmethod
    def none(cls) -> TlsPolicy:
        return cls(TlsMode.NONE)

    @classmethod
    def opportunistic(cls, hostname: str | None = None) -> TlsPolicy:
        return cls(TlsMode.OPPORTUNISTIC, hostname)

    @classmethod
    def required(cls, hostname: str) -> TlsPolicy:
        return cls(TlsMode.REQUIRED, hostname)

    @classmethod
    def with_dane(
        cls, hostname: str, records: tuple[TLSA, ...], names: tuple[str, ...] = ()
    ) -> TlsPolicy:
        """STARTTLS required, the server's chain matched against ``records`` (RFC 7672)."""
        return cls(TlsMode.REQUIRED, hostname, dane=records, dane_names=names or (hostname,))

    @classmethod
    def implicit_tls(cls, hostname: str) -> TlsPolicy:
        """TLS at once, the certificate checked against ``hostname`` (submissions, port 465)."""
        return cls(TlsMode.REQUIRED, hostname, implicit=True)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, per RFC 5321 §4.5.3.2 (which sets minimums); ``scaled`` for tests."""

    connect: float = 30.0  # not in the RFC; Postfix's smtp_connect_timeout
    greeting: float = 300.0  # §4.5.3.2.1 initial 220
    mail: float = 300.0  # §4.5.3.2.2
    rcpt: float = 300.0  # §4.5.3.2.3
    data_init: float = 120.0  # §4.5.3.2.4 the 354
    data_block: float = 180.0  # §4.5.3.2.5 each write (content blocks, commands)
    data_end: float = 600.0  # §4.5.3.2.6 the reply to the final dot (or BDAT LAST)
    command: float = 300.0  # EHLO, HELO, STARTTLS, AUTH, RSET, QUIT
    tls_handshake: float = 300.0  # Postfix's smtp_starttls_timeout

    def scaled(self, factor: float) -> Timeouts:
        return Timeouts(*(getattr(self, f.name) * factor for f in dataclasses.fields(self)))

    def for_phase(self, phase: Phase) -> float:
        return {
            Phase.GREETING: self.greeting,
            Phase.MAIL: self.mail,
            Phase.RCPT: self.rcpt,
            Phase.DATA_INIT: self.data_init,
            Phase.DATA_BLOCK: self.data_block,
            Phase.DATA_END: self.data_end,
            Phase.COMMAND: self.command,
        }[phase]


DEFAULT_TIMEOUTS: Final = Timeouts()
CLOSE_WAIT: Final = 5.0  # seconds for the server to answer our TLS close_notify


@dataclass(frozen=True, slots=True)
class SmtpAuth:
    """Credentials for a smarthost. The first of ``mechanisms`` the server offers is used
    (-PLUS only over TLS, with the ``tls-server-end-point`` binding). Credentials are never sent
    without TLS unless ``allow_plaintext`` (loopback tests)."""

    username: str
    password: str = field(repr=False)
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN")
    authzid: str = ""
    allow_plaintext: bool = False


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What became of one message: a result per recipient (in the message's order).

    ``reply`` is the server's answer to the content; ``failure`` the session failure that cut
    this message short or kept it from being tried (its undecided recipients are temporary
    failures: try the next address, or later); ``dsn`` whether the DSN parameters went to the
    server; ``tls`` whether the message went over TLS."""

    recipients: tuple[RecipientResult, ...]
    reply: Reply | None = None
    failure: SessionFailure | None = None
    dsn: bool = False
    tls: bool = False

    def with_status(self, status: RecipientStatus) -> list[RecipientResult]:
        return [r for r in self.recipients if r.status is status]


class _Timeout(Exception):
    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"no {what} within {seconds:g} s")


class _Connection(StreamSession):
    """The shells' connection plumbing (inbox, flow control) on the client side."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.set()

    async def aclose(self, seconds: float) -> None:
        """Close, and wait (bounded) until it is closed: TLS sends its close_notify first."""
        if self.transport is None:
            return
        self.transport.close()
        try:
            async with asyncio.timeout(seconds):
                await self.lost.wait()
        except TimeoutError:
            self.transport.abort()

    async def start_tls_client(
        self, context: ssl.SSLContext, server_hostname: str | None, seconds: float
    ) -> str | None:
        """Upgrade the connection; None when done, else why it failed. Plaintext read so far
        is dropped (RFC 3207 §4.2: nothing received before TLS counts after it)."""
        assert self.transport is not None
        self.discard_input()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                transport = await loop.start_tls(
                    self.transport,
                    self,
                    context,
                    server_side=False,
                    server_hostname=server_hostname,
                )
        except ssl.SSLCertVerificationError as exc:
            return f"certificate verification failed: {exc.verify_message}"
        except TimeoutError:
            return f"no TLS handshake within {seconds:g} s"
        except (ssl.SSLError, OSError) as exc:
            return f"TLS handshake failed: {exc}"
        if transport is None:
            return "TLS handshake failed: connection closed"
        self.transport = transport
        return None

    def tls_peer_chain(self) -> list[bytes]:
        """The certificates the server sent (DER, its own first), unverified."""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            return []
        # Python 3.13 made it public; 3.10-3.12 have it on the internal object.
        getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
            getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
        )
        if getter is not None:
            chain = getter() or []
            return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain]
        der = ssl_object.getpeercert(binary_form=True)
        return [der] if der else []

    def tls_peer_certificate(self) -> bytes | None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der


@functools.cache
def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # RFC 7435: encrypt without authenticating
    return context


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _context_for(policy: TlsPolicy, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
    if policy.mode is TlsMode.NONE:
        return None
    if policy.mode is TlsMode.OPPORTUNISTIC or policy.dane is not None:  # DANE checks itself
        return given or _opportunistic_context()
    context = given or _verifying_context()
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError("a required TLS policy needs a context that verifies host names")
    return context


def _result(done: TransactionDone, tls: bool) -> MessageResult:
    return MessageResult(done.results, done.reply, done.failure, done.dsn, tls)


def _not_sent(message: OutboundMessage, failure: SessionFailure, tls: bool) -> MessageResult:
    reply = failure.recipient_reply()
    results = tuple(
        RecipientResult(r.address, RecipientStatus.TEMPORARY, reply, remote=False)
        for r in message.recipients
    )
    return MessageResult(results, None, failure, False, tls)


async def send(
    host_address: str | IPAddress,
    port: int,
    messages: Sequence[OutboundMessage],
    *,
    helo_name: str,
    tls_policy: TlsPolicy,
    ssl_context: ssl.SSLContext | None = None,
    auth: SmtpAuth | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    use_pipelining: bool = True,
    use_chunking: bool = True,
    trace: Callable[[str], None] | None = None,
    on_result: ResultHook | None = None,
) -> list[MessageResult]:
    """Deliver ``messages`` over one connection to ``host_address`` (an address) ``port``.

    Returns a `MessageResult` per message, in order. ``on_result(index, result)`` is awaited
    for each message as soon as its result is known, before the next message is sent (so a
    queue can make each outcome durable first); messages the session never reached are
    reported when it ends. ``ssl_context`` replaces the policy's default context (for
    ``required`` it must verify host names). ``trace`` receives the protocol trace (AUTH data
    and message content left out).
    """
    # The first verifying context reads the system's CA store: not on the event loop.
    context = await asyncio.to_thread(_context_for, tls_policy, ssl_context)
    settings = ClientSettings(
        helo_name,
        tls=tls_policy.mode,
        tls_active=tls_policy.implicit,
        use_pipelining=use_pipelining,
        use_chunking=use_chunking,
        trace=trace is not None,
    )
    host = str(host_address)
    started = time.monotonic()
    conn = _Connection()
    failure = await _connect(conn, host, port, tls_policy, context, timeouts)
    if failure is not None:
        _log_session(host, port, failure, False, started)
        unsent = [_not_sent(m, failure, False) for m in messages]
        if on_result is not None:
            for index, result in enumerate(unsent):
                await on_result(index, result)
        return unsent
    session = _Session(
        conn, ClientCore(settings), timeouts, context, tls_policy, auth, trace, on_result
    )
    try:
        results = await session.run(messages)
    finally:
        await conn.aclose(CLOSE_WAIT)
    _log_session(host, port, session.failure, session.core.tls_active, started)
    for message, result in zip(messages, results, strict=True):
        _log_transaction(host, port, message, result)
    return results


async def _connect(
    conn: _Connection,
    host: str,
    port: int,
    policy: TlsPolicy,
    context: ssl.SSLContext | None,
    timeouts: Timeouts,
) -> SessionFailure | None:
    """Connect ``conn`` (with the TLS handshake for implicit TLS); the failure, if any."""
    loop = asyncio.get_running_loop()
    seconds = timeouts.connect
    if policy.implicit:
        seconds += timeouts.tls_handshake
    try:
        async with asyncio.timeout(seconds):
            if policy.implicit:
                assert context is not None
                await loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=context,
                    server_hostname=policy.hostname or "",
                    ssl_handshake_timeout=timeouts.tls_handshake,
                )
            else:
                await loop.create_connection(lambda: conn, host, port)
    except ssl.SSLCertVerificationError as exc:
        detail = f"{host} port {port}: certificate verification failed: {exc.verify_message}"
        return SessionFailure(FailureKind.TLS_FAILED, detail)
    except ssl.SSLError as exc:
        return SessionFailure(FailureKind.TLS_FAILED, f"{host} port {port}: TLS handshake: {exc}")
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError):
            reason = f"no connection within {seconds:g} s"
        else:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return SessionFailure(FailureKind.CONNECT, f"{host} port {port}: {reason}")
    return None


class _Session:
    def __init__(
        self,
        conn: _Connection,
        core: ClientCore,
        timeouts: Timeouts,
        context: ssl.SSLContext | None,
        policy: TlsPolicy,
        auth: SmtpAuth | None,
        trace: Callable[[str], None] | None,
        on_result: ResultHook | None,
    ) -> None:
        self.on_result = on_result
        self.reported = 0
        self.conn = conn
        self.core = core
        self.timeouts = timeouts
        self.context = context
        self.policy = policy
        self.auth = auth
        self.trace = trace
        self.failure: SessionFailure | None = None

    async def run(self, messages: Sequence[OutboundMessage]) -> list[MessageResult]:
        core = self.core
        results: list[MessageResult] = []
        try:
            if await self._setup():
                for message in messages:
                    core.start_transaction(message)
                    done = await self._transaction()
                    if done is None:
                        break
                    results.append(_result(done, core.tls_active))
                    await self._report(results)
                    if done.failure is not None:
                        break
        except _Timeout as exc:
            self._abandon(FailureKind.TIMEOUT, str(exc), results)
        except ConnectionError as exc:  # a write on a connection the peer reset
            self._abandon(FailureKind.CONNECTION_LOST, str(exc), results)
        failure = self.failure
        if failure is None:
            await self._quit()
        else:
            if core.can_quit:
                await self._quit()
            results += [_not_sent(m, failure, core.tls_active) for m in messages[len(results) :]]
        await self._report(results)
        return results

    async def _report(self, results: list[MessageResult]) -> None:
        while self.reported < len(results):
            index = self.reported
            self.reported += 1
            if self.on_result is not None:
                await self.on_result(index, results[index])

    # -- the session ------------------------------------------------------------------------------
    async def _setup(self) -> bool:
        """Greeting, EHLO, STARTTLS, AUTH: True when the session is ready for mail."""
        while True:
            ev = await self._next_event()
            if isinstance(ev, TlsHandshake):
                assert self.context is not None
                error = await self.conn.start_tls_client(
                    self.context, self.policy.hostname, self.timeouts.tls_handshake
                )
                self._emit_trace()
                if error is None and self.policy.dane:
                    chain = self.conn.tls_peer_chain()
                    error = dane.verify(chain, self.policy.dane, self.policy.dane_names)
                if error is not None:
                    self.core.abandon(FailureKind.TLS_FAILED, error)
                else:
                    self.core.tls_started()
            elif isinstance(ev, Ready):
                if self.auth is None:
                    return True
                return await self._authenticate(ev)
            elif isinstance(ev, SessionFailed):
                self.failure = ev.failure
                return False

    async def _authenticate(self, ready: Ready) -> bool:
        auth = self.auth
        assert auth is not None
        core = self.core
        if not ready.tls and not auth.allow_plaintext:
            core.abandon(FailureKind.AUTH, "no TLS: credentials not sent", can_quit=True)
            return await self._until_failed()
        offered = ready.extensions.auth
        usable = [
            m.upper()
            for m in auth.mechanisms
            if m.upper() in offered and (ready.tls or not m.upper().endswith("-PLUS"))
        ]
        if not usable:
            detail = f"no common AUTH mechanism (offered: {' '.join(offered) or 'none'})"
            core.abandon(FailureKind.AUTH, detail, can_quit=True)
            return await self._until_failed()
        mechanism = usable[0]
        binding = None
        der = self.conn.tls_peer_certificate()
        # RFC 5802 §6: a client that could bind says so ("y") only when the server offers no
        # -PLUS; if it does and we chose plain SCRAM anyway, "n" (else the server sees a
        # downgrade and refuses).
        if der is not None and (mechanism.endswith("-PLUS") or f"{mechanism}-PLUS" not in offered):
            binding = (TLS_SERVER_END_POINT, tls_server_end_point(der))
        sasl = SaslClient(
            mechanism,
            authcid=auth.username,
            password=auth.password,
            authzid=auth.authzid,
            channel_binding=binding,
        )
        core.authenticate(mechanism, sasl.initial_response())
        while True:
            ev = await self._next_event()
            if isinstance(ev, AuthChallenge):
                try:  # SCRAM's PBKDF2 runs off the event loop
                    answer = await asyncio.to_thread(sasl.respond, ev.data)
                except SaslClientError as exc:
                    core.auth_cancel(str(exc))
                else:
                    core.auth_respond(answer)
            elif isinstance(ev, Authenticated):
                if sasl.is_scram and not sasl.server_verified:
                    detail = "the server did not prove it knows the password (SCRAM)"
                    core.abandon(FailureKind.AUTH, detail, can_quit=True)
                    return await self._until_failed()
                return True
            elif isinstance(ev, SessionFailed):
                self.failure = ev.failure
                return False

    async def _until_failed(self) -> bool:
        ev = await self._next_event()
        assert isinstance(ev, SessionFailed)
        self.failure = ev.failure
        return False

    async def _transaction(self) -> TransactionDone | None:
        """The started transaction's result (None if the session failed without one)."""
        while True:
            ev = await self._next_event()
            if isinstance(ev, TransactionDone):
                if ev.failure is not None:
                    failed = await self._next_event()
                    assert isinstance(failed, SessionFailed)
                    self.failure = failed.failure
                return ev
            if isinstance(ev, SessionFailed):
                self.failure = ev.failure
                return None

    def _abandon(self, kind: FailureKind, detail: str, results: list[MessageResult]) -> None:
        """The shell gives up (timeout, reset): the core ends the transaction under way."""
        core = self.core
        core.abandon(kind, detail)
        while True:
            ev = core.next_event()
            if isinstance(ev, TransactionDone):
                results.append(_result(ev, core.tls_active))
            elif isinstance(ev, SessionFailed):
                self.failure = ev.failure
                return

    async def _quit(self) -> None:
        """QUIT and wait (bounded) for the 221; a server that does not answer is left."""
        self.core.quit()
        try:
            while not isinstance(await self._next_event(), SessionClosed | SessionFailed):
                pass
        except (_Timeout, ConnectionError):
            pass

    # -- moving bytes -----------------------------------------------------------------------------
    async def _next_event(self) -> ClientEvent:
        core = self.core
        while True:
            await self._flush()
            ev = core.next_event()
            if ev is SEND_MORE:
                continue
            if ev is NEED_DATA:
                phase = core.waiting_for
                assert phase is not None
                seconds = self.timeouts.for_phase(phase)
                data = await self.conn.next_data(seconds)
                if data is None:
                    raise _Timeout(f"{phase.value} reply", seconds)
                core.receive_data(data)
                self._emit_trace()
                continue
            if isinstance(ev, ClientEvent):
                self._emit_trace()
                return ev
            raise AssertionError(f"the session waits for a call in state {core.state}")

    async def _flush(self) -> None:
        seconds = self.timeouts.data_block
        while data := self.core.data_to_send():
            self._emit_trace()
            try:
                async with asyncio.timeout(seconds):
                    await self.conn.write(data)
            except TimeoutError:
                raise _Timeout("progress writing to the server", seconds) from None

    def _emit_trace(self) -> None:
        if self.trace is not None:
            for entry in self.core.take_trace():
                self.trace(entry)


def _log_session(
    host: str, port: int, failure: SessionFailure | None, tls: bool, started: float
) -> None:
    log_event(
        log,
        "smtp.client.session",
        level=logging.INFO if failure is None else logging.WARNING,
        host=host,
        port=port,
        tls=tls,
        outcome="ok" if failure is None else failure.kind.value,
        detail=None if failure is None else failure.detail,
        ms=round((time.monotonic() - started) * 1000, 2),
    )


def _log_transaction(host: str, port: int, message: OutboundMessage, result: MessageResult) -> None:
    log_event(
        log,
        "smtp.client.transaction",
        host=host,
        port=port,
        tls=result.tls,
        mail_from=message.reverse_path,
        size=message.size,
        rcpt=[
            {
                "to": r.address,
                "status": r.status.value,
                "reply": " ".join(
                    str(part) for part in (r.reply.code, r.reply.enhanced, r.reply.text) if part
                ),
                "remote": r.remote,
            }
            for r in result.recipients
        ],
    )
