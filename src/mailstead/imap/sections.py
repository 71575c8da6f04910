"""BODY[section]<partial>, BINARY[section] and BINARY.SIZE[section] from the raw message.

RFC 9051 §6.4.5 and RFC 3516, with Dovecot 2.3's choices where the RFCs leave room
(imap-msgpart.c, istream-header-filter.c, index-mail-binary.c):

- Part numbers walk the MIME tree; a non-multipart has one part, ``1``, its body; inside
  a message/rfc822 part the numbers continue in the embedded message. Part ``0`` of a
  multipart is its first part (Dovecot counts from there). A part that does not exist
  gives the empty string (``{0}``), never NIL.
- ``n.MIME`` is part n's own header; for a message/rfc822 part that is its MIME header,
  and ``1.MIME`` of a non-multipart message is the message header. ``n.HEADER``,
  ``n.TEXT`` and ``n.HEADER.FIELDS[.NOT]`` need n to be message/rfc822 (else ``{0}``).
- HEADER.FIELDS keeps whole fields (continuation lines included) whose name, compared
  case-insensitively octet by octet, is listed; message order; the name is what precedes
  the colon less trailing SP/HTAB, and a line without a colon has the empty name. The
  blank line that ends the header is kept; at the top level a header without one gets
  one added (preceded by a line break if the last field had none). HEADER.FIELDS.NOT and
  sections inside message/rfc822 parts add nothing.
- NUL octets are sent as 0x80 in BODY answers (IMAP literals cannot carry NUL).
- BINARY decodes base64 and quoted-printable (Dovecot's decoders: strict base64, lenient
  QP that keeps invalid ``=`` sequences); for a multipart or message/rfc822 part every
  leaf below is decoded and every converted part's header loses Content-Transfer-Encoding
  and gains ``Content-Transfer-Encoding: binary`` before its blank line. The last
  Content-Transfer-Encoding field of a part counts. Unknown encodings: ``UnknownCte``.

Line endings: the store keeps messages CRLF-normalised, so slices of ``raw`` are sent as
they are and sizes are ``len(raw)``-based. A bare LF that still reaches these functions (only a
binary APPEND keeps them) is sent as CRLF in BODY answers (as Dovecot's virtual size counts it)
and as stored in the content BINARY answers (RFC 3516: binary content is not altered).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from mailstead.message import MimePart, ParsedMessage
from mailstead.message._rfc822 import Lexer
from mailstead.message.headers import HeaderField, parse_header_fields

__all__ = [
    "BadEncoding",
    "BinaryError",
    "Partial",
    "Section",
    "SectionKind",
    "Streamed",
    "UnknownCte",
    "binary",
    "binary_item",
    "binary_item_streamed",
    "binary_size",
    "binary_size_item",
    "body_item",
    "body_item_streamed",
    "body_section",
    "find_part",
]

SectionKind = Literal["", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]
_KINDS = ("", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
_ATOM_SPECIALS = re.compile(rb'[\x00-\x20\x7f-\xff(){%*"\\\]]')


@dataclass(frozen=True, slots=True)
class Section:
    """A section spec: ``BODY[1.2.HEADER.FIELDS (From To)]`` is
    ``Section((1, 2), "HEADER.FIELDS", ("From", "To"))``; ``BODY[]`` is ``Section()``."""

    part: tuple[int, ...] = ()
    kind: SectionKind = ""
    fields: tuple[str, ...] = ()
    # which field names the client sent as quoted strings (Dovecot echoes those quoted);
    # empty: quote only names that are not atoms
    quoted: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown section kind {self.kind!r}")
        if self.kind == "MIME" and not self.part:
            raise ValueError("MIME needs a part number (RFC 9051 §6.4.5)")
        if self.kind.startswith("HEADER.FIELDS") != bool(self.fields):
            raise ValueError("HEADER.FIELDS[.NOT] and only they take a non-empty field list")
        if any(n < 0 for n in self.part):
            raise ValueError("part numbers are not negative")

    def label(self) -> bytes:
        """What goes between the brackets in the answer: upper-case, field names upper-case
        (atoms as they are, anything else quoted), as Dovecot echoes it."""
        out = ".".join(str(n) for n in self.part)
        if self.kind:
            out = f"{out}.{self.kind}" if out else self.kind
        text = out.encode("ascii")
        if self.fields:
            names = []
            for i, f in enumerate(self.fields):
                b = f.upper().encode("utf-8", "surrogateescape")
                as_string = self.quoted[i] if i < len(self.quoted) else False
                if b and not as_string and _ATOM_SPECIALS.search(b) is None:
                    names.append(b)
                else:
                    names.append(b'"' + re.sub(rb'(["\\])', rb"\\\1", b) + b'"')
            text += b" (" + b" ".join(names) + b")"
        return text


@dataclass(frozen=True, slots=True)
class Partial:
    """``<origin.count>``; ``count`` None for Dovecot's ``<origin>`` (to the end)."""

    origin: int
    count: int | None = None


class BinaryError(Exception):
    """BINARY cannot be answered; the FETCH fails with ``NO [code] text``."""

    code = "PARSE"
    text = "Invalid data in MIME part"


class UnknownCte(BinaryError):
    """A Content-Transfer-Encoding BINARY does not know (RFC 3516 §4.3: the command fails
    with ``NO [UNKNOWN-CTE]``)."""

    code = "UNKNOWN-CTE"
    text = "Unknown Content-Transfer-Encoding"


class BadEncoding(BinaryError):
    """Broken base64 or quoted-printable data: ``NO [PARSE] Invalid data in MIME part`` as
    Dovecot answers (it drops the connection instead when the damage is at the very end
    of the part; we answer NO there too)."""


# -- part lookup ------------------------------------------------------------------------------


def find_part(parsed: ParsedMessage, numbers: tuple[int, ...]) -> MimePart | None:
    """The part ``numbers`` names (imap_msgpart_find), or None. ``()`` is the root."""
    part: MimePart | None = parsed.root
    n = len(numbers)
    for i, num in enumerate(numbers):
        if part is None:
            break
        more = i + 1 < n
        if part.type == "multipart":
            kids = part.children
            idx = max(num, 1) - 1
            part = kids[idx] if idx < len(kids) else None
        elif num != 1 or (more and part.message is None):
            part = None
        if part is not None and more and part.message is not None:
            part = part.message.root
    return part


# -- helpers ----------------------------------------------------------------------------------

_BARE_LF = re.compile(rb"(?<!\r)\n")


def _crlf(data: bytes) -> bytes:
    if data.count(b"\n") != data.count(b"\r\n"):
        return _BARE_LF.sub(b"\r\n", data)
    return data


def _name(raw: bytes, f: HeaderField) -> bytes:
    """The field name as Dovecot's header parser gives it (octets before the colon, less
    trailing SP/HTAB; empty for a line without a colon or with an over-long name)."""
    if not f.name:
        return b""
    colon = raw.index(b":", f.start)
    return raw[f.start : colon].rstrip(b" \t")


def _field_key(name: str | bytes) -> bytes:
    b = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    nul = b.find(b"\0")  # strcasecmp stops at NUL
    return (b if nul < 0 else b[:nul]).lower()


def _header_fields(
    raw: bytes,
    start: int,
    names: tuple[str, ...],
    exclude: bool,
    add_missing_eoh: bool,
) -> bytes:
    """istream-header-filter over the header that starts at ``raw[start]``. Like Dovecot
    it reads on to the first blank line even past the end of the part."""
    wanted = {_field_key(n) for n in names}
    fields = parse_header_fields(raw, start)
    out = bytearray()
    for f in fields:
        key = _name(raw, f).lower()
        nul = key.find(b"\0")
        if nul >= 0:
            key = key[:nul]
        if (key in wanted) != exclude:
            out += raw[f.start : f.end]
    last = fields[-1].end if fields else start
    if last < len(raw):  # stopped at the blank line
        out += b"\r\n"
    elif add_missing_eoh:
        if out and not out.endswith(b"\n"):
            out += b"\r\n"
        out += b"\r\n"
    return _crlf(bytes(out))


def _header_end(raw: bytes, part: MimePart) -> int:
    """Where Dovecot ends the part's header: an empty body directly followed by a boundary
    line takes the header's blank line as the boundary's leading line break."""
    end = part.body_start
    if part.body_end == end < len(raw) and raw.startswith(b"--", end):
        if raw[end - 2 : end] == b"\r\n" and raw[end - 4 : end - 2] == b"\r\n":
            return end - 2
        if raw[end - 2 : end] == b"\n\n":
            return end - 1
    return end


def _section_data(raw: bytes, parsed: ParsedMessage, section: Section) -> bytes:
    kind = section.kind
    if not section.part:
        if kind == "":
            return _crlf(raw)
        if kind == "HEADER":
            return _crlf(raw[: parsed.header_end])
        if kind == "TEXT":
            return _crlf(raw[parsed.header_end :])
        return _header_fields(
            raw,
            0,
            section.fields,
            exclude=kind == "HEADER.FIELDS.NOT",
            add_missing_eoh=kind == "HEADER.FIELDS",
        )
    part = find_part(parsed, section.part)
    if part is None:
        return b""
    if kind == "MIME":
        return _crlf(raw[part.header_start : _header_end(raw, part)])
    if kind == "":
        return _crlf(raw[part.body_start : part.body_end])
    if part.message is None:  # HEADER / TEXT / HEADER.FIELDS need message/rfc822
        return b""
    inner = part.message.root
    if kind == "HEADER":
        return _crlf(raw[inner.header_start : _header_end(raw, inner)])
    if kind == "TEXT":
        return _crlf(raw[inner.body_start : inner.body_end])
    return _header_fields(
        raw,
        inner.header_start,
        section.fields,
        exclude=kind == "HEADER.FIELDS.NOT",
        add_missing_eoh=False,
    )


def _partial(data: bytes, partial: Partial | None) -> bytes:
    if partial is None:
        return data
    if partial.origin >= len(data):
        return b""
    if partial.count is None:
        return data[partial.origin :]
    return data[partial.origin : partial.origin + partial.count]


def body_section(
    raw: bytes, parsed: ParsedMessage, section: Section, partial: Partial | None = None
) -> bytes:
    """The octets of ``BODY[section]<partial>`` (NUL sent as 0x80)."""
    data = _partial(_section_data(raw, parsed, section), partial)
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return data


def is_header_only(section: Section) -> bool:
    """Whether the section is read from the top-level header alone."""
    return not section.part and section.kind in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


def header_section(header: bytes, section: Section, partial: Partial | None = None) -> bytes:
    """A top-level header section from the header block alone (the message's octets up to its
    body): what :func:`body_section` answers from the whole message."""
    if section.kind == "HEADER":
        data = _crlf(header)
    else:
        exclude = section.kind == "HEADER.FIELDS.NOT"
        data = _header_fields(header, 0, section.fields, exclude, not exclude)
    data = _partial(data, partial)
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return data


def header_item(header: bytes, section: Section, partial: Partial | None = None) -> bytes:
    """The FETCH item ``BODY[HEADER...]<origin> {n}\r\n...`` from the header block alone."""
    data = header_section(header, section, partial)
    return _item_name(b"BODY", section, partial) + b" {%d}\r\n" % len(data) + data


def item_name(section: Section, partial: Partial | None = None) -> bytes:
    """``BODY[section]<origin>`` as FETCH names the item in its answer."""
    return _item_name(b"BODY", section, partial)


def _item_name(prefix: bytes, section: Section, partial: Partial | None) -> bytes:
    name = prefix + b"[" + section.label() + b"]"
    if partial is not None:
        name += b"<%d>" % partial.origin
    return name


def body_item(
    raw: bytes, parsed: ParsedMessage, section: Section, partial: Partial | None = None
) -> bytes:
    """The FETCH item ``BODY[section]<origin> {n}\\r\\n...`` (always a literal, as Dovecot)."""
    data = body_section(raw, parsed, section, partial)
    return _item_name(b"BODY", section, partial) + b" {%d}\r\n" % len(data) + data


# -- BINARY (RFC 3516) ------------------------------------------------------------------------

_CTE_78BIT, _CTE_BINARY, _CTE_QP, _CTE_BASE64 = 1, 2, 3, 4
_CTES = {b"7bit": _CTE_78BIT, b"8bit": _CTE_78BIT, b"binary": _CTE_BINARY}
_CTES[b"quoted-printable"] = _CTE_QP
_CTES[b"base64"] = _CTE_BASE64


def _parse_cte(value: bytes) -> int | None:
    """message_decoder_parse_cte(): one token, optionally followed by ``;``."""
    lex = Lexer(value)
    lex.skip_lwsp()
    tok = bytearray()
    if lex.mime_token(tok) == 1:
        lex.skip_lwsp()
        if lex.cur() != 0x3B:
            return None
    return _CTES.get(bytes(tok).lower())


def _part_cte(raw: bytes, part: MimePart) -> tuple[int | None, list[HeaderField]]:
    fields = parse_header_fields(raw, part.header_start, part.body_start)
    cte: int | None = _CTE_78BIT
    for f in fields:
        if f.name.lower() == "content-transfer-encoding":
            cte = _parse_cte(f.value)
    return cte, fields


_B64 = bytes(
    (
        ord(c) - ord("A")
        if "A" <= c <= "Z"
        else ord(c) - ord("a") + 26
        if "a" <= c <= "z"
        else ord(c) - ord("0") + 52
        if "0" <= c <= "9"
        else 62
        if c == "+"
        else 63
        if c == "/"
        else 0xFF
    )
    for c in map(chr, range(256))
)
_B64_SPACE = re.compile(rb"[ \t\r\n]+")
_B64_CLEAN = re.compile(rb"[A-Za-z0-9+/]*\Z")


def _base64(data: bytes) -> bytes:
    """Dovecot's base64 decoder: whitespace skipped, anything else invalid, ``=`` padding
    only where it belongs and nothing after it."""
    s = _B64_SPACE.sub(b"", data)
    body, pad, rest = s.partition(b"=")
    if _B64_CLEAN.match(body) is None:
        raise BadEncoding("invalid base64 data")
    q = len(body) % 4
    if pad:
        # "xx==" or "xxx=", and nothing after it
        if not ((q == 2 and rest == b"=") or (q == 3 and rest == b"")):
            raise BadEncoding("invalid base64 padding")
    elif q:
        raise BadEncoding("truncated base64 data")
    full = len(body) - q
    try:
        out = binascii.a2b_base64(body[:full]) if full else b""
    except binascii.Error as e:  # pragma: no cover - body is clean
        raise BadEncoding(str(e)) from e
    if q:
        tail = body[full:]
        bits = 0
        for c in tail:
            bits = (bits << 6) | _B64[c]
        bits <<= 6 * (4 - q)
        out += bits.to_bytes(3, "big")[: q - 1]
    return out


_HEXDIGITS = frozenset(b"0123456789ABCDEFabcdef")
_QP_MAX_WS = 76  # qp-decoder.c: whitespace kept per run
_QP_EASY = re.compile(rb"[ \t\r\n=]")


def _qp(data: bytes) -> bytes:
    """Dovecot's quoted-printable decoder (qp-decoder.c): soft line breaks, trailing
    whitespace dropped, lowercase hex accepted, LF sent as CRLF. Anything else it calls
    invalid (``=`` not followed by two hex digits, a CR alone, a dangling ``=``) fails
    the fetch there, so it raises BadEncoding here."""
    if _QP_EASY.search(data) is None:
        return data
    out = bytearray()
    n = len(data)
    i = 0
    while i < n:
        c = data[i]
        if c == 0x0A:
            out += b"\r\n"
            i += 1
        elif c == 0x0D:
            if i + 1 < n and data[i + 1] == 0x0A:
                out += b"\r\n"
                i += 2
            else:
                raise BadEncoding("CR not followed by LF")
        elif c in (0x20, 0x09):
            j = i
            while j < n and data[j] in (0x20, 0x09):
                j += 1
            if j == n or data[j] == 0x0A or (data[j] == 0x0D and j + 1 < n and data[j + 1] == 0x0A):
                i = j  # trailing whitespace: dropped
            elif data[j] == 0x0D:
                raise BadEncoding("CR not followed by LF")
            else:
                if j - i > _QP_MAX_WS:
                    raise BadEncoding("too much whitespace")
                out += data[i:j]
                i = j
        elif c == 0x3D:
            if i + 2 < n and data[i + 1] in _HEXDIGITS and data[i + 2] in _HEXDIGITS:
                out.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            j = i + 1
            while j < n and data[j] in (0x20, 0x09):
                j += 1
            if j < n and data[j] == 0x0A:
                i = j + 1  # soft line break
            elif j + 1 < n and data[j] == 0x0D and data[j + 1] == 0x0A:
                i = j + 2
            else:
                raise BadEncoding("'=' not followed by two hex digits or a line break")
        else:
            k = _QP_EASY.search(data, i)
            e = n if k is None else k.start()
            out += data[i:e]
            i = e
    return bytes(out)


class _Binary:
    __slots__ = ("converted", "copy_start", "has_nuls", "out", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.out: list[bytes] = []
        self.copy_start = 0
        self.has_nuls = False
        self.converted = False

    def copy_to(self, end: int) -> None:
        if end > self.copy_start:
            self.out.append(_crlf(self.raw[self.copy_start : end]))

    def add(self, part: MimePart, include_hdr: bool) -> None:
        raw = self.raw
        cte, fields = _part_cte(raw, part)
        if cte is None:
            raise UnknownCte("unknown Content-Transfer-Encoding")
        if b"\0" in raw[part.header_start : part.body_start]:
            self.has_nuls = True
        kids = part.children if part.message is None else [part.message.root]
        if include_hdr:
            # a multipart or message/rfc822 keeps its header as it is (Dovecot 2.3.19)
            if cte in (_CTE_QP, _CTE_BASE64) and not kids:
                if self.copy_start != 0:
                    self.copy_to(part.header_start)
                self.converted = True
                hdr = bytearray()
                for f in fields:
                    if _name(raw, f).lower() != b"content-transfer-encoding":
                        hdr += raw[f.start : f.end]
                last = fields[-1].end if fields else part.header_start
                if last < part.body_start:  # the blank line
                    hdr += b"Content-Transfer-Encoding: binary\r\n\r\n"
                self.out.append(_crlf(bytes(hdr)))
            else:
                self.copy_to(_header_end(raw, part))
        # Dovecot's header may stop short of body_start (see _header_end); the converted
        # header keeps its blank line and the boundary keeps the same line break
        hdr_end = _header_end(raw, part)
        self.copy_start = hdr_end
        end = part.body_end if hdr_end == part.body_start else hdr_end
        if kids:
            for k in kids:
                self.add(k, True)
            self.copy_to(end)
            self.copy_start = end
            return
        if end > part.body_start:
            body = raw[part.body_start : end]
            if cte == _CTE_QP:
                self.out.append(_qp(body))
                self.converted = True
            elif cte == _CTE_BASE64:
                self.out.append(_base64(body))
                self.converted = True
            else:
                if b"\0" in body:
                    self.has_nuls = True
                # kept as stored: a binary APPEND (literal8) may hold bare LFs (RFC 3516 §4.1)
                self.out.append(body)
        self.copy_start = end


def _binary(raw: bytes, parsed: ParsedMessage, section: Section) -> tuple[bytes, bool] | None:
    """(decoded octets, whether Dovecot calls them binary), or None for no such part."""
    if section.kind not in ("", "TEXT"):
        raise ValueError("BINARY takes part numbers (and TEXT), RFC 3516 §4.2")
    if section.part:
        part = find_part(parsed, section.part)
        if part is None:
            return None
        if section.kind == "TEXT":
            if part.message is None:
                return None
            part = part.message.root
    else:
        part = parsed.root
    b = _Binary(raw)
    include_hdr = not section.part and section.kind == ""
    if not include_hdr:
        b.copy_start = part.body_start
    b.add(part, include_hdr)
    return b"".join(b.out), b.converted or b.has_nuls


def binary(raw: bytes, parsed: ParsedMessage, part: tuple[int, ...] | Section) -> bytes | None:
    """The decoded content of ``BINARY[part]`` (``()`` is the whole message with every
    part decoded). None if the part does not exist (Dovecot answers ``{0}``); raises
    UnknownCte when the encoding is unknown, BadEncoding when the data is broken."""
    section = part if isinstance(part, Section) else Section(part)
    got = _binary(raw, parsed, section)
    return None if got is None else got[0]


def binary_size(raw: bytes, parsed: ParsedMessage, part: tuple[int, ...] | Section) -> int:
    """``BINARY.SIZE[part]``: the decoded size (0 for a part that does not exist)."""
    got = binary(raw, parsed, part)
    return 0 if got is None else len(got)


def binary_item(
    raw: bytes,
    parsed: ParsedMessage,
    part: tuple[int, ...] | Section,
    partial: Partial | None = None,
) -> bytes:
    """The FETCH item ``BINARY[part]<origin> ~{n}\\r\\n...``: a literal8 (``~{n}``) when
    anything was decoded or the content holds NUL, as Dovecot; otherwise ``{n}`` with NUL
    sent as 0x80."""
    section = part if isinstance(part, Section) else Section(part)
    got = _binary(raw, parsed, section)
    data, is_binary = (b"", False) if got is None else got
    data = _partial(data, partial)
    if not is_binary and b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    prefix = b" ~{%d}\r\n" if is_binary else b" {%d}\r\n"
    return _item_name(b"BINARY", section, partial) + prefix % len(data) + data


def binary_size_item(raw: bytes, parsed: ParsedMessage, part: tuple[int, ...] | Section) -> bytes:
    """The FETCH item ``BINARY.SIZE[part] n``."""
    section = part if isinstance(part, Section) else Section(part)
    return b"BINARY.SIZE[" + section.label() + b"] %d" % binary_size(raw, parsed, section)


# -- large answers, sent in pieces ------------------------------------------------------------

STREAM_PIECE = 256 << 10  # octets of a streamed literal per piece


@dataclass(frozen=True, slots=True)
class Streamed:
    """A FETCH item sent in pieces: ``head`` (the item name and the literal's ``{n}\r\n`` or
    ``~{n}\r\n``), then the ``size`` octets ``pieces()`` yields. The octets are exactly those
    of the item :func:`body_item` / :func:`binary_item` would build whole."""

    head: bytes
    size: int
    pieces: Callable[[], Iterator[bytes]]


def _slices(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    for pos in range(start, end, STREAM_PIECE):
        yield raw[pos : min(end, pos + STREAM_PIECE)]


def _plain_region(raw: bytes, parsed: ParsedMessage, section: Section) -> tuple[int, int] | None:
    """Where ``BODY[section]`` is one slice of ``raw`` (whole message, TEXT, a part's body or
    an embedded message's text), or None for the other sections."""
    kind = section.kind
    if not section.part:
        if kind == "":
            return 0, len(raw)
        return (parsed.header_end, len(raw)) if kind == "TEXT" else None
    part = find_part(parsed, section.part)
    if part is None:
        return None
    if kind == "":
        return part.body_start, part.body_end
    if kind == "TEXT" and part.message is not None:
        inner = part.message.root
        return inner.body_start, inner.body_end
    return None


def body_item_streamed(
    raw: bytes, parsed: ParsedMessage, section: Section, partial: Partial | None = None
) -> Streamed | None:
    """:func:`body_item` as pieces of ``raw`` when the answer is a slice of it as stored (no
    partial, no bare LF to send as CRLF, no NUL to send as 0x80); None otherwise."""
    region = None if partial is not None else _plain_region(raw, parsed, section)
    if region is None:
        return None
    start, end = region
    if raw.find(b"\0", start, end) >= 0 or raw.count(b"\n", start, end) != raw.count(
        b"\r\n", start, end
    ):
        return None
    head = _item_name(b"BODY", section, None) + b" {%d}\r\n" % (end - start)
    return Streamed(head, end - start, lambda: _slices(raw, start, end))


def _base64_pieces(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """:func:`_base64` of ``raw[start:end]``, decoded piece by piece: the same octets, and
    BadEncoding for the same inputs (raised when the damage is reached)."""
    carry = b""  # base64 characters not decoded yet (fewer than 4)
    tail: bytes | None = None  # what follows the first "=", once there is one
    for pos in range(start, end, STREAM_PIECE):
        text = _B64_SPACE.sub(b"", raw[pos : min(end, pos + STREAM_PIECE)])
        if tail is not None:
            tail += text
            if len(tail) > 1:
                raise BadEncoding("invalid base64 padding")
            continue
        body, pad, rest = text.partition(b"=")
        if _B64_CLEAN.match(body) is None:
            raise BadEncoding("invalid base64 data")
        body = carry + body
        full = len(body) - len(body) % 4
        if full:
            yield binascii.a2b_base64(body[:full])
        carry = body[full:]
        if pad:
            tail = rest
            if len(tail) > 1:
                raise BadEncoding("invalid base64 padding")
    q = len(carry)
    if tail is not None:
        if not ((q == 2 and tail == b"=") or (q == 3 and tail == b"")):
            raise BadEncoding("invalid base64 padding")
    elif q:
        raise BadEncoding("truncated base64 data")
    if q:
        bits = 0
        for c in carry:
            bits = (bits << 6) | _B64[c]
        bits <<= 6 * (4 - q)
        yield bits.to_bytes(3, "big")[: q - 1]


def binary_item_streamed(
    raw: bytes,
    parsed: ParsedMessage,
    part: tuple[int, ...] | Section,
    partial: Partial | None = None,
) -> Streamed | None:
    """:func:`binary_item` of a base64 leaf part (``BINARY[n]``, no partial), decoded as it
    is sent; the size is counted by a first decoding pass, which also finds broken data
    (BadEncoding) before anything is sent. None for every other case."""
    section = part if isinstance(part, Section) else Section(part)
    if partial is not None or not section.part or section.kind != "":
        return None
    leaf = find_part(parsed, section.part)
    if leaf is None or leaf.children or leaf.message is not None:
        return None
    cte, _ = _part_cte(raw, leaf)
    if cte != _CTE_BASE64:
        return None
    hdr_end = _header_end(raw, leaf)  # as _Binary.add
    end = leaf.body_end if hdr_end == leaf.body_start else hdr_end
    start = leaf.body_start
    if end <= start:
        return None
    size = sum(len(piece) for piece in _base64_pieces(raw, start, end))
    head = _item_name(b"BINARY", section, None) + b" ~{%d}\r\n" % size
    return Streamed(head, size, lambda: _base64_pieces(raw, start, end))
