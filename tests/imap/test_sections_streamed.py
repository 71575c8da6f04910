"""Large FETCH answers sent in pieces (sections.Streamed) are the same octets as the answers
built whole: for every BODY[...] and BINARY[...] item of the Dovecot goldens, whatever the
piece size, and for base64 bodies crafted to break at every place."""

from __future__ import annotations

import pytest

from mailstead.imap import sections
from mailstead.imap.sections import (
    BinaryError,
    Section,
    Streamed,
    binary_item,
    binary_item_streamed,
    body_item,
    body_item_streamed,
)
from mailstead.message import parse_message

from .section_cases import CASES
from .test_sections_dovecot import GOLDEN, _corpus, parse_item, store_form

PIECES = [1, 3, 4, 7, 64, 256 << 10]


def _messages() -> dict[str, bytes]:
    out = {f"case:{k}": store_form(v) for k, v in CASES.items() if store_form(v)}
    for name, path in _corpus().items():
        out[name] = store_form(path.read_bytes())
    return out


def _whole(streamed: Streamed) -> bytes:
    data = b"".join(streamed.pieces())
    assert len(data) == streamed.size
    return streamed.head + data


def _outcome(fn, *args) -> tuple[object, object]:
    """(the answer, None) or (None, the BinaryError class raised)."""
    try:
        return fn(*args), None
    except BinaryError as exc:
        return None, type(exc)


def _same(raw: bytes, item: str) -> int:
    """Compare both ways of answering ``item``; 1 when the streamed way applied."""
    parsed = parse_message(raw)
    verb, section, partial = parse_item(item)
    if verb == "BINARY.SIZE":
        return 0
    if verb == "BODY.PEEK":
        whole_fn, streamed_fn = body_item, body_item_streamed
    else:
        whole_fn, streamed_fn = binary_item, binary_item_streamed
    whole, failure = _outcome(whole_fn, raw, parsed, section, partial)
    streamed, streamed_failure = _outcome(streamed_fn, raw, parsed, section, partial)
    if streamed_failure is not None:
        assert streamed_failure is failure, item
        return 1
    if streamed is None:
        return 0
    assert isinstance(streamed, Streamed)
    assert failure is None, f"{item}: streamed where the whole answer fails"
    assert _whole(streamed) == whole, item
    return 1


@pytest.mark.parametrize("piece", PIECES)
def test_streamed_items_match_whole_answers(monkeypatch, piece):
    monkeypatch.setattr(sections, "STREAM_PIECE", piece)
    used = 0
    for name, raw in _messages().items():
        for item in GOLDEN.get(name, {}):
            used += _same(raw, item)
    assert used > 20  # the streamed path was taken, not only the fallback


def _b64_message(body: bytes) -> bytes:
    return (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n--b--\r\n"
    )


BODIES = [
    b"aGVsbG8gd29ybGQ=",
    b"aGVsbG8gd29ybA==",
    b"aGVsbG8gd29y",
    b"aGVs\r\nbG8g\r\n d29y\tbA = =",
    b"aGVsbG8gd29ybA==\r\n\r\n",
    b"aGVsbG8gd29ybA===",
    b"aGVsbG8gd29ybA=x",
    b"aGVsbG8=d29ybA==",
    b"aGVsbG8gd29yb",
    b"aGVsbG8gd29ybA",
    b"aGVsbG8*d29ybA==",
    b"aGVsbG8gd29ybGQ",
    b"=",
    b"",
    b"   \r\n ",
]


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("body", BODIES)
def test_base64_pieces_decode_and_fail_like_the_whole_decoder(monkeypatch, piece, body):
    monkeypatch.setattr(sections, "STREAM_PIECE", piece)
    raw = _b64_message(body)
    parsed = parse_message(raw)
    whole, failure = _outcome(binary_item, raw, parsed, Section((2,)))
    streamed, streamed_failure = _outcome(binary_item_streamed, raw, parsed, (2,))
    if streamed_failure is not None or failure is not None:
        assert streamed_failure is failure
        return
    if body == b"":  # an empty part: answered whole
        assert streamed is None
        return
    assert isinstance(streamed, Streamed)
    assert _whole(streamed) == whole
