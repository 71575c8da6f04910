"""Delivery status notifications (RFC 3464, RFC 3461): the report a sender gets when mail to
some of its recipients failed, is delayed, or (when asked) was delivered.

The report is ``multipart/report; report-type=delivery-status`` with a plain-text explanation,
a ``message/delivery-status`` part and the original message (``RET=FULL``) or its header
(``text/rfc822-headers``, the default). Messages that needed SMTPUTF8 get the RFC 6533 forms
(``message/global-delivery-status``, ``message/global`` / ``message/global-headers``). It is
sent from the null reverse-path, so it can never cause another report (RFC 3461 §6.2).
"""

from __future__ import annotations

import datetime
import email.utils
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

_MAX_HEADER = 256 * 1024  # octets of the original header a report carries at most
_XTEXT_ESCAPE = re.compile(r"\+([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's line in the report (RFC 3464 §2.3)."""

    address: str  # the final recipient (as tried)
    action: Action
    status: str  # enhanced status code, e.g. "5.1.1" (RFC 3463)
    diagnostic: str | None = None  # the remote server's reply, e.g. "550 5.1.1 No such user"
    remote_mta: str | None = None  # host name of the server that answered
    original_recipient: tuple[str, str] | None = None  # ORCPT (type, address), RFC 3461 §4.2
    last_attempt: float | None = None
    will_retry_until: float | None = None  # for "delayed"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one DSN says about one queued message."""

    reporting_mta: str  # our host name
    sender: str  # the envelope sender the report goes to (never empty)
    recipients: Sequence[RecipientReport]
    original: bytes  # the message as queued
    arrival: float  # when we accepted it
    envid: str | None = None  # ENVID (RFC 3461 §4.4)
    ret: Literal["FULL", "HDRS"] | None = None  # RET; None = headers only
    smtputf8: bool = False


def _date(timestamp: float) -> str:
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(timestamp, datetime.UTC))


def _header_block(message: bytes) -> bytes:
    """The original header (up to and including its blank line), bounded."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            return message[: min(end + len(sep), _MAX_HEADER)]
    return message[:_MAX_HEADER]


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _xtext_decode(value: str) -> str:
    """RFC 3461 §4: ORCPT and ENVID arrive as xtext (``+HH`` escapes)."""
    return _XTEXT_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def _field_value(value: str, *, xtext: bool = True) -> str:
    """A decoded ENVID or ORCPT as it may go into a report field: control characters (C0,
    DEL, C1, line and paragraph separators) stay ``+HH`` escaped, so a value chosen by the
    sender can never start a line of its own (the SMTP server refuses such values already;
    this holds for whatever reached the queue before)."""
    out = []
    for c in _xtext_decode(value) if xtext else value:
        if c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029\x85":
            out.append("".join(f"+{b:02X}" for b in c.encode("utf-8")))
        else:
            out.append(c)
    return "".join(out)


def _subject(recipients: Sequence[RecipientReport]) -> str:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return "Undelivered Mail Returned to Sender"
    if "delayed" in actions:
        return "Delayed Mail (still being retried)"
    return "Successful Mail Delivery Report"


def _explanation(report: Report) -> str:
    lines = [f"This is the mail system at host {report.reporting_mta}.", ""]
    failed = [r for r in report.recipients if r.action == "failed"]
    delayed = [r for r in report.recipients if r.action == "delayed"]
    done = [r for r in report.recipients if r.action in ("delivered", "relayed", "expanded")]
    if failed:
        lines += [
            "Your message could not be delivered to one or more recipients.",
            "It is attached below. The problem reported for each recipient:",
            "",
        ]
        for r in failed:
            lines.append(f"<{r.address}>: {r.diagnostic or 'delivery failed (' + r.status + ')'}")
        lines.append("")
    if delayed:
        lines += [
            "Delivery to the following recipients has been delayed. The mail system will keep",
            "trying; you do not need to send the message again yet.",
            "",
        ]
        for r in delayed:
            until = f" (will retry until {_date(r.will_retry_until)})" if r.will_retry_until else ""
            lines.append(f"<{r.address}>: {r.diagnostic or 'temporary failure'}{until}")
        lines.append("")
    if done:
        lines += ["Your message was delivered to the following recipients:", ""]
        lines += [f"<{r.address}>: {r.action}" for r in done]
        lines.append("")
    return "\r\n".join(lines) + "\r\n"


def _status_fields(report: Report) -> bytes:
    """The ``message/delivery-status`` body: per-message fields, then a block per recipient."""
    per_message = [f"Reporting-MTA: dns; {report.reporting_mta}"]
    if report.envid:
        per_message.append(f"Original-Envelope-Id: {_field_value(report.envid)}")
    per_message.append(f"Arrival-Date: {_date(report.arrival)}")
    blocks = ["\r\n".join(per_message)]
    for r in report.recipients:
        kind = "utf-8" if report.smtputf8 and not r.address.isascii() else "rfc822"
        fields = []
        if r.original_recipient is not None:
            addr_type, value = r.original_recipient
            kind_text = _field_value(addr_type, xtext=False)
            fields.append(f"Original-Recipient: {kind_text}; {_field_value(value)}")
        fields += [
            f"Final-Recipient: {kind}; {r.address}",
            f"Action: {r.action}",
            f"Status: {r.status}",
        ]
        if r.remote_mta:
            fields.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            diagnostic = " ".join(r.diagnostic.split())  # one line: replies may be multi-line
            fields.append(f"Diagnostic-Code: smtp; {diagnostic}")
        if r.last_attempt is not None:
            fields.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until is not None:
            fields.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        blocks.append("\r\n".join(fields))
    text = "\r\n\r\n".join(blocks) + "\r\n"
    return text.encode("utf-8")


def build(report: Report, *, now: float, message_id_domain: str | None = None) -> bytes:
    """The DSN message, CRLF line ends, ready to deliver from ``<>`` to ``report.sender``."""
    if not report.sender:
        raise ValueError("no report to the null sender (RFC 3461 §6.2)")
    boundary = "=_report_" + secrets.token_hex(12)
    domain = message_id_domain or report.reporting_mta
    if report.smtputf8:
        status_type, full_type, headers_type = (
            "message/global-delivery-status", "message/global", "message/global-headers"
        )  # fmt: skip
    else:
        status_type, full_type, headers_type = (
            "message/delivery-status", "message/rfc822", "text/rfc822-headers"
        )  # fmt: skip
    header = [
        f"From: Mail Delivery System <MAILER-DAEMON@{report.reporting_mta}>",
        f"To: <{report.sender}>",
        f"Subject: {_subject(report.recipients)}",
        f"Date: {_date(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{domain}>",
        "Auto-Submitted: auto-replied",  # RFC 3834: no vacation replies to this
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    if report.ret == "FULL":
        original_type, original = full_type, _crlf(report.original)
    else:
        original_type, original = headers_type, _crlf(_header_block(report.original))
    parts = [
        (
            'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit',
            _explanation(report).encode("utf-8"),
        ),
        (f"Content-Type: {status_type}", _status_fields(report)),
        (f"Content-Type: {original_type}", original),
    ]
    out = "\r\n".join(header).encode("utf-8") + b"\r\n\r\n"
    out += b"This is a MIME-encapsulated message.\r\n\r\n"
    for part_header, body in parts:
        out += f"--{boundary}\r\n".encode() + part_header.encode() + b"\r\n\r\n" + body
        if not body.endswith(b"\r\n"):
            out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out
