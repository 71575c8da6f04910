"""Test helper: render ENVELOPE and BODYSTRUCTURE from a ParsedMessage the way Dovecot
2.3 writes them (imap-envelope.c, imap-bodystructure.c, imap-quote.c), so tests can
compare our cached structure with Dovecot's answers byte for byte.

It lives in the tests because rendering is the IMAP server's job; it documents what the
structure must allow IMAP to do.
"""

from __future__ import annotations

from mailstead.message import Address, Envelope, MimePart, ParsedMessage

_QUOTED_MAX_ESCAPES = 4


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def nstring(src: bytes | None) -> bytes:
    if src is None:
        return b"NIL"
    escapes = 0
    for c in src:
        if c in (0x22, 0x5C):
            escapes += 1
            if escapes <= _QUOTED_MAX_ESCAPES:
                continue
            return b"{%d}\r\n" % len(src) + src
        if c in (0x0D, 0x0A) or c >= 0x80:
            return b"{%d}\r\n" % len(src) + src
    out = bytearray(b'"')
    for c in src:
        if c in (0x22, 0x5C):
            out += b"\\"
        out.append(c)
    return bytes(out + b'"')


def nstring_nolf(src: bytes | None) -> bytes:
    if src is None or (b"\r" not in src and b"\n" not in src):
        return nstring(src)
    out = bytearray()
    for i, c in enumerate(src):
        if c not in (0x0D, 0x0A):
            out.append(c)
        elif i + 1 < len(src) and src[i + 1] not in (0x20, 0x09, 0x0D, 0x0A):
            out += b" "
    return nstring(bytes(out))


def for_humans(src: bytes) -> bytes:
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
            out.append(128)
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
    return b"{%d}\r\n" % len(out) + bytes(out)


def _addr(a: Address) -> bytes:
    if a.group is not None:
        return b"(NIL NIL " + nstring(_b(a.group)) + b" NIL)"
    if a.group_end:
        return b"(NIL NIL NIL NIL)"
    name = b"NIL" if a.name_raw is None else for_humans(a.name_raw)
    route = b"NIL" if a.route is None else nstring(_b(a.route))
    dom = b"NIL" if a.domain is None else nstring(_b(a.domain))
    return b"(" + b" ".join([name, route, nstring(_b(a.local)), dom]) + b")"


def _addrs(lst: list[Address]) -> bytes:
    if not lst:
        return b"NIL"
    return b"(" + b"".join(_addr(a) for a in lst) + b")"


def envelope(e: Envelope) -> bytes:
    return b" ".join(
        [
            nstring_nolf(e.date),
            b"NIL" if e.subject is None else for_humans(e.subject),
            _addrs(e.from_),
            _addrs(e.imap_sender),
            _addrs(e.imap_reply_to),
            _addrs(e.to),
            _addrs(e.cc),
            _addrs(e.bcc),
            nstring_nolf(e.in_reply_to),
            nstring_nolf(e.message_id),
        ]
    )


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(nstring(_b(k)) + b" " + nstring(_b(v)) for k, v in params) + b")"


def _common(p: MimePart) -> bytes:
    disp = (
        b"NIL"
        if p.disposition is None
        else b"(" + nstring(_b(p.disposition)) + b" " + _params(p.disposition_params) + b")"
    )
    lang = (
        b"NIL"
        if p.language is None
        else b"(" + b" ".join(nstring(_b(x)) for x in p.language) + b")"
    )
    opt = None if p.location is None else _b(p.location)
    return b" " + disp + b" " + lang + b" " + nstring_nolf(opt)


_EMPTY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


def _opt(s: str | None) -> bytes | None:
    return None if s is None else _b(s)


def bodystructure(p: MimePart) -> bytes:
    if p.is_multipart:
        kids = b"".join(b"(" + bodystructure(c) + b")" for c in p.children) or _EMPTY
        return kids + b" " + nstring(_b(p.subtype)) + b" " + _params(p.params) + _common(p)
    out = [
        nstring(_b(p.type)),
        nstring(_b(p.subtype)),
        _params(p.params),
        nstring_nolf(_opt(p.id)),
        nstring_nolf(_opt(p.description)),
        nstring(_b(p.encoding)),
        b"%d" % p.size,
    ]
    if p.message is not None:
        out.append(b"(" + envelope(p.message.envelope) + b")")
        out.append(b"(" + bodystructure(p.message.root) + b")")
    if p.lines is not None:
        out.append(b"%d" % p.lines)
    out.append(nstring_nolf(_opt(p.md5)))
    return b" ".join(out) + _common(p)


def fetch_items(m: ParsedMessage) -> bytes:
    """What Dovecot answers to FETCH (ENVELOPE BODYSTRUCTURE), inside the parentheses."""
    return (
        b"ENVELOPE (" + envelope(m.envelope) + b") BODYSTRUCTURE (" + bodystructure(m.root) + b")"
    )
