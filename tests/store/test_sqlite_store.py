"""The embedded store: directory records, content-addressed delivery, quotas, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from mailstead.store import (
    AccountRole,
    DeliveryRequest,
    DeliveryTarget,
    StoreError,
    StoreErrorCode,
    open_sqlite,
)
from mailstead.store.sqlite.backend import SQLiteStore

MESSAGE = (
    b"From: Bob <bob@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: =?utf-8?q?H=C3=A9llo?=\r\n"
    b"Message-ID: <m1@example.net>\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"Hello Alice.\r\n"
)


def run(coro):
    return asyncio.run(coro)


async def _open(path: Path) -> SQLiteStore:
    store = open_sqlite(path)
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


async def _accounts(store: SQLiteStore, count: int, quota: int = 0) -> list[int]:
    await store.add_domain("example.org")
    ids = []
    for i in range(count):
        account = await store.add_account("example.org", f"u{i}", f"u{i}", "x", quota=quota)
        ids.append(account.id)
    return ids


def test_new_account_gets_the_special_use_mailboxes(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            await store.add_domain("example.org")
            account = await store.add_account(
                "example.org", "Alice", "alice", "hash", quota=10, role=AccountRole.ADMIN
            )
            boxes = await store.list_mailboxes(account.id)
            assert [(b.name, b.special_use) for b in boxes] == [
                ("INBOX", None),
                ("Archive", "\\Archive"),
                ("Drafts", "\\Drafts"),
                ("Junk", "\\Junk"),
                ("Sent", "\\Sent"),
                ("Trash", "\\Trash"),
            ]
            validities = [b.uidvalidity for b in boxes]
            assert len(set(validities)) == len(validities)
            assert all(b.uidnext == 1 and b.messages == 0 for b in boxes)
            again = await store.get_account("example.org", "alice")
            assert again is not None and again.localpart == "Alice" and again.role.value == "admin"
            with pytest.raises(StoreError) as exc:
                await store.add_account("example.org", "ALICE", "alice", "h")
            assert exc.value.code is StoreErrorCode.ALREADYEXISTS
        finally:
            await store.close()

    run(body())


def test_message_for_five_accounts_is_stored_once(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            ids = await _accounts(store, 5)
            outcome = await store.deliver(
                DeliveryRequest(MESSAGE, [DeliveryTarget(i) for i in ids], internal_date=1000)
            )
            assert outcome.ok and outcome.uids == (1, 1, 1, 1, 1)
            inbox = await store.get_mailbox(ids[3], "inbox")
            assert inbox is not None and inbox.messages == 1 and inbox.uidnext == 2
            [message] = await store.list_messages(inbox.id)
            assert message.subject == "Héllo"
            assert message.message_id in ("<m1@example.net>", "m1@example.net")
            assert "bob@example.net" in message.from_
            assert await store.read_blob(message.blob_id) == MESSAGE
            assert await store.check_integrity() == []
        finally:
            await store.close()
        db = sqlite3.connect(tmp_path / "db")
        assert db.execute("SELECT count(*), sum(refs) FROM blobs").fetchone() == (1, 5)
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (5,)

    run(body())


def test_uids_and_modseqs_grow(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            [account] = await _accounts(store, 1)
            for n in range(3):
                raw = MESSAGE + str(n).encode()
                outcome = await store.deliver(
                    DeliveryRequest(raw, [DeliveryTarget(account)], internal_date=n)
                )
                assert outcome.uids == (n + 1,)
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox is not None
            messages = await store.list_messages(inbox.id)
            assert [m.uid for m in messages] == [1, 2, 3]
            modseqs = [m.modseq for m in messages]
            assert modseqs == sorted(modseqs) and len(set(modseqs)) == 3
            assert inbox.highestmodseq == modseqs[-1]
        finally:
            await store.close()

    run(body())


def test_quota(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            [small] = await _accounts(store, 1, quota=len(MESSAGE) * 2 + 10)
            target = [DeliveryTarget(small)]
            for _ in range(2):
                assert (await store.deliver(DeliveryRequest(MESSAGE, target, 0))).ok
            outcome = await store.deliver(DeliveryRequest(MESSAGE, target, 0))
            assert outcome.errors[0] is not None
            assert outcome.errors[0].code is StoreErrorCode.OVERQUOTA
            huge = MESSAGE + b"x" * (len(MESSAGE) * 3)
            outcome = await store.deliver(DeliveryRequest(huge, target, 0))
            assert outcome.errors[0] is not None and outcome.errors[0].code is StoreErrorCode.TOOBIG
            account = await store.get_account_by_id(small)
            assert account is not None and account.used == 2 * len(MESSAGE)
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_all_or_nothing_refuses_every_target_when_one_fails(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            await store.add_domain("example.org")
            roomy = await store.add_account("example.org", "a", "a", "h")
            tight = await store.add_account("example.org", "b", "b", "h", quota=10)
            targets = [DeliveryTarget(roomy.id), DeliveryTarget(tight.id)]
            outcome = await store.deliver(DeliveryRequest(MESSAGE, targets, 0))
            assert not outcome.ok and outcome.uids == (None, None)
            inbox = await store.get_mailbox(roomy.id, "INBOX")
            assert inbox is not None and inbox.messages == 0
            partial = DeliveryRequest(MESSAGE, targets, 0, all_or_nothing=False)
            outcome = await store.deliver(partial)
            assert outcome.uids == (1, None)
        finally:
            await store.close()

    run(body())


def test_concurrent_deliveries_share_commits(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            [account] = await _accounts(store, 1)
            before = store.commit_count
            n = 300
            results = await asyncio.gather(
                *(
                    store.deliver(
                        DeliveryRequest(MESSAGE + str(i).encode(), [DeliveryTarget(account)], i)
                    )
                    for i in range(n)
                )
            )
            assert sorted(r.uids[0] for r in results) == list(range(1, n + 1))
            commits = store.commit_count - before
            assert commits < n  # group commit: many deliveries per fsync
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox is not None and inbox.messages == n
        finally:
            await store.close()

    run(body())


def test_remove_account_releases_blobs_and_data_survives_reopen(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            ids = await _accounts(store, 2)
            await store.deliver(DeliveryRequest(MESSAGE, [DeliveryTarget(i) for i in ids], 0))
            await store.remove_account("example.org", "u0")
            assert await store.check_integrity() == []
        finally:
            await store.close()
        store = await _open(tmp_path / "db")
        try:
            inbox = await store.get_mailbox(ids[1], "INBOX")
            assert inbox is not None and inbox.messages == 1
            assert await store.get_account("example.org", "u0") is None
            with pytest.raises(StoreError) as exc:
                await store.remove_domain("example.org")
            assert exc.value.code is StoreErrorCode.INUSE
        finally:
            await store.close()
        db = sqlite3.connect(tmp_path / "db")
        assert db.execute("SELECT refs FROM blobs").fetchall() == [(1,)]

    run(body())


def test_a_failing_job_does_not_spoil_its_batch(tmp_path):
    async def body():
        store = await _open(tmp_path / "db")
        try:
            await store.add_domain("example.org")
            results = await asyncio.gather(
                store.add_domain("example.org"),  # fails: exists
                store.add_domain("example.net"),
                return_exceptions=True,
            )
            assert isinstance(results[0], StoreError)
            assert [d.name for d in await store.list_domains()] == ["example.net", "example.org"]
        finally:
            await store.close()

    run(body())


def test_get_mailbox_sees_commits_of_this_store_and_of_another_connection(tmp_path):
    """get_mailbox answers a repeated question from memory only while nothing was committed:
    a delivery through this store, a write by a second store on the same file (standing in for
    another process, e.g. the CLI) and a raw SQL change are all seen at once."""

    async def body():
        store = await _open(tmp_path / "db")
        other = await _open(tmp_path / "db")
        try:
            (account_id,) = await _accounts(store, 1)
            first = await store.get_mailbox(account_id, "INBOX")
            assert first is not None
            assert await store.get_mailbox(account_id, "INBOX") is first  # no commit: remembered
            await store.deliver(DeliveryRequest(MESSAGE, [DeliveryTarget(account_id)], 0))
            second = await store.get_mailbox(account_id, "INBOX")
            assert second is not None and second.messages == first.messages + 1
            await other.deliver(DeliveryRequest(MESSAGE, [DeliveryTarget(account_id)], 0))
            third = await store.get_mailbox(account_id, "INBOX")
            assert third is not None and third.messages == second.messages + 1
            with sqlite3.connect(tmp_path / "db") as raw:
                raw.execute("UPDATE mailboxes SET uidvalidity = 4242 WHERE id = ?", (first.id,))
            fourth = await store.get_mailbox(account_id, "INBOX")
            assert fourth is not None and fourth.uidvalidity == 4242
        finally:
            await other.close()
            await store.close()

    run(body())
