"""Reply bytes: status lines, multi-line responses, byte-stuffing, messages and TOP, whole and
in pieces."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstead.protocols.pop3 import replies


def test_status_lines():
    assert replies.ok() == b"+OK\r\n"
    assert replies.ok("2 320") == b"+OK 2 320\r\n"
    assert replies.err("Authentication failed", "AUTH") == b"-ERR [AUTH] Authentication failed\r\n"
    assert replies.err("x", "SYS/TEMP") == b"-ERR [SYS/TEMP] x\r\n"
    assert replies.err("two\r\nlines") == b"-ERR two  lines\r\n"  # no injected line


def test_status_line_is_cut_to_512_octets():
    line = replies.err("x" * 1000)
    assert len(line) == 512  # RFC 2449 §4
    assert line.endswith(b"xx\r\n")


def test_multiline_is_stuffed_and_ended():
    out = replies.multiline(replies.ok("list"), ["1 100", ".hidden", "..", b"raw"])
    assert out == b"+OK list\r\n1 100\r\n..hidden\r\n...\r\nraw\r\n.\r\n"
    assert replies.multiline(replies.ok(), []) == b"+OK\r\n.\r\n"


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),  # the last line gets its CRLF
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),  # a lone dot is stuffed, not an end
        (b"a\r\n..b\r\n", b"a\r\n...b\r\n.\r\n"),
        (b"a\nb\n.c\n", b"a\r\nb\r\n..c\r\n.\r\n"),  # bare LF sent as CRLF
        (b"a\r\nb\nc", b"a\r\nb\r\nc\r\n.\r\n"),
        (b"a\rb\r\n", b"a\rb\r\n.\r\n"),  # a bare CR is data
        (b"x. y\r\n", b"x. y\r\n.\r\n"),
    ],
)
def test_message(stored, sent):
    assert replies.message(stored) == sent
    lines = sent[:-3].split(b"\r\n")  # what a client gets back by undoing the stuffing
    assert replies.wire_form(stored) == b"\r\n".join(x[1:] if x[:1] == b"." else x for x in lines)


MESSAGE = b"Subject: s\r\nFrom: f\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"


@pytest.mark.parametrize(
    ("lines", "sent"),
    [
        (0, b"Subject: s\r\nFrom: f\r\n\r\n.\r\n"),
        (1, b"Subject: s\r\nFrom: f\r\n\r\nline 1\r\n.\r\n"),
        (2, b"Subject: s\r\nFrom: f\r\n\r\nline 1\r\n..line 2\r\n.\r\n"),
        (3, MESSAGE.replace(b"\n.", b"\n..") + b".\r\n"),
        (999999999, MESSAGE.replace(b"\n.", b"\n..") + b".\r\n"),
    ],
)
def test_top(lines, sent):
    assert replies.top(MESSAGE, lines) == sent


def test_top_edge_cases():
    assert replies.top(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n.\r\n"  # empty header
    assert replies.top(b"Subject: no body", 5) == b"Subject: no body\r\n.\r\n"
    assert replies.top(b"A: b\nC: d\n\nx\ny\n", 1) == b"A: b\r\nC: d\r\n\r\nx\r\n.\r\n"
    assert replies.top(b"", 3) == b".\r\n"


# --- messages in pieces ---------------------------------------------------------------------------
def _reference_wire(raw: bytes) -> bytes:
    """RFC 1939 §3 done on the whole message: CRLF line ends, the last line ended."""
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return raw + b"\r\n" if raw and not raw.endswith(b"\r\n") else raw


def _reference_stuff(data: bytes) -> bytes:
    """Each line (``data`` ends with CRLF) stuffed, then the terminator."""
    lines = data.split(b"\r\n")[:-1]
    return b"".join(b"." * line.startswith(b".") + line + b"\r\n" for line in lines) + b".\r\n"


def _reference_top(raw: bytes, lines: int) -> bytes:
    data = _reference_wire(raw)
    kept = data.split(b"\r\n")[:-1]
    blank = kept.index(b"") if b"" in kept else len(kept)
    head = b"".join(line + b"\r\n" for line in kept[: blank + 1 + lines])
    return _reference_stuff(head)


def _pieces(raw: bytes, cuts: list[int], lines: int | None = None) -> bytes:
    writer = replies.MessageWriter(lines)
    out = []
    start = 0
    for cut in [*sorted(cuts), len(raw)]:
        out.append(writer.feed(raw[start:cut]))
        start = cut
        if writer.done:
            break
    return b"".join(out) + writer.end()


@pytest.mark.parametrize(
    ("pieces", "sent"),
    [
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),  # a piece starting with "."
        ([b".", b"a\r\n"], b"..a\r\n.\r\n"),  # the message starts with "."
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),  # CRLF split, "." after it
        ([b"a\r", b"\n", b".", b"\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"a\r\n.", b".b\r\n"], b"a\r\n...b\r\n.\r\n"),
        ([b"a", b".b\r\n"], b"a.b\r\n.\r\n"),  # "." in the middle of a line
        ([b"a\r", b"b"], b"a\rb\r\n.\r\n"),  # a bare CR at a boundary stays data
        ([b"a\r"], b"a\r\r\n.\r\n"),  # ...also at the very end
        ([b"a\n", b"\n.b"], b"a\r\n\r\n..b\r\n.\r\n"),  # bare LFs at boundaries
        ([b"a\r", b"\r\n"], b"a\r\r\n.\r\n"),
        ([b"", b"a", b""], b"a\r\n.\r\n"),
    ],
)
def test_message_in_pieces(pieces, sent):
    writer = replies.MessageWriter()
    assert b"".join(writer.feed(p) for p in pieces) + writer.end() == sent
    assert replies.message(b"".join(pieces)) == sent


def test_top_in_pieces_stops_once_it_has_its_lines():
    writer = replies.MessageWriter(1)
    assert writer.feed(b"A: b\r\n\r") == b"A: b\r\n"  # the blank line may be coming
    assert writer.feed(b"\n.one\r\ntwo") == b"\r\n..one\r\n"
    assert writer.done
    assert writer.feed(b"three\r\n") == b""
    assert writer.end() == b".\r\n"
    writer = replies.MessageWriter(0)
    assert writer.feed(b"A: b\r\n") + writer.feed(b"\r\nbody") + writer.end() == (
        b"A: b\r\n\r\n.\r\n"
    )


_OCTETS = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n\r\n"]))


@given(_OCTETS, st.lists(st.integers(0, 64)))
def test_retr_pieces_give_the_whole_message(parts, cuts):
    """Split invariance: the pieces give what the whole gives, and that is RFC 1939's form."""
    raw = b"".join(parts)
    cuts = [c for c in cuts if c <= len(raw)]
    whole = _reference_stuff(_reference_wire(raw))
    assert replies.message(raw) == whole
    assert _pieces(raw, cuts) == whole


@given(_OCTETS, st.lists(st.integers(0, 64)), st.integers(0, 5))
def test_top_pieces_give_the_whole_top(parts, cuts, lines):
    raw = b"".join(parts)
    cuts = [c for c in cuts if c <= len(raw)]
    whole = _reference_top(raw, lines)
    assert replies.top(raw, lines) == whole
    assert _pieces(raw, cuts, lines) == whole


def test_challenge():
    assert replies.challenge(b"") == b"+ \r\n"
    assert replies.challenge(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096") == (
        b"+ cj1hYmMscz1RU1hDUitRNnNlazhiZjkyLGk9NDA5Ng==\r\n"
    )
