"""RFC 5256 §2.1 base subject, as Dovecot's imap-base-subject.c extracts it.

The subject is RFC 2047-decoded, decomposed and upper-cased (Dovecot's "decomposed
titlecase", so comparison is case-insensitive), and whitespace runs become one space.
Then: (2) trailing ``(fwd)`` and spaces go; (3) a leading space and ``*blob re|fw|fwd
[blob]:`` go; (4) a leading ``[blob]`` goes when something is left after it; (5) repeat
(3)-(4); (6) ``[fwd: ...]`` around the whole is unwrapped and it all starts again at (2).
"""

from __future__ import annotations

import re
import unicodedata

from mailstead.message import decode_header_value

__all__ = ["base_subject", "base_subject_ex", "titlecase"]

_WS = re.compile(r"[ \t\r\n]+")


def titlecase(s: str) -> str:
    """Dovecot's uni_utf8_to_decomposed_titlecase(), near enough: decomposed (NFD) and
    upper-cased character by character."""
    if s.isascii():
        return s.upper()
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in unicodedata.normalize("NFD", s))


def _blob(s: str, i: int) -> int:
    """End of ``[...]`` (plus one space) at ``i``, or -1."""
    if i >= len(s) or s[i] != "[":
        return -1
    j = i + 1
    while j < len(s) and s[j] not in "[]":
        j += 1
    if j >= len(s) or s[j] != "]":
        return -1
    j += 1
    if j < len(s) and s[j] == " ":
        j += 1
    return j


def base_subject_ex(subject: bytes | str) -> tuple[str, bool]:
    """(base subject, whether it was a reply or forward)."""
    text = decode_header_value(subject) if isinstance(subject, bytes) else subject
    s = _WS.sub(" ", titlecase(text))
    start = 0
    end = len(s)
    refwd = False
    while True:
        # (2) subj-trailer = "(fwd)" / WSP
        while end > start:
            if s[end - 1] == " ":
                end -= 1
            elif end >= 5 and s[end - 5 : end] == "(FWD)":
                refwd = True
                end -= 5
            else:
                break
        while True:
            found = False
            # (3) subj-leader = (*subj-blob subj-refwd) / WSP
            if start < end and s[start] == " ":
                start += 1
                found = True
            i = start
            while i < end and s[i] == "[":
                j = _blob(s[:end], i)
                if j < 0:
                    break
                i = j
            else:
                k = -1
                if s.startswith("RE", i, end):
                    k = i + 2
                elif s.startswith("FWD", i, end):
                    k = i + 3
                elif s.startswith("FW", i, end):
                    k = i + 2
                if k >= 0:
                    if k < end and s[k] == " ":
                        k += 1
                    ok = True
                    if k < end and s[k] == "[":
                        k2 = _blob(s[:end], k)
                        ok = k2 >= 0
                        k = k2
                    if ok and k < end and s[k] == ":":
                        start = k + 1
                        refwd = True
                        found = True
            # (4) a leading blob goes if something is left after it
            j = _blob(s[:end], start)
            if j >= 0 and j < end:
                start = j
                found = True
            if not found:
                break
        # (6) subj-fwd = "[fwd:" subject "]"
        if s.startswith("[FWD:", start, end) and end > start and s[end - 1] == "]":
            refwd = True
            start += 5
            end -= 1
            continue
        return s[start:end], refwd


def base_subject(subject: bytes | str) -> str:
    """The RFC 5256 base subject (upper-cased) of a raw or decoded Subject value."""
    return base_subject_ex(subject)[0]
