"""The header and text decoders never raise, whatever the bytes (issue 11: one encoded-word
whose charset held a NUL stopped the full-text indexer for everyone), and what they give is
text that can be stored (no lone surrogates: SQLite and UTF-8 refuse them)."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailstead.message import parse_message
from mailstead.message.headers import charset_codec, decode_header_value, decode_text
from mailstead.message.text import body_text, header_values, searchable

# charsets that trip a naive decoder: a NUL, codecs that are not text encodings, codecs that
# refuse the "replace" handler or give surrogates, and names that are not ASCII
ODD_CHARSETS = [
    b"x\x00y", b"\x00", b"utf-8\x00", b"hex", b"base64", b"rot13", b"zlib", b"idna",
    b"punycode", b"utf-7", b"unicode_escape", b"raw_unicode_escape", b"undefined", b"utf-16",
    b"utf-32", b"uu", b"bz2", b"quopri", b"mbcs", b"\xff\xfe", b"utf-8\xff", b"x" * 300,
    b"utf_16_be", b"cp65001", b"", b".", b"..", b"/", b"utf-8/../x", b"latin-1 ",
]  # fmt: skip
PAYLOADS = [b"a", b"\\ud800", b"+2D8-", b"=FF=FE", b"+AGE-", b"\\x", b"xn--", b"\xff", b"=3D"]


def _storable(text: str) -> None:
    text.encode("utf-8")  # raises on lone surrogates


def _encoded_words() -> st.SearchStrategy[bytes]:
    charset = st.one_of(st.sampled_from(ODD_CHARSETS), st.binary(max_size=12))
    encoding = st.sampled_from([b"q", b"Q", b"b", b"B"])
    text = st.one_of(st.sampled_from(PAYLOADS), st.binary(max_size=16))
    return st.builds(
        lambda c, e, t: b"=?" + c + b"?" + e + b"?" + t + b"?=", charset, encoding, text
    )


header_bytes = st.lists(
    st.one_of(_encoded_words(), st.binary(max_size=20), st.sampled_from([b" ", b"\r\n ", b"\t"])),
    max_size=6,
).map(b"".join)


@pytest.mark.parametrize("charset", ODD_CHARSETS)
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("encoding", [b"Q", b"B"])
def test_encoded_word_with_an_odd_charset(charset: bytes, payload: bytes, encoding: bytes) -> None:
    if encoding == b"B":
        payload = codecs.encode(payload, "base64").strip()
    _storable(decode_header_value(b"=?" + charset + b"?" + encoding + b"?" + payload + b"?= x"))


def test_the_reported_nul_charset_decodes_as_the_literal_text() -> None:
    assert decode_header_value(b"=?x\x00y?q?a?=") == "=?x\x00y?q?a?="
    assert decode_header_value(b"=?utf-8?q?caf=C3=A9?=") == "café"


@settings(max_examples=1500, deadline=None)
@given(value=header_bytes)
@example(value=b"=?x\x00y?q?a?=")
def test_decode_header_value_never_raises(value: bytes) -> None:
    _storable(decode_header_value(value))


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    fields = draw(
        st.lists(
            st.tuples(
                st.sampled_from([b"Subject", b"From", b"To", b"Content-Type", b"X", b"Cc"]),
                header_bytes,
            ),
            max_size=4,
        )
    )
    charset = draw(st.one_of(st.sampled_from(ODD_CHARSETS), st.binary(max_size=8)))
    cte = draw(st.sampled_from([b"base64", b"quoted-printable", b"7bit", b"x"]))
    body = draw(st.one_of(st.sampled_from(PAYLOADS), st.binary(max_size=40)))
    head = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    mime = (
        b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="' + charset + b'"\r\n'
        b"Content-Transfer-Encoding: " + cte + b"\r\n"
    )
    return head + mime + b"\r\n" + body


@settings(max_examples=800, deadline=None)
@given(raw=st.one_of(messages(), st.binary(max_size=200)))
@example(raw=b"Subject: =?x\x00y?q?a?=\r\n\r\nbody\r\n")
@example(raw=b"From: \xed\xa0\x80 <a@b>\r\n\r\n")
@example(raw=b'Content-Type: text/plain; charset="x\x00y"\r\nMIME-Version: 1.0\r\n\r\nbody')
def test_searchable_text_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    found = searchable(raw, parsed)
    for text in (found.headers, found.body, *found.fields):
        _storable(text)
    for values in header_values(raw, parsed.header_end).values():
        for text in values:
            _storable(text)
    _storable(body_text(raw, parsed.root, embedded_headers=True))


def test_searchable_text_has_no_nul() -> None:
    """FTS5 stops at a NUL: the index must not lose what follows one."""
    raw = b"Subject: =?x\x00y?q?a?= quarterly\r\n\r\nbody \x00 marmalade\r\n"
    found = searchable(raw, parse_message(raw))
    for text in (found.headers, found.body, *found.fields):
        assert "\x00" not in text
    assert "quarterly" in found.fields[0] and "marmalade" in found.body


@settings(max_examples=1500, deadline=None)
@given(name=st.one_of(st.text(max_size=20), st.binary(max_size=20)), data=st.binary(max_size=40))
@example(name="x\x00y", data=b"a")
@example(name="\ud800", data=b"\xff")
def test_charset_lookup_and_decoding_never_raise(name: str | bytes, data: bytes) -> None:
    codec = charset_codec(name)
    _storable(decode_text(data, codec))
