"""Addresses: the RFC 5322 address-list parser used for ENVELOPE, and lookup normalisation.

``parse_address_list`` reproduces Dovecot's message-address parser (with its
FILL_MISSING flag, as used for IMAP ENVELOPE): the same tolerance of obsolete syntax and
garbage, the same placeholders (``MISSING_MAILBOX``, ``MISSING_DOMAIN``, ``SYNTAX_ERROR``,
``INVALID_ROUTE``) and the same group markers.

Strings taken from the message (``local``, ``domain``, ``route``, ``group``) are the
octets decoded as UTF-8 with ``surrogateescape``: ``s.encode("utf-8", "surrogateescape")``
gives back the exact octets IMAP must send.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import idna

from mailstead.message._rfc822 import NUL_REPLACEMENT, Lexer
from mailstead.message.headers import decode_header_value

__all__ = [
    "Address",
    "AddressError",
    "domain_to_ascii",
    "normalize_domain",
    "normalize_localpart",
    "parse_address_list",
    "split_address",
]


class AddressError(ValueError):
    """An address or domain that cannot be used."""


@dataclass(frozen=True, slots=True)
class Address:
    """One entry of an address list, shaped like an IMAP ENVELOPE address.

    Ordinary mailbox: ``(name_raw route local domain)``. Groups appear as two markers
    around their members, as in RFC 3501 ENVELOPE:

    - start marker: ``group`` is the group's display name as written, ``domain`` is None
      (IMAP: ``(NIL NIL "group" NIL)``); ``name`` holds the decoded group name;
    - end marker: ``group_end`` is True, everything else empty (IMAP: ``(NIL NIL NIL NIL)``).
    """

    local: str
    domain: str | None
    name: str | None = None
    name_raw: bytes | None = None
    route: str | None = None
    group: str | None = None
    group_end: bool = False
    invalid: bool = False

    @property
    def is_group_marker(self) -> bool:
        return self.group is not None or self.group_end

    @property
    def addr_spec(self) -> str:
        """``local@domain`` (just ``local`` without a domain)."""
        return self.local if not self.domain else f"{self.local}@{self.domain}"


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class _Acc:
    """The address being built (Dovecot's ``ctx->addr``)."""

    __slots__ = ("domain", "invalid", "mailbox", "name", "route")

    def __init__(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None
        self.invalid = False


class _AddressParser:
    def __init__(self, data: bytes) -> None:
        self.lex = Lexer(data, keep_comment=True, nul=NUL_REPLACEMENT)
        self.out: list[Address] = []
        self.addr = _Acc()
        self.buf = bytearray()

    # -- output ------------------------------------------------------------------------
    def add(self) -> None:
        a = self.addr
        self.addr = _Acc()
        if a.mailbox is None and a.domain is None and a.name is None and a.route is None:
            self.out.append(Address("", None, group_end=True, invalid=a.invalid))
        elif a.domain is None and a.name is None and a.route is None:
            assert a.mailbox is not None
            self.out.append(
                Address(
                    "",
                    None,
                    name=decode_header_value(a.mailbox),
                    group=_s(a.mailbox),
                    invalid=a.invalid,
                )
            )
        else:
            self.out.append(
                Address(
                    _s(a.mailbox or b""),
                    None if a.domain is None else _s(a.domain),
                    name=None if a.name is None else decode_header_value(a.name),
                    name_raw=a.name,
                    route=None if a.route is None else _s(a.route),
                    invalid=a.invalid,
                )
            )

    def add_fixed(self) -> None:
        a = self.addr
        if a.mailbox is None:
            a.mailbox = b"MISSING_MAILBOX"
            a.invalid = True
        if not a.domain:
            a.domain = b"MISSING_DOMAIN"
            a.invalid = True
        self.add()

    # -- grammar -----------------------------------------------------------------------
    def local_part(self) -> int:
        lex, buf = self.lex, self.buf
        buf.clear()
        if lex.cur() == 0x22:
            ret = lex.quoted_string(buf)
        else:
            ret = self._nonstrict_dot_atom(buf)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(buf)
        return ret

    def _nonstrict_dot_atom(self, buf: bytearray) -> int:
        lex = self.lex
        ret = -1
        while True:
            while lex.cur() == 0x2E:
                buf += b"."
                lex.pos += 1
                if lex.pos == lex.end:
                    return 0  # @domain missing, but the local part was fine
                ret = 1
            if lex.cur() == 0x40:
                break
            ret = lex.atom(buf)
            if not (ret > 0 and lex.cur() == 0x2E):
                break
        return ret

    def domain(self) -> int:
        self.buf.clear()
        ret = self.lex.domain(self.buf)
        if ret < 0:
            return -1
        self.addr.domain = bytes(self.buf)
        return ret

    def domain_list(self) -> int:
        # obs-domain-list = "@" domain *(*(CFWS / ",") [CFWS] "@" domain)
        lex, buf = self.lex, self.buf
        buf.clear()
        while True:
            if lex.pos >= lex.end:
                return 0
            if lex.cur() != 0x40:
                break
            if buf:
                buf += b","
            buf += b"@"
            ret = lex.domain(buf)
            if ret <= 0:
                return ret
            while lex.skip_lwsp() > 0 and lex.cur() == 0x2C:
                lex.pos += 1
        self.addr.route = bytes(buf)
        return 1

    def angle_addr(self) -> int:
        lex = self.lex
        lex.pos += 1  # '<'
        if lex.skip_lwsp() <= 0:
            return -1
        if lex.cur() == 0x40:
            if self.domain_list() > 0 and lex.cur() == 0x3A:
                lex.pos += 1
            else:
                self.addr.route = b"INVALID_ROUTE"
                if lex.pos >= lex.end:
                    return -1
            if lex.skip_lwsp() <= 0:
                return -1
        if lex.cur() != 0x3E:  # "<>" is not valid but accepted
            if self.local_part() <= 0:
                return -1
            if lex.cur() == 0x40 and self.domain() <= 0:
                return -1
        if lex.cur() != 0x3E:
            return -1
        lex.pos += 1
        return lex.skip_lwsp()

    def name_addr(self) -> int:
        lex, buf = self.lex, self.buf
        buf.clear()
        if lex.phrase(buf) <= 0 or lex.cur() != 0x3C:
            return -1
        self.addr.name = bytes(buf) or None
        if self.angle_addr() < 0:
            self.addr.domain = b"SYNTAX_ERROR"
            self.addr.invalid = True
        return 1 if lex.pos < lex.end else 0

    def addr_spec(self) -> int:
        lex, a = self.lex, self.addr
        assert lex.last_comment is not None
        lex.last_comment.clear()
        quoted = lex.cur() == 0x22
        ret = self.local_part()
        ret2 = -2
        if ret <= 0:
            a.invalid = True
        if ret != 0 and lex.pos < lex.end and lex.cur() == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if lex.last_comment:
            a.name = bytes(lex.last_comment)
        elif ret2 == -2:
            # a lone word is a mailbox, but anything after it makes it a display name
            buf = self.buf
            buf += b" "
            mark = len(buf)
            lex.phrase(buf)
            if len(buf) != mark:
                a.mailbox = None
                a.name = bytes(buf)
            elif not quoted:
                a.domain = b""
            a.invalid = True
            ret = -1
        return ret

    def mailbox(self) -> int:
        lex, start = self.lex, self.lex.pos
        ret = self.name_addr()
        if ret < 0:
            lex.pos = start
            ret = self.addr_spec()
            a = self.addr
            if a.invalid and a.name is None and a.mailbox is not None and a.domain is None:
                a.name, a.mailbox = a.mailbox, None
        if ret < 0:
            self.addr.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        lex, buf = self.lex, self.buf
        buf.clear()
        if lex.phrase(buf) <= 0 or lex.cur() != 0x3A:
            return -1
        # from here on this is a group whatever follows
        lex.pos += 1
        ret = lex.skip_lwsp()
        if ret <= 0:
            self.addr.invalid = True
        self.addr.mailbox = bytes(buf)
        self.add()
        if ret > 0 and lex.cur() != 0x3B:
            while True:
                self.mailbox()
                if lex.pos >= lex.end or lex.cur() != 0x2C:
                    break
                lex.pos += 1
                if lex.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if lex.pos >= lex.end or lex.cur() != 0x3B:
                ret = -1
            else:
                lex.pos += 1
                ret = lex.skip_lwsp()
        if ret < 0:
            self.addr.invalid = True
        self.add()
        return 0 if ret == 0 else 1

    def address(self) -> int:
        start = self.lex.pos
        ret = self.group()
        if ret < 0:
            self.lex.pos = start
            ret = self.mailbox()
        return ret

    def address_list(self) -> None:
        lex = self.lex
        if lex.skip_lwsp() <= 0:
            return
        while True:
            if self.address() == 0:
                break
            if lex.pos >= lex.end or lex.cur() != 0x2C:
                break
            lex.pos += 1
            ret = lex.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()  # ends with garbage
                break


def parse_address_list(value: bytes) -> list[Address]:
    """Parse an address-list header value the way Dovecot does for IMAP ENVELOPE.

    ``value`` may be the raw field value (folded, with a leading space): line breaks and
    whitespace are skipped as CFWS.
    """
    p = _AddressParser(value)
    p.address_list()
    return p.out


# -- normalisation for lookups -------------------------------------------------------------


def _ascii_ok(label: str) -> bool:
    return all(c.isalnum() or c in "-_" for c in label)


def normalize_domain(domain: str) -> str:
    """The lookup key for a domain: Unicode U-labels, NFC, lower case.

    ``xn--`` A-labels are decoded (UTS 46 mapping); a single trailing dot is dropped.
    Address literals (``[192.0.2.1]``) are only lower-cased. Raises AddressError.
    """
    d = domain.strip()
    if d.endswith("."):
        d = d[:-1]
    if not d:
        raise AddressError("empty domain")
    if d.startswith("[") and d.endswith("]"):
        return d.lower()
    if d.isascii() and "xn--" not in d.lower():
        d = d.lower()
        labels = d.split(".")
        if any(not lab or len(lab) > 63 or not _ascii_ok(lab) for lab in labels) or len(d) > 253:
            raise AddressError(f"invalid domain: {domain!r}")
        return d
    try:
        u = idna.decode(d, uts46=True)
    except (idna.IDNAError, UnicodeError) as e:
        raise AddressError(f"invalid domain: {domain!r}: {e}") from None
    return unicodedata.normalize("NFC", u).lower()


def domain_to_ascii(domain: str) -> str:
    """The A-label (``xn--``) form of a domain, for DNS. Raises AddressError."""
    u = normalize_domain(domain)
    if u.isascii():
        return u
    try:
        return idna.encode(u, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise AddressError(f"invalid domain: {domain!r}: {e}") from None


def normalize_localpart(local: str) -> str:
    """The lookup key for a local part: NFC, then ``str.casefold()``."""
    return unicodedata.normalize("NFC", local).casefold()


def split_address(addr: str) -> tuple[str, str]:
    """Split ``local@domain`` on the last ``@`` that is outside a quoted local part.

    A quoted local part is returned unquoted (``"a@b"@example.org`` gives ``a@b``),
    since RFC 5321 §4.1.2 makes the quoted and unquoted forms the same mailbox.
    """
    s = addr.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    at = s.rfind("@")
    if at < 0:
        raise AddressError(f"no @ in address: {addr!r}")
    local, domain = s[:at], s[at + 1 :]
    if not domain:
        raise AddressError(f"empty domain in address: {addr!r}")
    if local.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(local):
            c = local[i]
            if c == "\\" and i + 1 < len(local):
                out.append(local[i + 1])
                i += 2
                continue
            if c == '"':
                break
            out.append(c)
            i += 1
        if i != len(local) - 1:
            raise AddressError(f"bad quoted local part: {addr!r}")
        local = "".join(out)
    elif '"' in local or not local:
        raise AddressError(f"bad local part: {addr!r}")
    return local, domain
