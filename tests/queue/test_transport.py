"""The SMTP transport against a FakeResolver and a scripted ``send``: routing failures, MX
failover (connection refused, 421 greeting) before any recipient is answered, answers that
stand once a server spoke, a record after every message, the test port."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

from mailstead.outbound.sender import (
    FailureKind,
    MessageResult,
    RecipientResult,
    RecipientStatus,
    SessionFailure,
)
from mailstead.protocols.smtp import Reply
from mailstead.queue.service import Outcome, Outgoing
from mailstead.queue.transport import SmtpTransport, outbound_message, reply_text
from mailstead.store import QueueItem, QueueRecipient, QueueState
from mailstead.testing.dns import FakeResolver

RESOLVER = FakeResolver(
    {
        "remote.test": {"MX": [(10, "mx1.remote.test"), (20, "mx2.remote.test")]},
        "mx1.remote.test": {"A": "127.0.0.2"},
        "mx2.remote.test": {"A": "127.0.0.3"},
        "nullmx.test": {"MX": [(0, ".")]},
    },
    temporary={"MX broken.test"},
)


def recipient(rid: int, address: str, **kw) -> QueueRecipient:
    values = {
        "id": rid, "address": address, "domain": address.rpartition("@")[2],
        "state": QueueState.PENDING, "attempts": 0, "next_attempt": 0.0, "last_attempt": None,
        "last_error": None, "status": None, "remote_mta": None, "notify": None, "orcpt": None,
        "delay_warned": False, "report": None,
    }  # fmt: skip
    values.update(kw)
    return QueueRecipient(**values)


def outgoing(queue_id: str, *addresses: str, **item_kw) -> Outgoing:
    recipients = tuple(recipient(i, a) for i, a in enumerate(addresses, 1))
    values = {
        "queue_id": queue_id, "blob_id": 1, "size": 10, "mail_from": "a@example.org",
        "envid": None, "ret": None, "smtputf8": False, "body": None, "origin": "",
        "queued_at": 0.0, "held": False, "recipients": recipients,
    }  # fmt: skip
    values.update(item_kw)
    return Outgoing(QueueItem(**values), recipients, b"Subject: x\r\n\r\nbody\r\n")


class ScriptedSend:
    """``send`` answering from a script per address: "refuse", "421", or a per-recipient
    list of replies (with "lost" = the connection dropped before the server answered)."""

    def __init__(self, script):
        self.script = script
        self.calls: list[tuple[str, int, list[str]]] = []
        self.log: list[str] = []  # what happened, in order (results and records)

    async def __call__(self, address, port, messages, *, on_result, **kwargs):
        assert kwargs["helo_name"] == "mx.example.org"
        self.calls.append((str(address), port, [r.address for m in messages for r in m.recipients]))
        plan = self.script[str(address)]
        results = []
        for index, message in enumerate(messages):
            if plan == "refuse":
                failure = SessionFailure(FailureKind.CONNECT, f"{address}: Connection refused")
                result = _unsent(message, failure)
            elif plan == "421":
                reply = Reply(421, "4.3.2", "Service shutting down")
                failure = SessionFailure(FailureKind.GREETING_TEMPORARY, "shutting down", reply)
                result = _unsent(message, failure)
            else:
                answers = []
                for r in message.recipients:
                    code = plan.pop(0)
                    status = {2: RecipientStatus.ACCEPTED, 4: RecipientStatus.TEMPORARY,
                              5: RecipientStatus.PERMANENT}[code // 100]  # fmt: skip
                    reply = Reply(code, f"{code // 100}.0.0", "said so")
                    answers.append(RecipientResult(r.address, status, reply))
                result = MessageResult(tuple(answers), None, None, dsn=True)
            self.log.append(f"result {index}")
            await on_result(index, result)
            results.append(result)
        return results


def _unsent(message, failure):
    reply = failure.recipient_reply()
    return MessageResult(
        tuple(
            RecipientResult(r.address, RecipientStatus.TEMPORARY, reply, remote=False)
            for r in message.recipients
        ),
        None,
        failure,
    )


def deliver(transport, domain, batch, log=None):
    recorded = []

    async def record(out, attempts):
        recorded.append((out.item.queue_id, list(attempts)))
        if log is not None:
            log.append(f"record {out.item.queue_id}")

    asyncio.run(transport.deliver(domain, batch, record))
    return recorded


def transport(script, **kw) -> tuple[SmtpTransport, ScriptedSend]:
    send = ScriptedSend(script)
    return SmtpTransport(RESOLVER, helo_name="mx.example.org", send=send, **kw), send


def test_first_mx_refuses_second_takes_it():
    t, send = transport({"127.0.0.2": "refuse", "127.0.0.3": [250, 550]})
    [(qid, attempts)] = deliver(t, "remote.test", [outgoing("Q1", "a@remote.test",
                                                            "b@remote.test")])  # fmt: skip
    assert qid == "Q1"
    assert [(a.outcome, a.reply, a.remote_mta) for a in attempts] == [
        (Outcome.DELIVERED, "250 2.0.0 said so", "mx2.remote.test"),
        (Outcome.PERMANENT, "550 5.0.0 said so", "mx2.remote.test"),
    ]
    assert attempts[0].notify_passed
    assert [c[0] for c in send.calls] == ["127.0.0.2", "127.0.0.3"]
    assert all(c[1] == 25 for c in send.calls)


def test_421_greeting_fails_over_then_one_connection_records_each_message_first():
    t, send = transport({"127.0.0.2": "421", "127.0.0.3": [250, 550]})
    batch = [outgoing("Q1", "a@remote.test"), outgoing("Q2", "b@remote.test")]
    recorded = deliver(t, "remote.test", batch, send.log)
    assert [(q, [a.outcome for a in att]) for q, att in recorded] == [
        ("Q1", [Outcome.DELIVERED]), ("Q2", [Outcome.PERMANENT])
    ]  # fmt: skip
    assert [c[0] for c in send.calls] == ["127.0.0.2", "127.0.0.3"]  # both over one connection
    assert send.calls[1][2] == ["a@remote.test", "b@remote.test"]
    # at 127.0.0.2 nothing was recorded; at 127.0.0.3 each result is recorded before the next
    assert send.log == ["result 0", "result 1", "result 0", "record Q1", "result 1", "record Q2"]


def test_a_server_answer_stands_for_this_attempt():
    t, send = transport({"127.0.0.2": [451], "127.0.0.3": [250]})
    [(_, [attempt])] = deliver(t, "remote.test", [outgoing("Q1", "a@remote.test")])
    assert (attempt.outcome, attempt.status) == (Outcome.TEMPORARY, "4.0.0")
    assert [c[0] for c in send.calls] == ["127.0.0.2"]


def test_every_address_failing_is_temporary():
    t, _ = transport({"127.0.0.2": "refuse", "127.0.0.3": "421"})
    [(_, [attempt])] = deliver(t, "remote.test", [outgoing("Q1", "a@remote.test")])
    assert attempt.outcome is Outcome.TEMPORARY
    assert attempt.status == "4.4.1"
    assert "Connection refused" in attempt.reply and "shutting down" in attempt.reply


def test_routing_failures():
    t, send = transport({})
    [(_, [attempt])] = deliver(t, "nullmx.test", [outgoing("Q1", "a@nullmx.test")])
    assert (attempt.outcome, attempt.reply) == (
        Outcome.PERMANENT, "556 5.1.10 Recipient address has null MX"
    )  # fmt: skip
    [(_, [attempt])] = deliver(t, "nowhere.test", [outgoing("Q1", "a@nowhere.test")])
    assert (attempt.outcome, attempt.status) == (Outcome.PERMANENT, "5.1.2")
    [(_, [attempt])] = deliver(t, "broken.test", [outgoing("Q1", "a@broken.test")])
    assert (attempt.outcome, attempt.status) == (Outcome.TEMPORARY, "4.4.3")
    assert send.calls == []


def test_remote_port_replaces_25():
    t, send = transport({"127.0.0.2": [250]}, port=2525)
    deliver(t, "remote.test", [outgoing("Q1", "a@remote.test")])
    assert send.calls == [("127.0.0.2", 2525, ["a@remote.test"])]


def test_outbound_message_carries_the_envelope():
    out = outgoing("Q1", "a@remote.test", envid="e1", ret="FULL", body="8BITMIME",
                   smtputf8=True)  # fmt: skip
    out = Outgoing(out.item, (recipient(1, "a@remote.test", notify=("SUCCESS", "FAILURE"),
                                        orcpt=("rfc822", "x@y.test")),), out.content)  # fmt: skip
    message = outbound_message(out)
    assert (message.reverse_path, message.envid, message.ret) == ("a@example.org", "e1", "FULL")
    assert message.eightbit and message.smtputf8
    [r] = message.recipients
    assert (r.notify, r.orcpt) == (("SUCCESS", "FAILURE"), ("rfc822", "x@y.test"))
    too_long = Outgoing(outgoing("Q2", "a@remote.test", envid="x" * 200).item, out.recipients,
                        out.content)  # fmt: skip
    assert outbound_message(too_long).envid is None


def test_reply_text_is_one_line():
    assert reply_text(Reply(550, "5.1.1", "no such\nuser")) == "550 5.1.1 no such user"
    assert reply_text(Reply(421, None, "")) == "421"
    assert ip_address("127.0.0.2")  # the fixture addresses are loopback
