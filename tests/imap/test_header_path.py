"""FETCH of header sections from the header block alone (the cached path) answers exactly what
the whole-message path answers, and the header cache stays within its bound."""

from __future__ import annotations

import pytest

from mailstead.imap.fetch import HeaderCache
from mailstead.imap.sections import Partial, Section, body_section, header_section
from mailstead.message import parse_message

from .section_cases import CASES as SECTION_CASES

SECTIONS = [
    Section(kind="HEADER"),
    Section(kind="HEADER.FIELDS", fields=("SUBJECT", "FROM", "X-MISSING")),
    Section(kind="HEADER.FIELDS", fields=("NO-SUCH",)),
    Section(kind="HEADER.FIELDS.NOT", fields=("SUBJECT", "RECEIVED")),
]
CASES = SECTION_CASES


@pytest.mark.parametrize("name", sorted(CASES))
def test_header_block_answers_like_the_whole_message(name: str) -> None:
    raw = CASES[name]
    parsed = parse_message(raw)
    block = raw[: parsed.header_end]
    for section in SECTIONS:
        for partial in (None, Partial(3, 10)):
            expected = body_section(raw, parsed, section, partial)
            assert header_section(block, section, partial) == expected, (section, partial)


def test_header_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    cache = HeaderCache(max_bytes=64 * 10)
    for uid in range(100):
        cache.put((1, 1, uid), b"x" * 10)
    assert cache.size <= 640
    assert cache.get((1, 1, 0)) is None
    assert cache.get((1, 1, 99)) == b"x" * 10
    cache.put((1, 1, 500), b"y" * 1000)  # larger than a 64th of the bound: not kept
    assert cache.get((1, 1, 500)) is None
