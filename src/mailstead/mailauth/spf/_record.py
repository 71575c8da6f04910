"""SPF record syntax (RFC 7208 §4.5, §4.6.1, §5, §6, §7.1): a ``v=spf1`` record parsed whole
into mechanisms and modifiers, and macro strings parsed into tokens.

Pure functions over text: nothing here looks anything up. A record with any syntax error is
rejected as a whole (``SpfSyntaxError``, which ``check_host`` reports as permerror), even when
the error sits after the mechanism that would match (§4.6)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

VERSION = b"v=spf1"

# §7.1: the letters usable in domain-specs; "c", "r" and "t" only in explanation strings.
DOMAIN_LETTERS = frozenset("slodiphv")
EXPLANATION_LETTERS = DOMAIN_LETTERS | frozenset("crt")
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
QUALIFIERS = "+-~?"

_MACRO = re.compile(
    r"%\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[.\-+,/_=]*)\}"
)
# §4.6.1: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_MODIFIER = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9\-_.]*)=(?P<value>.*)", re.S)
_MECHANISM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# §7.1: toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_TOPLABEL = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9]")
# a / mx: [ ":" domain-spec ] [ ip4-cidr-length ] [ "/" ip6-cidr-length ]; the domain-spec may
# itself contain "/", so it is the shortest text that leaves a valid cidr suffix.
_TARGET_AND_CIDR = re.compile(r"(?::(?P<spec>.*?))?(?:/(?P<v4>[0-9]+))?(?://(?P<v6>[0-9]+))?", re.S)
_IP4 = re.compile(r":(?P<address>[0-9.]+)(?:/(?P<length>[0-9]+))?")
_IP6 = re.compile(r":(?P<address>[0-9A-Fa-f:.]+)(?:/(?P<length>[0-9]+))?")


class SpfSyntaxError(ValueError):
    """A record, term or macro string that breaks the RFC 7208 grammar; the message says where."""


@dataclass(frozen=True, slots=True)
class Macro:
    """One ``%{...}`` expansion (§7.1): the letter, how many right-hand parts to keep, whether
    to reverse, the delimiters to split on, and whether the value is URL-escaped (upper case
    letter)."""

    letter: str
    keep: int | None = None
    reverse: bool = False
    delimiters: str = ""
    escape: bool = False


Token = str | Macro


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A domain-spec as written and as tokens (literal text and macros)."""

    text: str
    tokens: tuple[Token, ...]

    @property
    def has_macros(self) -> bool:
        return any(isinstance(token, Macro) for token in self.tokens)


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One directive (§4.6.2, §5): qualifier, mechanism name, its target domain-spec (None for
    the current domain), its network (ip4/ip6) and its cidr lengths (a/mx)."""

    text: str
    qualifier: str
    kind: str
    target: DomainSpec | None = None
    network: IPv4Network | IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed record: the mechanisms in order, ``redirect=`` and ``exp=`` (§6)."""

    mechanisms: tuple[Mechanism, ...]
    redirect: DomainSpec | None = None
    explanation: DomainSpec | None = None


def is_spf_record(text: bytes) -> bool:
    """§4.5: the record starts with "v=spf1" (any case) followed by a space or its end."""
    return text[:6].lower() == VERSION and text[6:7] in (b"", b" ")


def parse_record(text: str) -> Record:
    """Parse a whole ``v=spf1`` record (terms separated by one or more spaces, §4.6.1)."""
    if not is_spf_record(text.encode("ascii", "replace")):
        raise SpfSyntaxError("the record does not start with v=spf1")
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, DomainSpec] = {}
    for term in text[6:].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier is None:
            mechanisms.append(parse_mechanism(term))
            continue
        name, value = modifier.group("name").lower(), modifier.group("value")
        if name in ("redirect", "exp"):
            if name in modifiers:  # §6: each at most once
                raise SpfSyntaxError(f"{name}= appears more than once")
            modifiers[name] = parse_domain_spec(value, term)
        else:  # §6: unknown modifiers are ignored, but their value must be a macro-string
            parse_macro_string(value, letters=EXPLANATION_LETTERS, where=term)
    return Record(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def parse_mechanism(term: str) -> Mechanism:
    qualifier = "+"
    body = term
    if body[:1] in tuple(QUALIFIERS):
        qualifier, body = body[0], body[1:]
    match = _MECHANISM_NAME.match(body)
    kind = match.group().lower() if match else ""
    if kind not in MECHANISMS:
        raise SpfSyntaxError(f"{term!r} is not a mechanism or modifier")
    rest = body[len(kind) :]
    if kind == "all":
        if rest:
            raise SpfSyntaxError(f"{term!r}: 'all' takes no argument")
        return Mechanism(term, qualifier, kind)
    if kind in ("include", "exists"):
        if not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: {kind} needs ':' and a domain")
        return Mechanism(term, qualifier, kind, parse_domain_spec(rest[1:], term))
    if kind == "ptr":
        if not rest:
            return Mechanism(term, qualifier, kind)
        if not rest.startswith(":"):
            raise SpfSyntaxError(f"{term!r}: ptr takes only ':' and a domain")
        return Mechanism(term, qualifier, kind, parse_domain_spec(rest[1:], term))
    if kind in ("a", "mx"):
        parts = _TARGET_AND_CIDR.fullmatch(rest)
        if parts is None:
            raise SpfSyntaxError(f"{term!r}: expected {kind}[:domain][/cidr4][//cidr6]")
        spec = parts.group("spec")
        target = parse_domain_spec(spec, term) if spec is not None else None
        cidr4 = _cidr(parts.group("v4"), 32, term)
        cidr6 = _cidr(parts.group("v6"), 128, term)
        return Mechanism(term, qualifier, kind, target, cidr4=cidr4, cidr6=cidr6)
    pattern, maximum = (_IP4, 32) if kind == "ip4" else (_IP6, 128)
    parts = pattern.fullmatch(rest)
    if parts is None:
        raise SpfSyntaxError(f"{term!r}: expected {kind}:address[/length]")
    length = _cidr(parts.group("length"), maximum, term)
    try:
        address: IPv4Address | IPv6Address = (
            IPv4Address(parts.group("address"))
            if kind == "ip4"
            else IPv6Address(parts.group("address"))
        )
    except ValueError:
        raise SpfSyntaxError(f"{term!r}: not an {kind} address") from None
    network = IPv4Network if kind == "ip4" else IPv6Network
    return Mechanism(term, qualifier, kind, network=network(f"{address}/{length}", strict=False))


def _cidr(digits: str | None, maximum: int, term: str) -> int:
    """§5.6: a cidr length without leading zeros, at most 32 (IPv4) or 128 (IPv6)."""
    if digits is None:
        return maximum
    if (digits.startswith("0") and digits != "0") or int(digits) > maximum:
        raise SpfSyntaxError(f"{term!r}: invalid cidr length /{digits}")
    return int(digits)


def parse_domain_spec(text: str, where: str) -> DomainSpec:
    """§7.1: domain-spec = macro-string domain-end, where domain-end is "." toplabel ["."]
    or a macro-expand; checked before expansion, never after."""
    tokens, ends_with_expand = _tokens(text, DOMAIN_LETTERS, spaces=False, where=where)
    if not text:
        raise SpfSyntaxError(f"{where!r}: empty domain")
    if not ends_with_expand:
        body = text[:-1] if text.endswith(".") else text
        _, dot, toplabel = body.rpartition(".")
        if not dot or not _TOPLABEL.fullmatch(toplabel):
            raise SpfSyntaxError(f"{where!r}: {text!r} does not end in a valid top label")
    return DomainSpec(text, tokens)


def parse_macro_string(
    text: str, *, letters: frozenset[str] = DOMAIN_LETTERS, where: str = ""
) -> tuple[Token, ...]:
    """§7.1 macro-string: literal characters (visible ASCII except "%") and macro-expands."""
    return _tokens(text, letters, spaces=False, where=where or text)[0]


def parse_explanation(text: str) -> tuple[Token, ...]:
    """§6.2 explain-string: macro-strings and spaces, all macro letters allowed."""
    return _tokens(text, EXPLANATION_LETTERS, spaces=True, where=text)[0]


def _tokens(
    text: str, letters: frozenset[str], *, spaces: bool, where: str
) -> tuple[tuple[Token, ...], bool]:
    """The tokens of ``text`` and whether it ends with a macro-expand (incl. %%, %_, %-)."""
    tokens: list[Token] = []
    literal: list[str] = []
    ends_with_expand = False
    i = 0
    while i < len(text):
        char = text[i]
        ends_with_expand = char == "%"
        if char != "%":
            if not ("\x21" <= char <= "\x7e" or (spaces and char == " ")):
                raise SpfSyntaxError(f"{where!r}: character {char!r} not allowed")
            literal.append(char)
            i += 1
            continue
        follower = text[i + 1 : i + 2]
        escapes = {"%": "%", "_": " ", "-": "%20"}  # §7.1
        if follower in escapes:
            literal.append(escapes[follower])
            i += 2
            continue
        match = _MACRO.match(text, i)
        if follower != "{" or match is None:
            raise SpfSyntaxError(f"{where!r}: '%' must start %{{...}}, %%, %_ or %-")
        letter = match.group("letter")
        if letter.lower() not in letters:
            raise SpfSyntaxError(f"{where!r}: macro letter {letter!r} not allowed here")
        digits = match.group("digits")
        if digits and int(digits) == 0:  # §7.3: "the value MUST be nonzero"
            raise SpfSyntaxError(f"{where!r}: a macro keeps at least one part")
        if literal:
            tokens.append("".join(literal))
            literal = []
        tokens.append(
            Macro(
                letter.lower(),
                int(digits) if digits else None,
                bool(match.group("reverse")),
                match.group("delimiters"),
                letter.isupper(),
            )
        )
        i = match.end()
    if literal:
        tokens.append("".join(literal))
    return tuple(tokens), ends_with_expand
