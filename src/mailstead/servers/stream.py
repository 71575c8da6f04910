"""What every protocol shell does with its connection: buffer input, flow control, STARTTLS.

A session is an ``asyncio.Protocol`` (fast callbacks, no stream objects) whose ``data_received``
fills an inbox that a per-connection task drains with ``next_data``.

The client's end of input is a half-close, never a reason to drop output: pipelined commands
before it are still carried out and their replies sent (a 250 for committed mail that never
reaches the client makes it send the mail again). asyncio's TLS transport (and uvloop's)
stops writing as soon as the peer's close_notify or TCP FIN arrives, so TLS runs here over
``ssl.MemoryBIO`` on the TCP transport, where close_notify is an end of input like a FIN.
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
        # Always the TCP transport: TLS, when started, runs in ``_tls`` above it.
        self.transport: Any = None
        self._tls: ssl.SSLObject | None = None
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._handshake: asyncio.Future[None] | None = None
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
        if self._tls is not None:
            self._tls_received(data)
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._inbox_size += len(data)
        if self._inbox_size > MAX_INBOX and not self._paused_reading and self.transport:
            self.transport.pause_reading()  # the session catches up before we read more
            self._paused_reading = True
        self.wakeup.set()

    def eof_received(self) -> bool:
        """The client shut its sending side: input ends, output goes on until the session
        has sent what it owes and closes (True keeps the transport half-open)."""
        self._end_of_input()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionResetError("EOF during the TLS handshake"))
        return True

    def _end_of_input(self) -> None:
        self._eof = True
        self.wakeup.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.wakeup.set()
        self._can_write.set()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionResetError("connection lost"))
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

    @property
    def can_write(self) -> bool:
        """Whether a write can still reach the client (its input may have ended)."""
        return self.transport is not None and not self.transport.is_closing()

    async def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            if self._tls is not None:
                view = memoryview(data)
                try:
                    while view:  # a memory BIO takes everything; the loop is for the rule
                        view = view[self._tls.write(view) :]
                except ssl.SSLError:  # TLS already shut down: nothing more can be sent
                    return
                data = self._tls_out.read()
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
        if self._eof or self.transport.is_closing():
            return False
        self.begin_tls(context)
        return await self.tls_handshake(handshake_timeout)

    def begin_tls(self, context: ssl.SSLContext | None) -> None:
        """Treat what comes from now on as TLS (on an implicit-TLS port: in
        ``connection_made``, before a byte is read); ``tls_handshake`` waits for it. Without
        a context (a reload found no certificate) the handshake fails."""
        assert self._tls is None, "TLS started twice"
        self._handshake = asyncio.get_running_loop().create_future()
        if context is None:
            self._handshake.set_exception(ssl.SSLError("no TLS certificate"))
            return
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        if self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()  # paused by prepare_tls

    async def tls_handshake(self, seconds: float) -> bool:
        """Wait for the handshake ``begin_tls`` started; False (and the connection aborted)
        if it failed or took longer than ``seconds``."""
        assert self._handshake is not None
        try:
            async with asyncio.timeout(seconds):
                await self._handshake
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            if self.transport is not None:
                self.transport.abort()
            return False
        return True

    def _tls_received(self, data: bytes) -> None:
        """TLS records from the client: the handshake, then plaintext into the inbox; the
        client's close_notify ends the input as a FIN would (RFC 8446 §6.1: each side closes
        its own writing; the server may still answer)."""
        tls = self._tls
        assert tls is not None
        self._tls_in.write(data)
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._send_tls()
                return
            except ssl.SSLError as exc:
                self._send_tls()  # the alert, if any
                handshake.set_exception(exc)
                return
            self._send_tls()
            handshake.set_result(None)
        chunks = []
        closed = False
        try:
            while True:
                chunk = tls.read(65536)
                if not chunk:
                    closed = True  # close_notify
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:  # a broken record: nothing after it can be trusted
            closed = True
            if self.transport is not None:
                self.transport.abort()
        if chunks:
            self._received(b"".join(chunks))
        self._send_tls()  # TLS 1.3 may answer records of its own (key updates)
        if closed:
            self._end_of_input()

    def _tls_established(self) -> bool:
        handshake = self._handshake
        return (
            handshake is not None
            and handshake.done()
            and not handshake.cancelled()
            and handshake.exception() is None
        )

    def _send_tls(self) -> None:
        data = self._tls_out.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def tls_description(self) -> str:
        """``using TLSv1.3 with cipher X (256/256 bits)`` for trace headers and logs."""
        ssl_object = self._tls
        if ssl_object is None or not self._tls_established():
            return ""
        cipher = ssl_object.cipher()
        if cipher is None:
            return f"using {ssl_object.version()}"
        name, _version, bits = cipher
        return f"using {ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"

    def close(self) -> None:
        """Close after what was written has been sent (over TLS with our close_notify first;
        the client's is not awaited)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._tls is not None and self._tls_established():
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()  # sends close_notify; raises SSLWantReadError, not awaited
            self._send_tls()
        self.transport.close()


async def listen(
    factory: Callable[[], asyncio.Protocol],
    addresses: list[tuple[str, int]],
) -> tuple[list[asyncio.Server], list[tuple[str, int]]]:
    """Bind every address for connections made by ``factory``; returns the servers and where
    they really listen (port 0 in the configuration picks a free port). The servers accept
    nothing until ``start_serving()``: MailServer.start calls it once privileges are dropped.

    Implicit TLS (993, 995, 465) is started by the session itself (``begin_tls`` in
    ``connection_made``), so a connection is counted against the shell's limits at accept,
    before its handshake, and over a limit closed at once; the handshake is bounded by
    ``[tls] handshake_timeout``."""
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

    def turned_away(self, connection: S, *, max_connections: int, max_per_client: int) -> bool:
        """For an implicit-TLS connection just added: when it is over a limit, uncount and
        abort it and return True. No reply can go out before TLS, so it is closed at once
        (before its handshake), and idle clients cannot hold descriptors."""
        limits = {"max_connections": max_connections, "max_per_client": max_per_client}
        if self.refused(connection, **limits) is None:
            return False
        self.remove(connection)
        if connection.transport is not None:
            connection.transport.abort()
        return True

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
