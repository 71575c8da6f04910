"""The Public Suffix List, for DMARC's organizational domain (RFC 7489 §3.2).

The list comes with the ``publicsuffixlist`` package (MPL-2.0), which ships a copy of
https://publicsuffix.org/list/ in each release and reads it offline; nothing is fetched at run
time. Both sections count: the ICANN one (``co.uk``) and the private one (``github.io``), so
``alice.github.io`` and ``bob.github.io`` are different organizations, as the list's owners
intend. Wildcard (``*.kawasaki.jp``) and exception (``!city.kawasaki.jp``) rules apply, and a
name under no listed suffix falls under the implicit ``*`` rule (``example.test`` is its own
organizational domain). Names are compared as A-labels in lower case.

The list is parsed once, on first use (about 0.15 s); call :func:`load` at start-up to pay
that before the first message.
"""

from __future__ import annotations

import functools

import publicsuffixlist

from mailstead.message.addresses import AddressError, domain_to_ascii

__all__ = ["ascii_domain", "list_version", "load", "organizational_domain", "public_suffix"]


@functools.cache
def load() -> publicsuffixlist.PublicSuffixList:
    """The parsed list (ICANN and private sections; unknown top-level labels are suffixes)."""
    return publicsuffixlist.PublicSuffixList(accept_unknown=True)


def list_version() -> str:
    """The version of the shipped list (the package's version ends with the list's date)."""
    return str(publicsuffixlist.__version__)


def ascii_domain(domain: str) -> str:
    """``domain`` as A-labels in lower case without the final dot; raises ValueError."""
    try:
        return domain_to_ascii(domain)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def public_suffix(domain: str) -> str:
    """The longest public suffix ``domain`` ends with (``co.uk`` for ``www.example.co.uk``)."""
    name = ascii_domain(domain)
    suffix = load().publicsuffix(name)
    return suffix if suffix is not None else name.rsplit(".", 1)[-1]


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (``example.co.uk`` for
    ``www.example.co.uk``). A name that is itself a public suffix is its own organizational
    domain. Raises ValueError for a name that is not a domain."""
    name = ascii_domain(domain)
    private = load().privatesuffix(name)
    return private if private is not None else name
