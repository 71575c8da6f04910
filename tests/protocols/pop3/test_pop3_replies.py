"""Reply bytes: status lines, multi-line responses, byte-stuffing, messages and TOP."""

from __future__ import annotations

import pytest

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


def test_challenge():
    assert replies.challenge(b"") == b"+ \r\n"
    assert replies.challenge(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096") == (
        b"+ cj1hYmMscz1RU1hDUitRNnNlazhiZjkyLGk9NDA5Ng==\r\n"
    )
