"""RETR and TOP of large messages: read from the store and sent piece by piece (each piece
flushed before the next is read), byte-stuffed across piece boundaries, within the server's
memory budget; a message removed in the middle breaks the connection instead of ending short."""

from __future__ import annotations

import base64
import poplib
import random
import smtplib
import socket
import ssl
import time

import pytest

from mailstead.pop3 import session as pop3_session
from mailstead.protocols.pop3 import replies
from mailstead.security.memory import MemoryBudget
from mailstead.store import FlagOp

PIECE = pop3_session.PIECE
USER, PASSWORD = "alice@example.org", "alice-pw"


def _large() -> bytes:
    """3 MiB that compress to several stored rows, with lines starting with "." everywhere, in
    particular right at piece boundaries, a CRLF split by one, and bare LFs (as APPEND of
    literal8 may store them)."""
    noise = base64.b64encode(random.Random(3).randbytes(3 << 20))
    out = bytearray(b"Subject: large\r\n\r\n")
    for start in range(0, len(noise), 152):
        out += b"." + noise[start : start + 76] + b"\r\n" + noise[start + 76 : start + 152] + b"\n"
    out[PIECE : PIECE + 4] = b".abc"  # a piece starts with "."
    out[2 * PIECE - 1 : 2 * PIECE + 2] = b"\r\n."  # a CRLF across a boundary, "." after it
    out[3 * PIECE - 1 : 3 * PIECE] = b"\n"  # a bare LF ends a piece
    return bytes(out) + b"last line without CRLF"


def test_large_retr_is_streamed_and_stuffed_across_pieces(run):
    async def scenario(h):
        raw = _large()
        await h.deliver(raw)
        conn = h.connect()
        await conn.login()
        writes: list[bytes] = []

        async def flush() -> bool:
            writes.append(conn.core.data_to_send())
            return True

        conn.session.flush = flush
        rest = await conn.line("RETR 1")  # what the shell flushes after the command
        status = f"+OK {len(raw)} octets\r\n".encode()
        assert b"".join(writes) + rest == status + replies.message(raw)
        assert rest == b"\r\n.\r\n"  # the last line's CRLF and the terminator
        assert len(writes) >= len(raw) // PIECE  # piece by piece, not whole
        assert max(map(len, writes)) <= PIECE + 4096  # a piece and its stuffing
        conn.session.flush = None  # queued whole instead: the same octets
        assert await conn.line("RETR 1") == status + replies.message(raw)
        top = await conn.line("TOP 1 3")
        assert top == b"+OK Top of message follows\r\n" + replies.top(raw, 3)

    run(scenario)


def test_large_top_reads_only_what_it_sends(run):
    async def scenario(h):
        raw = _large()
        await h.deliver(raw)
        conn = h.connect()
        await conn.login()
        sent = bytearray()

        async def flush() -> bool:
            sent.extend(conn.core.data_to_send())
            return True

        conn.session.flush = flush
        rest = await conn.line("TOP 1 2")
        assert bytes(sent) + rest == b"+OK Top of message follows\r\n" + replies.top(raw, 2)
        assert len(sent) < PIECE + 100  # the first piece had it all

    run(scenario)


def test_large_retr_waits_for_the_memory_budget(run, monkeypatch):
    """With the server-wide budget taken by other large messages, RETR answers -ERR
    [SYS/TEMP] after its wait and sends nothing of the message."""

    async def scenario(h):
        await h.deliver(_large())
        conn = h.connect()
        await conn.login()
        budget = MemoryBudget(2 << 20)
        held = await budget.acquire(2 << 20, 1)
        conn.session.memory = budget
        monkeypatch.setattr(pop3_session, "MEMORY_WAIT", 0.01)
        assert await conn.line("RETR 1") == (
            b"-ERR [SYS/TEMP] Too many large messages in flight, try again later\r\n"
        )
        assert budget.in_use == held
        budget.release(held)
        assert (await conn.line("TOP 1 0")).startswith(b"+OK Top of message follows\r\n")
        assert budget.in_use == 0  # given back after the answer

    run(scenario)


@pytest.mark.parametrize("when", ["before", "during"])
def test_large_message_removed_before_or_while_sent(run, when):
    """Removed (by an IMAP session) before RETR: -ERR. Removed while it is being sent: the
    connection closes after what was sent, with no terminating ".", so the client cannot take
    a truncated message for a whole one."""

    async def scenario(h):
        uid = await h.deliver(_large())
        conn = h.connect()
        await conn.login()

        async def remove() -> None:
            await h.store.store_flags(h.inbox.id, [uid], FlagOp.ADD, frozenset({"\\Deleted"}))
            await h.store.expunge(h.inbox.id, [uid])

        if when == "before":
            await remove()
            assert await conn.line("RETR 1") == b"-ERR Message was removed by another session\r\n"
            assert conn.closed is None
            return
        sent = bytearray()

        async def flush() -> bool:
            sent.extend(conn.core.data_to_send())
            if len(sent) < 2 * PIECE:
                await remove()
            return True

        conn.session.flush = flush
        await conn.line("RETR 1")
        assert conn.closed == "message-broken"
        assert sent.startswith(b"+OK ") and not sent.endswith(b"\r\n.\r\n")

    run(scenario)


def test_a_client_that_leaves_in_the_middle_of_a_large_retr(mail_server):
    """A client (over TLS) that reads the start of a large RETR and then drops the connection:
    the server stops reading the message, does not count it as retrieved, and frees the
    maildrop for the next session, which gets the message whole."""
    server = mail_server()
    raw = b"Content-Type: application/octet-stream\r\n" + _large() * 3  # not indexed as text
    with smtplib.SMTP(*server.smtp_address, timeout=60) as client:
        client.sendmail("bob@example.net", [USER], raw)
    context = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))
    plain = socket.create_connection(server.pop3s_address, timeout=60)
    sock = context.wrap_socket(plain, server_hostname="localhost")
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\nRETR 1\r\n".encode())
    assert reader.readline().startswith(b"+OK")
    assert reader.readline().startswith(b"+OK Logged in")
    assert reader.readline().startswith(b"+OK ")
    assert len(reader.read(100_000)) == 100_000
    reader.close()
    sock.close()
    deadline = time.monotonic() + 60
    while not (lines := [x for x in server.log_lines() if x.get("msg") == "pop3.session"]):
        assert time.monotonic() < deadline, "no pop3.session in the log"
        time.sleep(0.05)
    assert (lines[0]["retrieved"], lines[0]["closed"]) == (0, "eof")
    client = poplib.POP3(*server.pop3_address, timeout=60)
    client.user(USER)
    client.pass_(PASSWORD)
    _, got, _ = client.retr(1)
    assert (b"\r\n".join(got) + b"\r\n").endswith(replies.wire_form(raw))
    client.quit()


def test_a_failure_in_the_middle_of_a_large_retr_breaks_the_connection(run, monkeypatch):
    """Unreadable stored data found after the message has begun: no -ERR in the middle of it
    (a client would take it for a line of the message), the connection is closed instead."""

    async def scenario(h):
        await h.deliver(_large())
        conn = h.connect()
        await conn.login()
        real = h.store.stream_blob

        async def failing(blob_id: int, piece: int):
            async for part in real(blob_id, piece):
                yield part
                raise ValueError("corrupt data")

        monkeypatch.setattr(h.store, "stream_blob", failing)
        out = await conn.line("RETR 1")
        assert conn.closed == "message-broken"
        assert out.startswith(b"+OK ") and b"-ERR" not in out and not out.endswith(b"\r\n.\r\n")

    run(scenario)
