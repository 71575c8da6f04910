"""SORT keys (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO) as Dovecot's index-sort.c
computes them.

- ARRIVAL: the internal date. DATE: the Date header, or the internal date when it is
  missing or unparsable (RFC 5256 §2.2). SIZE: RFC822.SIZE.
- FROM / TO / CC: the mailbox (local part) of the first address, upper-cased.
- DISPLAYFROM / DISPLAYTO: the first address's decoded display name, else
  ``local@domain``, upper-cased.
- SUBJECT: the base subject (``subject.base_subject``); no Subject field sorts as "".
- Ties are broken by sequence order (the handler sorts a list already in that order with
  a stable sort, or appends the sequence number as the last key).

Strings compare by their UTF-8 octets, as Dovecot's strcmp does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mailstead.imap.subject import base_subject, titlecase
from mailstead.message import Address, ParsedMessage, decode_header_value

__all__ = ["Criterion", "MessageView", "SortKey", "sort_key", "sort_keys", "sort_uids"]

Criterion = Literal[
    "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"
]
SortKey = int | float | bytes


@dataclass(frozen=True, slots=True)
class MessageView:
    """What SORT and THREAD need of one message."""

    uid: int
    internal_date: datetime
    size: int
    parsed: ParsedMessage
    # the raw References value (THREAD=REFERENCES); None: read it from parsed.fields
    references: bytes | None = None


def _first(addrs: list[Address]) -> Address | None:
    for a in addrs:
        if not a.is_group_marker:
            return a
    return None


def _mailbox_key(addrs: list[Address]) -> bytes:
    """RFC 5256 §3: the addr-mailbox of the first address; for a group that is the group's
    name (the mailbox of the group's start marker, as IMAP's ENVELOPE writes it)."""
    for a in addrs:
        if a.group_end:
            continue
        if a.is_group_marker:
            return _u(a.group or "")
        return _u(a.local)
    return b""


def _u(s: str) -> bytes:
    return titlecase(s).encode("utf-8", "surrogateescape")


def _timestamp(d: datetime) -> float:
    return d.timestamp()


def sent_date(m: MessageView) -> float:
    """The Date header as a timestamp, or the internal date (RFC 5256 §2.2)."""
    d = m.parsed.date
    if d is None:
        return _timestamp(m.internal_date)
    try:
        ts = d.timestamp()
    except (OverflowError, ValueError, OSError):
        return _timestamp(m.internal_date)
    return ts if ts > 0 else _timestamp(m.internal_date)


def sort_key(criterion: str, m: MessageView) -> SortKey:
    """The key one criterion (without REVERSE) gives one message; smaller sorts first."""
    c = criterion.upper()
    env = m.parsed.envelope
    if c == "ARRIVAL":
        return _timestamp(m.internal_date)
    if c == "DATE":
        return sent_date(m)
    if c == "SIZE":
        return m.size
    if c == "SUBJECT":
        return b"" if env.subject is None else base_subject(env.subject).encode("utf-8")
    if c in ("FROM", "TO", "CC"):
        return _mailbox_key(env.from_ if c == "FROM" else env.to if c == "TO" else env.cc)
    if c in ("DISPLAYFROM", "DISPLAYTO"):
        addrs = env.from_ if c == "DISPLAYFROM" else env.to
        a = next((x for x in addrs if not x.group_end), None)
        if a is None:
            return b""
        if a.is_group_marker:  # RFC 5957 §3: a group displays as its name
            return _u(a.group or "")
        if a.name_raw is not None:
            name = decode_header_value(a.name_raw)
            if name:
                return _u(name)
        if a.local and a.domain:
            return _u(f"{a.local}@{a.domain}")
        return _u(a.local)
    raise ValueError(f"unknown SORT criterion {criterion!r}")


def sort_keys(criteria: Sequence[str], m: MessageView) -> tuple[SortKey, ...]:
    """Keys for a whole SORT program; REVERSE applies to the criterion after it."""
    out: list[SortKey] = []
    reverse = False
    for crit in criteria:
        if crit.upper() == "REVERSE":
            reverse = not reverse
            continue
        k = sort_key(crit, m)
        out.append(_Rev(k) if reverse else k)  # type: ignore[arg-type]
        reverse = False
    return tuple(out)


class _Rev:
    __slots__ = ("k",)

    def __init__(self, k: SortKey) -> None:
        self.k = k

    def __lt__(self, other: _Rev) -> bool:
        return other.k < self.k  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.k == other.k

    def __hash__(self) -> int:
        return hash(self.k)


def sort_uids(criteria: Sequence[str], messages: Sequence[MessageView]) -> list[int]:
    """UIDs of ``messages`` (given in sequence order) sorted by ``criteria``; ties keep
    sequence order (Dovecot's final tie-break)."""
    keyed = [(sort_keys(criteria, m), i, m.uid) for i, m in enumerate(messages)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [uid for _k, _i, uid in keyed]
