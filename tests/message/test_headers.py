import pytest

from mailstead.message import HeaderField, decode_header_value
from mailstead.message.headers import (
    get_all,
    get_header,
    parse_header_fields,
    split_header_body,
    unfold,
)


@pytest.mark.parametrize(
    ("raw", "body_start"),
    [
        (b"A: 1\r\n\r\nbody", 8),
        (b"A: 1\n\nbody", 6),
        (b"A: 1\r\nB: 2\r\n", 12),  # no empty line: all header
        (b"A: 1", 4),
        (b"\r\nbody", 2),  # empty header
        (b"\nbody", 1),
        (b"A: 1\r\n \r\n\r\nb", 11),  # a whitespace-only line continues the field
        (b"A: 1\r\n\r\r\n\r\nb", 11),  # "\r\r\n" is not an empty line
        (b"", 0),
    ],
)
def test_split_header_body(raw, body_start):
    assert split_header_body(raw) == body_start


def test_fields_offsets_and_raw_values():
    raw = b"Subject: a\r\n  b\r\nX-Y:z\r\nno colon\r\nName : v\r\n\r\nbody"
    assert parse_header_fields(raw) == [
        HeaderField("Subject", b" a\r\n  b", 0, 17),
        HeaderField("X-Y", b"z", 17, 24),
        HeaderField("", b"no colon", 24, 34),  # Dovecot: a nameless field, all value
        HeaderField("Name", b" v", 34, 44),  # whitespace before ':' is not in the name
    ]
    for f in parse_header_fields(raw):
        assert raw[f.start : f.end].rstrip(b"\r\n").endswith(f.value)


def test_fields_bare_lf_and_eof_without_newline():
    raw = b"A: 1\nB: 2\n\tcont\nC: 3"
    assert parse_header_fields(raw) == [
        HeaderField("A", b" 1", 0, 5),
        HeaderField("B", b" 2\n\tcont", 5, 16),
        HeaderField("C", b" 3", 16, 20),
    ]


def test_fields_start_end_window():
    raw = b"junk\r\n\r\nA: 1\r\n\r\nB: 2\r\n"
    assert parse_header_fields(raw, 8) == [HeaderField("A", b" 1", 8, 14)]
    assert parse_header_fields(raw, 8, 12) == [HeaderField("A", b" 1", 8, 12)]


def test_overlong_name_is_a_value():
    raw = b"X" * 1001 + b": v\r\n\r\n"
    (f,) = parse_header_fields(raw)
    assert f.name == "" and f.value == b"X" * 1001 + b": v"


def test_8bit_name():
    (f,) = parse_header_fields("Sübject: x\r\n\r\n".encode())
    assert f.name == "Sübject"
    (f,) = parse_header_fields(b"S\xfcbject: x\r\n\r\n")
    assert f.name == "S\xfcbject"  # not UTF-8: Latin-1


def test_get_header():
    fields = parse_header_fields(b"To: a\r\nto: b\r\nFrom: c\r\n\r\n")
    assert get_header(fields, "TO") == b" a"
    assert get_header(fields, "cc") is None
    assert get_all(fields, "To") == [b" a", b" b"]
    assert get_all(fields, "Cc") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a\r\n b", b"a b"),
        (b"a\n\tb", b"a\tb"),
        (b"a\r\n  b\r\n", b"a  b"),
        (b"plain", b"plain"),
    ],
)
def test_unfold(value, expected):
    assert unfold(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b" plain text ", "plain text"),
        (b"=?utf-8?q?caf=C3=A9?=", "café"),
        (b"=?UTF-8?B?Y2Fmw6k=?=", "café"),
        (b"=?utf-8?b?Y2Fmw6k?=", "café"),  # missing base64 padding tolerated
        (b"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld Jørn Simonsen"),
        # RFC 2047 §8: whitespace between adjacent encoded words disappears
        (b"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"),
        (b"=?ISO-8859-1?Q?a?=\r\n  =?ISO-8859-1?Q?b?=", "ab"),
        (b"=?ISO-8859-1?Q?a?= b", "a b"),
        (b"a =?ISO-8859-1?Q?b?=", "a b"),
        (b"=?ISO-8859-1?Q?a_b?=", "a b"),
        # a character split across two words (stdlib email.header gets this wrong)
        (b"=?utf-8?q?caf=C3?= =?utf-8?q?=A9?=", "café"),
        # RFC 2231 language suffix
        (b"=?utf-8*en?q?hi?=", "hi"),
        # invalid words stay as they are
        (b"=?nonexistent-charset?q?x?=", "=?nonexistent-charset?q?x?="),
        (b"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
        (b"=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        (b"=?utf-8?q?a b?=", "=?utf-8?q?a b?="),  # no spaces inside a word
        # raw 8-bit: UTF-8, else Latin-1
        ("café".encode(), "café"),
        (b"caf\xe9", "café"),
        (b"=?utf-8?q?=C3=A9?= caf\xe9", "é café"),
        # stdlib email.header quirk: text around words keeps its spacing here
        (b"Re:  =?utf-8?q?x?=  y", "Re:  x  y"),
        (b"", ""),
    ],
)
def test_decode_header_value(value, expected):
    assert decode_header_value(value) == expected
