"""Building IMAP responses as bytes (RFC 9051 §7, RFC 3501 §7).

Everything a server writes goes through these helpers, so quoting is decided in one place:

- `astring` / `string` / `nstring` choose atom, quoted string or literal: a quoted string only
  when it is safe (no CR, LF or NUL, 7-bit unless UTF-8 is allowed, at most `MAX_QUOTED` octets),
  otherwise a literal ``{n}\\r\\n...``; `literal8` (``~{n}``) is for BINARY content (RFC 3516).
- `mailbox` encodes a name as modified UTF-7, or as UTF-8 once UTF8=ACCEPT is enabled (RFC 6855).
- `sequence_set` compresses numbers into ``1:5,7,9:12``.
- `untagged`, `tagged`, `continuation` frame whole responses; `code` builds response codes.
- `esearch`, `vanished`, `list_response`, `status_response`, `section_name` format the responses
  whose syntax is easy to get wrong.

Values are ``bytes`` (already encoded) or ``str`` (encoded as UTF-8). Text meant for humans
(`tagged`, `untagged` text) has CR and LF replaced so it can never end the line early.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

from . import mutf7
from .commands import Section

__all__ = [
    "MAX_QUOTED",
    "NIL",
    "astring",
    "code",
    "continuation",
    "esearch",
    "flag_list",
    "list_response",
    "literal",
    "literal8",
    "mailbox",
    "nstring",
    "number",
    "plist",
    "quoted",
    "section_name",
    "sequence_set",
    "status_response",
    "string",
    "tagged",
    "text",
    "untagged",
    "vanished",
]

NIL: Final = b"NIL"
CRLF: Final = b"\r\n"
MAX_QUOTED: Final = 1024  # longer strings are sent as literals: easier on clients' line buffers

Status = Literal["OK", "NO", "BAD", "PREAUTH", "BYE"]

# ATOM-CHAR: CHAR (0x01-0x7f) except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]"
_ATOM_RE: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\]\x80-\xff]+")
_ASTRING_RE: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\x80-\xff]+")  # "]" allowed
_UNSAFE_7BIT: Final = re.compile(rb"[\x00\r\n\x80-\xff]")
_UNSAFE_8BIT: Final = re.compile(rb"[\x00\r\n]")


def _b(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def number(n: int) -> bytes:
    return str(n).encode("ascii")


def literal(data: str | bytes) -> bytes:
    """``{n}\\r\\n`` followed by the octets."""
    raw = _b(data)
    return b"{%d}\r\n%b" % (len(raw), raw)


def literal8(data: bytes) -> bytes:
    """``~{n}\\r\\n`` followed by the octets: may carry NUL (RFC 3516 BINARY)."""
    return b"~{%d}\r\n%b" % (len(data), data)


def _quotable(raw: bytes, utf8: bool) -> bool:
    if len(raw) > MAX_QUOTED:
        return False
    if (_UNSAFE_8BIT if utf8 else _UNSAFE_7BIT).search(raw) is not None:
        return False
    if utf8 and not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def quoted(value: str | bytes) -> bytes:
    """A quoted string, escaping ``"`` and ``\\``; the caller checked that it is quotable."""
    raw = _b(value)
    if b"\\" in raw or b'"' in raw:
        raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + raw + b'"'


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A quoted string when safe, else a literal. ``utf8`` allows 8-bit UTF-8 in quoted strings
    (IMAP4rev2 or UTF8=ACCEPT enabled; RFC 9051 §4.3, RFC 6855 §3)."""
    raw = _b(value)
    return quoted(raw) if _quotable(raw, utf8) else literal(raw)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    return NIL if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when possible (never ``NIL``, which would read as nil), else `string`."""
    raw = _b(value)
    if _ASTRING_RE.fullmatch(raw) is not None and raw.upper() != NIL:
        return raw
    return string(raw, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 unless UTF-8 names are enabled (RFC 6855 §3)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else mutf7.encode(name), utf8=utf8)


def plist(items: Iterable[bytes | str]) -> bytes:
    """A parenthesised list of already formatted items."""
    return b"(" + b" ".join(_b(i) for i in items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Label)``; flags and keywords are atoms already (validated by the grammar)."""
    return plist(flags)


def sequence_set(numbers: Iterable[int]) -> bytes:
    """Compress numbers into a sequence set: ``[1, 2, 3, 5, 7, 8]`` → ``1:3,5,7:8``.

    Duplicates are dropped and the result is sorted. An empty input gives ``b""``; the caller
    decides what that means (e.g. omitting ALL in ESEARCH).
    """
    ordered = sorted(set(numbers))
    if not ordered:
        return b""
    parts: list[str] = []
    start = prev = ordered[0]
    for n in ordered[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts).encode("ascii")


def text(value: str) -> bytes:
    """Human-readable text: UTF-8, CR and LF replaced by spaces so the line cannot end early."""
    if "\r" in value or "\n" in value:
        value = value.replace("\r", " ").replace("\n", " ")
    return value.encode("utf-8")


def code(name: str, *args: bytes | str | int) -> bytes:
    """A response code ``[NAME args]``; args are formatted items (ints are written as numbers).

    Examples: ``code("UIDNEXT", 5)``, ``code("COPYUID", 7, b"1:3", b"10:12")``,
    ``code("PERMANENTFLAGS", flag_list([...]))``, ``code("BADCHARSET", plist([b"UTF-8"]))``.
    """
    parts = [name.encode("ascii")]
    for a in args:
        parts.append(number(a) if isinstance(a, int) else _b(a))
    return b"[" + b" ".join(parts) + b"]"


def untagged(*parts: bytes | str | int) -> bytes:
    """``* part part ...\\r\\n``: str parts are text (CR/LF-safe), ints numbers, bytes as is."""
    out = [b"*"]
    for p in parts:
        if isinstance(p, int):
            out.append(number(p))
        elif isinstance(p, str):
            out.append(text(p))
        else:
            out.append(p)
    return b" ".join(out) + CRLF


def tagged(tag: str, status: Status, message: str, response_code: bytes | None = None) -> bytes:
    """``tag OK [CODE] text\\r\\n``. ``tag`` is the client's tag, ``"*"`` for an untagged status
    response (``* BYE``, ``* OK [ALERT]``). IMAP requires text after the code: an empty ``message``
    becomes the status word itself."""
    head = f"{tag} {status} ".encode("ascii", "replace")
    body = text(message or status)
    if response_code:
        return head + response_code + b" " + body + CRLF
    return head + body + CRLF


def continuation(message: str | bytes = "Ready for literal data") -> bytes:
    """``+ text\\r\\n``; bytes are sent as they are (a base64 SASL challenge)."""
    body = message if isinstance(message, bytes) else text(message)
    return b"+ " + body + CRLF if body else b"+ \r\n"


def esearch(
    tag: str | None,
    uid: bool,
    results: Sequence[tuple[str, int | bytes]],
) -> bytes:
    """``* ESEARCH (TAG "t") UID MIN 1 COUNT 3 ALL 1:3\\r\\n`` (RFC 4731 §3.1, RFC 9051 §7.3.4).

    ``results`` are (return item, value) pairs in the order to send them: ints for MIN, MAX,
    COUNT, MODSEQ; bytes for ALL (a formatted sequence set) and PARTIAL (``(-1:-100 5:7)``).
    """
    out = [b"* ESEARCH"]
    if tag is not None:
        out.append(b"(TAG " + quoted(tag) + b")")
    if uid:
        out.append(b"UID")
    for name, value in results:
        out.append(name.encode("ascii"))
        out.append(number(value) if isinstance(value, int) else value)
    return b" ".join(out) + CRLF


def vanished(uids: Iterable[int], *, earlier: bool = False) -> bytes:
    """``* VANISHED (EARLIER) 1:3,7\\r\\n`` (RFC 7162 §3.2.10)."""
    head = b"* VANISHED (EARLIER) " if earlier else b"* VANISHED "
    return head + sequence_set(uids) + CRLF


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    extended: Mapping[str, bytes] | None = None,
    verb: Literal["LIST", "LSUB"] = "LIST",
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" INBOX\\r\\n``, optionally with extended items
    (``{"CHILDINFO": b'("SUBSCRIBED")', "OLDNAME": b'("old")'}``, RFC 5258 §3, RFC 9051 §7.3.1)."""
    delim = NIL if delimiter is None else quoted(delimiter)
    out = b"* %b %b %b %b" % (verb.encode(), plist(attributes), delim, mailbox(name, utf8=utf8))
    if extended:
        items = b" ".join(k.encode("ascii") + b" " + v for k, v in extended.items())
        out += b" (" + items + b")"
    return out + CRLF


def status_response(
    name: str, items: Sequence[tuple[str, int | bytes]], *, utf8: bool = False
) -> bytes:
    """``* STATUS INBOX (MESSAGES 3 UIDNEXT 7)\\r\\n``; MAILBOXID values are bytes ``(id)``."""
    body = b" ".join(
        k.encode("ascii") + b" " + (number(v) if isinstance(v, int) else v) for k, v in items
    )
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" (" + body + b")" + CRLF


def section_name(
    section: Section,
    *,
    binary: bool = False,
    origin: int | None = None,
) -> bytes:
    """The FETCH response item name for a body section: ``BODY[1.HEADER.FIELDS (FROM TO)]<0>``.

    ``origin`` is the partial's start (RFC 9051 §7.5.2: only the origin is echoed). BINARY
    responses use ``BINARY[1.2]`` (RFC 3516 §4.3).
    """
    spec = section.spec()
    out = (b"BINARY[" if binary else b"BODY[") + spec + b"]"
    if origin is not None:
        out += b"<%d>" % origin
    return out
