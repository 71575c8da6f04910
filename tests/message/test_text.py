"""The searchable text of a message (index and scan share it)."""

from __future__ import annotations

from mailstead.message import parse_message
from mailstead.message.text import body_text, searchable


def nested(depth: int) -> bytes:
    """``depth`` message/rfc822 parts, each inside the previous one."""
    inner = b"Subject: level %d\r\n\r\ninnermost text\r\n" % depth
    for level in range(depth - 1, -1, -1):
        inner = (
            b"Subject: level %d\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
            % level
            + inner
        )
    return inner


def test_deeply_nested_messages_are_read_once_per_part():
    """Each embedded message is visited once (re-walking each level made indexing a crafted
    message with 100+ levels take exponential time: a denial of service)."""
    raw = nested(60)
    parsed = parse_message(raw)
    assert body_text(raw, parsed.root).count("innermost text") == 1
    headers, body, _ = searchable(raw, parsed)
    assert body.count("innermost text") == 1
    assert headers.count("level 30\n") == 1


def test_declared_encoding_without_mime_version_is_decoded_for_search():
    raw = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g*d29y\r\nbGQ=\r\n"
    text = body_text(raw, parse_message(raw).root)
    assert text == "hello "  # up to the first invalid character, as Dovecot


def test_text_includes_mime_part_headers():
    """RFC 9051 §6.4.4: TEXT searches the header "including MIME header fields" and the body."""
    raw = (
        b"Subject: top\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Description: Hello little man\r\nContent-Type: text/plain\r\n\r\n"
        b"body words\r\n--b--\r\n"
    )
    parsed = parse_message(raw)
    headers, body, _ = searchable(raw, parsed)
    assert "hello little man" in headers
    assert "hello" not in body  # BODY does not see part headers
    assert "hello little man" not in body_text(raw, parsed.root)
