"""The queue runner: one task that picks due recipients, groups them by destination domain and
delivers each group through a `Transport`, within a global and a per-destination limit of
concurrent deliveries; and that makes the reports owed to senders.

It wakes when something is queued in this process (:meth:`QueueRunner.wake`), when the
earliest next attempt comes, and at least every ``poll_interval`` seconds, so a ``mailstead
queue retry`` run from another process (the CLI writes the database) is noticed within it.
Recipients being delivered are remembered in memory and not picked again until their outcome
is recorded; after a restart every unfinished recipient is due as its ``next_attempt`` says
(nothing is leased in the database, so nothing waits for a lease to run out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailstead.observability.log import log_event
from mailstead.queue.service import Attempt, Outcome, Outgoing, Queue
from mailstead.queue.transport import Transport
from mailstead.store import QueueItem, QueueRecipient, StoreError

log = logging.getLogger("mailstead.queue.runner")

POLL_INTERVAL = 5.0  # seconds: how soon changes made by other processes are seen
# Recipients not under way read per look at the due index: enough that a destination's
# deliveries find many of its messages even when the queue interleaves many destinations.
DUE_BATCH = 5000
MAX_DUE_ROWS = 20_000  # rows per look in all, those under way included (they are due too)
# RFC 5321 §4.5.3.1.8: a server must take at least 100 recipients per transaction.
MAX_RECIPIENTS_PER_MESSAGE = 100
MESSAGES_PER_DELIVERY = 50  # messages one delivery task takes for its destination
ERROR_BACKOFF = 5.0  # after a store failure
# Looks at the queue come at most this often: deliveries finishing close together share one
# (a look reads thousands of due rows; one per finished delivery cost a third of a drain's CPU)
MIN_LOOK_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class RunnerLimits:
    concurrency: int = 20  # deliveries (connections) at once, in all
    per_destination: int = 2  # deliveries at once to one destination domain
    poll_interval: float = POLL_INTERVAL


class QueueRunner:
    """Runs the queue until stopped. ``clock`` gives Unix time (the store's ``next_attempt``)."""

    def __init__(
        self,
        queue: Queue,
        transport: Transport,
        limits: RunnerLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.limits = limits or RunnerLimits()
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._global = asyncio.Semaphore(self.limits.concurrency)
        self._per_domain: dict[str, int] = {}
        self._in_flight: set[int] = set()  # recipient ids
        # Recipients recorded since the current look at the queue began: its rows may predate
        # their results, and they must not be sent again (a delivered one would go twice).
        self._recorded: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        queue.wake = self.wake

    def wake(self) -> None:
        """Look at the queue now (something was queued, or a delivery finished)."""
        self._wakeup.set()

    @property
    def busy(self) -> int:
        """Deliveries under way."""
        return len(self._tasks)

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace: float = 30.0) -> None:
        """Start nothing new; let deliveries under way finish for up to ``grace`` seconds (a
        message cut short is sent again later), then cancel them."""
        self._stopping = True
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_look = -MIN_LOOK_INTERVAL
        while not self._stopping:
            pause = last_look + MIN_LOOK_INTERVAL - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)  # more wake-ups may come meanwhile: one look for all
            last_look = loop.time()
            self._wakeup.clear()
            delay = self.limits.poll_interval
            try:
                await self.queue.send_reports()
                delay = min(delay, await self._start_due())
            except StoreError as exc:
                log_event(log, "queue.runner_error", logging.ERROR, error=str(exc))
                delay = ERROR_BACKOFF
            except Exception:
                log.exception("queue run failed")
                delay = ERROR_BACKOFF
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._wakeup.wait()

    async def run_once(self) -> None:
        """One look at the queue: reports, then deliveries started (tests await them with
        :meth:`idle`)."""
        await self.queue.send_reports()
        await self._start_due()

    async def idle(self) -> None:
        """Wait until no delivery is under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _start_due(self) -> float:
        """Start deliveries for what is due; returns the seconds until the next look."""
        self._recorded = set()
        now = self.clock()
        limit = min(DUE_BATCH + len(self._in_flight), MAX_DUE_ROWS)
        items = await self.queue.store.due_queue_items(now, limit)
        # per destination, the (message, recipients) it can start now; a destination without
        # a free delivery is looked at again when one of its deliveries finishes
        wanted: dict[str, list[tuple[QueueItem, tuple[QueueRecipient, ...]]]] = {}
        for item in items:
            busy = self._in_flight, self._recorded
            fresh = [r for r in item.recipients if not any(r.id in ids for ids in busy)]
            by_domain: dict[str, list[QueueRecipient]] = {}
            for r in fresh:
                by_domain.setdefault(r.domain, []).append(r)
            for domain, recipients in by_domain.items():
                free = self.limits.per_destination - self._per_domain.get(domain, 0)
                chunks = wanted.setdefault(domain, [])
                for i in range(0, len(recipients), MAX_RECIPIENTS_PER_MESSAGE):
                    if len(chunks) >= free * MESSAGES_PER_DELIVERY:
                        break  # the rest waits for the next look
                    chunks.append((item, tuple(recipients[i : i + MAX_RECIPIENTS_PER_MESSAGE])))
        # the contents in one read (a message removed meanwhile is left out)
        blob_ids = [item.blob_id for chunks in wanted.values() for item, _ in chunks]
        contents = await self.queue.store.read_blobs(blob_ids) if blob_ids else {}
        for domain, chunks in wanted.items():
            outgoing = [
                Outgoing(item, chunk, contents[item.blob_id])
                for item, chunk in chunks
                if item.blob_id in contents
            ]
            free = self.limits.per_destination - self._per_domain.get(domain, 0)
            for batch in _split(outgoing, free):
                self._launch(domain, batch)
        upcoming = await self.queue.store.next_queue_attempt()
        if upcoming is None:
            return self.limits.poll_interval
        wait = upcoming - self.clock()
        if wait <= 0:  # only recipients under way are due: their results wake us
            return self.limits.poll_interval
        return min(wait, self.limits.poll_interval)

    def _launch(self, domain: str, batch: list[Outgoing]) -> None:
        for outgoing in batch:
            self._in_flight.update(r.id for r in outgoing.recipients)
        self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
        task = asyncio.get_running_loop().create_task(self._deliver(domain, batch))
        self._tasks.add(task)

    async def _deliver(self, domain: str, batch: list[Outgoing]) -> None:
        recorded: set[int] = set()

        async def record(outgoing: Outgoing, attempts: Sequence[Attempt]) -> None:
            await self.queue.record(outgoing, attempts)
            recorded.add(id(outgoing))
            self._in_flight.difference_update(r.id for r in outgoing.recipients)
            self._recorded.update(r.id for r in outgoing.recipients)

        try:
            async with self._global:
                try:
                    await self.transport.deliver(domain, batch, record)
                except Exception as exc:
                    log.exception("delivery to %s failed", domain)
                    failed = Attempt(Outcome.TEMPORARY, f"451 4.3.0 Local error: {exc}", "4.3.0")
                    with contextlib.suppress(Exception):  # the store is down: retried later
                        for outgoing in batch:
                            if id(outgoing) not in recorded:
                                await record(outgoing, [failed] * len(outgoing.recipients))
        finally:
            for outgoing in batch:
                if id(outgoing) not in recorded:  # cancelled: tried again after a restart
                    self._in_flight.difference_update(r.id for r in outgoing.recipients)
            count = self._per_domain.get(domain, 1) - 1
            if count <= 0:
                self._per_domain.pop(domain, None)
            else:
                self._per_domain[domain] = count
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            self.wake()


def _split(outgoing: list[Outgoing], parts: int) -> list[list[Outgoing]]:
    """At most ``parts`` batches (of at most MESSAGES_PER_DELIVERY messages each, the rest
    waiting for the next look), messages spread evenly."""
    if parts <= 0 or not outgoing:
        return []
    taken = outgoing[: parts * MESSAGES_PER_DELIVERY]
    count = min(parts, len(taken))
    return [taken[i::count] for i in range(count)]

