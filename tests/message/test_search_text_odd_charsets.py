"""Found by fuzzing (issue 11): the text the full-text indexer stores for a message is computed
for any message. A body whose Content-Type charset holds octets that are not UTF-8 made
``body_text`` raise UnicodeEncodeError, and so did a charset naming a codec that refuses the
"replace" handler, the body-side twin of the encoded-word bug (a NUL in the charset of an
encoded word) that stopped indexing for everyone.

Fixed by decoding that never raises (message/headers.py and message/text.py).
"""

from __future__ import annotations

import pytest

from mailstead.message import parse_message
from mailstead.message.text import searchable

CHARSETS = [b'"IS\xff\xff\xffO4-95"', b"idna", b"undefined"]


@pytest.mark.parametrize("charset", CHARSETS)
def test_body_with_an_odd_charset_is_indexed(charset):
    raw = (
        b"Subject: hello\r\nContent-Type: text/plain; charset=" + charset + b"\r\n\r\n"
        b"caf\xc3\xa9 body\r\n"
    )
    indexed = searchable(raw, parse_message(raw))
    assert "hello" in indexed.headers
    assert "body" in indexed.body


@pytest.mark.parametrize("charset", [b"x\x00y", b"base64", b"rot13", b"zlib", b"idna"])
def test_subject_with_an_odd_encoded_word_charset_is_indexed(charset):
    raw = b"Subject: =?" + charset + b"?q?a?= plain\r\n\r\nbody\r\n"
    indexed = searchable(raw, parse_message(raw))
    assert "plain" in indexed.fields[0]
