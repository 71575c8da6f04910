"""Delivery status notifications, read back with Python's email package (not our parser)."""

from __future__ import annotations

import email
import email.policy

import pytest

from mailstead.queue.dsn import RecipientReport, Report, build

ORIGINAL = (
    b"From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nthe body\r\nsecond line\r\n"
)
NOW = 1_767_225_600.0  # 2026-01-01


def _report(**changes):
    fields = {
        "reporting_mta": "mail.example.org",
        "sender": "alice@example.org",
        "recipients": [
            RecipientReport(
                "bob@remote.test", "failed", "5.1.1",
                diagnostic="550 5.1.1 <bob@remote.test>: no such user",
                remote_mta="mx.remote.test", original_recipient=("rfc822", "Bob+2B@remote.test"),
                last_attempt=NOW - 5,
            ),
            RecipientReport(
                "carol@slow.test", "delayed", "4.4.1", diagnostic="connection timed out",
                will_retry_until=NOW + 86400,
            ),
        ],
        "original": ORIGINAL,
        "arrival": NOW - 3600,
        "envid": "QQ+2B123",
    }  # fmt: skip
    fields.update(changes)
    return Report(**fields)


def _parse(raw: bytes):
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_failure_report_structure_and_fields():
    message = _parse(build(_report(), now=NOW))
    assert message["To"].addresses[0].addr_spec == "alice@example.org"
    assert message["From"].addresses[0].username == "MAILER-DAEMON"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    text, status, original = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert "no such user" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()  # the email package parses the field blocks
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.org"
    assert blocks[0]["Original-Envelope-Id"] == "QQ+123"
    assert blocks[1]["Final-Recipient"] == "rfc822; bob@remote.test"
    assert blocks[1]["Original-Recipient"] == "rfc822; Bob+@remote.test"
    assert blocks[1]["Action"] == "failed"
    assert blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Remote-MTA"] == "dns; mx.remote.test"
    assert blocks[1]["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert blocks[2]["Action"] == "delayed"
    assert "Will-Retry-Until" in blocks[2]
    # RET=HDRS (the default): the header only
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"Subject: hello" in original.get_payload(decode=True)
    assert b"the body" not in original.get_payload(decode=True)


def test_ret_full_carries_the_whole_message():
    message = _parse(build(_report(ret="FULL"), now=NOW))
    original = message.get_payload()[2]
    assert original.get_content_type() == "message/rfc822"
    inner = original.get_payload()[0]
    assert inner["Subject"] == "hello"
    assert "second line" in inner.get_content()


def test_delay_only_report_and_smtputf8_forms():
    delayed = _report(recipients=[RecipientReport("ü@example.test", "delayed", "4.4.1")],
                      smtputf8=True)  # fmt: skip
    message = _parse(build(delayed, now=NOW))
    assert message["Subject"].startswith("Delayed Mail")
    assert message.get_payload()[1].get_content_type() == "message/global-delivery-status"
    assert message.get_payload()[2].get_content_type() == "message/global-headers"
    assert b"Final-Recipient: utf-8; \xc3\xbc@example.test" in build(delayed, now=NOW)


def test_never_to_the_null_sender():
    with pytest.raises(ValueError, match="null sender"):
        build(_report(sender=""), now=NOW)


def test_lf_originals_are_sent_with_crlf():
    raw = build(_report(original=ORIGINAL.replace(b"\r\n", b"\n"), ret="FULL"), now=NOW)
    _parse(raw)  # asserts CRLF only


def test_injected_lines_stay_escaped():
    """Lines injected into bounces (issue 11): whatever reached the queue, a CR LF (or another
    control character) in ENVID or ORCPT never becomes a line of the report."""
    recipient = RecipientReport(
        "bob@remote.test", "failed", "5.1.1",
        original_recipient=("rfc822\r\nX-Type: 1", "b+0D+0AX-Orcpt:+20injected@remote.test"),
    )  # fmt: skip
    raw = build(_report(recipients=[recipient], envid="id+0D+0AX-Envid:+20injected+85"), now=NOW)
    assert b"\nX-Envid" not in raw and b"\nX-Orcpt" not in raw and b"\nX-Type" not in raw
    blocks = _parse(raw).get_payload()[1].get_payload()
    assert blocks[0]["Original-Envelope-Id"] == "id+0D+0AX-Envid: injected+C2+85"
    assert blocks[1]["Original-Recipient"] == (
        "rfc822+0D+0AX-Type: 1; b+0D+0AX-Orcpt: injected@remote.test"
    )
