"""Store operations IMAP relies on: flags with MODSEQ, expunge log, copy/move, rename, feed."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.store import (
    DeliveryRequest,
    DeliveryTarget,
    FlagOp,
    StoreError,
    StoreErrorCode,
    open_sqlite,
)

SEEN, DELETED, FLAGGED = "\\Seen", "\\Deleted", "\\Flagged"


def raw(n: int) -> bytes:
    return b"From: a@example.net\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (n, n)


def run(coro):
    return asyncio.run(coro)


class Env:
    async def __aenter__(self):
        self.store = open_sqlite(self.path)
        await self.store.open()
        await self.store.add_domain("example.org")
        self.account = await self.store.add_account("example.org", "a", "a", "h", quota=10_000)
        self.other = await self.store.add_account("example.org", "b", "b", "h")
        self.inbox = await self.store.get_mailbox(self.account.id, "INBOX")
        return self

    async def __aexit__(self, *exc):
        problems = await self.store.check_integrity()
        await self.store.close()
        assert problems == []

    async def deliver(self, n: int, mailbox: str = "INBOX", flags=frozenset()):
        uids = []
        for i in range(n):
            outcome = await self.store.deliver(
                DeliveryRequest(raw(i), [DeliveryTarget(self.account.id, mailbox, flags)], 0)
            )
            uids.append(outcome.uids[0])
        return uids


@pytest.fixture
def env(tmp_path):
    e = Env()
    e.path = tmp_path / "db"
    return e


def test_flags_modseq_and_unchangedsince(env):
    async def body():
        async with env:
            store, box = env.store, env.inbox.id
            await env.deliver(3)
            start = (await store.get_mailbox(env.account.id, "INBOX")).highestmodseq
            update = await store.store_flags(box, [1, 2], FlagOp.ADD, frozenset({SEEN}))
            assert [(c.uid, c.flags) for c in update.changed] == [(1, {SEEN}), (2, {SEEN})]
            assert update.highestmodseq == start + 1
            assert {c.modseq for c in update.changed} == {start + 1}
            # no change, no new modseq
            again = await store.store_flags(box, [1], FlagOp.ADD, frozenset({SEEN}))
            assert again.changed == () and again.highestmodseq == start + 1
            # UNCHANGEDSINCE protects messages changed after it (RFC 7162 §3.1.3)
            guarded = await store.store_flags(
                box, [1, 3], FlagOp.ADD, frozenset({FLAGGED}), unchanged_since=start
            )
            assert guarded.modified == (1,)
            assert [c.uid for c in guarded.changed] == [3]
            replaced = await store.store_flags(box, [1], FlagOp.REPLACE, frozenset({"$Junk"}))
            assert replaced.changed[0].flags == {"$Junk"}
            removed = await store.store_flags(box, [2], FlagOp.REMOVE, frozenset({SEEN}))
            assert removed.changed[0].flags == frozenset()
            info = await store.get_mailbox(env.account.id, "INBOX")
            assert (info.messages, info.unseen) == (3, 3)
            index = await store.message_index(box)
            assert [(m.uid, m.flags) for m in index] == [
                (1, {"$Junk"}), (2, frozenset()), (3, {FLAGGED})
            ]  # fmt: skip

    run(body())


def test_expunge_logs_vanished_uids(env):
    async def body():
        async with env:
            store, box = env.store, env.inbox.id
            await env.deliver(4)
            before = (await store.get_mailbox(env.account.id, "INBOX")).highestmodseq
            await store.store_flags(box, [1, 2, 4], FlagOp.ADD, frozenset({DELETED}))
            assert (await store.get_mailbox(env.account.id, "INBOX")).deleted == 3
            partial = await store.expunge(box, [2, 3])  # UID EXPUNGE: only \Deleted among them
            assert partial.uids == (2,)
            rest = await store.expunge(box)
            assert rest.uids == (1, 4)
            changes = await store.changes_since(box, before)
            assert changes.vanished == (1, 2, 4)
            assert [m.uid for m in changes.changed] == []
            info = await store.get_mailbox(env.account.id, "INBOX")
            assert (info.messages, info.deleted, info.highestmodseq) == (1, 0, rest.highestmodseq)
            account = await store.get_account_by_id(env.account.id)
            assert account.used == info.size

    run(body())


def test_changes_since_reports_new_and_changed(env):
    async def body():
        async with env:
            store, box = env.store, env.inbox.id
            await env.deliver(2)
            mark = (await store.get_mailbox(env.account.id, "INBOX")).highestmodseq
            await store.store_flags(box, [1], FlagOp.ADD, frozenset({SEEN}))
            await env.deliver(1)
            changes = await store.changes_since(box, mark)
            assert [(m.uid, m.flags) for m in changes.changed] == [(1, {SEEN}), (3, frozenset())]
            assert changes.uidnext == 4 and changes.vanished == ()

    run(body())


def test_copy_and_move(env):
    async def body():
        async with env:
            store = env.store
            await env.deliver(3, flags=frozenset({SEEN}))
            archive = await store.get_mailbox(env.account.id, "Archive")
            copied = await store.copy_messages(env.inbox.id, [1, 3], archive.id)
            assert copied.pairs == ((1, 1), (3, 2))
            assert copied.uidvalidity == archive.uidvalidity
            moved = await store.copy_messages(env.inbox.id, [2], archive.id, move=True)
            assert moved.pairs == ((2, 3),)
            assert [m.uid for m in await store.message_index(env.inbox.id)] == [1, 3]
            index = await store.message_index(archive.id)
            assert [(m.uid, m.flags) for m in index] == [(1, {SEEN}), (2, {SEEN}), (3, {SEEN})]
            inbox_changes = await store.changes_since(env.inbox.id, 0)
            assert inbox_changes.vanished == (2,)
            # copying is atomic under quota: all or nothing
            big = await store.add_account("example.org", "c", "c", "h", quota=1)
            target = await store.get_mailbox(big.id, "INBOX")
            with pytest.raises(StoreError) as exc:
                await store.copy_messages(env.inbox.id, [1, 3], target.id)
            assert exc.value.code is StoreErrorCode.OVERQUOTA
            assert await store.message_index(target.id) == []

    run(body())


def test_rename_delete_and_subscriptions(env):
    async def body():
        async with env:
            store, account = env.store, env.account.id
            for name in ("Work", "Work/2025", "Work/2025/Q1", "Workshop"):
                await store.create_mailbox(account, name)
            await env.deliver(2, "Work/2025")
            await store.rename_mailbox(account, "Work", "Job")
            names = [m.name for m in await store.list_mailboxes(account)]
            assert {"Job", "Job/2025", "Job/2025/Q1", "Workshop"} <= set(names)
            assert "Work" not in names
            moved = await store.get_mailbox(account, "Job/2025")
            assert moved.messages == 2
            with pytest.raises(StoreError) as exc:
                await store.rename_mailbox(account, "Job", "Workshop")
            assert exc.value.code is StoreErrorCode.ALREADYEXISTS
            # renaming INBOX moves its messages and leaves it empty
            await env.deliver(2)
            await store.rename_mailbox(account, "INBOX", "Old")
            assert (await store.get_mailbox(account, "Old")).messages == 2
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox.messages == 0 and inbox.uidnext == 3
            # deleting releases the messages and their quota
            await store.delete_mailbox(account, "Job/2025")
            assert await store.get_mailbox(account, "Job/2025") is None
            with pytest.raises(StoreError) as exc:
                await store.delete_mailbox(account, "INBOX")
            assert exc.value.code is StoreErrorCode.CANNOT
            with pytest.raises(StoreError) as exc:
                await store.delete_mailbox(account, "Nope")
            assert exc.value.code is StoreErrorCode.NONEXISTENT
            # subscriptions are independent of mailboxes
            assert "INBOX" in await store.list_subscriptions(account)
            await store.set_subscribed(account, "Future", True)
            await store.set_subscribed(account, "Sent", False)
            subs = await store.list_subscriptions(account)
            assert "Future" in subs and "Sent" not in subs
            assert not (await store.get_mailbox(account, "Sent")).subscribed

    run(body())


def test_feed_wakes_watchers_of_the_changed_mailbox_only(env):
    async def body():
        async with env:
            store = env.store
            trash = await store.get_mailbox(env.account.id, "Trash")
            with store.feed.watch(env.inbox.id) as inbox_event, store.feed.watch(
                trash.id
            ) as trash_event:
                await env.deliver(1)
                assert inbox_event.is_set() and not trash_event.is_set()
                inbox_event.clear()
                await store.store_flags(env.inbox.id, [1], FlagOp.ADD, frozenset({SEEN}))
                assert inbox_event.is_set()
            assert store.feed._watchers == {}

    run(body())


def test_full_text_index_finds_substrings_and_reports_what_is_unindexed(env):
    async def body():
        async with env:
            store, box = env.store, env.inbox.id
            messages = [
                b"From: Ann <ann@example.net>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
                b"Quarterly REPORT attached\r\n",
                b"From: bob@example.net\r\nSubject: lunch\r\nMIME-Version: 1.0\r\n"
                b"Content-Transfer-Encoding: base64"
                b"\r\n\r\n" + __import__("base64").encodebytes(b"meet at the pizzeria") + b"\r\n",
            ]
            for raw in messages:
                await store.deliver(DeliveryRequest(raw, [DeliveryTarget(env.account.id)], 0))
            found, todo = await store.text_candidates(box, "report", "BODY")
            assert (found, todo) == (set(), {1, 2})  # nothing indexed yet: all to check
            assert await store.index_pending() == 2
            assert await store.index_pending() == 0
            assert await store.text_candidates(box, "rterly rep", "BODY") == ({1}, set())
            assert await store.text_candidates(box, "PIZZERIA", "BODY") == ({2}, set())
            assert await store.text_candidates(box, "grüße", "HEADER") == ({1}, set())
            assert await store.text_candidates(box, "grüße", "BODY") == (set(), set())
            assert await store.text_candidates(box, "ann@example.net", "TEXT") == ({1}, set())
            assert await store.text_candidates(box, "at", "BODY") is None  # too short
            # expunged messages leave the index with their blob
            await store.store_flags(box, [1], FlagOp.ADD, frozenset({DELETED}))
            await store.expunge(box)
            assert await store.text_candidates(box, "report", "TEXT") == (set(), set())

    run(body())


def test_read_blobs_returns_many_messages_in_one_call(env):
    async def body():
        async with env:
            await env.deliver(3)
            infos = await env.store.get_messages(env.inbox.id, [1, 2, 3])
            blobs = await env.store.read_blobs([i.blob_id for i in infos] + [999_999])
            assert [blobs[i.blob_id] for i in infos] == [raw(n) for n in range(3)]
            assert 999_999 not in blobs

    run(body())
