"""Mailbox names: the hierarchy, what is allowed, and LIST pattern matching (RFC 9051 §6.3.9)."""

from __future__ import annotations

import re
from functools import lru_cache

DELIMITER = "/"
MAX_NAME_LENGTH = 1000  # characters
MAX_DEPTH = 32  # hierarchy levels


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


@lru_cache(maxsize=256)
def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """LIST reference + pattern → a regex: ``*`` matches anything, ``%`` anything but the
    delimiter. INBOX matches case-insensitively."""
    if pattern.startswith(DELIMITER) or not reference:
        full = pattern
    elif reference.endswith(DELIMITER):
        full = reference + pattern
    else:
        full = reference + DELIMITER + pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    if full[:5].upper() == "INBOX" and not any(c in full[:5] for c in "*%"):
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body + r"\Z", re.S)
