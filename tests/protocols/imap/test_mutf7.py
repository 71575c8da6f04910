"""Modified UTF-7 (RFC 3501 §5.1.3): RFC examples, strict decoding, random round trips."""

from __future__ import annotations

import random

import pytest

from mailstead.protocols.imap.mutf7 import MUTF7Error, decode, encode


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("&", "&-"),
        ("a&b&", "a&-b&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Ünicode", "&ANw-nicode"),
        ("🎉", "&2DzfiQ-"),  # a surrogate pair (D83C DF89)
        ("plain ASCII ~!@#$%^*()", "plain ASCII ~!@#$%^*()"),
        ("", ""),
        ("\t", "&AAk-"),  # controls are not printable: encoded
        ("é&é", "&AOk-&-&AOk-"),
        ("éé", "&AOkA6Q-"),
    ],
)
def test_vectors(text, wire):
    assert encode(text) == wire
    assert decode(wire) == text
    assert decode(wire.encode()) == text


@pytest.mark.parametrize(
    "bad",
    [
        "&Jjo",  # unterminated
        "&U,BTFw-&ZeVnLIqe-",  # two adjacent shifts (RFC 3501: must be one)
        "&AGE-",  # "a" encoded in BASE64: must be written as itself
        "&AC0-",  # "-" likewise
        "&ACY-",  # "&" must be "&-"
        "&2D3-",  # lone high surrogate
        "&3,k-",  # lone low surrogate
        "&AOk=-",  # padding
        "&AOk/-",  # "/" instead of ","
        "&AOkB-",  # non-zero padding bits
        "&AOkA-",  # a superfluous BASE64 character
        "café",  # raw 8-bit
        "tab\there",  # raw control
        "&&-",
    ],
)
def test_strict_decoding(bad):
    with pytest.raises(MUTF7Error):
        decode(bad)


def test_bytes_with_8bit_are_rejected():
    with pytest.raises(MUTF7Error):
        decode(b"caf\xc3\xa9")


def _random_text(rnd: random.Random) -> str:
    pools = [
        (0x20, 0x7E),
        (0x80, 0x7FF),
        (0x800, 0xD7FF),
        (0xE000, 0xFFFD),
        (0x10000, 0x10FFFF),
        (0x00, 0x1F),
    ]
    out = []
    for _ in range(rnd.randint(0, 20)):
        lo, hi = rnd.choice(pools)
        out.append(chr(rnd.randint(lo, hi)))
        if rnd.random() < 0.2:
            out.append("&")
    return "".join(out)


def test_random_round_trips():
    rnd = random.Random(1234)
    for _ in range(3000):
        text = _random_text(rnd)
        wire = encode(text)
        assert wire.isascii() and all(" " <= ch <= "~" for ch in wire)
        assert decode(wire) == text
