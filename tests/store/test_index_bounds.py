"""The full-text indexer cannot hold the one writer thread for long (issue 11: an attacker's
12 MiB of plain-text words made every delivery wait about 40 s while FTS5 indexed it): a
message with more text than MAX_INDEXED_TEXT is not indexed, SEARCH reads it instead, and the
indexed text is written in jobs of at most INDEX_WRITE_TEXT characters."""

from __future__ import annotations

import asyncio
import random

from mailstead.store import DeliveryRequest, DeliveryTarget, open_sqlite
from mailstead.store.sqlite import backend
from mailstead.store.sqlite.backend import INDEX_WRITE_TEXT, MAX_INDEXED_TEXT, SEARCH_READS


def words(characters: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < characters:
        out += b"".join(rng.choice((b"aardvark", b"basil", b"crane", b"dune")) + b" "
                        for _ in range(12)) + b"\r\n"  # fmt: skip
    return bytes(out)


def message(subject: str, body: bytes) -> bytes:
    return b"From: a@example.net\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body


def test_too_much_text_is_read_by_search_and_writes_are_bounded(tmp_path) -> None:
    async def body() -> None:
        store = open_sqlite(tmp_path / "db")
        await store.open()
        try:
            await store.add_domain("example.org")
            account = await store.add_account("example.org", "a", "a", "h")
            box = await store.get_mailbox(account.id, "INBOX")
            # two messages whose text fits (together over one write job), one that does not
            half = INDEX_WRITE_TEXT * 2 // 5
            contents = [
                message("one", words(half, 1) + b"marmalade\r\n"),
                message("two", words(half, 2)),
                message("huge", words(MAX_INDEXED_TEXT + 4096, 3) + b"marmalade\r\n"),
            ]
            for content in contents:
                await store.deliver(DeliveryRequest(content, [DeliveryTarget(account.id)], 0))
            jobs: list[object] = []
            write = store._write

            async def counting_write(job):  # the writer's entry point, counted
                jobs.append(job)
                return await write(job)

            store._write = counting_write
            assert await store.index_pending() == 3
            # the two that fit went in separate jobs (one job holds INDEX_WRITE_TEXT at most)
            assert len(jobs) == 2
            # the huge one is not in the index: SEARCH reads it (in the "unindexed" set)
            assert await store.text_candidates(box.id, "marmalade", "BODY") == ({1}, {3})
            assert await store.text_candidates(box.id, "basil", "BODY") == ({1, 2}, {3})
            assert await store.index_pending() == 0  # not taken again

            def indexed(conn):
                return conn.execute("SELECT id, indexed FROM blobs ORDER BY id").fetchall()

            assert await store._read(indexed) == [(1, 1), (2, 1), (3, SEARCH_READS)]
        finally:
            await store.close()

    asyncio.run(body())


def test_text_size_counts_every_column() -> None:
    text = backend._searchable_text(message("hello", b"body words\r\n"))
    assert backend._text_size(text) == (
        len(text.headers) + len(text.body) + sum(len(f) for f in text.fields)
    )
