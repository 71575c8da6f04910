"""Parse a whole message once (at delivery) into a structure IMAP can serve from a cache.

The MIME walk mirrors Dovecot's message-parser, so part boundaries, sizes and line counts
match Dovecot's BODYSTRUCTURE and BODY[section] answers:

- a boundary line is ``--`` + a boundary of any enclosing multipart at the start of a
  line; only a prefix has to match (the longest of the active boundaries wins) and the
  rest of the line is ignored; ``--boundary--`` closes the multipart;
- the [CR]LF before a boundary line belongs to the boundary, not to the body before it;
- a boundary of an outer multipart ends every part nested inside it, even inside an
  embedded message/rfc822, and even in the middle of a header block;
- a missing close boundary ends the multipart at the end of the message;
- a multipart's boundary only counts once its header is ended by an empty line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mailstead.message._rfc822 import NUL_REPLACEMENT, Lexer, parse_content_type
from mailstead.message._rfc822 import parse_rfc2231_params as _rfc2231
from mailstead.message.addresses import Address
from mailstead.message.envelope import Envelope, build_envelope, dovecot_value
from mailstead.message.headers import HeaderField, _scan_fields, decode_header_value, unfold
from mailstead.message.mime import MAX_NESTING, MAX_PARTS, MimePart

__all__ = ["ParsedMessage", "from_json", "parse_message", "to_json"]

# Dovecot's BOUNDARY_STRING_MAX_LEN (RFC 2046 allows 70) and BOUNDARY_END_MAX_LEN
_BOUNDARY_MAX = 70 + 10
_BOUNDARY_LINE_MAX = _BOUNDARY_MAX + 4


@dataclass(slots=True)
class ParsedMessage:
    """A parsed message (the outer one, or one embedded in a message/rfc822 part).

    ``size`` is the message's length in octets; ``header_end`` the offset where its body
    starts. Offsets everywhere are into the outermost raw message. ``fields`` is not
    serialised by ``to_json`` (IMAP re-reads headers from the raw bytes).
    """

    size: int
    header_end: int
    envelope: Envelope
    root: MimePart
    fields: list[HeaderField] = field(default_factory=list)
    # the first Date field's value, kept only when the header has several (ENVELOPE shows the
    # last one, SEARCH SENT* use the first)
    first_date: bytes | None = None

    @property
    def subject(self) -> str:
        s = self.envelope.subject
        return "" if s is None else decode_header_value(s)

    @property
    def from_addresses(self) -> list[Address]:
        return [a for a in self.envelope.from_ if not a.is_group_marker]

    @property
    def message_id(self) -> str | None:
        m = self.envelope.message_id
        if m is None:
            return None
        return unfold(m).strip().decode("utf-8", "replace") or None

    @property
    def date(self) -> datetime | None:
        """The (last) Date field as ENVELOPE shows it, parsed; None when absent or unusable."""
        return _parse_date(self.envelope.date)

    @property
    def sent_date(self) -> datetime | None:
        """The first Date field, parsed: what SEARCH SENT* compare, as Dovecot does."""
        return _parse_date(self.first_date if self.first_date is not None else self.envelope.date)


def _parse_date(d: bytes | None) -> datetime | None:
    if d is None:
        return None
    text = unfold(d).decode("ascii", "replace").strip()
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    # RFC 5322 §3.3 allows a leap second (":60"), which datetime cannot hold: take :59
    leap = _LEAP_SECOND.sub(r"\1:59", text)
    if leap == text:
        return None
    try:
        return parsedate_to_datetime(leap)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_LEAP_SECOND = re.compile(r"(\d{1,2}:\d{2}):60\b")


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class _Boundary:
    __slots__ = ("owner", "text")

    def __init__(self, text: bytes, owner: object) -> None:
        self.text = text
        self.owner = owner


class _Hit:
    """A boundary line: ``pos`` is where the preceding body ends (its [CR]LF),
    ``line`` where ``--`` starts."""

    __slots__ = ("boundary", "close", "line", "pos")

    def __init__(self, pos: int, line: int, boundary: _Boundary, close: bool) -> None:
        self.pos = pos
        self.line = line
        self.boundary = boundary
        self.close = close


# parser flags (Dovecot's MESSAGE_PART_FLAG_*)
_TEXT, _MULTIPART, _DIGEST, _RFC822 = 1, 2, 4, 8


class _Engine:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.n = len(raw)
        self.stack: list[_Boundary] = []
        self.total = 1

    # -- boundaries ----------------------------------------------------------------------
    def match(self, line: int) -> tuple[_Boundary, bool] | None:
        """The boundary whose ``--`` line starts at ``line`` (caller checked the dashes)."""
        if self.total >= MAX_PARTS:
            return None
        raw = self.raw
        start = line + 2
        lf = raw.find(b"\n", start)
        trailing = False
        if lf < 0:
            text = raw[start : min(self.n, start + _BOUNDARY_LINE_MAX)]
        else:
            e = lf - 1 if lf > start and raw[lf - 1] == 0x0D else lf
            text = raw[start:e]
            trailing = len(text) > 2 and text.endswith(b"--")
        best: _Boundary | None = None
        tlen = len(text)
        for b in reversed(self.stack):  # newest first (RFC 2046 §5.1.2)
            blen = len(b.text)
            if blen <= tlen and text.startswith(b.text) and (best is None or len(best.text) < blen):
                best = b
                if blen == tlen or (trailing and blen + 2 == tlen):
                    break
        if best is None:
            return None
        k = start + len(best.text)
        return best, raw[k : k + 2] == b"--"

    def scan(self, pos: int) -> _Hit | None:
        """The next boundary line at or after ``pos`` (which is at a line start)."""
        if not self.stack:
            return None
        raw = self.raw
        if raw.startswith(b"--", pos):
            m = self.match(pos)
            if m is not None:
                return _Hit(pos, pos, m[0], m[1])
        find = raw.find
        i = pos
        while True:
            j = find(b"\n--", i)
            if j < 0:
                return None
            m = self.match(j + 1)
            if m is not None:
                start = j - 1 if j > pos and raw[j - 1] == 0x0D else j
                return _Hit(start, j + 1, m[0], m[1])
            i = j + 1

    def _cut_check(self, line: int) -> bool:
        self._cut = self.match(line)
        return self._cut is not None

    # -- entities ------------------------------------------------------------------------
    def entity(
        self, pos: int, parent_flags: int, mime_child: bool, depth: int
    ) -> tuple[MimePart, list[HeaderField], int, _Hit | None]:
        """Parse the entity (header + body) at ``pos``; return it, its header fields, its
        end offset and the boundary line that ended it (None at the end of input)."""
        raw = self.raw
        self._cut = None
        fields, body_start, cut = _scan_fields(
            raw, pos, self.n, self._cut_check if self.stack else None, want_fields=True
        )
        hit: _Hit | None = None
        if cut:
            m = self._cut
            assert m is not None
            line = body_start
            if line > pos:  # the newline before the boundary goes to the enclosing body
                body_start = line - (2 if raw[line - 2 : line] == b"\r\n" else 1)
            hit = _Hit(line, line, m[0], m[1])
            eoh_blank = False
        else:
            eoh_blank = (fields[-1].end if fields else pos) < body_start

        # -- what message-parser decides (flags, boundary) -------------------------------
        is_mime = mime_child
        ct_value: bytes | None = None
        for f in fields:
            ln = f.name.lower()
            if ln == "content-type":
                is_mime = True
                if ct_value is None:
                    ct_value = dovecot_value(f.value)
            elif ln == "mime-version":
                is_mime = True
        flags = 0
        boundary: bytes | None = None
        if ct_value is not None and is_mime:
            lex = Lexer(ct_value)
            lex.skip_lwsp()
            ret, ctype = parse_content_type(lex)
            lct = ctype.lower()
            if lct == b"message/rfc822":
                flags = _RFC822
            elif lct == b"text" or lct.startswith(b"text/"):
                flags = _TEXT
            elif lct.startswith(b"multipart/"):
                flags = _MULTIPART | (_DIGEST if lct == b"multipart/digest" else 0)
                if ret >= 0:
                    for k, v in _rfc2231(lex):
                        if k.lower() == b"boundary":
                            boundary = v[:_BOUNDARY_MAX]
                            break
        else:
            flags = _RFC822 if parent_flags & _DIGEST else _TEXT

        part = MimePart(pos, body_start, body_start)
        has_ct = self._content_headers(part, fields, is_mime)
        overflow = depth + 1 >= MAX_NESTING
        if flags & _MULTIPART and boundary is not None and eoh_blank and overflow:
            flags &= ~_MULTIPART
        if flags & _RFC822 and (overflow or self.total >= MAX_PARTS):
            flags &= ~_RFC822

        # -- body ------------------------------------------------------------------------
        inner: tuple[MimePart, list[HeaderField]] | None = None
        if flags & _MULTIPART and boundary is not None and eoh_blank:
            # (eoh_blank is False when cut)
            end, hit = self.multipart(part, boundary, body_start, depth, flags)
        elif flags & _RFC822:
            self.total += 1
            if cut:  # header cut by a boundary: an empty embedded message
                ip = MimePart(body_start, body_start, body_start, lines=0)
                ip.params = [("charset", "us-ascii")]
                inner, end = (ip, []), body_start
            else:
                ip, ifields, _end, hit = self.entity(body_start, flags, False, depth + 1)
                inner = (ip, ifields)
                # not _end: if the embedded header was cut, its last newline is ours
                end = self.n if hit is None else hit.pos
        elif cut:
            end = body_start
        else:
            hit = self.scan(body_start)
            end = self.n if hit is None else hit.pos
        part.body_end = end

        # -- what BODYSTRUCTURE shows ----------------------------------------------------
        text = False
        if flags & _MULTIPART:
            part.type = "multipart"
        elif flags & _RFC822:
            part.type, part.subtype = "message", "rfc822"
        elif self._truncated(part, has_ct, parent_flags):
            part.type, part.subtype = "application", "octet-stream"
        else:
            text = part.type.lower() == "text"
        if text and not any(k.lower() == "charset" for k, _ in part.params):
            part.params.append(("charset", "us-ascii"))
        nl = raw.count(b"\n", body_start, end)
        part.size = end - body_start + nl - raw.count(b"\r\n", body_start, end)
        if text or flags & _RFC822:
            part.lines = nl
        if inner is not None:
            ip, ifields = inner
            part.message = ParsedMessage(
                size=ip.body_end - ip.header_start,
                header_end=ip.body_start,
                envelope=build_envelope(ifields),
                root=ip,
                fields=ifields,
            )
        return part, fields, end, hit

    def multipart(
        self, part: MimePart, boundary: bytes, body_start: int, depth: int, flags: int
    ) -> tuple[int, _Hit | None]:
        own = _Boundary(boundary, part)
        stack = self.stack
        stack.append(own)
        hit = self.scan(body_start)
        raw = self.raw
        while hit is not None and hit.boundary is own:
            lf = raw.find(b"\n", hit.line)
            after = self.n if lf < 0 else lf + 1
            if hit.close:
                del stack[stack.index(own) :]
                hit = self.scan(after)  # the epilogue
                return (self.n if hit is None else hit.pos), hit
            self.total += 1
            child, _f, _end, hit = self.entity(after, flags, True, depth + 1)
            part.children.append(child)
        if own in stack:
            del stack[stack.index(own) :]
        return (self.n if hit is None else hit.pos), hit

    @staticmethod
    def _truncated(part: MimePart, has_ct: bool, parent_flags: int) -> bool:
        """A multipart or message/rfc822 that was not opened (limits): Dovecot shows it as
        application/octet-stream."""
        if not has_ct:
            return bool(parent_flags & _DIGEST)
        t = part.type.lower()
        return (t == "message" and part.subtype.lower() == "rfc822") or t == "multipart"

    @staticmethod
    def _content_headers(part: MimePart, fields: list[HeaderField], is_mime: bool) -> bool:
        """Content-* fields as Dovecot's message-part-data reads them."""
        have_ct = have_cte = have_id = have_md5 = have_desc = have_loc = False
        disp_has_params = False
        if is_mime:
            for f in fields:
                ln = f.name.lower()
                if not ln.startswith("content-"):
                    continue
                ln = ln[8:]
                if ln == "type" and not have_ct:
                    have_ct = True
                    lex = Lexer(dovecot_value(f.value))
                    lex.skip_lwsp()
                    ret, ctype = parse_content_type(lex)
                    t, _, st = _s(ctype).partition("/")
                    part.type, part.subtype = t, st
                    if ret >= 0:
                        part.params = [(_s(k), _s(v)) for k, v in _rfc2231(lex)]
                elif ln == "transfer-encoding" and not have_cte:
                    lex = Lexer(dovecot_value(f.value))
                    lex.skip_lwsp()
                    tok = bytearray()
                    if lex.mime_token(tok) >= 0 and lex.skip_lwsp() == 0 and tok:
                        part.encoding = _s(bytes(tok))
                        have_cte = True
                elif ln == "id" and not have_id:
                    have_id = True
                    part.id = _str(f.value)
                elif ln == "md5" and not have_md5:
                    have_md5 = True
                    part.md5 = _str(f.value)
                elif ln == "description" and not have_desc:
                    have_desc = True
                    part.description = _str(f.value)
                elif ln == "location" and not have_loc:
                    have_loc = True
                    part.location = _str(f.value)
                elif ln == "language" and part.language is None:
                    part.language = _languages(dovecot_value(f.value))
                elif ln == "disposition" and not disp_has_params:
                    # Dovecot re-reads a later Content-Disposition while none had params
                    lex = Lexer(dovecot_value(f.value))
                    lex.skip_lwsp()
                    tok = bytearray()
                    if lex.mime_token(tok) >= 0:
                        part.disposition = _s(bytes(tok))
                        part.disposition_params = [(_s(k), _s(v)) for k, v in _rfc2231(lex)]
                        disp_has_params = bool(part.disposition_params)
        return have_ct


def _str(value: bytes) -> str:
    v = dovecot_value(value)
    if b"\0" in v:
        v = v.replace(b"\0", NUL_REPLACEMENT)
    return _s(v)


def _languages(value: bytes) -> list[str] | None:
    lex = Lexer(value)
    lex.skip_lwsp()
    langs: list[str] = []
    buf = bytearray()
    while lex.atom(buf) >= 0:
        langs.append(_s(bytes(buf)))
        buf.clear()
        if lex.pos >= lex.end or lex.data[lex.pos] != 0x2C:
            break
        lex.pos += 1
        lex.skip_lwsp()
    return langs or None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` (the whole message, CRLF or LF line endings) into its structure."""
    eng = _Engine(raw)
    root, fields, _end, _hit = eng.entity(0, 0, False, 0)
    dates = [f.value for f in fields if f.name.lower() == "date"]
    return ParsedMessage(
        size=len(raw),
        header_end=root.body_start,
        envelope=build_envelope(fields),
        root=root,
        fields=fields,
        first_date=dovecot_value(dates[0]) if len(dates) > 1 else None,
    )


# -- cache format ----------------------------------------------------------------------------
# [version, size, header_end, envelope, root(, first_date)]; a part is a list in _PART_KEYS
# order with trailing defaults dropped; an address is a list in _ADDR_KEYS order, likewise.
# Bytes are stored as str via surrogateescape (json escapes the surrogates).
_FORMAT = 1
_PART_DEFAULTS: tuple[Any, ...] = (
    0,
    0,
    0,
    0,
    None,
    "text",
    "plain",
    [],
    [],
    "7bit",
    None,
    None,
    None,
    None,
    [],
    None,
    None,
    None,
)
_ADDR_DEFAULTS: tuple[Any, ...] = ("", None, None, None, None, None, False, False)


def _trim(values: list[Any], defaults: tuple[Any, ...]) -> list[Any]:
    n = len(values)
    while n and values[n - 1] == defaults[n - 1]:
        n -= 1
    return values[:n]


def _b(v: bytes | None) -> str | None:
    return None if v is None else v.decode("utf-8", "surrogateescape")


def _unb(v: str | None) -> bytes | None:
    return None if v is None else v.encode("utf-8", "surrogateescape")


def _addr_out(a: Address) -> list[Any]:
    return _trim(
        [a.local, a.domain, a.name, _b(a.name_raw), a.route, a.group, a.group_end, a.invalid],
        _ADDR_DEFAULTS,
    )


def _addr_in(v: list[Any]) -> Address:
    f = list(v) + list(_ADDR_DEFAULTS[len(v) :])
    return Address(f[0], f[1], f[2], _unb(f[3]), f[4], f[5], f[6], f[7])


def _env_out(e: Envelope) -> list[Any]:
    return [
        _b(e.date),
        _b(e.subject),
        *(
            [_addr_out(a) for a in lst]
            for lst in (e.from_, e.sender, e.reply_to, e.to, e.cc, e.bcc)
        ),
        _b(e.in_reply_to),
        _b(e.message_id),
    ]


def _env_in(v: list[Any]) -> Envelope:
    fr, se, rt, to, cc, bcc = ([_addr_in(a) for a in lst] for lst in v[2:8])
    return Envelope(_unb(v[0]), _unb(v[1]), fr, se, rt, to, cc, bcc, _unb(v[8]), _unb(v[9]))


def _part_out(p: MimePart) -> list[Any]:
    msg = None
    if p.message is not None:
        m = p.message
        msg = [m.size, m.header_end, _env_out(m.envelope), _part_out(m.root)]
    return _trim(
        [
            p.header_start,
            p.body_start,
            p.body_end,
            p.size,
            p.lines,
            p.type,
            p.subtype,
            [_part_out(c) for c in p.children],
            [list(kv) for kv in p.params],
            p.encoding,
            p.id,
            p.description,
            p.md5,
            p.disposition,
            [list(kv) for kv in p.disposition_params],
            p.language,
            p.location,
            msg,
        ],
        _PART_DEFAULTS,
    )


def _part_in(v: list[Any]) -> MimePart:
    f = list(v) + [list(d) if isinstance(d, list) else d for d in _PART_DEFAULTS[len(v) :]]
    p = MimePart(
        header_start=f[0],
        body_start=f[1],
        body_end=f[2],
        size=f[3],
        lines=f[4],
        type=f[5],
        subtype=f[6],
        children=[_part_in(c) for c in f[7]],
        params=[(k, val) for k, val in f[8]],
        encoding=f[9],
        id=f[10],
        description=f[11],
        md5=f[12],
        disposition=f[13],
        disposition_params=[(k, val) for k, val in f[14]],
        language=f[15],
        location=f[16],
    )
    if f[17] is not None:
        size, header_end, env, root = f[17]
        p.message = ParsedMessage(size, header_end, _env_in(env), _part_in(root))
    return p


def to_json(parsed: ParsedMessage) -> bytes:
    """Compact JSON of the envelope and MIME tree (not the header fields)."""
    doc = [
        _FORMAT,
        parsed.size,
        parsed.header_end,
        _env_out(parsed.envelope),
        _part_out(parsed.root),
    ]
    if parsed.first_date is not None:
        doc.append(_b(parsed.first_date))
    return json.dumps(doc, separators=(",", ":")).encode("ascii")


def from_json(data: bytes) -> ParsedMessage:
    """The inverse of ``to_json``; ``fields`` comes back empty."""
    doc = json.loads(data)
    if not isinstance(doc, list) or not doc or doc[0] != _FORMAT:
        raise ValueError("not a mailstead.message cache document (or unknown version)")
    _v, size, header_end, env, root, *rest = doc
    first_date = _unb(rest[0]) if rest else None
    return ParsedMessage(size, header_end, _env_in(env), _part_in(root), first_date=first_date)
