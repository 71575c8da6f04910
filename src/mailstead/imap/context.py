"""Search contexts (RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT) and PARTIAL results (RFC 9394).

A ``SEARCH``/``SORT`` with ``RETURN (UPDATE)`` leaves a context behind: the session re-runs its
criteria whenever the mailbox changed and tells the client what left the result (``REMOVEFROM``,
before the EXPUNGEs that renumber messages) and what joined it (``ADDTO``, after EXISTS).
Positions: 0 for unsorted searches (the client keeps the set), 1-based places in the sort order
for sorted ones, removals highest place first and additions lowest first, so applying them one by
one turns the old order into the new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import response as r

MAX_CONTEXTS = 10
"""Live contexts per session; past it a search still answers, with ``NO [NOUPDATE]``."""


@dataclass(slots=True)
class SearchContext:
    """One live search: its criteria, how it answers (UIDs or sequence numbers, sorted or not),
    and its current result as UIDs (in sort order when sorted)."""

    tag: str
    criteria: c.SearchKey
    uid: bool
    sort: tuple[str, ...] | None
    result: list[int]
    generation: int


def partial_window(items: list[int], partial: tuple[int, int]) -> list[int]:
    """The items at 1-based places ``first..last`` of ``items``; negative places count from the
    end (RFC 9394 §3.1: ``-1:-3`` is the last three)."""
    first, last = partial
    if first > 0:
        return items[first - 1 : last]
    count = len(items)
    start, end = max(count + last, 0), count + first + 1
    return items[start:end] if end > 0 else []


def partial_item(partial: tuple[int, int], numbers: list[int], *, ordered: bool) -> list[bytes]:
    """``PARTIAL (first:last set-or-NIL)`` as ESEARCH return data (RFC 9394 §3.2)."""
    window = partial_window(numbers, partial)
    if not window:
        found = b"NIL"
    else:
        found = ordered_set(window) if ordered else r.sequence_set(window)
    first, last = partial
    return [b"PARTIAL", b"(" + f"{first}:{last}".encode() + b" " + found + b")"]


def ordered_set(numbers: list[int]) -> bytes:
    """A sequence-set that keeps the given order, with ranges for ascending runs."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}:{prev}")
        if n is not None:
            start = prev = n
    return ",".join(out).encode()


def update_items(
    context: SearchContext,
    new: list[int],
    old_numbers: Mapping[int, int],
    new_numbers: Mapping[int, int],
) -> tuple[list[bytes], list[bytes]]:
    """(REMOVEFROM items, ADDTO items) that take ``context.result`` to ``new``.

    ``old_numbers``/``new_numbers`` map UIDs to what the client calls them before and after the
    change (sequence numbers shift with expunges; UID contexts name UIDs)."""
    old = context.result
    new_set, old_set = set(new), set(old)
    removed = [u for u in old if u not in new_set]
    added = [u for u in new if u not in old_set]
    removes: list[bytes] = []
    adds: list[bytes] = []
    if context.sort is None:
        gone = sorted(n for u in removed if (n := old_numbers.get(u)))
        if gone:
            removes = [b"REMOVEFROM", b"(0 " + r.sequence_set(gone) + b")"]
        joined = sorted(n for u in added if (n := new_numbers.get(u)))
        if joined:
            adds = [b"ADDTO", b"(0 " + r.sequence_set(joined) + b")"]
        return removes, adds
    places = {u: i for i, u in enumerate(old, start=1)}
    for uid in sorted(removed, key=places.__getitem__, reverse=True):
        number = old_numbers.get(uid)
        if number:
            removes += [b"REMOVEFROM", f"({places[uid]} {number})".encode()]
    for place, uid in enumerate(new, start=1):
        number = new_numbers.get(uid)
        if uid not in old_set and number:
            adds += [b"ADDTO", f"({place} {number})".encode()]
    return removes, adds


def esearch_line(context: SearchContext, items: list[bytes]) -> bytes:
    head = b"(TAG " + r.quoted(context.tag) + b")"
    return r.untagged("ESEARCH", head, *([b"UID"] if context.uid else []), *items)
