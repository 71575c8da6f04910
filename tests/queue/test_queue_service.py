"""The queue service over a real store: what each attempt makes of a recipient (schedule,
expiry, NOTIFY, the null sender), DKIM signing at enqueue time, and the reports (DSNs) to
local and remote senders."""

from __future__ import annotations

import asyncio
import email
import email.policy

import dkim as dkimpy

from mailstead.directory import Directory
from mailstead.mailauth.dkim import generate_key, txt_value
from mailstead.queue.schedule import RetrySchedule
from mailstead.queue.service import (
    Attempt,
    Outcome,
    Outgoing,
    Queue,
    QueueSettings,
    status_of,
    wanted_reports,
)
from mailstead.store import QueueRecipientRequest, QueueState, open_sqlite

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nthe body\r\n"
)
T0 = 1_767_225_600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


async def make_queue(tmp_path, **settings):
    store = open_sqlite(tmp_path / "mail.db")
    await store.open()
    await store.add_domain("example.org")
    await store.add_account("example.org", "alice", "alice", "hash")
    directory = Directory(store)
    clock = Clock()
    values = {"hostname": "mx.example.org", "schedule": RetrySchedule((60.0, 300.0), 3600.0)}
    values.update(settings)
    queue = Queue(store, directory, QueueSettings(**values), clock=clock)
    return store, queue, clock


async def queued(queue, mail_from="alice@example.org", recipients=("bob@remote.test",), **kw):
    requests = [
        r if isinstance(r, QueueRecipientRequest) else QueueRecipientRequest(r) for r in recipients
    ]
    queue_id, _ = await queue.enqueue(MESSAGE, mail_from, requests, **kw)
    item = await queue.store.get_queue_item(queue_id)
    content = await queue.store.read_blob(item.blob_id)
    return Outgoing(item, item.recipients, content)


TEMP = Attempt(Outcome.TEMPORARY, "451 4.3.0 Try again later", "4.3.0")
PERM = Attempt(Outcome.PERMANENT, "550 5.1.1 <bob@remote.test>: no such user", "5.1.1",
               remote_mta="mx.remote.test")  # fmt: skip
OK = Attempt(Outcome.DELIVERED, "250 2.0.0 Ok: queued", "2.0.0", remote_mta="mx.remote.test")


def test_notify_and_status_helpers():
    assert wanted_reports(None) == {"FAILURE", "DELAY"}
    assert wanted_reports(("NEVER",)) == set()
    assert wanted_reports(("SUCCESS",)) == {"SUCCESS"}
    assert status_of("550 5.1.1 no such user", "5.0.0") == "5.1.1"
    assert status_of("421 closing", "4.0.0") == "4.0.0"
    assert status_of("nonsense", "4.4.1") == "4.4.1"


def test_temporary_failures_follow_the_schedule_then_expire(tmp_path):
    async def body():
        store, queue, clock = await make_queue(tmp_path)
        try:
            out = await queued(queue)
            (r,) = out.item.recipients
            u = queue.update(out.item, r, TEMP, clock.now)
            assert (u.state, u.attempts, u.next_attempt, u.report) == (
                QueueState.DEFERRED, 1, T0 + 60, None
            )  # fmt: skip
            await queue.record(out, [TEMP])
            clock.now = T0 + 60
            (r,) = (await store.get_queue_item(out.item.queue_id)).recipients
            assert (r.state, r.attempts, r.last_error, r.status) == (
                QueueState.DEFERRED, 1, "451 4.3.0 Try again later", "4.3.0"
            )  # fmt: skip
            u = queue.update(out.item, r, TEMP, clock.now)
            assert (u.attempts, u.next_attempt) == (2, T0 + 360)
            u = queue.update(out.item, r, TEMP, T0 + 3500)  # the next step passes max_age
            assert (u.state, u.next_attempt) == (QueueState.DEFERRED, T0 + 3600)
            u = queue.update(out.item, r, TEMP, T0 + 3600)
            assert (u.state, u.status, u.report) == (QueueState.FAILED, "4.4.7", "failed")
            assert u.last_error.startswith("451 4.3.0 Try again later (gave up after 2 attempts")
        finally:
            await store.close()

    run(body())


def test_outcomes_and_notify(tmp_path):
    async def body():
        store, queue, _clock = await make_queue(tmp_path)
        try:
            out = await queued(queue, recipients=(
                "a@remote.test",
                QueueRecipientRequest("b@remote.test", ("NEVER",)),
                QueueRecipientRequest("c@remote.test", ("SUCCESS",)),
            ))  # fmt: skip
            a, b, c = out.item.recipients
            assert queue.update(out.item, a, PERM, T0).report == "failed"
            assert queue.update(out.item, b, PERM, T0).report is None  # NOTIFY=NEVER
            assert queue.update(out.item, c, PERM, T0).report is None  # SUCCESS only
            assert queue.update(out.item, a, OK, T0).report is None
            assert queue.update(out.item, c, OK, T0).report == "relayed"
            passed = Attempt(Outcome.DELIVERED, "250 ok", "2.0.0", notify_passed=True)
            assert queue.update(out.item, c, passed, T0).report is None  # the next one reports
            u = queue.update(out.item, a, OK, T0)
            assert (u.state, u.remote_mta, u.last_error) == (
                QueueState.DELIVERED, "mx.remote.test", "250 2.0.0 Ok: queued"
            )  # fmt: skip
            bounce = await queued(queue, mail_from="")
            (r,) = bounce.item.recipients
            assert queue.update(bounce.item, r, PERM, T0).report is None  # never to <>
        finally:
            await store.close()

    run(body())


def test_delay_warning_once_when_configured(tmp_path):
    async def body():
        store, queue, clock = await make_queue(tmp_path, delay_warning=100.0)
        try:
            out = await queued(queue, recipients=(
                "a@remote.test", QueueRecipientRequest("b@remote.test", ("FAILURE",))
            ))  # fmt: skip
            a, b = out.item.recipients
            assert queue.update(out.item, a, TEMP, T0 + 50).report is None  # not yet
            u = queue.update(out.item, a, TEMP, T0 + 150)
            assert (u.report, u.delay_warned) == ("delayed", True)
            assert queue.update(out.item, b, TEMP, T0 + 150).report is None  # no DELAY asked
            await queue.record(out, [TEMP, TEMP])  # at T0: nothing yet
            clock.now = T0 + 150
            item = await store.get_queue_item(out.item.queue_id)
            await queue.record(Outgoing(item, item.recipients, out.content), [TEMP, TEMP])
            item = await store.get_queue_item(out.item.queue_id)
            assert [(r.report, r.delay_warned) for r in item.recipients] == [
                ("delayed", True), (None, False)
            ]  # fmt: skip
            assert await queue.send_reports() == 1
            [dsn] = await _inbox(store, "alice")
            assert b"Subject: Delayed Mail" in dsn and b"Action: delayed" in dsn
            assert b"<a@remote.test>" in dsn and b"<b@remote.test>" not in dsn
            item = await store.get_queue_item(out.item.queue_id)
            again = queue.update(item, item.recipients[0], TEMP, T0 + 250)
            assert (again.report, again.delay_warned) == (None, True)  # one warning only
        finally:
            await store.close()

    run(body())


async def _inbox(store, local: str) -> list[bytes]:
    account = await store.get_account("example.org", local)
    box = await store.get_mailbox(account.id, "INBOX")
    return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]


def test_failure_report_to_a_local_sender_lands_in_the_inbox(tmp_path):
    async def body():
        store, queue, _clock = await make_queue(tmp_path)
        try:
            out = await queued(
                queue,
                recipients=(
                    QueueRecipientRequest("bob@remote.test", None, ("rfc822", "bob+x@remote.test")),
                ),
                envid="env-1",
                ret="FULL",
            )
            await queue.record(out, [PERM])
            assert await queue.send_reports() == 1
            assert await store.get_queue_item(out.item.queue_id) is None  # done, blob released
            [raw] = await _inbox(store, "alice")
            assert raw.startswith(b"Return-Path: <>\r\n")
            report = email.message_from_bytes(raw, policy=email.policy.default)
            assert report["Subject"] == "Undelivered Mail Returned to Sender"
            assert report.get_content_type() == "multipart/report"
            text, status, original = report.iter_parts()
            assert "no such user" in text.get_content()
            assert "Original-Envelope-Id: env-1" in str(status)
            assert "Original-Recipient: rfc822; bob+x@remote.test" in str(status)
            assert "Final-Recipient: rfc822; bob@remote.test" in str(status)
            assert "Action: failed" in str(status) and "Status: 5.1.1" in str(status)
            assert "Remote-MTA: dns; mx.remote.test" in str(status)
            assert original.get_content_type() == "message/rfc822"  # RET=FULL
            assert b"the body" in raw
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_failure_report_to_a_remote_sender_is_queued_from_null(tmp_path):
    async def body():
        store, queue, _clock = await make_queue(tmp_path)
        try:
            out = await queued(queue, mail_from="carol@elsewhere.test")
            await queue.record(out, [PERM])
            await queue.send_reports()
            [dsn] = await store.list_queue()
            assert (dsn.mail_from, dsn.origin) == ("", "dsn")
            assert [r.address for r in dsn.recipients] == ["carol@elsewhere.test"]
            raw = await store.read_blob(dsn.blob_id)
            assert b"To: <carol@elsewhere.test>" in raw
            assert b"text/rfc822-headers" in raw and b"the body" not in raw  # RET default
            # the report failing in turn makes no report (its sender is <>)
            (_r,) = dsn.recipients
            await queue.record(Outgoing(dsn, dsn.recipients, raw), [PERM])
            assert await store.owed_reports() == []
            assert await store.list_queue() == []
        finally:
            await store.close()

    run(body())


def test_reports_for_unknown_local_sender_and_null_sender_are_dropped(tmp_path):
    async def body():
        store, queue, _clock = await make_queue(tmp_path)
        try:
            ghost = await queued(queue, mail_from="ghost@example.org")
            await queue.record(ghost, [PERM])
            await queue.send_reports()
            assert await store.list_queue() == []
            assert await _inbox(store, "alice") == []
        finally:
            await store.close()

    run(body())


def test_enqueue_signs_mail_from_a_local_domain(tmp_path):
    async def body():
        store, queue, _clock = await make_queue(tmp_path)
        try:
            pair = generate_key("rsa")
            await store.add_dkim_key("example.org", "sel", "rsa", pair.private_key_pem,
                                     pair.public_key)  # fmt: skip
            signed = await queued(queue)
            unsigned = await queued(queue, sign=False)
            await store.add_domain("other.test")
            foreign = MESSAGE.replace(b"alice@example.org", b"x@foreign.test")
            fid, _ = await queue.enqueue(foreign, "x@foreign.test",
                                         [QueueRecipientRequest("bob@remote.test")])  # fmt: skip
            foreign_item = await store.get_queue_item(fid)
            return (
                signed.content,
                unsigned.content,
                await store.read_blob(foreign_item.blob_id),
                txt_value("rsa", pair.public_key),
            )
        finally:
            await store.close()

    signed, unsigned, foreign, record = run(body())
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert signed.endswith(MESSAGE)
    assert unsigned == MESSAGE and foreign.startswith(b"From: Alice <x@foreign.test>")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.example.org."
        return record.encode("ascii")

    assert dkimpy.DKIM(signed).verify(dnsfunc=dnsfunc)
