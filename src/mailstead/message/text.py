"""The searchable text of a message: decoded header values and decoded body text.

IMAP SEARCH (RFC 9051 §6.4.4) matches substrings of decoded text, case-insensitively. The same
functions feed the full-text index and the scan that verifies or replaces it, so both agree.
"""

from __future__ import annotations

import base64
import binascii
import quopri

from mailstead.message.addresses import parse_address_list
from mailstead.message.headers import decode_header_value, parse_header_fields
from mailstead.message.mime import MimePart
from mailstead.message.parse import ParsedMessage

ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})


def header_values(raw: bytes, header_end: int, start: int = 0) -> dict[str, list[str]]:
    """Field name (lower-case) → decoded, case-folded values; address fields also list each
    address as ``local@domain`` and its display name, so comments and routes do not hide it."""
    headers: dict[str, list[str]] = {}
    for field in parse_header_fields(raw, start, header_end):
        name = field.name.lower()
        values = headers.setdefault(name, [])
        values.append(decode_header_value(field.value).casefold())
        if name in ADDRESS_FIELDS:
            for address in parse_address_list(field.value):
                if address.local and address.domain:
                    values.append(f"{address.local}@{address.domain}".casefold())
                if address.name:
                    values.append(address.name.casefold())
    return headers


def body_text(raw: bytes, root: MimePart, *, embedded_headers: bool = False) -> str:
    """The decoded text of every text part, embedded messages included (not case-folded);
    with ``embedded_headers``, the decoded header values of embedded messages too."""
    pieces: list[str] = []
    for part in root.walk():
        if part.children:
            continue
        if part.message is not None:
            if embedded_headers:
                inner = header_values(raw, part.message.header_end, start=part.body_start)
                pieces.extend(v for values in inner.values() for v in values)
            pieces.append(body_text(raw, part.message.root, embedded_headers=embedded_headers))
            continue
        if part.type.lower() not in ("text", "message"):
            continue
        data = raw[part.body_start : part.body_end]
        encoding = part.encoding.lower()
        try:
            if encoding == "base64":
                compact = b"".join(data.split())
                data = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=False)
            elif encoding == "quoted-printable":
                data = quopri.decodestring(data)
        except (binascii.Error, ValueError):
            pass
        charset = part.param("charset") or "utf-8"
        try:
            pieces.append(data.decode(charset, errors="replace"))
        except LookupError:
            pieces.append(data.decode("utf-8", errors="replace"))
    return "\n".join(pieces)


def searchable(raw: bytes, parsed: ParsedMessage) -> tuple[str, str]:
    """(headers, body) as the full-text index stores them: case-folded."""
    headers = header_values(raw, parsed.header_end)
    header_text = "\n".join(v for values in headers.values() for v in values)
    # Embedded messages' headers are indexed with the headers: the index is only a prefilter
    # for HEADER keys (they are checked against the top-level header), and TEXT needs them.
    inner = body_text(raw, parsed.root, embedded_headers=True).casefold()
    return header_text + "\n" + inner, body_text(raw, parsed.root).casefold()
