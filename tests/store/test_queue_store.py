"""The store's outbound queue: enqueue (alone and with a local delivery), due recipients,
idempotent results, owed reports, hold/release/retry/delete, blobs released, migration 9, and
durability across a close and reopen."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3

import pytest

from mailstead.store import (
    DeliveryRequest,
    DeliveryTarget,
    QueueRecipientRequest,
    QueueRequest,
    QueueState,
    QueueUpdate,
    StoreError,
    StoreErrorCode,
    open_sqlite,
)
from mailstead.store.sqlite.backend import QUEUE_ONLY
from mailstead.store.sqlite.schema import MIGRATIONS, _statements

RAW = b"From: a@example.org\r\nTo: x@remote.example\r\nSubject: hi\r\n\r\nbody\r\n"


def run(coro):
    return asyncio.run(coro)


def request(queue_id="Q1", *, recipients=("x@remote.example", "y@Other.example"), **kw):
    values = {
        "queue_id": queue_id,
        "raw": RAW,
        "mail_from": "a@example.org",
        "recipients": [QueueRecipientRequest(a) for a in recipients],
        "queued_at": 1000.0,
    }
    values.update(kw)
    return QueueRequest(**values)


async def _open(path):
    store = open_sqlite(path / "mail.db")
    await store.open()
    return store


def _blob_rows(path) -> list[tuple[int, int]]:
    db = sqlite3.connect(path / "mail.db")
    try:
        return db.execute("SELECT id, refs FROM blobs").fetchall()
    finally:
        db.close()


def test_enqueue_and_read_back(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            notify = QueueRecipientRequest("z@remote.example", ("SUCCESS", "DELAY"),
                                           ("rfc822", "orig+2Bx@example.org"))  # fmt: skip
            req = request(
                recipients=(),
                envid="ENV+2B1",
                ret="HDRS",
                smtputf8=True,
                body="8BITMIME",
                origin="submission",
            )
            req = dataclasses.replace(
                req, recipients=[QueueRecipientRequest("x@remote.example"), notify]
            )
            assert await store.enqueue(req) is None
            item = await store.get_queue_item("Q1")
            assert item is not None
            assert (item.queue_id, item.mail_from, item.envid, item.ret, item.smtputf8) == (
                "Q1", "a@example.org", "ENV+2B1", "HDRS", True
            )  # fmt: skip
            assert (item.body, item.origin, item.queued_at, item.held) == (
                "8BITMIME", "submission", 1000.0, False
            )  # fmt: skip
            assert item.size == len(RAW)
            assert await store.read_blob(item.blob_id) == RAW
            first, second = item.recipients
            assert (first.address, first.domain, first.state, first.attempts) == (
                "x@remote.example", "remote.example", QueueState.PENDING, 0
            )  # fmt: skip
            assert (first.notify, first.orcpt, first.next_attempt) == (None, None, 1000.0)
            assert second.notify == ("SUCCESS", "DELAY")
            assert second.orcpt == ("rfc822", "orig+2Bx@example.org")
            assert await store.get_queue_item("nope") is None
            assert [i.queue_id for i in await store.list_queue()] == ["Q1"]
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_enqueue_refuses_duplicate_id_and_no_recipients(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request())
            with pytest.raises(StoreError) as exc:
                await store.enqueue(request())
            assert exc.value.code is StoreErrorCode.ALREADYEXISTS
            with pytest.raises(StoreError) as exc:
                await store.enqueue(request("Q2", recipients=()))
            assert exc.value.code is StoreErrorCode.INVALID
            assert len(await store.list_queue()) == 1
            assert await store.check_integrity() == []  # the refused one left no blob ref
        finally:
            await store.close()

    run(body())


def test_due_items_by_time_and_hold(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request("Q1", queued_at=1000.0))
            await store.enqueue(request("Q2", recipients=("w@later.example",), queued_at=2000.0))
            assert await store.next_queue_attempt() == 1000.0
            assert await store.due_queue_items(999.0) == []
            due = await store.due_queue_items(1500.0)
            assert [(i.queue_id, len(i.recipients)) for i in due] == [("Q1", 2)]
            due = await store.due_queue_items(2000.0)
            assert [i.queue_id for i in due] == ["Q1", "Q2"]
            limited = await store.due_queue_items(2000.0, limit=1)
            assert [(i.queue_id, len(i.recipients)) for i in limited] == [("Q1", 1)]

            await store.hold_queue_item("Q1", True)
            assert [i.queue_id for i in await store.due_queue_items(5000.0)] == ["Q2"]
            assert await store.next_queue_attempt() == 2000.0
            assert (await store.get_queue_item("Q1")).held
            await store.hold_queue_item("Q1", False)
            assert [i.queue_id for i in await store.due_queue_items(5000.0)] == ["Q1", "Q2"]
            with pytest.raises(StoreError) as exc:
                await store.hold_queue_item("nope", True)
            assert exc.value.code is StoreErrorCode.NONEXISTENT
        finally:
            await store.close()

    run(body())


def test_results_are_idempotent_and_final_states_stick(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request())
            x, y = (await store.get_queue_item("Q1")).recipients
            delivered = QueueUpdate(x.id, QueueState.DELIVERED, 1, x.next_attempt,
                                    last_attempt=1010.0, last_error="250 2.0.0 Ok",
                                    status="2.0.0", remote_mta="mx.remote.example")  # fmt: skip
            deferred = QueueUpdate(y.id, QueueState.DEFERRED, 1, 1070.0, last_attempt=1010.0,
                                   last_error="451 4.3.0 Try later", status="4.3.0")  # fmt: skip
            await store.record_queue_results([delivered, deferred])
            await store.record_queue_results([delivered, deferred])  # a replay changes nothing
            x2, y2 = (await store.get_queue_item("Q1")).recipients
            assert (x2.state, x2.attempts, x2.remote_mta, x2.last_error) == (
                QueueState.DELIVERED, 1, "mx.remote.example", "250 2.0.0 Ok"
            )  # fmt: skip
            assert (y2.state, y2.attempts, y2.next_attempt, y2.status) == (
                QueueState.DEFERRED, 1, 1070.0, "4.3.0"
            )  # fmt: skip
            # a delivered recipient is never changed again (a late or duplicated result)
            await store.record_queue_results(
                [QueueUpdate(x.id, QueueState.DEFERRED, 2, 5000.0, last_error="421 late")]
            )
            x3 = (await store.get_queue_item("Q1")).recipients[0]
            assert (x3.state, x3.attempts, x3.last_error) == (
                QueueState.DELIVERED, 1, "250 2.0.0 Ok"
            )  # fmt: skip
            assert [r.address for i in await store.due_queue_items(1100.0)
                    for r in i.recipients] == ["y@Other.example"]  # fmt: skip
        finally:
            await store.close()

    run(body())


def test_finished_message_is_removed_and_blob_released(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request())
            x, y = (await store.get_queue_item("Q1")).recipients
            await store.record_queue_results([QueueUpdate(x.id, QueueState.DELIVERED, 1, 0.0)])
            assert await store.get_queue_item("Q1") is not None
            await store.record_queue_results([QueueUpdate(y.id, QueueState.FAILED, 1, 0.0)])
            assert await store.get_queue_item("Q1") is None
            assert await store.list_queue() == []
            assert await store.check_integrity() == []
        finally:
            await store.close()
        assert _blob_rows(tmp_path) == []

    run(body())


def test_owed_reports_keep_message_until_settled(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request(recipients=("x@remote.example",)))
            (x,) = (await store.get_queue_item("Q1")).recipients
            await store.record_queue_results(
                [
                    QueueUpdate(
                        x.id,
                        QueueState.FAILED,
                        1,
                        0.0,
                        last_error="550 5.1.1 No",
                        status="5.1.1",
                        report="failed",
                    )
                ]
            )
            owed = await store.owed_reports()
            assert [(i.queue_id, [r.report for r in i.recipients]) for i in owed] == [
                ("Q1", ["failed"])
            ]
            # the report for a remote sender is queued in the same transaction
            dsn = request("D1", mail_from="", recipients=("a@remote.example",), origin="dsn")
            await store.settle_reports([x.id], dsn)
            assert await store.owed_reports() == []
            assert await store.get_queue_item("Q1") is None
            report = await store.get_queue_item("D1")
            assert report is not None
            assert (report.mail_from, report.origin) == ("", "dsn")
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_delayed_report_does_not_finish_the_recipient(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request(recipients=("x@remote.example",)))
            (x,) = (await store.get_queue_item("Q1")).recipients
            await store.record_queue_results(
                [
                    QueueUpdate(
                        x.id, QueueState.DEFERRED, 3, 9000.0, delay_warned=True, report="delayed"
                    )
                ]
            )
            await store.settle_reports([x.id])
            (x2,) = (await store.get_queue_item("Q1")).recipients
            assert (x2.state, x2.delay_warned, x2.report) == (QueueState.DEFERRED, True, None)
            # report None keeps an owed report; a new one replaces it
            await store.record_queue_results(
                [
                    QueueUpdate(
                        x.id, QueueState.DEFERRED, 4, 9500.0, delay_warned=True, report="delayed"
                    )
                ]
            )
            await store.record_queue_results(
                [QueueUpdate(x.id, QueueState.DEFERRED, 5, 9900.0, delay_warned=True)]
            )
            (x3,) = (await store.get_queue_item("Q1")).recipients
            assert (x3.attempts, x3.report) == (5, "delayed")
        finally:
            await store.close()

    run(body())


def test_retry_one_and_all(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request("Q1"))
            await store.enqueue(request("Q2", recipients=("w@later.example",)))
            items = {i.queue_id: i for i in await store.list_queue()}
            updates = [
                QueueUpdate(r.id, QueueState.DEFERRED, 1, 8000.0)
                for i in items.values()
                for r in i.recipients
            ]
            await store.record_queue_results(updates)
            assert await store.due_queue_items(2000.0) == []
            assert await store.retry_queue("Q2", 2000.0) == 1
            assert [i.queue_id for i in await store.due_queue_items(2000.0)] == ["Q2"]
            assert await store.retry_queue(None, 2500.0) == 2  # Q2's is already due
            assert len(await store.due_queue_items(2500.0)) == 2
            with pytest.raises(StoreError) as exc:
                await store.retry_queue("nope", 1.0)
            assert exc.value.code is StoreErrorCode.NONEXISTENT
        finally:
            await store.close()

    run(body())


def test_delete_releases_the_blob(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.enqueue(request("Q1"))
            await store.enqueue(request("Q2"))  # same content: one blob, two references
            assert [refs for _, refs in _blob_rows(tmp_path)] == [2]
            await store.delete_queue_item("Q1")
            assert [refs for _, refs in _blob_rows(tmp_path)] == [1]
            await store.delete_queue_item("Q2")
            assert _blob_rows(tmp_path) == []
            with pytest.raises(StoreError) as exc:
                await store.delete_queue_item("Q2")
            assert exc.value.code is StoreErrorCode.NONEXISTENT
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


async def _account(store):
    await store.add_domain("example.org")
    return await store.add_account("example.org", "bob", "bob", "hash", quota=0)


def test_enqueue_with_local_delivery_in_one_transaction(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            bob = await _account(store)
            local = DeliveryRequest(
                raw=b"Return-Path: <a@example.org>\r\n" + RAW,
                targets=[DeliveryTarget(bob.id)],
                internal_date=1000,
            )
            outcome = await store.enqueue(request(), local=local)
            assert outcome is not None and outcome.ok
            inbox = await store.get_mailbox(bob.id, "INBOX")
            assert inbox.messages == 1
            assert await store.get_queue_item("Q1") is not None
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_refused_local_delivery_queues_nothing(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            await store.add_domain("example.org")
            bob = await store.add_account("example.org", "bob", "bob", "hash", quota=10)
            local = DeliveryRequest(raw=RAW, targets=[DeliveryTarget(bob.id)], internal_date=1)
            outcome = await store.enqueue(request(), local=local)
            assert outcome is not None
            assert outcome.errors[0].code is StoreErrorCode.TOOBIG
            assert await store.list_queue() == []
            assert await store.check_integrity() == []
        finally:
            await store.close()
        assert _blob_rows(tmp_path) == []

    run(body())


def test_queue_and_mailbox_share_a_blob(tmp_path):
    async def body():
        store = await _open(tmp_path)
        try:
            bob = await _account(store)
            local = DeliveryRequest(raw=RAW, targets=[DeliveryTarget(bob.id)], internal_date=1)
            await store.enqueue(request(), local=local)
            assert [refs for _, refs in _blob_rows(tmp_path)] == [2]
            await store.delete_queue_item("Q1")
            assert [refs for _, refs in _blob_rows(tmp_path)] == [1]
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def _indexed(path) -> list[int]:
    db = sqlite3.connect(path / "mail.db")
    try:
        return [row[0] for row in db.execute("SELECT indexed FROM blobs ORDER BY id")]
    finally:
        db.close()


def test_queue_only_blobs_are_not_indexed_until_a_mailbox_holds_them(tmp_path):
    """Nobody searches the queue: its blobs skip the full-text indexer (and deleting them
    touches no index); delivering the same content to a mailbox makes it indexable."""

    async def body():
        store = await _open(tmp_path)
        try:
            bob = await _account(store)
            await store.enqueue(request("Q1"))
            assert _indexed(tmp_path) == [QUEUE_ONLY]
            assert await store.index_pending() == 0
            await store.deliver(DeliveryRequest(RAW, [DeliveryTarget(bob.id)], 1))
            assert _indexed(tmp_path) == [0]  # the same blob, now a mailbox message
            assert await store.index_pending() == 1
            inbox = await store.get_mailbox(bob.id, "INBOX")
            found, unindexed = await store.text_candidates(inbox.id, "body", "BODY")
            assert (found, unindexed) == ({1}, set())
            await store.delete_queue_item("Q1")
            assert _indexed(tmp_path) == [1]
            await store.enqueue(request("Q2", raw=b"Subject: other\r\n\r\nbye\r\n"))
            await store.delete_queue_item("Q2")  # a queue-only blob goes without an index row
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_queue_survives_close_and_reopen(tmp_path):
    async def body():
        store = await _open(tmp_path)
        await store.enqueue(request())
        x, _ = (await store.get_queue_item("Q1")).recipients
        await store.record_queue_results([QueueUpdate(x.id, QueueState.DELIVERED, 1, 0.0)])
        await store.close()
        store = await _open(tmp_path)
        try:
            item = await store.get_queue_item("Q1")
            assert item is not None
            assert [r.state for r in item.recipients] == [
                QueueState.DELIVERED, QueueState.PENDING
            ]  # fmt: skip
            assert await store.read_blob(item.blob_id) == RAW
            due = await store.due_queue_items(1000.0)
            assert [(r.address, r.domain) for i in due for r in i.recipients] == [
                ("y@Other.example", "other.example")
            ]
        finally:
            await store.close()

    run(body())


def test_migration_9_from_8(tmp_path):
    path = tmp_path / "mail.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:8]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 8")
        conn.execute("INSERT INTO domains(name, created) VALUES ('example.org', 1)")
    finally:
        conn.close()

    async def body():
        store = open_sqlite(path)
        await store.open()
        try:
            assert [d.name for d in await store.list_domains()] == ["example.org"]
            await store.enqueue(request())
            assert len(await store.list_queue()) == 1
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert len(MIGRATIONS) >= 9
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "queue_recipients_due" in indexes
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM queue_recipients"
                " WHERE state IN ('pending', 'deferred') AND next_attempt <= 5"
            )
        )
        assert "queue_recipients_due" in plan
    finally:
        conn.close()
