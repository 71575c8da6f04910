"""RFC 5322 header block: field splitting with byte offsets, unfolding, RFC 2047 decoding.

The field splitter follows Dovecot's message-header-parser so that what the IMAP server
derives from a header (ENVELOPE, BODYSTRUCTURE) matches Dovecot's answers:

- the header ends at the first empty line (``LF`` or ``CRLF`` alone), or at the end of input;
- a line starting with SP or HTAB continues the previous field;
- a line without a colon is kept as a field with an empty name whose value is the whole line;
- a name longer than ``MAX_NAME_LEN`` octets is treated the same way (the line is all value);
- whitespace between the name and the colon is not part of the name (``Subject : x``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "MAX_NAME_LEN",
    "HeaderField",
    "charset_codec",
    "decode_header_value",
    "decode_text",
    "get_all",
    "get_header",
    "parse_header_fields",
    "skip_cfws",
    "split_header_body",
    "storable",
    "unfold",
]

# Dovecot's MESSAGE_HEADER_NAME_MAX_LEN: longer "names" make the line a nameless value.
MAX_NAME_LEN = 1000


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: ``raw[start:end]`` is the whole field including its line ending(s).

    ``value`` is exactly the bytes after the colon up to (not including) the final line
    ending; continuation lines are included verbatim (not unfolded).
    """

    name: str
    value: bytes
    start: int
    end: int


def _decode_name(name: bytes) -> str:
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name.decode("latin-1")


def split_header_body(raw: bytes) -> int:
    """Offset where the body starts: just after the empty line, or ``len(raw)`` if none."""
    _, end, _ = _scan_fields(raw, 0, len(raw), None, want_fields=False)
    return end


def parse_header_fields(raw: bytes, start: int = 0, end: int | None = None) -> list[HeaderField]:
    """Split the header block that begins at ``start`` into fields (offsets into ``raw``).

    Parsing stops at the empty line that ends the header (or at ``end``).
    """
    stop = len(raw) if end is None else min(end, len(raw))
    fields, _, _ = _scan_fields(raw, start, stop, None, want_fields=True)
    return fields


def _scan_fields(
    raw: bytes,
    pos: int,
    end: int,
    stop_at: Callable[[int], bool] | None,
    *,
    want_fields: bool,
) -> tuple[list[HeaderField], int, bool]:
    """Scan a header block; return (fields, offset where the body begins, cut).

    ``stop_at`` is asked at the start of every physical line that begins with ``--``;
    when it returns True the header ends *before* that line (a MIME boundary cut it) and
    the returned offset is that line's start and ``cut`` is True (the caller gives the
    preceding newline to the enclosing body, as Dovecot does).
    """
    fields: list[HeaderField] = []
    find = raw.find
    while pos < end:
        nl = find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        first = raw[pos]
        if first == 0x0A or (first == 0x0D and pos + 1 < end and raw[pos + 1] == 0x0A):
            return fields, line_end, False  # the empty line belongs to the header
        if first == 0x2D and stop_at is not None and stop_at(pos):
            return fields, pos, True
        field_start = pos
        # continuation lines: the next line starts with SP / HTAB
        while line_end < end and raw[line_end] in (0x20, 0x09):
            nl = find(b"\n", line_end, end)
            line_end = end if nl < 0 else nl + 1
        if want_fields:
            value_end = line_end
            if value_end > field_start and raw[value_end - 1] == 0x0A:
                value_end -= 1
                if value_end > field_start and raw[value_end - 1] == 0x0D:
                    value_end -= 1
            first_nl = find(b"\n", field_start, value_end)
            first_line_end = value_end if first_nl < 0 else first_nl
            colon = find(b":", field_start, first_line_end)
            if colon < 0:
                fields.append(HeaderField("", raw[field_start:value_end], field_start, line_end))
            else:
                name_end = colon
                while name_end > field_start and raw[name_end - 1] in (0x20, 0x09):
                    name_end -= 1
                if name_end - field_start > MAX_NAME_LEN:
                    fields.append(
                        HeaderField("", raw[field_start:value_end], field_start, line_end)
                    )
                else:
                    fields.append(
                        HeaderField(
                            _decode_name(raw[field_start:name_end]),
                            raw[colon + 1 : value_end],
                            field_start,
                            line_end,
                        )
                    )
        pos = line_end
    return fields, pos, False


def get_header(fields: Iterable[HeaderField], name: str) -> bytes | None:
    """The value of the first field called ``name`` (case-insensitive), or None."""
    lname = name.lower()
    for f in fields:
        if f.name.lower() == lname:
            return f.value
    return None


def get_all(fields: Iterable[HeaderField], name: str) -> list[bytes]:
    """The values of every field called ``name`` (case-insensitive), in order."""
    lname = name.lower()
    return [f.value for f in fields if f.name.lower() == lname]


_FOLD_RE = re.compile(rb"\r?\n(?=[ \t])")
_CRLF_RE = re.compile(rb"[\r\n]")


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding: drop every line break that is followed by WSP.

    Stray CR / LF left over (not followed by WSP) are dropped too.
    """
    if b"\n" not in value and b"\r" not in value:
        return value
    return _CRLF_RE.sub(b"", _FOLD_RE.sub(b"", value))


# RFC 2047 §2: encoded-word = "=?" charset ["*" language] "?" encoding "?" encoded-text "?="
_EW_RE = re.compile(rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")
_WS_ONLY = re.compile(rb"[ \t]*\Z")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _ew_payload(enc: bytes, text: bytes) -> bytes | None:
    if enc in (b"B", b"b"):
        stripped = text.rstrip(b"=")
        if len(stripped) % 4 == 1:
            return None
        try:
            return base64.b64decode(stripped + b"=" * (-len(stripped) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    # RFC 2047 §4.2: "_" is SP, "=XX" an octet
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))


_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_CHARSET = 64  # IANA charset names are at most 40 characters (RFC 2978 §2.3)


def charset_codec(name: bytes | str) -> str | None:
    """The Python text codec for a MIME charset name, or None when there is none (unknown
    names, names with NUL or non-ASCII characters, codecs that are not text encodings)."""
    try:
        cs = name.decode("ascii") if isinstance(name, bytes) else name
        if not cs or len(cs) > _MAX_CHARSET or not cs.isascii() or "\x00" in cs:
            return None
        codec = codecs.lookup(cs).name
        b"".decode(codec)  # LookupError for bytes-to-bytes codecs (base64, zlib, rot13 ...)
    except (UnicodeError, LookupError, ValueError, TypeError):
        return None
    return codec


def decode_text(data: bytes, codec: str | None) -> str:
    """``data`` decoded with ``codec`` (from `charset_codec`; None: UTF-8), never raising:
    undecodable octets become U+FFFD, and so does everything when the codec fails as a whole
    (some refuse the replace handler). The result has no lone surrogates (see `storable`)."""
    try:
        text = data.decode(codec or "utf-8", "replace")
    except (UnicodeError, LookupError, ValueError, TypeError):
        text = data.decode("utf-8", "replace")
    return storable(text)


def storable(text: str) -> str:
    """``text`` without lone surrogates, which UTF-8 (and so SQLite) refuses: surrogate escapes
    of undecodable octets are decoded as UTF-8 with replacement, other surrogates are U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def decode_header_value(value: bytes) -> str:
    """Unfold and decode RFC 2047 encoded words (B and Q, any charset Python knows); never
    raises, and the result has no lone surrogates.

    Adjacent encoded words separated only by whitespace are joined (and consecutive words
    in the same charset are decoded together, so a character split across words survives);
    invalid words are left as they are; other 8-bit text is UTF-8, else Latin-1.
    """
    data = unfold(value).strip(b" \t")
    if b"=?" not in data:
        return _text(data)
    out: list[str] = []
    pending_cs: str | None = None
    pending: bytearray = bytearray()
    pos = 0
    last_was_word = False

    def flush() -> None:
        nonlocal pending_cs
        if pending_cs is not None:
            out.append(decode_text(bytes(pending), pending_cs))
            pending.clear()
            pending_cs = None

    for m in _EW_RE.finditer(data):
        cs = charset_codec(m.group(1))
        payload = _ew_payload(m.group(2), m.group(3)) if cs is not None else None
        if cs is None or payload is None:
            continue  # invalid: stays part of the surrounding literal text
        between = data[pos : m.start()]
        if not (last_was_word and _WS_ONLY.match(between)):
            flush()
            if between:
                out.append(_text(between))
        if pending_cs is not None and pending_cs != cs:
            flush()
        pending_cs = cs
        pending += payload
        pos = m.end()
        last_was_word = True
    flush()
    if pos < len(data):
        out.append(_text(data[pos:]))
    return "".join(out)


def skip_cfws(value: bytes, pos: int) -> int | None:
    """Past whitespace, line breaks and (nested) comments (RFC 5322 §3.2.2 CFWS) from ``pos``;
    None for an unclosed comment."""
    depth = 0
    while pos < len(value):
        c = value[pos]
        if depth:
            if c == 0x5C:  # quoted-pair
                pos += 2
                continue
            if c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
        elif c == 0x28:
            depth = 1
        elif c not in b" \t\r\n":
            return pos
        pos += 1
    return None if depth else pos
