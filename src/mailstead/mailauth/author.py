"""The author addresses of a message (From, Sender, Resent-From), read strictly.

The address parser in :mod:`mailstead.message.addresses` is built to show *something* for
any input (IMAP ENVELOPE, as Dovecot does): it stops at the first thing it cannot read and
drops the rest. That is right for display and wrong for a decision: ``a@x.test <b@y.test>``
reads as ``a@x.test`` there while a mail client shows ``b@y.test``. Decisions about who wrote a
message (DMARC on port 25, the sender check of submission) use :func:`parse_mailbox_list`,
which accepts the RFC 5322 §3.4 ``address-list`` (groups included, RFC 6854) and nothing else:
every octet must belong to an address, a display name, a comment or whitespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstead.message.headers import skip_cfws

__all__ = ["AuthorError", "Mailbox", "parse_mailbox_list"]

# RFC 5322 §3.2.3 atext, plus every octet >= 0x80 (RFC 6532 §3.2: UTF-8 in atoms)
_ATEXT = frozenset(
    b"!#$%&'*+-/=?^_`{|}~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
) | frozenset(range(0x80, 0x100))
_SPECIALS = frozenset(b"<>@,;:.")
_MAX_VALUE = 64 * 1024  # a From field longer than this is not a From field anyone wrote


class AuthorError(ValueError):
    """A header value that is not an RFC 5322 address-list."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address: the local part as written (quotes removed), the domain, and whether the
    domain is an address literal (``[192.0.2.1]``)."""

    local: str
    domain: str
    literal: bool = False

    @property
    def addr_spec(self) -> str:
        return f"{self.local}@{self.domain}"


# token kinds: "atom", "quoted" (quoted-string), "literal" (domain-literal), or the special
# character itself ("<", ">", "@", ",", ";", ":", ".")
_Token = tuple[str, bytes]


def _skip_cfws(value: bytes, pos: int) -> int:
    """Past whitespace and (nested) comments; AuthorError for an unclosed comment."""
    end = skip_cfws(value, pos)
    if end is None:
        raise AuthorError("unclosed comment")
    return end


def _tokens(value: bytes) -> list[_Token]:
    if len(value) > _MAX_VALUE:
        raise AuthorError("too long")
    for c in value:
        if (c < 0x20 and c not in b"\t\r\n") or c == 0x7F:
            raise AuthorError("control character")
    out: list[_Token] = []
    pos = _skip_cfws(value, 0)
    while pos < len(value):
        c = value[pos]
        if c in _ATEXT:
            end = pos
            while end < len(value) and value[end] in _ATEXT:
                end += 1
            out.append(("atom", value[pos:end]))
            pos = end
        elif c == 0x22:  # quoted-string
            text = bytearray()
            pos += 1
            while True:
                if pos >= len(value):
                    raise AuthorError("unclosed quoted string")
                q = value[pos]
                if q == 0x5C:  # quoted-pair: "\" (VCHAR / WSP), RFC 5322 §3.2.1
                    if pos + 1 >= len(value) or value[pos + 1] in b"\r\n":
                        raise AuthorError("bad quoted pair")
                    text.append(value[pos + 1])
                    pos += 2
                    continue
                pos += 1
                if q == 0x22:
                    break
                if q not in b"\r\n":
                    text.append(q)
            out.append(("quoted", bytes(text)))
        elif c == 0x5B:  # domain-literal
            end = value.find(b"]", pos)
            if end < 0 or b"[" in value[pos + 1 : end] or b"\\" in value[pos + 1 : end]:
                raise AuthorError("bad domain literal")
            out.append(("literal", value[pos : end + 1]))
            pos = end + 1
        elif c in _SPECIALS:
            out.append((chr(c), bytes([c])))
            pos += 1
        else:
            raise AuthorError(f"unexpected {chr(c)!r}")
        pos = _skip_cfws(value, pos)
    return out


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthorError("not UTF-8") from None


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else ""

    def take(self, kind: str) -> bytes:
        if self.peek() != kind:
            found = self.peek() or "the end"
            raise AuthorError(f"expected {kind!r}, found {found!r}")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def words(self) -> list[_Token]:
        """Words and dots up to the next other special: a phrase or a local part."""
        start = self.pos
        while self.peek() in ("atom", "quoted", "."):
            self.pos += 1
        return self.tokens[start : self.pos]

    @staticmethod
    def local_part(words: list[_Token]) -> str:
        """``word *("." word)`` (RFC 5322 §3.4.1 with obs-local-part)."""
        if not words or len(words) % 2 == 0:
            raise AuthorError("bad local part")
        for index, (kind, _) in enumerate(words):
            if (kind == ".") != (index % 2 == 1):
                raise AuthorError("bad local part")
        return "".join(_text(raw) for _, raw in words)

    def domain(self) -> tuple[str, bool]:
        if self.peek() == "literal":
            return _text(self.take("literal")), True
        labels = [_text(self.take("atom"))]
        while self.peek() == ".":
            self.pos += 1
            labels.append(_text(self.take("atom")))
        return ".".join(labels), False

    def addr_spec(self, words: list[_Token]) -> Mailbox:
        local = self.local_part(words)
        self.take("@")
        domain, literal = self.domain()
        return Mailbox(local, domain, literal)

    def angle_addr(self) -> Mailbox:
        self.take("<")
        mailbox = self.addr_spec(self.words())
        self.take(">")
        return mailbox

    def mailbox(self) -> Mailbox:
        words = self.words()
        if self.peek() == "<":
            if words and words[0][0] == ".":
                raise AuthorError("bad display name")
            return self.angle_addr()
        mailbox = self.addr_spec(words)
        if self.peek() == "<":
            # ``a@x <a@x>``: an unquoted address as display name, common from scripts, and
            # harmless when it is the same address; ``a@x <b@y>`` shows one and means another
            shown = self.angle_addr()
            if shown.addr_spec.lower() != mailbox.addr_spec.lower():
                raise AuthorError("a display name that is another address")
            return shown
        return mailbox

    def address(self, out: list[Mailbox]) -> None:
        start = self.pos
        words = self.words()
        if self.peek() == ":" and words and words[0][0] != ".":  # group (RFC 5322 §3.4)
            self.pos += 1
            if self.peek() != ";":
                out.append(self.mailbox())
                while self.peek() == ",":
                    self.pos += 1
                    out.append(self.mailbox())
            self.take(";")
            return
        self.pos = start
        out.append(self.mailbox())


def parse_mailbox_list(value: bytes) -> list[Mailbox]:
    """Every mailbox of an RFC 5322 ``address-list`` (group members included, RFC 6854),
    or AuthorError when any part of ``value`` is not one. Obsolete forms that do not hide
    an address are accepted (``obs-phrase``, ``obs-local-part``, CFWS around dots); routes
    (``<@a,@b:x@y>``), empty list elements and trailing text are not."""
    parser = _Parser(_tokens(value))
    out: list[Mailbox] = []
    if not parser.tokens:
        return out
    parser.address(out)
    while parser.peek() == ",":
        parser.pos += 1
        parser.address(out)
    if parser.peek():
        raise AuthorError(f"unexpected {parser.peek()!r} after an address")
    return out
