"""ENVELOPE, BODY and BODYSTRUCTURE in the IMAP wire form Dovecot 2.3 writes.

Mirrors imap-envelope.c, imap-bodystructure.c and imap-quote.c: a string is quoted unless
it holds CR, LF, an 8-bit octet or more than four ``"``/``\\``, in which case it is sent as
a literal ``{n}\\r\\n...``; display names and the subject are "for humans" (runs of
whitespace squeezed, NUL shown as 0x80); Date, In-Reply-To, Message-ID, Content-ID,
-Description, -MD5 and -Location lose their line breaks.

Every function returns the parenthesised item as it follows ``ENVELOPE `` /
``BODYSTRUCTURE `` / ``BODY `` in a FETCH response. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import re

from mailstead.message import Address, Envelope, MimePart, ParsedMessage

__all__ = [
    "body",
    "bodystructure",
    "envelope",
    "envelope_of",
    "for_humans",
    "nstring",
    "nstring_nolf",
]

# imap-quote.c: past this many '"' / '\' a literal is shorter than a quoted string
_QUOTED_MAX_ESCAPES = 4

# anything that stops a string from being written quoted as it is
_NEEDS_WORK = re.compile(rb'[\r\n"\\\x80-\xff]')
_NEEDS_LITERAL = re.compile(rb"[\r\n\x80-\xff]")
# anything imap_append_string_for_humans() would change
_HUMANS_WORK = re.compile(rb'[\x00\t\r\n"\\\x80-\xff]|  |\A | \Z')
_ESCAPE = re.compile(rb'(["\\])')


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _literal(src: bytes) -> bytes:
    return b"{%d}\r\n" % len(src) + src


def nstring(src: bytes | None) -> bytes:
    """imap_append_nstring(): NIL, a quoted string or a literal."""
    if src is None:
        return b"NIL"
    if _NEEDS_WORK.search(src) is None:
        return b'"' + src + b'"'
    if _NEEDS_LITERAL.search(src) is not None:
        return _literal(src)
    if src.count(b'"') + src.count(b"\\") > _QUOTED_MAX_ESCAPES:
        return _literal(src)
    return b'"' + _ESCAPE.sub(rb"\\\1", src) + b'"'


def _string(s: str) -> bytes:
    return nstring(_b(s))


def nstring_nolf(src: bytes | None) -> bytes:
    """imap_append_nstring_nolf(): line breaks dropped (a space where the next line does
    not start with whitespace)."""
    if src is None or (b"\r" not in src and b"\n" not in src):
        return nstring(src)
    out = bytearray()
    n = len(src)
    for i, c in enumerate(src):
        if c not in (0x0D, 0x0A):
            out.append(c)
        elif i + 1 < n and src[i + 1] not in (0x20, 0x09, 0x0D, 0x0A):
            out += b" "
    return nstring(bytes(out))


def _opt_nolf(s: str | None) -> bytes:
    return b"NIL" if s is None else nstring_nolf(_b(s))


def for_humans(src: bytes) -> bytes:
    """imap_append_string_for_humans(): whitespace runs become one space, leading and
    trailing whitespace go, NUL becomes 0x80; a changed string is sent as a literal."""
    if _HUMANS_WORK.search(src) is None:
        return b'"' + src + b'"'
    modify = False
    remove = 0
    last_lwsp = True
    ws_prefix = True
    for c in src:
        if c == 0:
            last_lwsp = False
            modify = True
        elif c in (0x0D, 0x0A, 0x09, 0x20):
            if c != 0x20:
                modify = True
            if last_lwsp:
                modify = True
                remove += 1
            last_lwsp = True
        elif c in (0x22, 0x5C):
            modify = True
            last_lwsp = False
        else:
            if c & 0x80:
                modify = True
            last_lwsp = False
        if not last_lwsp:
            ws_prefix = False
    if last_lwsp and src and not ws_prefix:
        modify = True
        remove += 1
    if not modify:
        return b'"' + src + b'"'
    if len(src) == remove:
        return b'""'
    out = bytearray()
    last_lwsp = True
    ws_prefix = True
    for c in src:
        if c == 0:
            out.append(0x80)
            last_lwsp = False
        elif c in (0x0D, 0x0A, 0x09, 0x20):
            if not last_lwsp:
                out += b" "
            last_lwsp = True
        else:
            last_lwsp = False
            out.append(c)
        if not last_lwsp:
            ws_prefix = False
    if last_lwsp and src and not ws_prefix:
        out = out[:-1]
    return _literal(bytes(out))


_GROUP_END = b"(NIL NIL NIL NIL)"


def _addr(a: Address) -> bytes:
    if a.group is not None:
        return b"(NIL NIL " + _string(a.group) + b" NIL)"
    if a.group_end:
        return _GROUP_END
    name = b"NIL" if a.name_raw is None else for_humans(a.name_raw)
    route = b"NIL" if a.route is None else _string(a.route)
    dom = b"NIL" if a.domain is None else _string(a.domain)
    return b"(" + name + b" " + route + b" " + _string(a.local) + b" " + dom + b")"


def _addrs(lst: list[Address]) -> bytes:
    if not lst:
        return b"NIL"
    return b"(" + b"".join([_addr(a) for a in lst]) + b")"


def envelope_of(e: Envelope) -> bytes:
    """The ENVELOPE of an :class:`Envelope` (imap_envelope_write), in parentheses."""
    return b"".join(
        [
            b"(",
            nstring_nolf(e.date),
            b" ",
            b"NIL" if e.subject is None else for_humans(e.subject),
            b" ",
            _addrs(e.from_),
            b" ",
            _addrs(e.sender or e.from_),
            b" ",
            _addrs(e.reply_to or e.from_),
            b" ",
            _addrs(e.to),
            b" ",
            _addrs(e.cc),
            b" ",
            _addrs(e.bcc),
            b" ",
            nstring_nolf(e.in_reply_to),
            b" ",
            nstring_nolf(e.message_id),
            b")",
        ]
    )


def envelope(parsed: ParsedMessage) -> bytes:
    """``FETCH ENVELOPE``: the message's envelope, in parentheses."""
    return envelope_of(parsed.envelope)


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join([_string(k) + b" " + _string(v) for k, v in params]) + b")"


def _common(p: MimePart) -> bytes:
    """disposition, language, location (part_write_bodystructure_common)."""
    disp = (
        b"NIL"
        if p.disposition is None
        else b"(" + _string(p.disposition) + b" " + _params(p.disposition_params) + b")"
    )
    lang = (
        b"NIL" if p.language is None else b"(" + b" ".join([_string(x) for x in p.language]) + b")"
    )
    return b" " + disp + b" " + lang + b" " + _opt_nolf(p.location)


_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_BODYSTRUCTURE = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _write(p: MimePart, ext: bool, out: list[bytes]) -> None:
    """One body (without its outer parentheses) appended to ``out``."""
    if p.type == "multipart":
        if p.children:
            for c in p.children:
                out.append(b"(")
                _write(c, ext, out)
                out.append(b")")
        else:  # no parts: Dovecot shows one empty text/plain part
            out.append(_EMPTY_BODYSTRUCTURE if ext else _EMPTY_BODY)
        out.append(b" ")
        out.append(_string(p.subtype))
        if ext:
            out.append(b" ")
            out.append(_params(p.params))
            out.append(_common(p))
        return
    out.append(_string(p.type))
    out.append(b" ")
    out.append(_string(p.subtype))
    out.append(b" ")
    out.append(_params(p.params))
    out.append(b" ")
    out.append(_opt_nolf(p.id))
    out.append(b" ")
    out.append(_opt_nolf(p.description))
    out.append(b" ")
    out.append(_string(p.encoding))
    out.append(b" %d" % p.size)
    if p.message is not None:
        out.append(b" ")
        out.append(envelope_of(p.message.envelope))
        out.append(b" (")
        _write(p.message.root, ext, out)
        out.append(b")")
    if p.lines is not None:
        out.append(b" %d" % p.lines)
    if ext:
        out.append(b" ")
        out.append(_opt_nolf(p.md5))
        out.append(_common(p))


def bodystructure(part: MimePart, extensible: bool = True) -> bytes:
    """``FETCH BODYSTRUCTURE`` (``extensible``) or ``FETCH BODY`` (without extension
    data, RFC 9051 §7.5.2) of ``part`` and everything below it, in parentheses."""
    out: list[bytes] = [b"("]
    _write(part, extensible, out)
    out.append(b")")
    return b"".join(out)


def body(part: MimePart) -> bytes:
    """``FETCH BODY`` (non-extensible BODYSTRUCTURE)."""
    return bodystructure(part, extensible=False)
