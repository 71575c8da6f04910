"""Macro expansion (RFC 7208 §7.3, §7.4): what each letter stands for, the transformers, URL
escaping of upper-case letters, and the 253-character limit on names built from macros."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import quote

from mailstead.mailauth.spf._record import Macro, Token

MAX_NAME = 253  # §7.3: the longest name in text form, without the final dot


class MacroUnavailable(ValueError):
    """A letter whose value is not known here (``t`` without a time)."""


@dataclass(frozen=True, slots=True)
class MacroValues:
    """The values of one check_host() evaluation (§7.3). ``validated_name`` looks up ``p``
    for the current domain only when a record asks for it."""

    sender: str
    local_part: str
    sender_domain: str
    ip: IPv4Address | IPv6Address
    helo: str
    receiver: str
    now: float | None
    validated_name: Callable[[str], Awaitable[str]]


def dotted_ip(ip: IPv4Address | IPv6Address) -> str:
    """``i`` (§7.3): dotted quad, or the 32 nibbles of an IPv6 address separated by dots. The
    case of the nibbles is not specified; upper case, as the openspf suite expects (DNS names
    ignore case, so only explanations show it)."""
    if isinstance(ip, IPv4Address):
        return str(ip)
    return ".".join(ip.exploded.replace(":", "").upper())


async def _letter(letter: str, values: MacroValues, domain: str) -> str:
    if letter == "s":
        return values.sender
    if letter == "l":
        return values.local_part
    if letter == "o":
        return values.sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        return dotted_ip(values.ip)
    if letter == "p":
        return await values.validated_name(domain)
    if letter == "v":
        return "in-addr" if isinstance(values.ip, IPv4Address) else "ip6"
    if letter == "h":
        return values.helo
    if letter == "c":  # §7.3: IPv6 in any RFC 4291 §2.2 form; we use the compressed one
        return str(values.ip)
    if letter == "r":
        return values.receiver or "unknown"
    if values.now is None:  # "t"
        raise MacroUnavailable("%{t} needs the current time, and none was given")
    return str(int(values.now))


def transform(value: str, macro: Macro) -> str:
    """§7.3: split on the delimiters (default "."), reverse if asked, keep the right-most
    ``keep`` parts, join with "."; URL-escape if the letter was upper case."""
    parts = re.split(f"[{re.escape(macro.delimiters or '.')}]", value)
    if macro.reverse:
        parts.reverse()
    if macro.keep is not None:
        parts = parts[-macro.keep :]
    result = ".".join(parts)
    # §7.3: upper-case macros are URL-escaped; RFC 3986 unreserved characters stay as they are.
    return quote(result, safe="") if macro.escape else result


async def expand(tokens: tuple[Token, ...], values: MacroValues, domain: str) -> str:
    """The text of a parsed macro string for the current ``domain``."""
    out: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            out.append(token)
        else:
            out.append(transform(await _letter(token.letter, values, domain), token))
    return "".join(out)


def fit_name(name: str) -> str:
    """A name built by expansion, without its final dot and, past 253 characters, with labels
    removed from the left until it fits (§7.3)."""
    if name.endswith("."):
        name = name[:-1]
    while len(name) > MAX_NAME and "." in name:
        name = name.split(".", 1)[1]
    return name
