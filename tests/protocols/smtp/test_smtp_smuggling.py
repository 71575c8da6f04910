"""SMTP smuggling (SEC Consult 2023, CVE-2023-51764/51765/51766): non-standard end-of-data
sequences must never end the message. Each variant below tries to end the first message early and
smuggle a second transaction; the smuggled commands must stay inside the first message (or the
first message is refused whole), and no second MAIL FROM may ever reach the shell.
"""

from __future__ import annotations

import pytest

from mailstead.protocols.smtp import DataChunk, MailFrom, MessageAborted, MessageComplete

from .transcript import comparable, merged, run, splittings

PREFIX = (
    b"EHLO attacker.example\r\nMAIL FROM:<a@attacker.example>\r\nRCPT TO:<v@mx.example.org>\r\n"
    b"DATA\r\nSubject: first\r\n\r\nbody"
)
SMUGGLED = b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<v@mx.example.org>\r\nDATA\r\nforged\r\n"
END = b".\r\n"  # SMUGGLED ends with CRLF

# (variant, stored content between "body" and the smuggled commands), None when refused.
NORMALISED = [
    (b"\n.\n", b"\r\n.\r\n"),  # bare LF both sides: normalised, lone "." kept
    (b"\n.\r\n", b"\r\n.\r\n"),
    (b"\r\n.\n", b"\r\n.\r\n"),
    (b"\n..\n", b"\r\n.\r\n"),
    (b"\r\n\x00.\r\n", b"\r\n\x00.\r\n"),
    (b"\r\n.\x00\r\n", b"\r\n\x00\r\n"),  # a dot-stuffed line: first dot removed
    (b"\r\n .\r\n", b"\r\n .\r\n"),
    (b"\n\n.\n\n", b"\r\n\r\n.\r\n\r\n"),
]
REFUSED = [
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r.\r",
    b"\r.\n",
    b"\n.\r",
    b"\r\n\r.\r\n",
    b"\r\n.\r\r\n",
]


def _send(variant: bytes) -> tuple[bytes, list]:
    data = PREFIX + variant + SMUGGLED + END + b"QUIT\r\n"
    results = [run(pieces) for pieces in splittings(data)]
    out, events, _ = results[0]
    for other_out, other_events, _ in results[1:]:
        assert other_out == out
        assert comparable(other_events) == comparable(events)
    return out, comparable(events)


@pytest.mark.parametrize(("variant", "stored"), NORMALISED)
def test_variant_stays_inside_the_message(variant, stored):
    out, events = _send(variant)
    mails = [e for e in events if isinstance(e, MailFrom)]
    assert mails == [MailFrom("a@attacker.example")]
    chunks = [e for e in events if isinstance(e, DataChunk)]
    assert chunks == [DataChunk(b"Subject: first\r\n\r\nbody" + stored + SMUGGLED)]
    assert [e for e in events if isinstance(e, MessageComplete)] == [
        MessageComplete(len(chunks[0].data), "DATA")
    ]
    assert out.count(b"250 2.0.0 Ok: queued as TEST\r\n") == 1
    assert out.endswith(
        b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as TEST\r\n221 2.0.0 Bye\r\n"
    )


@pytest.mark.parametrize("variant", REFUSED)
def test_bare_cr_variant_refuses_the_message(variant):
    out, events = _send(variant)
    assert [e for e in events if isinstance(e, MailFrom)] == [MailFrom("a@attacker.example")]
    assert not [e for e in events if isinstance(e, MessageComplete)]
    assert MessageAborted("*") in events  # see transcript.comparable
    assert out.endswith(
        b"354 End data with <CR><LF>.<CR><LF>\r\n554 5.6.0 Bare CR not allowed\r\n221 2.0.0 Bye\r\n"
    )


@pytest.mark.parametrize(("variant", "stored"), NORMALISED)
def test_variant_in_bdat_is_content_too(variant, stored):
    body = b"Subject: first\r\n\r\nbody" + variant + SMUGGLED
    data = (
        b"EHLO a.example\r\nMAIL FROM:<a@attacker.example>\r\nRCPT TO:<v@mx.example.org>\r\n"
        + b"BDAT %d LAST\r\n" % len(body)
        + body
    )
    out, events, _ = run([data])
    assert [e for e in events if isinstance(e, MailFrom)] == [MailFrom("a@attacker.example")]
    content = b"".join(e.data for e in events if isinstance(e, DataChunk))
    # BDAT has no dot-stuffing: only line endings are normalised.
    assert (
        content
        == b"Subject: first\r\n\r\nbody"
        + variant.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        + SMUGGLED
    )
    assert out.endswith(b"250 2.0.0 Ok: queued as TEST\r\n")


def test_end_of_data_needs_crlf_before_the_dot():
    # "DATA" ended by a bare LF: a "." right after it is not the end of data.
    _out, events, _ = run(
        [
            b"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
            b"DATA\n.\r\nstill data\r\n.\r\n"
        ]
    )
    assert merged(events)[-2:] == [
        DataChunk(b".\r\nstill data\r\n"),
        MessageComplete(15, "DATA"),
    ]
