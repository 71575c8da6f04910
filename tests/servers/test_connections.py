"""The connection table shared by the IMAP and POP3 shells: counts, limits, idle."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mailstead.security.tls import generate_self_signed, server_context
from mailstead.servers.stream import Connections, StreamSession, listen


def test_counts_per_client_and_limits():
    table: Connections[StreamSession] = Connections()
    a, b, c = StreamSession(), StreamSession(), StreamSession()
    table.add(a, "10.0.0.1")
    table.add(b, "10.0.0.1")
    table.add(c, "10.0.0.2")
    assert len(table) == 3
    assert table.refused(a, max_connections=3, max_per_client=2) is None
    assert table.refused(b, max_connections=3, max_per_client=1) == "Too many connections"
    assert table.refused(c, max_connections=2, max_per_client=5) == "Too many connections"
    table.remove(a)
    table.remove(a)  # twice: counted once
    assert table.refused(b, max_connections=3, max_per_client=1) is None
    table.shutting_down = True
    assert table.refused(c, max_connections=9, max_per_client=9) == "Server shutting down"
    table.remove(b)
    table.remove(c)
    assert len(table) == 0 and list(table) == []


class _Upper(StreamSession):
    """Answers one chunk in capitals with the TLS in use; TLS from the first byte, counted in
    ``table`` at accept (as the shells count implicit-TLS connections)."""

    def __init__(
        self, table: Connections[StreamSession], per_client: int, context: ssl.SSLContext
    ) -> None:
        super().__init__()
        self.table = table
        self.per_client = per_client
        self.context = context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.table.add(self, self.peer_ip)
        if self.table.refused(self, max_connections=100, max_per_client=self.per_client):
            self.table.remove(self)
            transport.abort()
            return
        self.begin_tls(self.context)
        asyncio.get_running_loop().create_task(self._answer())

    async def _answer(self) -> None:
        try:
            if not await self.tls_handshake(1.0):
                return
            data = await self.next_data(10)
            await self.write((data or b"").upper() + b" " + self.tls_description().encode())
        finally:
            self.close()
            self.table.remove(self)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_implicit_tls_counts_at_accept_then_serves_over_tls(loop_name, tmp_path):
    """With either loop: idle connections count from accept (the one past the limit is closed
    at once), time out without a handshake, and a TLS client that sends its ClientHello at
    once (no byte of it lost to the plain transport) is served over TLS."""
    generate_self_signed("localhost", tmp_path / "c.pem", tmp_path / "k.pem")
    context = server_context(tmp_path / "c.pem", tmp_path / "k.pem")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    table: Connections[StreamSession] = Connections()

    async def main() -> None:
        servers, [(host, port)] = await listen(
            lambda: _Upper(table, per_client=2, context=context), [("127.0.0.1", 0)]
        )
        for server in servers:
            await server.start_serving()
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        refused_reader, refused_writer = await asyncio.open_connection(host, port)
        async with asyncio.timeout(0.9):  # before the held ones' handshake time runs out
            assert await refused_reader.read(1) == b""
        assert len(table) == 2

        async def client(n: int) -> bytes:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=client_context, server_hostname="localhost",
                local_addr=(f"127.0.0.{2 + n}", 0),
            )  # fmt: skip
            writer.write(b"hello %d" % n)
            answer = await reader.read()
            writer.close()
            return answer

        answers = await asyncio.gather(*(client(n) for n in range(20)))
        assert [a.split(b" using ")[0] for a in answers] == [b"HELLO %d" % n for n in range(20)]
        assert all(b" using TLSv1." in a for a in answers)
        for reader, _ in held:  # no handshake: closed when its time ran out
            async with asyncio.timeout(10):
                assert await reader.read(1) == b""
        assert len(table) == 0  # uncounted before the server closed its side
        for _, writer in [*held, (refused_reader, refused_writer)]:
            writer.close()
        for server in servers:
            server.close()
            await server.wait_closed()

    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())
