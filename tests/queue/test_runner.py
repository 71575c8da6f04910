"""The queue runner with a fake transport over a real store: grouping per destination, a
record per message before the next one, concurrency limits, retries by the schedule, reports,
and a stop that lets deliveries finish."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from mailstead.directory import Directory
from mailstead.queue.runner import QueueRunner, RunnerLimits
from mailstead.queue.schedule import RetrySchedule
from mailstead.queue.service import Attempt, Outcome, Queue, QueueSettings
from mailstead.store import QueueRecipientRequest, QueueState, open_sqlite

MESSAGE = b"From: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
DEADLINE = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """Answers each recipient from ``replies`` (address -> Outcome, default delivered); with
    ``gate`` set, each delivery waits for it, so tests can look at what is under way."""

    def __init__(self, replies=None, gate: asyncio.Event | None = None) -> None:
        self.replies = replies or {}
        self.gate = gate
        self.calls: list[tuple[str, list[str]]] = []
        self.running: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.peak_total = 0

    async def deliver(self, domain, batch, record):
        self.running[domain] += 1
        self.peak[domain] = max(self.peak[domain], self.running[domain])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        try:
            if self.gate is not None:
                await self.gate.wait()
            for out in batch:
                self.calls.append((domain, [r.address for r in out.recipients]))
                attempts = []
                for r in out.recipients:
                    outcome = self.replies.get(r.address, Outcome.DELIVERED)
                    code = {Outcome.DELIVERED: "250 2.0.0 ok", Outcome.TEMPORARY: "451 4.3.0 no",
                            Outcome.PERMANENT: "550 5.1.1 no"}[outcome]  # fmt: skip
                    attempts.append(Attempt(outcome, code, code.split()[1], "mx." + domain))
                await record(out, attempts)
        finally:
            self.running[domain] -= 1


async def setup(tmp_path, transport, limits=None):
    store = open_sqlite(tmp_path / "mail.db")
    await store.open()
    await store.add_domain("example.org")
    await store.add_account("example.org", "alice", "alice", "hash")
    clock = Clock()
    settings = QueueSettings("mx.example.org", RetrySchedule((60.0,), 600.0))
    queue = Queue(store, Directory(store), settings, clock=clock)
    runner = QueueRunner(queue, transport, limits, clock=clock)
    return store, queue, runner, clock


async def enqueue(queue, *addresses, mail_from="alice@example.org"):
    queue_id, _ = await queue.enqueue(
        MESSAGE, mail_from, [QueueRecipientRequest(a) for a in addresses], sign=False
    )
    return queue_id


async def until(predicate, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_groups_per_destination_and_records_each_message(tmp_path):
    async def body():
        transport = FakeTransport({"b@two.test": Outcome.TEMPORARY})
        store, queue, runner, _ = await setup(tmp_path, transport)
        try:
            q1 = await enqueue(queue, "a@one.test", "b@two.test", "c@one.test")
            q2 = await enqueue(queue, "d@one.test")
            await runner.run_once()
            await runner.idle()
            assert sorted(transport.calls) == [
                ("one.test", ["a@one.test", "c@one.test"]),
                ("one.test", ["d@one.test"]),
                ("two.test", ["b@two.test"]),
            ]
            assert await store.get_queue_item(q2) is None  # delivered: gone
            item = await store.get_queue_item(q1)
            assert [(r.address, r.state) for r in item.recipients] == [
                ("a@one.test", QueueState.DELIVERED),
                ("b@two.test", QueueState.DEFERRED),
                ("c@one.test", QueueState.DELIVERED),
            ]
            # nothing due before the retry
            transport.calls.clear()
            await runner.run_once()
            await runner.idle()
            assert transport.calls == []
        finally:
            await store.close()

    asyncio.run(body())


def test_retry_after_the_schedule_then_delivered(tmp_path):
    async def body():
        transport = FakeTransport({"b@two.test": Outcome.TEMPORARY})
        store, queue, runner, clock = await setup(tmp_path, transport)
        try:
            q1 = await enqueue(queue, "b@two.test")
            await runner.run_once()
            await runner.idle()
            clock.now += 60
            transport.replies.clear()
            await runner.run_once()
            await runner.idle()
            assert transport.calls == [("two.test", ["b@two.test"])] * 2
            assert await store.get_queue_item(q1) is None
        finally:
            await store.close()

    asyncio.run(body())


def test_limits_per_destination_and_in_all(tmp_path):
    async def body():
        gate = asyncio.Event()
        transport = FakeTransport(gate=gate)
        limits = RunnerLimits(concurrency=3, per_destination=2)
        store, queue, runner, _ = await setup(tmp_path, transport, limits)
        try:
            for i in range(6):
                await enqueue(queue, f"u{i}@one.test")
                await enqueue(queue, f"u{i}@two.test")
            await runner.run_once()
            assert runner.busy == 4  # two per destination started
            await runner.run_once()  # under way: not picked again, no more started
            assert runner.busy == 4
            gate.set()
            await runner.idle()
            assert max(transport.peak.values()) == 2  # per destination
            assert transport.peak_total == 3  # the fourth waited for the global limit
            assert sorted(a for _, rcpt in transport.calls for a in rcpt) == sorted(
                [f"u{i}@one.test" for i in range(6)] + [f"u{i}@two.test" for i in range(6)]
            )
            assert await store.list_queue() == []
        finally:
            await store.close()

    asyncio.run(body())


def test_running_task_delivers_what_is_queued_and_makes_reports(tmp_path):
    async def body():
        transport = FakeTransport({"x@two.test": Outcome.PERMANENT})
        store, queue, runner, _ = await setup(tmp_path, transport)
        runner.start()
        try:
            await enqueue(queue, "x@two.test")

            async def bounced():
                account = await store.get_account("example.org", "alice")
                box = await store.get_mailbox(account.id, "INBOX")
                return box.messages == 1

            await until(bounced, "the failure report in alice's INBOX")
            await until(lambda: _empty(store), "an empty queue")
        finally:
            await runner.stop(grace=5)
            await store.close()

    asyncio.run(body())


async def _empty(store) -> bool:
    return await store.list_queue() == []


def test_stop_lets_deliveries_under_way_finish(tmp_path):
    async def body():
        gate = asyncio.Event()
        transport = FakeTransport(gate=gate)
        store, queue, runner, _ = await setup(tmp_path, transport)
        try:
            q1 = await enqueue(queue, "a@one.test")
            await runner.run_once()
            stopping = asyncio.ensure_future(runner.stop(grace=5))
            await asyncio.sleep(0)
            gate.set()
            await stopping
            assert await store.get_queue_item(q1) is None
            # cut short after the grace: nothing recorded, due again after a restart
            gate.clear()
            q2 = await enqueue(queue, "b@one.test")
            runner2 = QueueRunner(queue, transport, clock=runner.clock)
            await runner2.run_once()
            await runner2.stop(grace=0.05)
            item = await store.get_queue_item(q2)
            assert [r.state for r in item.recipients] == [QueueState.PENDING]
            assert len(await store.due_queue_items(runner.clock())) == 1
        finally:
            await store.close()

    asyncio.run(body())


def test_a_result_recorded_while_a_look_reads_the_queue_is_not_sent_again(tmp_path):
    async def body():
        gate = asyncio.Event()
        transport = FakeTransport({"b@two.test": Outcome.TEMPORARY}, gate=gate)
        store, queue, runner, _ = await setup(tmp_path, transport)
        try:
            await enqueue(queue, "a@one.test", "b@two.test")
            await runner.run_once()  # both deliveries start and wait at the gate
            read_due = store.due_queue_items

            async def racing(now, limit):
                rows = await read_due(now, limit)  # both recipients still pending here
                gate.set()
                await runner.idle()  # a delivered, b deferred, before the look goes on
                return rows

            store.due_queue_items = racing
            await runner.run_once()
            await runner.idle()
            assert sorted(transport.calls) == [("one.test", ["a@one.test"]),
                                               ("two.test", ["b@two.test"])]  # fmt: skip
        finally:
            await store.close()

    asyncio.run(body())
