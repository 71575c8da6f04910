"""What every protocol shell does with its connection: buffer input, flow control, STARTTLS.

A session is an ``asyncio.Protocol`` (fast callbacks, no stream objects) whose ``data_received``
fills an inbox that a per-connection task drains with ``next_data``.

Implicit-TLS listeners (993, 995, 465) accept plain TCP and count the connection against the
shell's limits (``StreamSession.admit``) before a byte is read; only then does the TLS handshake
start, bounded in time. Left to ``create_server(ssl=...)``, a connection would be counted only
once its handshake ended, and idle clients could hold any number of descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

MAX_INBOX = 256 * 1024  # unread octets before the socket stops being read


class StreamSession(asyncio.Protocol):
    """Connection plumbing shared by the SMTP, IMAP and POP3 shells."""

    def __init__(self) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: typed by what we use.
        self.transport: Any = None
        self.peer_ip = "unknown"
        self.peer_port = 0
        self._inbox: list[bytes] = []
        self._inbox_size = 0
        self._eof = False
        self.wakeup = asyncio.Event()
        self._paused_reading = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        # next_data's timeout: one timer per connection, moved only when it would fire too
        # late (a command costs no timer of its own); _deadline is the running wait's (loop time)
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # implicit TLS: the handshake under way (``connection_made`` comes when it is done)
        self.handshake: asyncio.Task[None] | None = None

    # -- implicit TLS: counted at accept ---------------------------------------------------------
    def admit(self, peer_ip: str) -> bool:
        """An implicit-TLS listener accepted this connection, before its handshake: count it
        against the shell's limits; False refuses it (closed at once: no reply can be sent
        before TLS)."""
        self.peer_ip = peer_ip
        return True

    def forget(self) -> None:
        """The handshake of an admitted connection failed or timed out: uncount it."""

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])

    def data_received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_size += len(data)
        if self._inbox_size > MAX_INBOX and not self._paused_reading and self.transport:
            self.transport.pause_reading()  # the session catches up before we read more
            self._paused_reading = True
        self.wakeup.set()

    def eof_received(self) -> bool:
        self._eof = True
        self.wakeup.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.wakeup.set()
        self._can_write.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- for the session task --------------------------------------------------------------------
    @property
    def has_input(self) -> bool:
        return bool(self._inbox) or self._eof

    async def next_data(
        self, wait: float, interrupt: Callable[[], bool] = lambda: False
    ) -> bytes | None:
        """Bytes from the client, b"" at EOF, None on timeout or when ``interrupt()`` says so
        (checked whenever ``wakeup`` is set by someone else, e.g. a shutdown or a mailbox
        change)."""
        if not self._inbox:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while not self._inbox:
                if self._eof:
                    return b""
                if interrupt():
                    return None
                self.wakeup.clear()
                if loop.time() >= deadline:
                    return None
                self._deadline = deadline
                if self._timer is None or self._timer_at > deadline:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = loop.call_at(deadline, self._timer_fired)
                    self._timer_at = deadline
                try:
                    await self.wakeup.wait()
                finally:
                    self._deadline = 0.0
        data = b"".join(self._inbox)
        self._inbox.clear()
        self._inbox_size = 0
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    def _timer_fired(self) -> None:
        """The timer came: end the wait under way if its deadline has passed, else move on to
        its deadline (the wait that armed the timer ended long ago)."""
        self._timer = None
        deadline = self._deadline
        if not deadline:
            return  # no wait under way: the next one arms a timer
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self.wakeup.set()
        else:
            self._timer = loop.call_at(deadline, self._timer_fired)
            self._timer_at = deadline

    async def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if not self._can_write.is_set():  # flow control: wait until the buffer drains
                await self._can_write.wait()

    def discard_input(self) -> None:
        """Forget unread input (after STARTTLS: CVE-2011-0411)."""
        self._inbox.clear()
        self._inbox_size = 0

    def prepare_tls(self) -> None:
        """Call before the reply that tells the client to start TLS: stop reading, so that its
        ClientHello waits in the socket for the TLS layer instead of landing (and being
        discarded) in the plaintext buffer; drop what plaintext came before (CVE-2011-0411)."""
        if self.transport is not None:
            self.transport.pause_reading()
        self.discard_input()

    async def start_tls(self, context: ssl.SSLContext, handshake_timeout: float) -> bool:
        """Upgrade the connection (server side), after ``prepare_tls`` and the reply; False
        if the handshake failed."""
        assert self.transport is not None
        self.discard_input()
        loop = asyncio.get_running_loop()
        try:
            new_transport = await asyncio.wait_for(
                loop.start_tls(self.transport, self, context, server_side=True),
                handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            return False
        if new_transport is None:
            return False
        self.transport = new_transport
        return True

    def tls_description(self) -> str:
        """``using TLSv1.3 with cipher X (256/256 bits)`` for trace headers and logs."""
        if self.transport is None:
            return ""
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return ""
        cipher = ssl_object.cipher()
        if cipher is None:
            return f"using {ssl_object.version()}"
        name, _version, bits = cipher
        return f"using {ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True, slots=True)
class ImplicitTLS:
    """How an implicit-TLS listener starts TLS, read at each accept (a reload applies): the
    context (None: refuse, e.g. the certificate went away) and the handshake's time limit."""

    context: Callable[[], ssl.SSLContext | None]
    handshake_timeout: Callable[[], float]


class _ImplicitTLSGate(asyncio.Protocol):
    """Takes a just-accepted plain connection of an implicit-TLS listener: reads nothing, asks
    the session to count it, then hands the socket to the TLS layer with a time limit.

    The socket is duplicated and the plain transport aborted from ``connection_made``, before
    it reads (asyncio and uvloop only start reading after ``connection_made``): the client's
    ClientHello stays in the socket for the TLS layer."""

    def __init__(self, factory: Callable[[], StreamSession], tls: ImplicitTLS) -> None:
        self._factory = factory
        self._tls = tls

    def connection_made(self, transport: Any) -> None:  # uvloop's are not asyncio's
        peer = transport.get_extra_info("peername")
        raw_socket = transport.get_extra_info("socket")
        try:
            fd = os.dup(raw_socket.fileno()) if raw_socket is not None else -1
        except OSError:  # out of descriptors: the client is turned away
            fd = -1
        finally:
            transport.abort()  # closes the original descriptor; ours keeps the connection
        if fd < 0:
            return
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        context = self._tls.context()
        session = self._factory()
        if context is None or not peer or not session.admit(str(peer[0])):
            sock.close()  # over the limits: closed at once
            return
        session.handshake = asyncio.get_running_loop().create_task(
            _handshake(session, sock, context, self._tls.handshake_timeout())
        )


async def _handshake(
    session: StreamSession, sock: socket.socket, context: ssl.SSLContext, limit: float
) -> None:
    """TLS on an admitted connection; the session's ``connection_made`` runs when it is done.
    The loop owns ``sock`` from here on (and closes it if the handshake fails)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit):
            await loop.connect_accepted_socket(
                lambda: session, sock, ssl=context, ssl_handshake_timeout=limit
            )
    except Exception:  # whatever ended the handshake (failure, timeout), the connection is gone
        session.forget()
    except asyncio.CancelledError:  # shutdown
        session.forget()
        raise
    finally:
        session.handshake = None


async def listen(
    factory: Callable[[], StreamSession],
    addresses: list[tuple[str, int]],
    *,
    implicit_tls: ImplicitTLS | None = None,
) -> tuple[list[asyncio.Server], list[tuple[str, int]]]:
    """Listen on every address with connections made by ``factory`` (TLS from the first byte
    when ``implicit_tls`` is given: see `_ImplicitTLSGate`); returns the servers and where they
    really listen (port 0 in the configuration picks a free port)."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    bound: list[tuple[str, int]] = []
    protocol_factory: Callable[[], asyncio.Protocol] = factory
    if implicit_tls is not None:
        protocol_factory = functools.partial(_ImplicitTLSGate, factory, implicit_tls)
    for host, port in addresses:
        server = await loop.create_server(
            protocol_factory, host, port, reuse_address=True, backlog=512
        )
        servers.append(server)
        bound += [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in server.sockets]
    return servers, bound


S = TypeVar("S", bound=StreamSession)


class Connections(Generic[S]):
    """The open connections of one service, counted per client key (an IPv6 /64 counts as
    one client), and the graceful shutdown they share."""

    def __init__(self) -> None:
        self._open: dict[S, str] = {}  # connection -> client key
        self._per_client: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[S]:
        return iter(list(self._open))

    def add(self, connection: S, key: str) -> None:
        if connection in self._open:
            return  # admitted at accept (implicit TLS), then connection_made
        self._open[connection] = key
        self._per_client[key] = self._per_client.get(key, 0) + 1
        self._idle.clear()

    def remove(self, connection: S) -> None:
        key = self._open.pop(connection, None)
        if key is None:
            return
        count = self._per_client.get(key, 1) - 1
        if count <= 0:
            self._per_client.pop(key, None)
        else:
            self._per_client[key] = count
        if not self._open:
            self._idle.set()

    def admit(self, connection: S, key: str, *, max_connections: int, max_per_client: int) -> bool:
        """Count ``connection`` if it is within the limits (for `StreamSession.admit`)."""
        self.add(connection, key)
        limits = {"max_connections": max_connections, "max_per_client": max_per_client}
        if self.refused(connection, **limits) is None:
            return True
        self.remove(connection)
        return False

    def refused(self, connection: S, *, max_connections: int, max_per_client: int) -> str | None:
        """Why ``connection`` (already added) may not be served, or None."""
        if self.shutting_down:
            return "Server shutting down"
        key = self._open.get(connection, "")
        if len(self._open) > max_connections or self._per_client.get(key, 0) > max_per_client:
            return "Too many connections"
        return None

    async def shutdown(self, servers: list[asyncio.Server], grace: float) -> None:
        """Stop accepting, wake every connection so it can finish its command and leave, wait up
        to ``grace`` seconds, then abort what is left."""
        self.shutting_down = True
        for connection in self:
            connection.wakeup.set()
        if self._open:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        for server in servers:
            server.close()
        for connection in self:
            if connection.transport is not None:
                connection.transport.abort()
            elif connection.handshake is not None:
                connection.handshake.cancel()
        for server in servers:
            await server.wait_closed()
