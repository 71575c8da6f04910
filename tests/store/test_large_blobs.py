"""Large contents: stored in pieces beside their blob row, read back exactly, freed with it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import sqlite3
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from mailstead.store import (
    DeliveryRequest,
    DeliveryTarget,
    FlagOp,
    QueueRecipientRequest,
    QueueRequest,
    StoreError,
    StoreErrorCode,
    open_sqlite,
)
from mailstead.store.sqlite.backend import CHUNKED, LARGE_BLOB, SEARCH_READS, SQLiteStore

HEAD = b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: big\r\n\r\n"


def _compressible(size: int) -> bytes:
    line = b"All work and no play makes a large message.\r\n"
    return HEAD + line * (size // len(line))


def _incompressible(size: int) -> bytes:
    return HEAD + random.Random(7).randbytes(size)


def _base64(size: int) -> bytes:
    """Compresses to about 75%: several rows of zstd."""
    return HEAD + base64.encodebytes(random.Random(5).randbytes(size * 3 // 4))


async def _store(path: Path) -> tuple[SQLiteStore, int]:
    store = open_sqlite(path)
    assert isinstance(store, SQLiteStore)
    await store.open()
    await store.add_domain("example.org")
    account = await store.add_account("example.org", "alice", "alice", "x")
    return store, account.id


def test_large_contents_round_trip_in_pieces(tmp_path):
    """Both codecs: the row keeps no content, blob_chunks holds it, every read path gives the
    same octets back, a second delivery shares the blob, and expunging frees the pieces."""

    async def body() -> None:
        store, account = await _store(tmp_path / "db")
        try:
            contents = [_compressible(3 * LARGE_BLOB), _incompressible(3 * LARGE_BLOB + 5)]
            for raw in [*contents, contents[0]]:
                request = DeliveryRequest(
                    raw=raw, targets=[DeliveryTarget(account, "INBOX")], internal_date=1
                )
                assert (await store.deliver(request)).ok
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox is not None
            messages = await store.list_messages(inbox.id)
            assert [m.size for m in messages] == [len(c) for c in [*contents, contents[0]]]
            for message, raw in zip(messages, [*contents, contents[0]], strict=True):
                assert await store.read_blob(message.blob_id) == raw
                for limit in (0, len(HEAD), LARGE_BLOB + 3, len(raw) + 10):
                    assert await store.read_blob_head(message.blob_id, limit) == raw[:limit]
            blobs = await store.read_blobs([m.blob_id for m in messages])
            assert sorted(hashlib.sha256(b).digest() for b in blobs.values()) == sorted(
                hashlib.sha256(c).digest() for c in contents
            )
            while await store.index_pending():
                pass
            assert await store.check_integrity() == []
            db = sqlite3.connect(tmp_path / "db")
            rows = db.execute("SELECT codec, length(data), refs, indexed FROM blobs").fetchall()
            # 3 MiB of text each: more than the indexer takes, so SEARCH reads them
            assert sorted(rows) == [
                (CHUNKED, 0, 1, SEARCH_READS), (1 | CHUNKED, 0, 2, SEARCH_READS)
            ]
            assert db.execute("SELECT count(*) FROM blob_chunks").fetchone()[0] >= 4
            uids = [m.uid for m in messages]
            await store.store_flags(inbox.id, uids, FlagOp.ADD, frozenset({"\\Deleted"}))
            await store.expunge(inbox.id, uids)
            assert db.execute("SELECT count(*) FROM blobs").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM blob_chunks").fetchone() == (0,)
            db.close()
        finally:
            await store.close()

    asyncio.run(body())


def test_large_queued_message_round_trips(tmp_path):
    async def body() -> None:
        store, account = await _store(tmp_path / "db")
        try:
            raw = _compressible(2 * LARGE_BLOB)
            request = QueueRequest(
                queue_id="Q1",
                raw=raw,
                mail_from="bob@example.net",
                recipients=[QueueRecipientRequest("carol@example.com")],
                queued_at=time.time(),
            )
            local = DeliveryRequest(
                raw=b"Return-Path: <bob@example.net>\r\n" + raw,
                targets=[DeliveryTarget(account, "INBOX")],
                internal_date=1,
            )
            outcome = await store.enqueue(request, local=local)
            assert outcome is not None and outcome.ok
            item = await store.get_queue_item("Q1")
            assert item is not None
            assert await store.read_blob(item.blob_id) == raw
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox is not None
            [message] = await store.list_messages(inbox.id)
            assert await store.read_blob(message.blob_id) == local.raw
            await store.delete_queue_item("Q1")
            db = sqlite3.connect(tmp_path / "db")
            # the queue's copy and its pieces are gone, the mailbox's stays whole
            assert db.execute("SELECT count(*) FROM blobs").fetchone() == (1,)
            chunks = db.execute("SELECT DISTINCT blob_id FROM blob_chunks").fetchall()
            assert chunks == [(message.blob_id,)]
            db.close()
            assert await store.read_blob(message.blob_id) == local.raw
        finally:
            await store.close()

    asyncio.run(body())


def test_a_blob_streams_in_pieces(tmp_path):
    """stream_blob gives back the octets of every kind of blob (small, chunked raw, chunked
    zstd) in pieces no larger than asked, and can be left early."""

    async def body() -> None:
        store, account = await _store(tmp_path / "db")
        try:
            contents = [
                HEAD + b"small\r\n",
                _compressible(3 * LARGE_BLOB + 11),
                _incompressible(2 * LARGE_BLOB + 5),
            ]
            for raw in contents:
                request = DeliveryRequest(
                    raw=raw, targets=[DeliveryTarget(account, "INBOX")], internal_date=1
                )
                assert (await store.deliver(request)).ok
            inbox = await store.get_mailbox(account, "INBOX")
            assert inbox is not None
            messages = await store.list_messages(inbox.id)
            for message, raw in zip(messages, contents, strict=True):
                for piece in (7 if len(raw) < 100 else 100_003, 1 << 20, 8 << 20):
                    pieces = [p async for p in store.stream_blob(message.blob_id, piece)]
                    assert all(0 < len(p) <= piece for p in pieces)
                    assert b"".join(pieces) == raw
                stream = store.stream_blob(message.blob_id, 1000)
                assert await anext(stream) == raw[:1000]
                await stream.aclose()
            with pytest.raises(StoreError) as caught:
                await anext(store.stream_blob(10_000))
            assert caught.value.code is StoreErrorCode.NONEXISTENT
        finally:
            await store.close()

    asyncio.run(body())


def test_a_blob_removed_while_streamed_ends_the_stream(tmp_path):
    """Expunged in the middle of a stream (and its id given to a new blob): the stream fails
    with NONEXISTENT instead of going on with the other message's octets."""

    async def body() -> None:
        store, account = await _store(tmp_path / "db")
        try:
            # stored compressed in 3 rows, and stored as it is
            for raw, codec in ((_base64(3 * LARGE_BLOB), 1 | CHUNKED),
                               (_incompressible(3 * LARGE_BLOB), CHUNKED)):  # fmt: skip
                request = DeliveryRequest(
                    raw=raw, targets=[DeliveryTarget(account, "INBOX")], internal_date=1
                )
                assert (await store.deliver(request)).ok
                inbox = await store.get_mailbox(account, "INBOX")
                assert inbox is not None
                [message] = await store.list_messages(inbox.id)
                db = sqlite3.connect(tmp_path / "db")
                stored = db.execute(
                    "SELECT codec, (SELECT count(*) FROM blob_chunks WHERE blob_id = id)"
                    " FROM blobs WHERE id = ?",
                    (message.blob_id,),
                ).fetchone()
                db.close()
                assert stored[0] == codec and stored[1] >= 3
                stream = store.stream_blob(message.blob_id, 64 << 10)
                assert await anext(stream) == raw[: 64 << 10]
                await store.store_flags(
                    inbox.id, [message.uid], FlagOp.ADD, frozenset({"\\Deleted"})
                )
                await store.expunge(inbox.id, [message.uid])
                other = _incompressible(3 * LARGE_BLOB + 1)
                request = DeliveryRequest(
                    raw=other, targets=[DeliveryTarget(account, "INBOX")], internal_date=1
                )
                assert (await store.deliver(request)).ok
                [replacement] = await store.list_messages(inbox.id)
                assert replacement.blob_id == message.blob_id  # SQLite gave the id again
                got = bytearray(raw[: 64 << 10])

                async def drain(
                    stream: AsyncGenerator[bytes, None] = stream, got: bytearray = got
                ) -> None:
                    async for piece in stream:
                        got.extend(piece)

                with pytest.raises(StoreError) as caught:
                    await drain()
                assert caught.value.code is StoreErrorCode.NONEXISTENT
                assert bytes(got) == raw[: len(got)]  # nothing of the other message
                await store.store_flags(
                    inbox.id, [replacement.uid], FlagOp.ADD, frozenset({"\\Deleted"})
                )
                await store.expunge(inbox.id, [replacement.uid])
        finally:
            await store.close()

    asyncio.run(body())
