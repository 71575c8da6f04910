"""CHUNKING / BDAT (RFC 3030): exact byte counts across receive_data calls, limits, errors."""

from __future__ import annotations

from mailstead.protocols.smtp import DataChunk, MessageAborted, MessageComplete, Reset

from .transcript import EHLO_REPLY, check, run, settings, splittings

TX = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
TX_REPLY = EHLO_REPLY + b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
GREETING = b"220 mx.example.org ESMTP Mailstead\r\n"


def content(events):
    return b"".join(e.data for e in events if isinstance(e, DataChunk))


def test_chunks_across_splits():
    body1 = b"Subject: x\r\n\r\nline one\r"  # CRLF split across two chunks
    body2 = b"\n.line two\r\nQUIT\r\n"  # no dot-unstuffing, no command parsing
    data = TX + b"BDAT %d\r\n" % len(body1) + body1 + b"BDAT %d LAST\r\n" % len(body2) + body2
    data += b"NOOP\r\n"
    expected = (
        GREETING
        + TX_REPLY
        + (
            b"250 2.0.0 %d octets received\r\n250 2.0.0 Ok: queued as TEST\r\n250 2.0.0 Ok\r\n"
            % len(body1)
        )
    )
    for pieces in splittings(data):
        out, events, _ = run(pieces)
        assert out == expected
        assert content(events) == body1 + body2
        assert events[-1] == MessageComplete(len(body1 + body2), "BDAT")


def test_bdat_zero_last_and_binary():
    body = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"")
    data = TX + b"BDAT %d\r\n" % len(body) + body + b"BDAT 0 LAST\r\n"
    out, events, _ = run([data])
    assert out.endswith(
        b"250 2.0.0 %d octets received\r\n250 2.0.0 Ok: queued as TEST\r\n" % len(body)
    )
    assert content(events) == body


def test_bdat_bare_lf_normalised_bare_cr_refused():
    out, events, _ = run([TX + b"BDAT 4 LAST\r\na\nb\n"])
    assert content(events) == b"a\r\nb\r\n"
    assert events[-1] == MessageComplete(6, "BDAT")
    out, events, _ = run([TX + b"BDAT 2\r\na\rBDAT 1 LAST\r\nb"])
    assert out.endswith(b"250 2.0.0 2 octets received\r\n554 5.6.0 Bare CR not allowed\r\n")
    assert MessageAborted("Bare CR not allowed") in events
    out, events, _ = run([TX + b"BDAT 2 LAST\r\na\r"])  # CR at the very end
    assert out.endswith(b"554 5.6.0 Bare CR not allowed\r\n")


def test_data_after_bdat_and_sequence_errors():
    check(
        """
        C: EHLO c.example
    """
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines())
        + """
        C= BDAT 3\\r\\nabc
        S: 503 5.5.1 Need MAIL command
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C= BDAT 3 LAST\\r\\nabc
        S: 554 5.5.1 No valid recipients
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C= BDAT 3\\r\\nabc
        S: 250 2.0.0 3 octets received
        C: DATA
        S: 503 5.5.1 DATA not allowed after BDAT in one transaction
        C: RCPT TO:<e@d.example>
        S: 503 5.5.1 RCPT not allowed after BDAT
        C= BDAT 1 LAST\\r\\nd
        S: 250 2.0.0 Ok: queued as TEST
        C: DATA
        S: 503 5.5.1 Need MAIL command
    """
    )


def test_bdat_rset_aborts():
    events = check(
        """
        C: EHLO c.example
    """
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines())
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C= BDAT 3\\r\\nabc
        S: 250 2.0.0 3 octets received
        C: RSET
        S: 250 2.0.0 Ok
    """
    )
    assert events[-2:] == [MessageAborted("*"), Reset()]  # see transcript.comparable


def test_bdat_garbage_size_closes():
    out, events, core = run([TX + b"BDAT ten\r\nsome bytes\r\n"])
    assert out.endswith(
        b"501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n"
        b"421 4.7.0 Cannot resynchronise after bad BDAT, closing connection\r\n"
    )
    assert core.closed
    assert events[-1].reason == "bad BDAT"


def test_bdat_too_big_is_read_and_discarded():
    cfg = settings(max_message_size=10)
    big = b"x" * 25
    data = TX + b"BDAT 5\r\n12345BDAT 25\r\n" + big + b"BDAT 3 LAST\r\nabcNOOP\r\n"
    for pieces in splittings(data):
        out, events, _ = run(pieces, config=cfg)
        assert out.endswith(
            b"250 2.0.0 5 octets received\r\n552 5.3.4 Message too big\r\n"
            b"552 5.3.4 Message too big\r\n250 2.0.0 Ok\r\n"
        )
        assert MessageAborted("Message too big") in events
        assert content(events) == b"12345"
        assert not any(isinstance(e, MessageComplete) for e in events)


def test_bdat_not_offered_skips_payload():
    cfg = settings(chunking=False)
    out, _, _ = run([TX + b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n"], config=cfg)
    assert b"CHUNKING" not in out
    assert out.endswith(b"502 5.5.1 Command not implemented\r\n250 2.0.0 Ok\r\n")


def test_bdat_line_too_long():
    cfg = settings(max_data_line=10)
    out, events, _ = run([TX + b"BDAT 14 LAST\r\n0123456789\r\n12"], config=cfg)
    assert events[-1] == MessageComplete(14, "BDAT")
    out, events, _ = run([TX + b"BDAT 13 LAST\r\n01234567890\r\n"], config=cfg)
    assert out.endswith(b"554 5.6.0 Line too long in message content\r\n")
