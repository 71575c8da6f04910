"""Mailbox names: the hierarchy, what is allowed, and LIST pattern matching (RFC 9051 §6.3.9)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

DELIMITER = "/"
MAX_NAME_LENGTH = 1000  # characters
MAX_DEPTH = 32  # hierarchy levels
# reference + pattern of one LIST pattern; a name is at most MAX_NAME_LENGTH, and a longer
# pattern could only match through wildcards that match nothing
MAX_PATTERN_LENGTH = 2 * MAX_NAME_LENGTH
MAX_PATTERNS = 64  # patterns of one LIST (RFC 5258 allows a list): each is tried on every name
# matching work (characters times 64-position words of the pattern) between two yields to the
# event loop: a LIST over many long names with long patterns never blocks other connections
WORK_SLICE = 20_000


class BadName(ValueError):
    """A mailbox name the account may not use."""


def check_name(name: str) -> str:
    """``name`` if it is a usable mailbox name; INBOX in any case becomes ``INBOX``.

    Names stay inside the account: no empty levels, no ``.``/``..`` levels, no wildcards, no
    control characters, bounded length and depth."""
    if name.upper() == "INBOX":
        return "INBOX"
    if not name or len(name) > MAX_NAME_LENGTH:
        raise BadName("Invalid mailbox name length")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise BadName("Control characters are not allowed in mailbox names")
    if "*" in name or "%" in name:
        raise BadName("Wildcards are not allowed in mailbox names")
    levels = name.split(DELIMITER)
    if len(levels) > MAX_DEPTH:
        raise BadName("Mailbox hierarchy too deep")
    for level in levels:
        if level in ("", ".", ".."):
            raise BadName("Invalid mailbox name: empty, '.' or '..' level")
    if levels[0].upper() == "INBOX" and levels[0] != "INBOX":
        levels[0] = "INBOX"  # INBOX/child is spelt with the canonical INBOX
    return DELIMITER.join(levels)


def parents(name: str) -> list[str]:
    """``a/b/c`` → ``["a", "a/b"]``."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


class BadPattern(ValueError):
    """A LIST pattern the server will not match (too long)."""


def _full_pattern(reference: str, pattern: str) -> str:
    # RFC 3501 §6.3.8: the reference is prefixed, with a delimiter between, unless the pattern
    # starts with one (then it is taken from the root)
    if pattern.startswith(DELIMITER) or not reference:
        return pattern
    if reference.endswith(DELIMITER):
        return reference + pattern
    return reference + DELIMITER + pattern


_INBOX_CI = re.compile(r"(?i:INBOX)")
_STAR, _PERCENT = "*", "%"


class Pattern:
    """A LIST reference + pattern, compiled: ``*`` matches anything, ``%`` anything but the
    delimiter, and a leading INBOX matches case-insensitively.

    Matching costs time linear in the name (times the pattern length / 64 when the pattern has
    ``%``): wildcards are never tried by backtracking. Runs of wildcards are one wildcard (``*``
    if the run holds one, else ``%``); a ``*``-only pattern is matched segment by segment with
    ``str.find`` (the leftmost occurrence of each segment is always a right choice); one with
    ``%`` runs a bit-parallel NFA (one bit per pattern position, Python integers)."""

    __slots__ = (
        "_accept", "_any", "_inbox", "_literals", "_no_delim", "_segments", "_start", "_words",
    )  # fmt: skip

    def __init__(self, full: str) -> None:
        self._inbox = full[:5].upper() == "INBOX" and not any(c in full[:5] for c in "*%")
        rest = full[5:] if self._inbox else full
        tokens: list[str] = []
        for ch in rest:
            if ch in (_STAR, _PERCENT) and tokens and tokens[-1] in (_STAR, _PERCENT):
                if ch == _STAR:
                    tokens[-1] = _STAR  # "%*", "*%" and "**" all match what "*" matches
                continue
            tokens.append(ch)
        self._segments: list[str] | None = None
        if _PERCENT not in tokens:
            self._segments = "".join(tokens).split(_STAR)
        literals: dict[str, int] = {}
        any_mask = no_delim = 0
        for i, tok in enumerate(tokens):
            if tok == _STAR:
                any_mask |= 1 << i
            elif tok == _PERCENT:
                no_delim |= 1 << i
            else:
                literals[tok] = literals.get(tok, 0) | 1 << i
        self._literals = literals
        self._any = any_mask
        self._no_delim = no_delim
        self._accept = 1 << len(tokens)
        self._words = 1 + len(tokens) // 64
        self._start = self._closure(1)

    def cost(self, name: str) -> int:
        """About how much work matching ``name`` takes (see WORK_SLICE)."""
        if self._segments is not None:
            return 1 + len(name) // 64  # str.find and friends run in C
        return 1 + len(name) * self._words

    def _closure(self, states: int) -> int:
        # a wildcard may match nothing; never two wildcards in a row, so one step suffices
        return states | ((states & (self._any | self._no_delim)) << 1)

    def match(self, name: str) -> bool:
        """True when the whole of ``name`` matches."""
        if self._inbox:
            if _INBOX_CI.fullmatch(name, 0, 5) is None:
                return False
            name = name[5:]
        segments = self._segments
        if segments is not None:
            return _match_segments(segments, name)
        literals, any_mask, no_delim = self._literals, self._any, self._no_delim
        states = self._start
        for ch in name:
            loops = states & (any_mask if ch == DELIMITER else any_mask | no_delim)
            states = self._closure(((states & literals.get(ch, 0)) << 1) | loops)
            if not states:
                return False
        return bool(states & self._accept)


def _match_segments(segments: list[str], name: str) -> bool:
    """``segments`` joined by ``*`` matches ``name``."""
    first, last = segments[0], segments[-1]
    if len(segments) == 1:
        return name == first
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    pos, end = len(first), len(name) - len(last)
    for segment in segments[1:-1]:
        found = name.find(segment, pos, end)
        if found < 0:
            return False
        pos = found + len(segment)
    return True


@lru_cache(maxsize=256)
def compile_pattern(reference: str, pattern: str) -> Pattern:
    """LIST reference + pattern → a `Pattern`; `BadPattern` past ``MAX_PATTERN_LENGTH``."""
    full = _full_pattern(reference, pattern)
    if len(full) > MAX_PATTERN_LENGTH:
        raise BadPattern("Pattern too long")
    return Pattern(full)


def compile_patterns(reference: str, patterns: Sequence[str]) -> list[Pattern]:
    """Every pattern of one LIST; `BadPattern` past ``MAX_PATTERNS`` of them."""
    if len(patterns) > MAX_PATTERNS:
        raise BadPattern("Too many patterns")
    return [compile_pattern(reference, p) for p in patterns]


async def matching(patterns: Sequence[Pattern], candidates: Iterable[str]) -> set[str]:
    """The candidates that one of ``patterns`` matches, yielding to the event loop after every
    WORK_SLICE of work, so that matching stays off the loop's critical path however large."""
    out: set[str] = set()
    work = 0
    for name in candidates:
        for pattern in patterns:
            work += pattern.cost(name)
            if work >= WORK_SLICE:
                work = 0
                await asyncio.sleep(0)
            if pattern.match(name):
                out.add(name)
                break
    return out
