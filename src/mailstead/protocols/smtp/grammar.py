"""SMTP command grammar (RFC 5321 §4.1): command lines, paths, ESMTP parameters, xtext.

Shared by the server core and the SMTP client. Every parser either returns a value or raises
`GrammarError` carrying the exact reply the server should send. Paths may contain UTF-8 (RFC
6531); the caller decides whether non-ASCII is allowed in the current transaction.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from . import replies
from .events import MailParams, RcptParams
from .replies import Reply

__all__ = [
    "MAX_PATH_OCTETS",
    "CommandLine",
    "GrammarError",
    "is_address_literal",
    "is_domain",
    "parse_auth",
    "parse_bdat",
    "parse_command_line",
    "parse_helo",
    "parse_mail_from",
    "parse_rcpt_to",
    "xtext_decode",
    "xtext_encode",
]


class GrammarError(ValueError):
    """A command line that does not parse; ``reply`` is what the server answers."""

    def __init__(self, reply: Reply, detail: str | None = None) -> None:
        super().__init__(detail or reply.text)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A command line split into its verb (upper-cased) and its argument (may be "")."""

    verb: str
    arg: str


MAX_PATH_OCTETS: Final = 256  # RFC 5321 §4.5.3.1.3, punctuation included
MAX_ENVID: Final = 100  # RFC 3461 §4.4
MAX_ORCPT: Final = 500  # RFC 3461 §4.2
MAX_DOMAIN: Final = 255  # RFC 5321 §4.5.3.1.2
MAX_LABEL: Final = 63  # RFC 1035 §2.3.4

# UTF8-non-ascii (RFC 6531 §3.3) as decoded text; lone surrogates (undecodable bytes) excluded.
_U: Final = "\u0080-\ud7ff\ue000-\U0010ffff"
_ATOM: Final = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_U}]+"
_DOT_STRING: Final = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED: Final = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL: Final = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_DOMAIN: Final = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL: Final = r"\[[A-Za-z0-9.:\-]+\]"  # checked further by is_address_literal
_ADL: Final = rf"@{_DOMAIN}(?:,@{_DOMAIN})*"  # source route, accepted and dropped (RFC 5321 §4.1.2)
_PATH_RE: Final = re.compile(rf"<(?:{_ADL}:)?((?:{_DOT_STRING}|{_QUOTED})@({_DOMAIN}|{_LITERAL}))>")
_POSTMASTER_RE: Final = re.compile(r"<postmaster>", re.IGNORECASE)  # RFC 5321 §4.5.1
_DOMAIN_RE: Final = re.compile(_DOMAIN)
# HELO/EHLO: RFC 5321 domain, but underscores tolerated (common in Windows host names).
_HELO_LABEL: Final = rf"[A-Za-z0-9_{_U}](?:[A-Za-z0-9_\-{_U}]*[A-Za-z0-9_{_U}])?"
_HELO_RE: Final = re.compile(rf"{_HELO_LABEL}(?:\.{_HELO_LABEL})*\.?|{_LITERAL}")
_PARAM_RE: Final = re.compile(rf"([A-Za-z0-9][A-Za-z0-9\-]*)(?:=([\x21-\x3c\x3e-\x7e{_U}]+))?")
_XTEXT_RE: Final = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_XTEXT_HEX_RE: Final = re.compile(r"\+([0-9A-F]{2})")
_BDAT_RE: Final = re.compile(r"([0-9]{1,18})(?: +(LAST))?", re.IGNORECASE)
_VERB_RE: Final = re.compile(r"[A-Za-z]{1,16}")
_SASL_MECH_RE: Final = re.compile(r"[A-Z0-9_\-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_INITIAL_RESPONSE_RE: Final = re.compile(r"[\x21-\x7e]+")  # base64 / "=", checked by the shell


def parse_command_line(line: bytes | bytearray) -> CommandLine:
    """Split a command line (terminator removed) into verb and argument.

    The line is decoded as UTF-8; undecodable bytes become lone surrogates, which no grammar rule
    accepts. An empty or non-alphabetic verb raises `GrammarError` (500 5.5.2).
    """
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        text = bytes(line).decode("utf-8", "surrogateescape")
    text = text.rstrip(" \t")
    verb, _, arg = text.partition(" ")
    if not _VERB_RE.fullmatch(verb):
        raise GrammarError(replies.UNKNOWN_COMMAND)
    return CommandLine(verb.upper(), arg.lstrip(" "))


def is_address_literal(text: str) -> bool:
    """``[1.2.3.4]`` or ``[IPv6:...]`` (RFC 5321 §4.1.3); no general literal has a tag."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    try:
        if inner[:5].upper() == "IPV6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def _domain_lengths_ok(domain: str) -> bool:
    if len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        return False
    return all(len(label) <= MAX_LABEL for label in domain.split("."))


def is_domain(text: str) -> bool:
    """An RFC 5321 Domain (U-labels allowed; the caller checks for ASCII when it must)."""
    return _DOMAIN_RE.fullmatch(text) is not None and _domain_lengths_ok(text)


def parse_helo(arg: str) -> str:
    """The HELO/EHLO argument: a domain or an address literal; 501 5.5.4 otherwise."""
    domain = arg.split(" ", 1)[0] if arg else ""
    if not domain or _HELO_RE.fullmatch(domain) is None:
        raise GrammarError(replies.BAD_HELO_SYNTAX)
    if domain[0] == "[" and not is_address_literal(domain):
        raise GrammarError(replies.BAD_HELO_SYNTAX)
    if domain[0] != "[" and not _domain_lengths_ok(domain.rstrip(".")):
        raise GrammarError(replies.BAD_HELO_SYNTAX)
    return domain


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 §4 xtext (``+XX`` hex escapes); ValueError when malformed.

    The escaped octets are read as UTF-8 when they are (what `xtext_encode` writes, so a value
    relayed in ORCPT or ENVID is re-encoded unchanged), else one character per octet.
    """
    if _XTEXT_RE.fullmatch(text) is None:
        raise ValueError(f"malformed xtext: {text!r}")
    if "+" not in text:
        return text
    octets = _XTEXT_HEX_RE.sub(lambda m: chr(int(m.group(1), 16)), text).encode("latin-1")
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        return octets.decode("latin-1")


def _printable(text: str) -> bool:
    """RFC 3461 §4.4: an ENVID is printable ("graphic and white space") US-ASCII: octets
    32-126 and HT; no line break can reach the DSN."""
    return all(" " <= c <= "~" or c == "\t" for c in text)


def _has_control(text: str) -> bool:
    """Whether decoded xtext holds a control character (C0, DEL or C1): never in an address."""
    return any(c < " " or "\x7f" <= c <= "\x9f" for c in text)


def xtext_encode(text: str) -> str:
    """RFC 3461 xtext: ``+``, ``=``, controls, space and non-ASCII octets become ``+XX``."""
    out = []
    for byte in text.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _split_path(arg: str, prefix: str, bad: Reply) -> tuple[re.Match[str] | None, str]:
    """Check ``FROM:``/``TO:``, skip spaces after the colon; the path match and what follows."""
    if arg[: len(prefix)].upper() != prefix:
        raise GrammarError(bad)
    rest = arg[len(prefix) :].lstrip(" ")  # space after the colon: a common client bug, tolerated
    return _PATH_RE.match(rest), rest


def _params(text: str) -> list[tuple[str, str | None]]:
    """ESMTP parameters after a path (RFC 5321 §4.1.2 Mail-parameters); 501 5.5.4 when malformed."""
    if not text:
        return []
    if text[0] != " ":
        raise GrammarError(replies.SYNTAX_ERROR)
    out = []
    for word in text.split():
        m = _PARAM_RE.fullmatch(word)
        if m is None:
            raise GrammarError(replies.SYNTAX_ERROR)
        out.append((m.group(1), m.group(2)))
    return out



def _offered_params(
    raw: Sequence[tuple[str, str | None]], offered: Collection[str]
) -> Iterator[tuple[str, str | None]]:
    """(upper-cased keyword, value) of each parameter; unknown or repeated ones are errors."""
    seen: set[str] = set()
    for key, value in raw:
        k = key.upper()
        if k not in offered:
            raise GrammarError(replies.UNKNOWN_PARAMETER)
        if k in seen:
            raise GrammarError(replies.DUPLICATE_PARAMETER)
        seen.add(k)
        yield k, value

def _check_path_length(path: str, bad: Reply) -> None:
    if len(path) + 2 > MAX_PATH_OCTETS and len(path.encode("utf-8")) + 2 > MAX_PATH_OCTETS:
        raise GrammarError(bad, "path too long")


def parse_mail_from(arg: str, offered: Collection[str]) -> tuple[str, MailParams]:
    """``FROM:<reverse-path> [params]``; ``offered`` holds the allowed upper-case keywords.

    Returns the reverse path ("" for ``<>``, source route dropped) and validated parameters.
    """
    bad = replies.BAD_SENDER_SYNTAX
    m, rest = _split_path(arg, "FROM:", bad)
    if m is not None:
        path = m.group(1)
        if m.group(2)[0] != "[" and not _domain_lengths_ok(m.group(2)):
            raise GrammarError(bad)
        _check_path_length(path, bad)
        tail = rest[m.end() :]
    elif rest.startswith("<>"):
        path, tail = "", rest[2:]
    else:
        raise GrammarError(bad)
    if m is not None and m.group(2)[0] == "[" and not is_address_literal(m.group(2)):
        raise GrammarError(bad)
    raw = _params(tail)
    size: int | None = None
    body: Literal["7BIT", "8BITMIME"] | None = None
    smtputf8 = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    auth: str | None = None
    for k, value in _offered_params(raw, offered):
        if k == "SIZE":  # RFC 1870 §3: size-value ::= 1*20DIGIT
            if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
                raise GrammarError(replies.SYNTAX_ERROR)
            size = int(value)
        elif k == "BODY":  # RFC 6152; BINARYMIME (RFC 3030) is not offered
            v = (value or "").upper()
            if v == "7BIT":
                body = "7BIT"
            elif v == "8BITMIME":
                body = "8BITMIME"
            elif v == "BINARYMIME":
                raise GrammarError(replies.UNKNOWN_PARAMETER)
            else:
                raise GrammarError(replies.SYNTAX_ERROR)
        elif k == "SMTPUTF8":  # RFC 6531 §3.4: no value
            if value is not None:
                raise GrammarError(replies.SYNTAX_ERROR)
            smtputf8 = True
        elif k == "RET":  # RFC 3461 §4.3
            v = (value or "").upper()
            if v == "FULL":
                ret = "FULL"
            elif v == "HDRS":
                ret = "HDRS"
            else:
                raise GrammarError(replies.SYNTAX_ERROR)
        elif k == "ENVID":  # RFC 3461 §4.4
            if value is None or len(value) > MAX_ENVID:
                raise GrammarError(replies.SYNTAX_ERROR)
            try:
                envid = xtext_decode(value)
            except ValueError:
                raise GrammarError(replies.SYNTAX_ERROR) from None
            if not _printable(envid):  # "+0D+0A" would become a line of the DSN
                raise GrammarError(replies.BAD_ENVID)
        elif k == "AUTH":  # RFC 4954 §5: AUTH=<mailbox> or AUTH=<>, as xtext
            if value is None or len(value) > MAX_PATH_OCTETS * 3:
                raise GrammarError(replies.SYNTAX_ERROR)
            try:
                auth = xtext_decode(value)
            except ValueError:
                raise GrammarError(replies.SYNTAX_ERROR) from None
            if _has_control(auth):
                raise GrammarError(replies.SYNTAX_ERROR)
        else:  # offered but unknown to this parser
            raise GrammarError(replies.UNKNOWN_PARAMETER)
    return path, MailParams(size, body, smtputf8, ret, envid, tuple(raw), auth)


_NOTIFY_VALUES: Final = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ADDR_TYPE_RE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+")


def parse_rcpt_to(arg: str, offered: Collection[str]) -> tuple[str, RcptParams]:
    """``TO:<forward-path> [params]``; ``<postmaster>`` alone is returned as "postmaster"."""
    bad = replies.BAD_RECIPIENT_SYNTAX
    m, rest = _split_path(arg, "TO:", bad)
    if m is not None:
        path = m.group(1)
        domain = m.group(2)
        if domain[0] == "[" and not is_address_literal(domain):
            raise GrammarError(bad)
        if domain[0] != "[" and not _domain_lengths_ok(domain):
            raise GrammarError(bad)
        _check_path_length(path, bad)
        tail = rest[m.end() :]
    else:
        pm = _POSTMASTER_RE.match(rest)
        if pm is None:
            raise GrammarError(bad)
        path, tail = "postmaster", rest[pm.end() :]
    raw = _params(tail)
    notify: tuple[str, ...] = ()
    orcpt: tuple[str, str] | None = None
    for k, value in _offered_params(raw, offered):
        if k == "NOTIFY":  # RFC 3461 §4.1: NEVER, or a list of SUCCESS/FAILURE/DELAY
            items = tuple((value or "").upper().split(","))
            distinct = len(set(items)) == len(items)
            if items == ("NEVER",) or (distinct and all(i in _NOTIFY_VALUES for i in items)):
                notify = items
            else:
                raise GrammarError(replies.SYNTAX_ERROR)
        elif k == "ORCPT":  # RFC 3461 §4.2: addr-type ";" xtext
            if value is None or len(value) > MAX_ORCPT:
                raise GrammarError(replies.SYNTAX_ERROR)
            addr_type, sep, encoded = value.partition(";")
            if not sep or not encoded or _ADDR_TYPE_RE.fullmatch(addr_type) is None:
                raise GrammarError(replies.SYNTAX_ERROR)
            try:
                orcpt = (addr_type, xtext_decode(encoded))
            except ValueError:
                raise GrammarError(replies.SYNTAX_ERROR) from None
            if _has_control(orcpt[1]):  # "+0D+0A" would become a line of the DSN
                raise GrammarError(replies.BAD_ORCPT)
        else:
            raise GrammarError(replies.UNKNOWN_PARAMETER)
    return path, RcptParams(notify, orcpt, tuple(raw))


def parse_auth(arg: str) -> tuple[str, bytes | None]:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4): the upper-cased mechanism name and
    the initial response as sent (its base64 is the shell's to decode); 501 5.5.4 otherwise."""
    words = arg.split(" ")
    mechanism = words[0].upper() if words[0].isascii() else ""
    if not 1 <= len(words) <= 2 or _SASL_MECH_RE.fullmatch(mechanism) is None:
        raise GrammarError(replies.BAD_AUTH_SYNTAX)
    if len(words) == 1:
        return mechanism, None
    if _INITIAL_RESPONSE_RE.fullmatch(words[1]) is None:
        raise GrammarError(replies.BAD_AUTH_SYNTAX)
    return mechanism, words[1].encode("ascii")


def parse_bdat(arg: str) -> tuple[int, bool]:
    """``BDAT chunk-size [LAST]`` (RFC 3030 §3): (size, last); 501 5.5.4 when malformed."""
    m = _BDAT_RE.fullmatch(arg)
    if m is None:
        raise GrammarError(replies.BAD_BDAT_SIZE)
    return int(m.group(1)), m.group(2) is not None
