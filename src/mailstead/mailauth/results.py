"""The Authentication-Results header field (RFC 8601): writing ours, removing forged ones.

:func:`format_authentication_results` takes plain values, so the SMTP server can map each
checker's verdict onto it: per method a result string (``pass``, ``fail``…), a property map
(``{"smtp.mailfrom": "example.org"}``, ``{"header.d": …, "header.s": …, "header.b": …}``), and
optionally a comment and a reason. :func:`remove_own_results` drops the fields that claim to be
ours before we add our own (RFC 8601 §5). For example::

    format_authentication_results(
        "mx.example.org",
        spf=("pass", {"smtp.mailfrom": "example.com"}),
        dkim=[("pass", {"header.d": "example.com", "header.s": "sel", "header.b": "AbCdEf12"})],
        dmarc=(verdict.result, {"header.from": verdict.from_domain}, verdict.comment),
    )
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailstead.message.headers import parse_header_fields, skip_cfws

__all__ = [
    "FIELD_NAME",
    "MethodResult",
    "format_authentication_results",
    "parse_authserv_id",
    "quote_value",
    "remove_own_results",
]

FIELD_NAME = "Authentication-Results"
LINE_LIMIT = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
MAX_TEXT = 200  # a reason or comment longer than this is cut (the line limit is 998 octets)

# RFC 2045 §5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")
# RFC 5322 §3.2.3 dot-atom (the local-part of a pvalue), RFC 5321 domain
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_METHOD = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?$")
_PROPERTY = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One resinfo: ``result`` of a method, its properties in order, a comment, a reason."""

    result: str
    properties: Mapping[str, str] = field(default_factory=dict)
    comment: str = ""
    reason: str = ""


ResultInput = (
    MethodResult | tuple[str, Mapping[str, str]] | tuple[str, Mapping[str, str], str] | str
)


def _method_result(value: ResultInput) -> MethodResult:
    if isinstance(value, MethodResult):
        return value
    if isinstance(value, str):
        return MethodResult(value)
    if len(value) == 2:
        return MethodResult(value[0], value[1])
    return MethodResult(value[0], value[1], value[2])


def quote_value(value: str) -> str:
    """``value`` as an RFC 2045 token when it is one, else as a quoted-string."""
    if _TOKEN.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _pvalue(value: str) -> str:
    """RFC 8601 §2.2 pvalue: a value, or ``[local-part] "@" domain-name`` bare."""
    if _TOKEN.match(value):
        return value
    local, at, domain = value.rpartition("@")
    if at and _DOMAIN.match(domain) and (not local or _DOT_ATOM.match(local)):
        return value
    return quote_value(value)


def _clean(text: str) -> str:
    """One line of at most MAX_TEXT characters (no CR, LF or other controls)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= MAX_TEXT else flat[: MAX_TEXT - 3] + "..."


def _comment_words(text: str) -> list[str]:
    """A comment's words, parentheses and backslashes quoted (RFC 5322 §3.2.2)."""
    quoted = re.sub(r"([()\\])", r"\\\1", _clean(text))
    words = quoted.split(" ")
    words[0] = "(" + words[0]
    words[-1] += ")"
    return words


def _resinfo(method: str, value: ResultInput) -> list[str]:
    """The words of one resinfo (the caller joins them with spaces or folds)."""
    item = _method_result(value)
    if not _METHOD.match(method):
        raise ValueError(f"{method!r} is not an authentication method name")
    result = item.result.lower()
    if not _METHOD.match(result):
        raise ValueError(f"{item.result!r} is not a result")
    words = [f"{method}={result}"]
    if item.comment:
        words += _comment_words(item.comment)
    if item.reason:
        words.append(f"reason={quote_value(_clean(item.reason))}")
    for name, prop in item.properties.items():
        if not _PROPERTY.match(name):
            raise ValueError(f"{name!r} is not ptype.property")
        words.append(f"{name}={_pvalue(_clean(prop))}")
    return words


def _fold(groups: Sequence[Sequence[str]], linesep: str) -> str:
    """Join the words of ``groups`` with spaces, breaking lines so none passes column 78 where
    that can be helped. A group (one resinfo) that does not fit on the current line but fits on
    a line of its own starts one; a longer group breaks between its words."""
    lines: list[str] = []
    line = ""

    def add(word: str) -> None:
        nonlocal line
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= LINE_LIMIT:
            line += " " + word
        else:
            lines.append(line)
            line = "\t" + word

    for group in groups:
        whole = " ".join(group)
        if line and len(line) + 1 + len(whole) > LINE_LIMIT and 1 + len(whole) <= LINE_LIMIT:
            lines.append(line)
            line = "\t" + whole
            continue
        for word in group:
            add(word)
    lines.append(line)
    return linesep.join(lines) + linesep


def format_authentication_results(
    authserv_id: str,
    *,
    spf: ResultInput | None = None,
    dkim: Sequence[ResultInput] = (),
    dmarc: ResultInput | None = None,
    arc: ResultInput | None = None,
    others: Sequence[tuple[str, ResultInput]] = (),
    linesep: bytes = b"\r\n",
) -> bytes:
    """One ``Authentication-Results:`` field (RFC 8601 §2.2), folded at 78 columns, ending in
    ``linesep``. Methods come in the order spf, dkim (one resinfo per signature), dmarc, arc,
    then ``others`` (``("iprev", …)``, ``("auth", …)``); ``none`` when there is nothing.
    Property values that are not tokens (or ``local@domain``) are quoted."""
    identity = quote_value(authserv_id.strip())
    parts: list[list[str]] = []
    if spf is not None:
        parts.append(_resinfo("spf", spf))
    parts += [_resinfo("dkim", signature) for signature in dkim]
    if dmarc is not None:
        parts.append(_resinfo("dmarc", dmarc))
    if arc is not None:
        parts.append(_resinfo("arc", arc))
    parts += [_resinfo(method, value) for method, value in others]
    if not parts:
        groups = [[f"{FIELD_NAME}:", identity + ";", "none"]]
    else:
        groups = [[f"{FIELD_NAME}:", identity + ";"]]
        for index, part in enumerate(parts):
            if index < len(parts) - 1:
                part = [*part[:-1], part[-1] + ";"]
            groups.append(part)
    return _fold(groups, linesep.decode("ascii")).encode("utf-8")


# -- reading the authserv-id of a field --------------------------------------------------------


_TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
)


def parse_authserv_id(value: bytes) -> str | None:
    """The authserv-id that starts an Authentication-Results value (after CFWS), as text;
    None when there is none. Octets beyond ASCII are kept (UTF-8 ids, RFC 8601 §2.5)."""
    pos = skip_cfws(value, 0)
    if pos is None or pos >= len(value):
        return None
    if value[pos] == 0x22:  # quoted-string
        out = bytearray()
        pos += 1
        while pos < len(value):
            c = value[pos]
            if c == 0x5C and pos + 1 < len(value):
                out.append(value[pos + 1])
                pos += 2
                continue
            if c == 0x22:
                return out.decode("utf-8", "replace")
            if c not in b"\r\n":
                out.append(c)
            pos += 1
        return None
    end = pos
    while end < len(value) and (value[end] in _TOKEN_BYTES or value[end] >= 0x80):
        end += 1
    if end == pos:
        return None
    return value[pos:end].decode("utf-8", "replace")


def _same_authserv_id(found: str, ours: str) -> bool:
    """Compared as a reader would: quotes and comments already gone, surrounding space, a
    trailing root dot and case ignored (``MX.Example.ORG.`` is ours)."""
    return found.strip().rstrip(".").lower() == ours


def remove_own_results(header_block: bytes, authserv_id: str) -> bytes:
    """``header_block`` without the Authentication-Results fields whose authserv-id is ours
    (compared as :func:`_same_authserv_id` does; comments and folding before it allowed), RFC
    8601 §5, and without those whose authserv-id cannot be read at all (an unclosed quote or
    comment): a client might still show them as ours. Every other octet is kept as it was,
    including what follows the header block."""
    ours = authserv_id.strip().rstrip(".").lower()
    cuts = [
        (f.start, f.end)
        for f in parse_header_fields(header_block)
        if f.name.lower() == FIELD_NAME.lower()
        and ((found := parse_authserv_id(f.value)) is None or _same_authserv_id(found, ours))
    ]
    if not cuts:
        return header_block
    pieces = []
    pos = 0
    for start, end in cuts:
        pieces.append(header_block[pos:start])
        pos = end
    pieces.append(header_block[pos:])
    return b"".join(pieces)
