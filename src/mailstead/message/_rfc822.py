"""RFC 822 / 5322 / 2045 lexical tokens over bytes, with Dovecot's tolerance for bad input.

Every function works on a ``_Lexer`` (data, position, end) and follows the return
convention of Dovecot's rfc822-parser: ``1`` = token read and more input follows,
``0`` = token read and the input ended, ``-1`` = syntax error. Matching that convention
is what makes the address and parameter parsers built on top behave like Dovecot's.
"""

from __future__ import annotations

__all__ = ["NUL_REPLACEMENT", "Lexer", "parse_content_type", "parse_rfc2231_params"]

# U+FFFD, what Dovecot substitutes for NUL octets in header strings
NUL_REPLACEMENT = "\ufffd".encode()

_SPECIALS_ATEXT = b"!#$%&'*+-/=?^_`{|}~"
# 1 = atext, 2 = atext and MIME token char; '/', '=', '?' are atext but MIME tspecials
ATEXT = bytes(
    (2 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c >= 128) else 0)
    or (1 if c in _SPECIALS_ATEXT and c not in b"/=?" else 0)
    or (4 if c in b"/=?" else 0)
    for c in range(256)
)
_TOKEN_OR_DOT = bytes(1 if (ATEXT[c] & 3) or c == 0x2E else 0 for c in range(256))
_LWSP = frozenset(b" \t\r\n")


class Lexer:
    __slots__ = ("data", "end", "last_comment", "nul", "pos")

    def __init__(
        self, data: bytes, *, keep_comment: bool = False, nul: bytes | None = None
    ) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment: bytearray | None = bytearray() if keep_comment else None
        self.nul = nul

    # -- helpers -------------------------------------------------------------------------
    def cur(self) -> int:
        """The current octet, or -1 at the end."""
        return self.data[self.pos] if self.pos < self.end else -1

    def skip_comment(self) -> int:
        data, end, out = self.data, self.end, self.last_comment
        if out is not None:
            out.clear()
        level = 1
        self.pos += 1
        start = self.pos
        i = start
        while i < end:
            c = data[i]
            if c == 0x00:
                if out is not None and self.nul is not None:
                    out += data[start:i]
                    out += self.nul
                    start = i + 1
            elif c == 0x28:
                level += 1
            elif c == 0x29:
                level -= 1
                if level == 0:
                    if out is not None:
                        out += data[start:i]
                    self.pos = i + 1
                    return 1 if self.pos < end else 0
            elif c == 0x0A:
                if out is not None:
                    stop = i - 1 if i > start and data[i - 1] == 0x0D else i
                    out += data[start:stop]
                    start = i + 1
            elif c == 0x5C:
                i += 1
                if i >= end:
                    self.pos = i
                    return -1
                if data[i] in (0x0D, 0x0A, 0x00):
                    i -= 1  # not a quoted-pair; obs-qp, keep going
                else:
                    if out is not None:
                        out += data[start : i - 1]
                    start = i
            i += 1
        self.pos = i
        return -1  # missing ')'

    def skip_lwsp(self) -> int:
        data, end = self.data, self.end
        while self.pos < end:
            c = data[self.pos]
            if c in _LWSP:
                self.pos += 1
                continue
            if c != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < end else 0

    def atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end or not ATEXT[data[self.pos]]:
            return -1
        start = self.pos
        i = start + 1
        while i < end and ATEXT[data[i]]:
            i += 1
        out += data[start:i]
        self.pos = i
        if i >= end:
            return 0
        return self.skip_lwsp()

    def dot_atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end or not ATEXT[data[self.pos]]:
            return -1
        start = self.pos
        i = start + 1
        while True:
            while i < end and ATEXT[data[i]]:
                i += 1
            if i >= end:
                out += data[start:i]
                self.pos = i
                return 0
            if start == i:
                self.pos = i
                return -1
            out += data[start:i]
            self.pos = i
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out += b"."
            if self.skip_lwsp() <= 0:
                return -1
            start = i = self.pos

    def mime_token(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = i = self.pos
        while i < end and _TOKEN_OR_DOT[data[i]]:
            i += 1
        out += data[start:i]
        self.pos = i
        if i >= end:
            return 0
        return self.skip_lwsp()

    def quoted_string(self, out: bytearray) -> int:
        data, end = self.data, self.end
        self.pos += 1
        start = i = self.pos
        while i < end:
            c = data[i]
            if c == 0x00:
                if self.nul is not None:
                    out += data[start:i]
                    out += self.nul
                    start = i + 1
            elif c == 0x22:
                out += data[start:i]
                self.pos = i + 1
                return self.skip_lwsp()
            elif c == 0x0A:
                stop = i - 1 if i > start and data[i - 1] == 0x0D else i
                out += data[start:stop]
                start = i + 1
            elif c == 0x5C:
                i += 1
                if i >= end:
                    self.pos = i
                    return -1
                if data[i] in (0x0D, 0x0A, 0x00):
                    i -= 1
                else:
                    out += data[start : i - 1]
                    start = i
            i += 1
        self.pos = i
        return -1  # missing '"'

    def _atom_or_dot(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = i = self.pos
        while i < end and (ATEXT[data[i]] or data[i] == 0x2E):
            i += 1
        out += data[start:i]
        self.pos = i
        if i >= end:
            return 0
        return self.skip_lwsp()

    def phrase(self, out: bytearray) -> int:
        # phrase = 1*word / obs-phrase; words are joined with one SP
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            if self.data[self.pos] == 0x22:
                ret = self.quoted_string(out)
            else:
                ret = self._atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.data[self.pos]
            if not ATEXT[c] and c != 0x22 and c != 0x2E:
                break
            out += b" "
        return self.skip_lwsp()

    def domain_literal(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = i = self.pos
        i += 1
        while i < end:
            c = data[i]
            if c == 0x00:
                if self.nul is not None:
                    out += data[start:i]
                    out += self.nul
                    start = i + 1
            elif c == 0x5B:
                self.pos = i
                return -1
            elif c == 0x5D:
                out += data[start : i + 1]
                self.pos = i + 1
                return self.skip_lwsp()
            elif c == 0x0A:
                stop = i - 1 if i > start and data[i - 1] == 0x0D else i
                out += data[start:stop]
                start = i + 1
            elif c == 0x5C:  # the backslash is kept in the output
                i += 1
                if i >= end:
                    self.pos = i
                    return -1
                if data[i] in (0x0D, 0x0A, 0x00):
                    out += data[start:i]
                    start = i
                    i -= 1
            i += 1
        self.pos = i
        return -1

    def domain(self, out: bytearray) -> int:
        self.pos += 1  # '@'
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == 0x5B:
            return self.domain_literal(out)
        return self.dot_atom(out)

    def content_param(self, key: bytearray, value: bytearray) -> int:
        value.clear()
        data, end = self.data, self.end
        if self.pos >= end:
            return 0
        if data[self.pos] != 0x3B:
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        key.clear()
        if self.mime_token(key) <= 0:
            return -1
        if data[self.pos] != 0x3D:
            return -1
        self.pos += 1
        ret = self.skip_lwsp()
        if ret <= 0:
            pass  # broken / no value
        elif data[self.pos] == 0x22:
            ret = self.quoted_string(value)
        elif data[self.pos] == 0x3D:
            # broken input seen in the wild: name==?utf-8?b?...?=
            i = self.pos
            while i < end and data[i] not in (0x3B, 0x20, 0x09, 0x0D, 0x0A):
                i += 1
            value += data[self.pos : i]
            self.pos = i
        else:
            ret = self.mime_token(value)
        return -1 if ret < 0 else 1


def parse_content_type(lex: Lexer) -> tuple[int, bytes]:
    """``type/subtype`` as written (or b"" when broken) and the Dovecot return code."""
    if lex.skip_lwsp() <= 0:
        return -1, b""
    out = bytearray()
    if lex.mime_token(out) <= 0 or not out:
        return -1, bytes(out)  # Dovecot keeps a lone type ("text") here
    if lex.cur() != 0x2F:
        return -1, b""
    lex.pos += 1
    if lex.skip_lwsp() <= 0:
        return -1, b""
    out += b"/"
    mark = len(out)
    ret = lex.mime_token(out)
    if ret < 0 or len(out) == mark or (lex.pos != lex.end and lex.cur() != 0x3B):
        return -1, b""
    return ret, bytes(out)


def parse_rfc2231_params(lex: Lexer) -> list[tuple[bytes, bytes]]:
    """``;``-separated parameters with RFC 2231 continuations merged, as Dovecot does.

    Plain parameters come first in their order; ``name*N[*]`` pieces are merged per name
    (sorted by name) into ``name`` or, if any piece is extended, ``name*`` with the value
    kept in its ``charset'lang'%XX`` form. A name with missing pieces is left unmerged.
    """
    saved_nul, lex.nul = lex.nul, NUL_REPLACEMENT
    result: list[tuple[bytes, bytes]] = []
    pieces: list[tuple[bytes, int, bool, bytes]] = []
    key = bytearray()
    value = bytearray()
    idx = 0  # Dovecot keeps the previous index for "name*" (no number); so do we
    while True:
        ret = lex.content_param(key, value)
        if ret == 0:
            break
        if ret < 0:
            if lex.pos >= lex.end:
                break
            lex.pos += 1
            continue
        k = bytes(key)
        star = k.find(b"*")
        if star >= 0:
            p = star
            if p + 1 < len(k):
                p += 1
                idx = 0
                while p < len(k) and 0x30 <= k[p] <= 0x39:
                    idx = idx * 10 + k[p] - 0x30
                    p += 1
            extended = p < len(k) and k[p] == 0x2A
            if extended:
                p += 1
            if p >= len(k):
                pieces.append((k[:star], idx, extended, bytes(value)))
                continue
        result.append((k, bytes(value)))
    lex.nul = saved_nul
    if not pieces:
        return result
    pieces.sort(key=lambda t: (t[0], t[1]))
    i = 0
    while i < len(pieces):
        name = pieces[i][0].lower()
        j = i
        ok = True
        have_ext = False
        nxt = 0
        while j < len(pieces) and pieces[j][0].lower() == name:
            if pieces[j][1] != nxt:
                ok = False
            have_ext = have_ext or pieces[j][2]
            nxt += 1
            j += 1
        group = pieces[i:j]
        if not ok:
            for k, n, ext, v in group:
                result.append((b"%s*%d*" % (k, n) if ext else b"%s*%d" % (k, n), v))
        else:
            merged = bytearray()
            if not group[0][2] and have_ext:
                merged += b"''"
            for _k, _n, ext, v in group:
                merged += v.replace(b"%", b"%25") if (not ext and have_ext) else v
            k0 = group[0][0]
            result.append((k0 + b"*" if have_ext else k0, bytes(merged)))
        i = j
    return result
