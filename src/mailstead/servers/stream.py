"""What every protocol shell does with its connection: buffer input, flow control, STARTTLS.

A session is an ``asyncio.Protocol`` (fast callbacks, no stream objects) whose ``data_received``
fills an inbox that a per-connection task drains with ``next_data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterator
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


async def listen(
    factory: Callable[[], asyncio.Protocol],
    addresses: list[tuple[str, int]],
    *,
    tls_context: ssl.SSLContext | None = None,
) -> tuple[list[asyncio.Server], list[tuple[str, int]]]:
    """Bind every address for connections made by ``factory`` (TLS from the first byte when
    ``tls_context`` is given); returns the servers and where they really listen (port 0 in the
    configuration picks a free port). The servers accept nothing until ``start_serving()``:
    MailServer.start calls it once privileges are dropped."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    bound: list[tuple[str, int]] = []
    for host, port in addresses:
        server = await loop.create_server(
            factory,
            host,
            port,
            reuse_address=True,
            backlog=512,
            ssl=tls_context,
            start_serving=False,
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
        for server in servers:
            await server.wait_closed()
