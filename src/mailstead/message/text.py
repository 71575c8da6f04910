"""The searchable text of a message: decoded header values and decoded body text.

IMAP SEARCH (RFC 9051 §6.4.4) matches substrings of decoded text, case-insensitively. The same
functions feed the full-text index and the scan that verifies or replaces it, so both agree.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from typing import NamedTuple

from mailstead.message.addresses import parse_address_list
from mailstead.message.headers import (
    charset_codec,
    decode_header_value,
    decode_text,
    parse_header_fields,
    storable,
)
from mailstead.message.mime import MimePart
from mailstead.message.parse import ParsedMessage

ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})
# Header fields the full-text index also keeps on their own, in this order (SEARCH SUBJECT,
# FROM, TO, CC, BCC are then answered by the index alone).
INDEXED_FIELDS = ("subject", "from", "to", "cc", "bcc")


class Searchable(NamedTuple):
    """What the full-text index stores for one message, case-folded: every header value (with
    embedded messages' and MIME parts' headers), the body text, and each indexed field's values
    (one per line, as :func:`header_values` gives them)."""

    headers: str
    body: str
    fields: tuple[str, ...]


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
                    values.append(storable(f"{address.local}@{address.domain}").casefold())
                if address.name:
                    values.append(storable(address.name).casefold())
    return headers


def body_text(raw: bytes, root: MimePart, *, embedded_headers: bool = False) -> str:
    """The decoded text of every text part, embedded messages included (not case-folded);
    with ``embedded_headers``, the decoded header values of embedded messages and of every MIME
    part too (what TEXT searches besides the top-level header)."""
    pieces: list[str] = []
    seen_headers: set[tuple[int, int]] = set()

    def add_header(start: int, end: int) -> None:
        if (start, end) not in seen_headers:
            seen_headers.add((start, end))
            inner = header_values(raw, end, start=start)
            pieces.extend(v for values in inner.values() for v in values)

    for part in root.walk():  # walk() already descends into embedded messages: no recursion
        if embedded_headers and part is not root:
            add_header(part.header_start, part.body_start)  # RFC 9051 TEXT: MIME headers too
        if part.message is not None:
            if embedded_headers:
                add_header(part.body_start, part.message.header_end)
            continue
        if part.children:
            continue
        if part.type.lower() not in ("text", "message"):
            continue
        data = raw[part.body_start : part.body_end]
        encoding = part.encoding.lower()
        if encoding == "7bit" and part is root and not root.children:
            # Without MIME-Version the structure ignores Content-Transfer-Encoding (as IMAP
            # BODYSTRUCTURE must), but search decodes what the header declares (as Dovecot's)
            encoding = _declared_cte(raw, part.header_start, part.body_start) or encoding
        try:
            if encoding == "base64":
                data = _lenient_base64(data)
            elif encoding == "quoted-printable":
                data = quopri.decodestring(data)
        except (binascii.Error, ValueError):
            pass
        pieces.append(decode_text(data, charset_codec(part.param("charset") or "utf-8")))
    return "\n".join(pieces)


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]*")


def _lenient_base64(data: bytes) -> bytes:
    """Decode up to the first character that is not base64 (as Dovecot's search does),
    tolerating missing padding."""
    compact = b"".join(data.split())
    run = _BASE64_RUN.match(compact)
    valid = run.group(0) if run else b""
    valid = valid[: len(valid) - len(valid) % 4 if len(valid) % 4 == 1 else len(valid)]
    return base64.b64decode(valid + b"=" * (-len(valid) % 4))


def _declared_cte(raw: bytes, start: int, end: int) -> str | None:
    for field in parse_header_fields(raw, start, end):
        if field.name.lower() == "content-transfer-encoding":
            return field.value.decode("ascii", "replace").strip().lower()
    return None


def searchable(raw: bytes, parsed: ParsedMessage) -> Searchable:
    """What the full-text index stores for the message (see :class:`Searchable`)."""
    headers = header_values(raw, parsed.header_end)
    header_text = "\n".join(v for values in headers.values() for v in values)
    # Embedded messages' and MIME parts' headers are indexed with the headers: the index is only
    # a prefilter for HEADER keys (they are checked against the top-level header), and TEXT
    # needs them.
    inner = body_text(raw, parsed.root, embedded_headers=True).casefold()
    fields = tuple(_no_nul("\n".join(headers.get(name, ()))) for name in INDEXED_FIELDS)
    return Searchable(
        _no_nul(header_text + "\n" + inner), _no_nul(body_text(raw, parsed.root).casefold()), fields
    )


def _no_nul(text: str) -> str:
    # FTS5 stops tokenizing at a NUL; a search string never holds one (IMAP strings cannot), so
    # replacing it keeps every substring a search can ask for
    return text.replace("\x00", "\ufffd")
