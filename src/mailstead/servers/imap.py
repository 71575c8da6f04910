"""IMAP (143 with STARTTLS, 993 implicit TLS): an asyncio shell around the sans-IO core and the
session logic of :mod:`mailstead.imap.session`."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field

from mailstead.directory import Directory
from mailstead.imap.fetch import HeaderCache
from mailstead.imap.session import Action, ImapSession, SessionConfig
from mailstead.imap.view import ViewSeeds
from mailstead.login import LoginService
from mailstead.observability.ids import new_id
from mailstead.observability.log import log_event
from mailstead.protocols.imap import (
    NEED_DATA,
    PAUSED,
    AuthenticateLine,
    CommandReceived,
    ConnectionClosed,
    IdleDone,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
)
from mailstead.protocols.imap import response as r
from mailstead.security.limits import client_key
from mailstead.security.memory import MemoryBudget
from mailstead.servers.stream import Connections, StreamSession, listen
from mailstead.store import Store

log = logging.getLogger("mailstead.imap")

# RFC 9051 §5.4: an idle client must be given at least 30 minutes.
AUTOLOGOUT = 30 * 60.0
# Before login a client has no business idling long (and gets login_timeout in all).
PRELOGIN_TIMEOUT = 60.0
# While in IDLE, re-check the store this often even without a wake-up (changes made by another
# process, e.g. the CLI, do not go through this process's change feed).
IDLE_POLL = 15.0


@dataclass(slots=True)
class IMAPLimits:
    max_connections: int = 1000
    max_connections_per_ip: int = 50
    max_append_size: int = 50 * 1024 * 1024
    allow_insecure_auth_on_loopback: bool = False
    handshake_timeout: float = 10.0  # every TLS handshake (993, STARTTLS): [tls]
    login_timeout: float = 180.0  # from connection to login, however active the client


@dataclass(slots=True)
class IMAPServiceState:
    hostname: str
    store: Store
    directory: Directory
    tls_context: ssl.SSLContext | None
    limits: IMAPLimits
    connections: Connections[IMAPConnection] = field(default_factory=Connections)
    seeds: ViewSeeds = field(default_factory=ViewSeeds)  # SELECT shares unchanged mailboxes
    headers: HeaderCache = field(default_factory=HeaderCache)  # header blocks FETCH reuses
    login: LoginService | None = None  # the one login path, shared with SMTP and POP3
    channel_bindings: dict[str, bytes] = field(default_factory=dict)  # SCRAM-SHA-256-PLUS
    memory: MemoryBudget | None = None  # large messages in flight, shared with SMTP


class IMAPConnection(StreamSession):
    """One IMAP connection."""

    def __init__(self, state: IMAPServiceState, *, implicit_tls: bool) -> None:
        super().__init__()
        self.state = state
        self.implicit_tls = implicit_tls
        self.client_key = "unknown"
        self.session_id = new_id()
        self._task: asyncio.Task[None] | None = None

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
                return
            limits = self.state.limits
            refusal = self.state.connections.refused(
                self, max_connections=limits.max_connections,
                max_per_client=limits.max_connections_per_ip,
            )  # fmt: skip
            if refusal is not None:
                await self.write(r.untagged("BYE", r.code("UNAVAILABLE"), refusal))
                return
            await self._serve()
        except Exception:
            log.exception("imap session failed", extra={"fields": {"session": self.session_id}})
        finally:
            self.close()
            self.state.connections.remove(self)

    def _loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.peer_ip).is_loopback
        except ValueError:
            return False

    async def _serve(self) -> None:
        state = self.state
        limits = state.limits
        core = ServerCore(Settings(max_append_size=limits.max_append_size,
                                   max_command_literals=limits.max_append_size))  # fmt: skip
        config = SessionConfig(
            hostname=state.hostname,
            append_limit=limits.max_append_size,
            allow_insecure_auth=limits.allow_insecure_auth_on_loopback and self._loopback(),
            starttls_available=state.tls_context is not None and not self.implicit_tls,
            channel_bindings=state.channel_bindings,
        )
        session = ImapSession(
            state.store, state.directory, config, core,
            tls_active=self.implicit_tls, peer=self.peer_ip, seeds=state.seeds,
            header_cache=state.headers, login=state.login,
            flush=lambda: self.write(core.data_to_send()), memory=state.memory,
        )  # fmt: skip
        session.greeting()
        loop = asyncio.get_running_loop()
        login_by = loop.time() + limits.login_timeout
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                await self.write(core.data_to_send())
                if session.account is not None:
                    timeout = AUTOLOGOUT
                else:  # a connection slot is not for idling before login, busy or not
                    timeout = min(PRELOGIN_TIMEOUT, login_by - loop.time())
                data = await self.next_data(timeout, lambda: state.connections.shutting_down)
                if data and session.account is None and loop.time() >= login_by:
                    data = None
                if data is None:
                    stopping = state.connections.shutting_down
                    text = "Server shutting down" if stopping else "Autologout"
                    if not stopping and session.account is None and loop.time() >= login_by:
                        text = "Login timeout"
                    core.send(r.untagged("BYE", text))
                    await self.write(core.data_to_send())
                    return
                core.receive_data(data)
                continue
            if event is PAUSED:
                raise RuntimeError("IMAP core paused with no command being handled")
            if isinstance(event, ConnectionClosed):
                await self.write(core.data_to_send())
                return
            if isinstance(event, ProtocolErrorEvent):
                continue
            if isinstance(event, CommandReceived):
                action = await session.handle(event.tag, event.command)
                if not await self._after(core, session, action):
                    return

    async def _after(self, core: ServerCore, session: ImapSession, action: Action) -> bool:
        """Carry out what a command asked of the connection; False ends it."""
        state = self.state
        if action is Action.NONE:
            core.command_done()
        elif action is Action.LOGOUT:
            await self.write(core.data_to_send())
            return False
        elif action is Action.STARTTLS:
            self.prepare_tls()
            await self.write(core.data_to_send())
            assert state.tls_context is not None
            if not await self.start_tls(state.tls_context, state.limits.handshake_timeout):
                return False
            core.tls_started()
            session.tls_active = True
        elif action is Action.COMPRESS:
            core.start_compression()
            core.command_done()
        elif action is Action.AUTHENTICATE:
            core.begin_authenticate()
            await self.write(core.data_to_send())
            while True:  # each line may be answered by another challenge (LOGIN, SCRAM)
                line = await self._next_special(core, AuthenticateLine)
                if line is None:
                    return False
                data = b"" if line.too_long else line.data
                more = await session.authenticate_line(data, too_long=line.too_long)
                await self.write(core.data_to_send())
                if more is not Action.AUTHENTICATE:
                    break
            core.command_done()
        elif action is Action.IDLE:
            return await self._idle(core, session)
        return True

    async def _next_special(
        self, core: ServerCore, kind: type[AuthenticateLine]
    ) -> AuthenticateLine | None:
        while True:
            event = core.next_event()
            if isinstance(event, kind):
                return event
            if isinstance(event, ConnectionClosed):
                return None
            if event is NEED_DATA:
                await self.write(core.data_to_send())
                data = await self.next_data(PRELOGIN_TIMEOUT)
                if data is None:
                    return None
                core.receive_data(data)

    async def _idle(self, core: ServerCore, session: ImapSession) -> bool:
        """RFC 2177: push changes until DONE."""
        state = self.state
        core.begin_idle()
        view = session.view
        feed = state.store.feed
        with feed.watch(view.mailbox_id if view else -1) as changed:
            await session.sync(expunges_allowed=True)
            while True:
                event = core.next_event()
                if isinstance(event, IdleDone):
                    if event.valid:
                        await session.idle_done()
                    else:
                        core.send(r.tagged(session.idle_tag, "BAD", "Expected DONE"))
                    core.command_done()
                    return True
                if isinstance(event, ConnectionClosed):
                    await self.write(core.data_to_send())
                    return False
                await self.write(core.data_to_send())
                if changed.is_set():
                    changed.clear()
                    await session.sync(expunges_allowed=True)
                    continue
                data = await self._wait_idle(changed)
                if data is None:
                    if state.connections.shutting_down:
                        core.send(r.untagged("BYE", "Server shutting down"))
                        await self.write(core.data_to_send())
                        return False
                    await session.sync(expunges_allowed=True)
                    continue
                core.receive_data(data)

    async def _wait_idle(self, changed: asyncio.Event) -> bytes | None:
        """Input, or None when the mailbox changed, the poll interval passed, or shutdown."""
        if self.has_input:
            return await self.next_data(0)
        waiter = asyncio.ensure_future(changed.wait())
        reader = asyncio.ensure_future(
            self.next_data(
                IDLE_POLL, lambda: changed.is_set() or self.state.connections.shutting_down
            )
        )
        try:
            done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if reader in done:
            return reader.result()
        self.wakeup.set()  # let the reader see the change and return
        result = await reader
        return result


class IMAPService:
    """IMAP listeners (plain+STARTTLS and implicit TLS) and their connections."""

    def __init__(self, state: IMAPServiceState) -> None:
        self.state = state
        self.servers: list[asyncio.Server] = []

    async def start(
        self, plain: list[tuple[str, int]], implicit: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        bound: tuple[list[tuple[str, int]], list[tuple[str, int]]] = ([], [])
        for addresses, tls, out in ((plain, False, bound[0]), (implicit, True, bound[1])):
            if tls and self.state.tls_context is None and addresses:
                log_event(log, "imaps.disabled", logging.WARNING, reason="no certificate")
                continue
            servers, where = await listen(
                functools.partial(IMAPConnection, self.state, implicit_tls=tls),
                addresses,
            )
            self.servers += servers
            out += where
        return bound

    async def shutdown(self, grace: float) -> None:
        await self.state.connections.shutdown(self.servers, grace)
