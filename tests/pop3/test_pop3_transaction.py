"""The TRANSACTION state, command by command, with the exact bytes of every reply; QUIT's
UPDATE through the store; the maildrop as a snapshot."""

from __future__ import annotations

from mailstead.store import FlagOp

from .harness import message

M1 = message(1)  # 44 octets
M2 = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nlast line without CRLF"
M3 = message(3, b"line 1\nline 2\n")  # stored with bare LF: sent with CRLF


async def three(h):
    uids = [await h.deliver(m) for m in (M1, M2, M3)]
    conn = h.connect()
    await conn.login()
    return conn, uids


def test_stat_list_uidl(run):
    async def scenario(h):
        conn, uids = await three(h)
        v = h.inbox.uidvalidity
        sizes = [len(M1), len(M2), len(M3)]
        total = sum(sizes)
        assert await conn.line("STAT") == f"+OK 3 {total}\r\n".encode()
        assert await conn.line("LIST") == (
            f"+OK 3 messages ({total} octets)\r\n1 {sizes[0]}\r\n2 {sizes[1]}\r\n"
            f"3 {sizes[2]}\r\n.\r\n"
        ).encode()
        assert await conn.line("LIST 2") == f"+OK 2 {sizes[1]}\r\n".encode()
        assert await conn.line("UIDL") == (
            f"+OK Unique ids follow\r\n1 {v}.{uids[0]}\r\n2 {v}.{uids[1]}\r\n"
            f"3 {v}.{uids[2]}\r\n.\r\n"
        ).encode()
        assert await conn.line("UIDL 3") == f"+OK 3 {v}.{uids[2]}\r\n".encode()
        for command in ("LIST 0", "LIST 4", "UIDL 4", "RETR 9", "TOP 0 1", "DELE 4"):
            assert await conn.line(command) == b"-ERR No such message\r\n"

    run(scenario)


def test_retr_sends_crlf_lines_byte_stuffed(run):
    async def scenario(h):
        conn, _ = await three(h)
        assert await conn.line("RETR 1") == b"+OK 44 octets\r\n" + M1 + b".\r\n"
        assert await conn.line("RETR 2") == (
            f"+OK {len(M2)} octets\r\n".encode()
            + b"Subject: dots\r\n\r\n..\r\n...two\r\n..three\r\nlast line without CRLF\r\n.\r\n"
        )
        assert await conn.line("RETR 3") == (
            f"+OK {len(M3)} octets\r\n".encode()
            + b"From: a@example.net\r\nSubject: m3\r\n\r\nline 1\r\nline 2\r\n.\r\n"
        )

    run(scenario)


def test_top(run):
    async def scenario(h):
        conn, _ = await three(h)
        header = b"+OK Top of message follows\r\nSubject: dots\r\n\r\n"
        assert await conn.line("TOP 2 0") == header + b".\r\n"
        assert await conn.line("TOP 2 2") == header + b"..\r\n...two\r\n.\r\n"
        assert await conn.line("TOP 2 100") == (
            header + b"..\r\n...two\r\n..three\r\nlast line without CRLF\r\n.\r\n"
        )
        assert await conn.line("TOP 2") == (
            b"-ERR TOP needs a message number and a line count\r\n"
        )

    run(scenario)


def test_dele_rset_and_deleted_messages(run):
    async def scenario(h):
        conn, _ = await three(h)
        assert await conn.line("DELE 2") == b"+OK Message 2 deleted\r\n"
        assert await conn.line("DELE 2") == b"-ERR Message 2 is deleted\r\n"
        assert await conn.line("RETR 2") == b"-ERR Message 2 is deleted\r\n"
        assert await conn.line("TOP 2 0") == b"-ERR Message 2 is deleted\r\n"
        assert await conn.line("LIST 2") == b"-ERR Message 2 is deleted\r\n"
        assert await conn.line("UIDL 2") == b"-ERR Message 2 is deleted\r\n"
        total = len(M1) + len(M3)
        assert await conn.line("STAT") == f"+OK 2 {total}\r\n".encode()
        listing = await conn.line("LIST")
        assert listing == (
            f"+OK 2 messages ({total} octets)\r\n1 44\r\n3 {len(M3)}\r\n.\r\n".encode()
        )
        uidl = await conn.line("UIDL")
        assert b"\r\n2 " not in uidl and b"\r\n3 " in uidl  # numbers are kept (RFC 1939 §5)
        everything = total + len(M2)
        assert await conn.line("RSET") == f"+OK 3 messages ({everything} octets)\r\n".encode()
        assert (await conn.line("RETR 2")).startswith(b"+OK")
        assert await conn.line("NOOP") == b"+OK\r\n"

    run(scenario)


def test_quit_removes_deleted_messages_and_marks_retrieved_seen(run):
    async def scenario(h):
        conn, uids = await three(h)
        await conn.line("RETR 1")
        await conn.line("RETR 2")
        await conn.line("TOP 3 1")  # TOP does not count as reading
        await conn.line("DELE 2")
        with h.store.feed.watch(h.inbox.id) as changed:  # what wakes IMAP IDLE sessions
            assert await conn.line("QUIT") == b"+OK Bye, 1 deleted, 2 left\r\n"
            assert changed.is_set()
        assert conn.closed == "quit"
        assert await h.inbox_uids() == [uids[0], uids[2]]
        flags = {m.uid: m.flags for m in await h.store.message_index(h.inbox.id)}
        assert flags == {uids[0]: frozenset({"\\Seen"}), uids[2]: frozenset()}
        changes = await h.store.changes_since(h.inbox.id, 0)
        assert changes.vanished == (uids[1],)  # logged as an expunge, for QRESYNC too
        assert conn.session.stats.deleted == 1

    run(scenario)


def test_nothing_is_deleted_without_quit(run):
    async def scenario(h):
        conn, uids = await three(h)
        await conn.line("DELE 1")
        await conn.line("DELE 2")
        await conn.line("RETR 3")
        conn.drop()
        assert await h.inbox_uids() == uids
        assert all(not m.flags for m in await h.store.message_index(h.inbox.id))

    run(scenario)


def test_rset_then_quit_deletes_nothing(run):
    async def scenario(h):
        conn, uids = await three(h)
        await conn.line("DELE 1")
        await conn.line("RSET")
        assert await conn.line("QUIT") == b"+OK Bye, 0 deleted, 3 left\r\n"
        assert await h.inbox_uids() == uids

    run(scenario)


def test_the_maildrop_is_the_inbox_at_login(run):
    async def scenario(h):
        conn, uids = await three(h)
        await h.deliver(message(4))  # arrives during the session: not in it
        assert (await conn.line("STAT")).startswith(b"+OK 3 ")
        assert await conn.line("LIST 4") == b"-ERR No such message\r\n"
        # another client (IMAP) expunges message 1 meanwhile
        await h.store.store_flags(h.inbox.id, [uids[0]], FlagOp.ADD, frozenset({"\\Deleted"}))
        await h.store.expunge(h.inbox.id, [uids[0]])
        assert await conn.line("RETR 1") == b"-ERR Message was removed by another session\r\n"
        await conn.line("DELE 1")
        await conn.line("DELE 2")
        assert await conn.line("QUIT") == b"+OK Bye, 2 deleted, 1 left\r\n"
        assert conn.session.stats.deleted == 1  # only message 2 was still there
        assert len(await h.inbox_uids()) == 2  # message 3 and the new one

    run(scenario)


def test_unique_ids_are_stable_across_sessions(run):
    async def scenario(h):
        conn, _ = await three(h)
        first = await conn.line("UIDL")
        await conn.line("DELE 1")
        await conn.line("QUIT")
        await h.deliver(message(5))
        again = h.connect()
        await again.login()
        second = await again.line("UIDL")
        kept = [line.split(b" ")[1] for line in first.split(b"\r\n")[2:4]]
        now = [line.split(b" ")[1] for line in second.split(b"\r\n")[1:4]]
        assert now[:2] == kept  # the same messages keep their ids, renumbered from 1
        assert now[2] not in kept

    run(scenario)


def test_empty_maildrop(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.login() == b"+OK Logged in, 0 messages (0 octets)\r\n"
        assert await conn.line("LIST") == b"+OK 0 messages (0 octets)\r\n.\r\n"
        assert await conn.line("UIDL") == b"+OK Unique ids follow\r\n.\r\n"
        assert await conn.line("RETR 1") == b"-ERR No such message\r\n"
        assert await conn.line("QUIT") == b"+OK Bye, 0 deleted, 0 left\r\n"

    run(scenario)
