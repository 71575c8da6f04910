"""Group commit: one thread owns the SQLite write connection and commits batches of jobs.

Every write is a job (a function of the connection). The writer takes all the jobs queued while
the previous commit was being fsync'd, runs each inside its own SAVEPOINT (so one failing job does
not spoil the others), and commits them in one transaction: one WAL fsync for the whole batch.
Callers' futures are resolved only after COMMIT returned, so "done" means "durable".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailstead.store.errors import StoreError, StoreErrorCode

log = logging.getLogger(__name__)

Job = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Pending:
    job: Job
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    # for synchronous callers (the CLI runs without a loop in the writer's terms)
    done: threading.Event | None = None
    result: Any = None
    error: BaseException | None = None
    attempts: int = field(default=0)
    durable: bool = True  # False: committed without an fsync of its own (see submit)


_STOP = object()
# Checkpoints (copying the WAL back into the database file, RFC-free SQLite housekeeping) run
# after a batch's callers have their results, never inside a COMMIT: when the writer has
# nothing waiting and the last one is this old, or after this many commits in any case.
CHECKPOINT_IDLE_AFTER = 1.0  # seconds
CHECKPOINT_EVERY = 64  # commits


class GroupCommitWriter:
    """A single writer thread with batched, durable commits."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_batch: int = 512,
        max_delay: float = 0.0,
    ) -> None:
        self._connect = connect
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.commits = 0  # number of COMMITs (each durable one a WAL fsync)
        self._synchronous_full = True  # the connection's mode (backend sets FULL)
        self.jobs = 0  # number of jobs committed
        self.checkpoints = 0
        self._uncheckpointed = 0  # commits since the last checkpoint
        self._checkpointed_at = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    async def submit(self, job: Job, *, durable: bool = True) -> Any:
        """Run ``job`` in the next batch; return its result once the batch is committed: on
        disk (fsync'd) when ``durable``. A batch of only non-durable jobs (flag changes) is
        committed without its fsync (WAL, synchronous=NORMAL): safe from a crash of the
        process, made durable by the next fsync'd commit, lost only by a power failure before
        it, as Dovecot treats flag changes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Pending(job, loop, future, durable=durable))
        return await future

    def submit_sync(self, job: Job) -> Any:
        """The blocking twin of :meth:`submit`, for threads without an event loop."""
        pending = _Pending(job, None, None, done=threading.Event())
        self._queue.put(pending)
        assert pending.done is not None
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._started.set()
            return
        # SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages and
        # delays that commit's callers (an APPEND, a 250 after DATA) by the whole copy and its
        # fsync; _maybe_checkpoint does it after they have their answer instead.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._started.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_Pending] = [first]
                if self._max_delay > 0:
                    time.sleep(self._max_delay)
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
                if stop:
                    return
                self._maybe_checkpoint(conn)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        durable = any(p.durable for p in batch)
        if durable != self._synchronous_full:
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._synchronous_full = durable
        try:
            conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                conn.execute("SAVEPOINT job")
                try:
                    pending.result = pending.job(conn)
                except BaseException as exc:  # the job's own failure, reported to its caller
                    conn.execute("ROLLBACK TO job")
                    pending.error = exc
                conn.execute("RELEASE job")
            conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsync'd here
            self.commits += 1
            self.jobs += len(batch)
        except sqlite3.Error as exc:
            log.exception("store commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreError(StoreErrorCode.UNAVAILABLE, f"commit failed: {exc}")
            for pending in batch:
                pending.result = None
                pending.error = failure
        self._resolve(batch)

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> None:
        """A passive checkpoint (it never waits for readers) when the writer is idle and the
        last one is CHECKPOINT_IDLE_AFTER old, or after CHECKPOINT_EVERY commits anyway, so the
        WAL stays small under sustained load too."""
        self._uncheckpointed += 1
        idle = self._queue.empty()
        due = time.monotonic() - self._checkpointed_at >= CHECKPOINT_IDLE_AFTER
        if not (idle and due) and self._uncheckpointed < CHECKPOINT_EVERY:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            log.exception("store checkpoint failed")  # tried again after the next commits
        self.checkpoints += 1
        self._uncheckpointed = 0
        self._checkpointed_at = time.monotonic()

    @staticmethod
    def _resolve(batch: list[_Pending]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for pending in batch:
            if pending.loop is None:
                assert pending.done is not None
                pending.done.set()
            else:
                by_loop.setdefault(pending.loop, []).append(pending)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed while we committed
                loop.call_soon_threadsafe(_set_results, items)


def _set_results(items: list[_Pending]) -> None:
    for pending in items:
        future = pending.future
        assert future is not None
        if future.done():  # the caller was cancelled; the write is durable regardless
            continue
        if pending.error is not None:
            future.set_exception(pending.error)
        else:
            future.set_result(pending.result)
