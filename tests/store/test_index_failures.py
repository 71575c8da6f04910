"""The full-text indexer sets aside a message whose text cannot be extracted and goes on with
the rest of the batch (issue 11: one poisoned message used to stop the index for everyone)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

from mailstead.message.text import Searchable
from mailstead.store import DeliveryRequest, DeliveryTarget, open_sqlite
from mailstead.store.sqlite import backend
from mailstead.store.sqlite.backend import INDEX_RETRY_FIRST, INDEX_RETRY_MAX

POISON = b"X-Poison: yes\r\n"


def message(n: int, poisoned: bool = False) -> bytes:
    head = POISON if poisoned else b""
    return head + b"From: a@example.net\r\nSubject: note %d\r\n\r\nmarmalade %d\r\n" % (n, n)


def failing_extractor(raw: bytes) -> Searchable:
    """The real extraction, except that it fails on the poisoned message."""
    if raw.startswith(POISON):
        raise ValueError("injected decode failure")
    return backend._searchable_text(raw)


def test_a_failing_message_does_not_block_the_batch(tmp_path, caplog, monkeypatch) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(backend.time, "time", lambda: clock[0])

    async def body() -> None:
        store = open_sqlite(tmp_path / "db")
        await store.open()
        try:
            await store.add_domain("example.org")
            account = await store.add_account("example.org", "a", "a", "h")
            box = await store.get_mailbox(account.id, "INBOX")
            store.extract_text = failing_extractor
            for n, poisoned in ((1, False), (2, True), (3, False)):
                await store.deliver(
                    DeliveryRequest(message(n, poisoned), [DeliveryTarget(account.id)], 0)
                )
            with caplog.at_level(logging.WARNING, logger="mailstead.store"):
                assert await store.index_pending() == 3
            # the others are indexed; the poisoned one is left for SEARCH to read directly
            assert await store.text_candidates(box.id, "marmalade", "BODY") == ({1, 3}, {2})
            failed = [r for r in caplog.records if r.getMessage() == "store.index_failed"]
            assert len(failed) == 1
            assert failed[0].fields == {"blob": 2, "failures": 1, "retry_in": INDEX_RETRY_FIRST}
            # set aside: not taken again before its time (the batch loop ends)
            assert await store.index_pending() == 0
            # retried later, with a growing delay while it keeps failing
            clock[0] += INDEX_RETRY_FIRST
            assert await store.index_pending() == 1
            assert await store.index_pending() == 0
            clock[0] += INDEX_RETRY_FIRST
            assert await store.index_pending() == 0  # now waits twice as long
            clock[0] += INDEX_RETRY_FIRST
            # once extraction works again, the message is indexed
            store.extract_text = backend._searchable_text
            assert await store.index_pending() == 1
            assert await store.text_candidates(box.id, "marmalade 2", "BODY") == ({2}, set())
        finally:
            await store.close()
        with sqlite3.connect(tmp_path / "db") as conn:
            assert conn.execute("SELECT index_failures FROM blobs WHERE id = 2").fetchone() == (2,)

    asyncio.run(body())


def test_the_retry_delay_is_capped() -> None:
    assert INDEX_RETRY_FIRST < INDEX_RETRY_MAX
    assert min(INDEX_RETRY_FIRST << 20, INDEX_RETRY_MAX) == INDEX_RETRY_MAX


@pytest.mark.parametrize("value", [b"=?x\x00y?q?a?=", b"=?hex?q?a?=", b"=?idna?q?=FF?="])
def test_the_reported_poison_is_indexed(tmp_path, value: bytes) -> None:
    """The encoded words that used to raise are indexed like any message now."""

    async def body() -> None:
        store = open_sqlite(tmp_path / "db")
        await store.open()
        try:
            await store.add_domain("example.org")
            account = await store.add_account("example.org", "a", "a", "h")
            box = await store.get_mailbox(account.id, "INBOX")
            raw = b"Subject: " + value + b"\r\n\r\nquince\r\n"
            await store.deliver(DeliveryRequest(raw, [DeliveryTarget(account.id)], 0))
            assert await store.index_pending() == 1
            assert await store.text_candidates(box.id, "quince", "BODY") == ({1}, set())
        finally:
            await store.close()

    asyncio.run(body())
