"""Names as they are asked: U-labels to A-labels, lengths checked, nothing interpreted."""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.name
import dns.reversename
import idna


class InvalidName(ValueError):
    """A name that cannot be asked; the message says why."""


def dns_name(name: str) -> dns.name.Name:
    """``name`` (U-labels or A-labels, with or without the final dot) as an absolute DNS name.

    Non-ASCII labels are mapped (UTS 46) and encoded as A-labels (IDNA 2008); ASCII labels are
    taken as they are, so ``_dmarc`` and ``_25._tcp`` work. Backslashes are plain characters,
    never zone-file escapes. Raises ``InvalidName``."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise InvalidName("empty name")
    if not text.isascii():
        try:
            text = idna.uts46_remap(text, std3_rules=False, transitional=False)
            text = ".".join(
                label if label.isascii() else idna.alabel(label).decode("ascii")
                for label in text.split(".")
            )
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidName(f"{name!r} is not a valid internationalised name: {exc}") from None
    try:
        return dns.name.Name([label.lower().encode("ascii") for label in text.split(".")] + [b""])
    except dns.name.EmptyLabel:
        raise InvalidName(f"{name!r} has an empty label") from None
    except dns.name.LabelTooLong:
        raise InvalidName(f"{name!r} has a label over 63 octets") from None
    except dns.name.NameTooLong:
        raise InvalidName(f"{name!r} is over 255 octets") from None
    except dns.exception.DNSException as exc:
        raise InvalidName(f"{name!r}: {exc}") from None


def reverse_name(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> dns.name.Name:
    """The in-addr.arpa / ip6.arpa name of an address; raises ``InvalidName``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidName(f"{ip!r} is not an IP address") from None
    return dns.reversename.from_address(str(address))


def name_text(name: dns.name.Name) -> str:
    """How names appear in answers: lower case, no final dot, "." for the root."""
    if name == dns.name.root:
        return "."
    return name.to_text(omit_final_dot=True).lower()


def normalize_name(name: str) -> str:
    """``name`` as answers spell it (A-labels, lower case, no final dot); raises
    ``InvalidName``. Use it to compare a configured or typed name with names from answers."""
    return name_text(dns_name(name))
