"""POP3 (110 with STLS, 995 implicit TLS): an asyncio shell around the sans-IO core and the
session logic of :mod:`mailstead.pop3.session`."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailstead import sasl
from mailstead.directory import Directory
from mailstead.login import LoginService
from mailstead.observability.ids import new_id
from mailstead.observability.log import log_event
from mailstead.pop3 import Action, MaildropLocks, Pop3Session, SessionConfig, is_loopback
from mailstead.protocols.pop3 import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
    replies,
)
from mailstead.security.limits import client_key
from mailstead.security.memory import MemoryBudget
from mailstead.servers.stream import Connections, StreamSession, listen
from mailstead.store import Store

log = logging.getLogger("mailstead.pop3")

# Before login (and during an AUTH exchange or a TLS handshake) a client gets this long.
PRELOGIN_TIMEOUT = 60.0


@dataclass(slots=True)
class POP3Limits:
    max_connections: int = 1000
    max_connections_per_ip: int = 20
    idle_timeout: float = 600.0  # RFC 1939 §3: at least 10 minutes
    max_errors: int = 10
    allow_insecure_auth_on_loopback: bool = False
    handshake_timeout: float = 10.0  # every TLS handshake (995, STLS): [tls]
    login_timeout: float = 180.0  # from connection to login, however active the client


@dataclass(slots=True)
class POP3ServiceState:
    hostname: str
    store: Store
    directory: Directory
    tls_context: ssl.SSLContext | None
    limits: POP3Limits
    # SCRAM-SHA-256-PLUS bindings of the certificate (see `channel_bindings`)
    channel_bindings: dict[str, bytes] = field(default_factory=dict)
    locks: MaildropLocks = field(default_factory=MaildropLocks)
    login: LoginService | None = None  # the one login path, shared with the other services
    memory: MemoryBudget | None = None  # large messages in flight, shared with SMTP and IMAP
    connections: Connections[POP3Connection] = field(default_factory=Connections)


def channel_bindings(cert_file: Path) -> dict[str, bytes]:
    """What SCRAM-SHA-256-PLUS can bind to on our TLS connections: ``tls-server-end-point``
    (RFC 5929 §4.1) of the certificate; Python's ssl module cannot export ``tls-exporter``."""
    try:
        return {sasl.TLS_SERVER_END_POINT: sasl.tls_server_end_point(cert_file.read_bytes())}
    except (OSError, ValueError):
        return {}


class POP3Connection(StreamSession):
    """One POP3 connection."""

    def __init__(self, state: POP3ServiceState, *, implicit_tls: bool) -> None:
        super().__init__()
        self.state = state
        self.implicit_tls = implicit_tls
        self.client_key = "unknown"
        self.session_id = new_id()
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._close_reason = "error"
        self._session: Pop3Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.client_key = client_key(self.peer_ip)
        self.state.connections.add(self, self.client_key)
        if self.implicit_tls:  # counted at accept, before the handshake
            limits = self.state.limits
            if self.state.connections.turned_away(
                self, max_connections=limits.max_connections,
                max_per_client=limits.max_connections_per_ip,
            ):  # fmt: skip
                return
            self.begin_tls(self.state.tls_context)
        self._task = asyncio.get_running_loop().create_task(self._run())


    async def _run(self) -> None:
        try:
            handshake_timeout = self.state.limits.handshake_timeout
            if self.implicit_tls and not await self.tls_handshake(handshake_timeout):
                self._close_reason = "tls-failed"
                return
            limits = self.state.limits
            refusal = self.state.connections.refused(
                self, max_connections=limits.max_connections,
                max_per_client=limits.max_connections_per_ip,
            )  # fmt: skip
            if refusal is not None:
                # RFC 2449 §8.1.2: [SYS/TEMP] is a temporary problem of the server
                self._close_reason = "refused"
                await self.write(replies.err(refusal, "SYS/TEMP"))
                return
            await self._serve()
        except Exception:
            log.exception("pop3 session failed", extra={"fields": {"session": self.session_id}})
        finally:
            self.close()
            if self._session is not None:
                self._session.close()
            self.state.connections.remove(self)
            self._log()

    def _log(self) -> None:
        """One line per session."""
        session = self._session
        stats = session.stats if session is not None else None
        log_event(
            log,
            "pop3.session",
            session=self.session_id,
            client=self.peer_ip,
            tls=self.tls_description() or None,
            user=stats.user if stats else None,
            retrieved=stats.retrieved if stats else 0,
            octets=stats.octets if stats else 0,
            deleted=stats.deleted if stats else 0,
            login_failures=stats.login_failures if stats else 0,
            closed=self._close_reason,
            seconds=round(time.monotonic() - self._started, 3),
        )

    async def _serve(self) -> None:
        state = self.state
        limits = state.limits
        core = ServerCore(Settings(max_errors=limits.max_errors))
        loopback = is_loopback(self.peer_ip)
        config = SessionConfig(
            hostname=state.hostname,
            allow_insecure_auth=limits.allow_insecure_auth_on_loopback and loopback,
            stls_available=state.tls_context is not None and not self.implicit_tls,
            channel_bindings=state.channel_bindings if state.tls_context is not None else {},
        )
        session = Pop3Session(
            state.store, state.directory, config, core, state.locks,
            tls_active=self.implicit_tls, peer=self.peer_ip, login=state.login,
            flush=lambda: self._flush_piece(core), memory=state.memory,
        )  # fmt: skip
        self._session = session
        session.greeting()
        loop = asyncio.get_running_loop()
        login_by = loop.time() + limits.login_timeout
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                if not await self._flush(core):
                    return
                if session.account is not None:
                    timeout = limits.idle_timeout
                else:  # a connection slot is not for idling before login, busy or not
                    timeout = min(PRELOGIN_TIMEOUT, login_by - loop.time())
                data = await self.next_data(timeout, lambda: state.connections.shutting_down)
                if data and session.account is None and loop.time() >= login_by:
                    data = None
                if data is None:
                    stopping = state.connections.shutting_down
                    self._close_reason = "shutdown" if stopping else "timeout"
                    text = "Server shutting down" if stopping else "Idle timeout"
                    if not stopping and session.account is None and loop.time() >= login_by:
                        self._close_reason, text = "login-timeout", "Login timeout"
                    core.close(text)  # nothing is deleted: only QUIT does that
                    await self._flush(core)
                    return
                core.receive_data(data)
                continue
            if event is PAUSED:
                raise RuntimeError("POP3 core paused with no command being handled")
            if isinstance(event, ConnectionClosed):
                self._close_reason = event.reason
                await self._flush(core)
                return
            if isinstance(event, ProtocolErrorEvent):
                continue
            if isinstance(event, CommandReceived):
                action = await session.handle(event.command)
            elif isinstance(event, AuthResponse):
                action = await session.auth_response(event)
            else:
                continue
            # a reply goes out as soon as it is ready: pipelined RETRs are not all held in memory
            if not await self._after(core, session, action) or not await self._flush(core):
                return

    async def _flush(self, core: ServerCore) -> bool:
        """Write what the core queued; False (and the connection aborted) when the client has
        not taken it within the idle timeout."""
        data = core.data_to_send()
        if not data:
            return True
        try:
            async with asyncio.timeout(self.state.limits.idle_timeout):
                await self.write(data)
        except TimeoutError:
            self._close_reason = "write-timeout"
            if self.transport is not None:
                self.transport.abort()
            return False
        return True

    async def _flush_piece(self, core: ServerCore) -> bool:
        """Write a piece of a message being sent; False when the rest cannot reach the client
        (it has not taken this within the idle timeout, or the connection is gone)."""
        return await self._flush(core) and self.can_write

    async def _after(self, core: ServerCore, session: Pop3Session, action: Action) -> bool:
        """Carry out what a command asked of the connection; False ends it."""
        if action is Action.NONE:
            core.command_done()
        elif action is Action.CLOSE:  # a message broken off: the client must not take it whole
            if self._close_reason != "write-timeout":
                self._close_reason = "message-broken" if self.can_write else "eof"
            return False
        elif action is Action.AUTH:
            core.begin_auth()
        elif action is Action.STLS:
            self.prepare_tls()
            if not await self._flush(core):
                return False
            tls_context = self.state.tls_context
            assert tls_context is not None
            if not await self.start_tls(tls_context, self.state.limits.handshake_timeout):
                self._close_reason = "tls-failed"
                return False
            core.tls_started()
            session.tls_active = True
        return True


class POP3Service:
    """POP3 listeners (plain+STLS and implicit TLS) and their connections."""

    def __init__(self, state: POP3ServiceState) -> None:
        self.state = state
        self.servers: list[asyncio.Server] = []

    async def start(
        self, plain: list[tuple[str, int]], implicit: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        bound: tuple[list[tuple[str, int]], list[tuple[str, int]]] = ([], [])
        for addresses, tls, out in ((plain, False, bound[0]), (implicit, True, bound[1])):
            if tls and self.state.tls_context is None and addresses:
                log_event(log, "pop3s.disabled", logging.WARNING, reason="no certificate")
                continue
            servers, where = await listen(
                functools.partial(POP3Connection, self.state, implicit_tls=tls),
                addresses,
            )
            self.servers += servers
            out += where
        return bound

    async def shutdown(self, grace: float) -> None:
        """Close every connection (without the UPDATE state: nothing is deleted) within
        ``grace`` seconds; a session in the middle of a command finishes it first."""
        await self.state.connections.shutdown(self.servers, grace)
