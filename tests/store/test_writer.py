"""The group-commit writer: durable batches are fsync'd, flag-only batches are not."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from mailstead.store.sqlite.writer import GroupCommitWriter


def _connect(path: Path):
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    return connect


def _mode(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])  # 1 NORMAL, 2 FULL


def test_batches_without_a_durable_job_skip_the_fsync(tmp_path):
    writer = GroupCommitWriter(_connect(tmp_path / "db"))
    writer.start()

    async def main() -> tuple[int, int, int, list[int]]:
        light = await writer.submit(_mode, durable=False)
        heavy = await writer.submit(_mode)
        light_again = await writer.submit(_mode, durable=False)
        # a batch with any durable job is committed durably, for all of its jobs: hold the
        # writer in one job while both are queued, so that they make the next batch together
        release = threading.Event()
        started = threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait(10)

        held = asyncio.ensure_future(writer.submit(hold, durable=False))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        both = asyncio.gather(writer.submit(_mode, durable=False), writer.submit(_mode))
        await asyncio.sleep(0)  # both queued
        release.set()
        await held
        return light, heavy, light_again, await both

    try:
        light, heavy, light_again, mixed = asyncio.run(main())
    finally:
        writer.stop()
    assert (light, heavy, light_again) == (1, 2, 1)
    assert mixed == [2, 2]


def test_checkpoints_run_between_batches_not_inside_commits(tmp_path):
    """SQLite's own checkpoint is off on the writer (it would run inside a COMMIT); the writer
    checkpoints after CHECKPOINT_EVERY commits under load, so the WAL does not grow without end."""
    from mailstead.store.sqlite import writer as writer_module

    path = tmp_path / "db"
    writer = GroupCommitWriter(_connect(path))
    writer.start()

    def setup(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE t(x BLOB)")
        return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (randomblob(8192))")

    async def main() -> int:
        autocheckpoint = await writer.submit(setup)
        for _ in range(3 * writer_module.CHECKPOINT_EVERY):
            await writer.submit(insert, durable=False)
        return autocheckpoint

    try:
        assert asyncio.run(main()) == 0
        assert writer.checkpoints >= 3
    finally:
        writer.stop()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    assert rows == 3 * writer_module.CHECKPOINT_EVERY
