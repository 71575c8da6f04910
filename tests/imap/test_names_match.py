"""LIST pattern matching: the linear-time matcher answers exactly what the regular expressions
it replaced answered (the reference below is the old ``pattern_regex``, kept as the oracle)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.imap import names


def old_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The former translation of a LIST pattern into a regular expression (backtracking)."""
    if pattern.startswith("/") or not reference:
        full = pattern
    elif reference.endswith("/"):
        full = reference + pattern
    else:
        full = reference + "/" + pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    if full[:5].upper() == "INBOX" and not any(c in full[:5] for c in "*%"):
        body = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(body + r"\Z", re.S)


# small alphabets make matches likely; the odd letters are those case-insensitive INBOX accepts
NAME_CHARS = st.sampled_from(list("ab/.INBOXinboxıİ\n"))
PATTERN_CHARS = st.sampled_from(list("ab/*%*%INBOXinboxı\n"))


@settings(max_examples=3000, deadline=None)
@given(
    reference=st.text(PATTERN_CHARS, max_size=6),
    pattern=st.text(PATTERN_CHARS, max_size=10),
    name=st.text(NAME_CHARS, max_size=12),
)
def test_matcher_agrees_with_the_old_regex(reference: str, pattern: str, name: str) -> None:
    expected = old_regex(reference, pattern).match(name) is not None
    assert names.compile_pattern(reference, pattern).match(name) is expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a/b", False),
        ("a/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a%b", "a/b", False),
        ("a*b", "a/b", True),
        ("%*", "a/b", True),
        ("*%", "a/b", True),
        ("%%/%", "x/y", True),
        ("inbox", "INBOX", True),
        ("INBOX/%", "inbox/a", True),
        ("Inbox.x", "inbox.x", True),
        ("INBOXa", "inboxA", False),
        ("x", "X", False),
        ("", "", True),
    ],
)
def test_wildcards(pattern: str, name: str, expected: bool) -> None:
    assert names.compile_pattern("", pattern).match(name) is expected


def test_too_long_patterns_and_too_many_are_refused() -> None:
    names.compile_pattern("", "*" * names.MAX_PATTERN_LENGTH)
    with pytest.raises(names.BadPattern):
        names.compile_pattern("", "*" * (names.MAX_PATTERN_LENGTH + 1))
    with pytest.raises(names.BadPattern):
        names.compile_pattern("a" * names.MAX_PATTERN_LENGTH, "b")
    with pytest.raises(names.BadPattern):
        names.compile_patterns("", ["a"] * (names.MAX_PATTERNS + 1))


@pytest.mark.parametrize("pattern", ["*a*a*a*a*X", "%a%a%a%a%X", "*a%a*a%a*a%a*a%a%X"])
def test_adversarial_patterns_take_linear_time(pattern: str) -> None:
    """The old regex backtracks polynomially on these (an 18 s LIST with a 300-character
    name); a name the size of the largest allowed with the longest allowed pattern must be
    answered in well under a second even on a loaded machine."""
    matcher = names.compile_pattern("", (pattern * 200)[: names.MAX_PATTERN_LENGTH - 1] + "X")
    name = "a" * names.MAX_NAME_LENGTH
    started = time.process_time()
    assert not matcher.match(name)
    assert time.process_time() - started < 2.0


def test_matching_many_names_yields_to_the_event_loop() -> None:
    """A LIST over many long names with many long patterns gives other connections their
    turn: the event loop runs between slices of the work."""
    patterns = names.compile_patterns(
        "", [("*a%a" * 500)[: names.MAX_PATTERN_LENGTH - 1] + "X"] * names.MAX_PATTERNS
    )
    candidates = ["a" * names.MAX_NAME_LENGTH + str(i) for i in range(5)] + ["aX", "b"]

    async def main() -> tuple[set[str], int]:
        ticks = 0

        async def other_connection() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other_connection())
        await asyncio.sleep(0)
        try:
            found = await names.matching(patterns, candidates)
        finally:
            task.cancel()
        return found, ticks

    found, ticks = asyncio.run(main())
    assert found == set()
    # between two turns of the loop: at most WORK_SLICE and one more match
    costs = [p.cost(n) for p in patterns for n in candidates]
    assert ticks >= sum(costs) // (names.WORK_SLICE + max(costs)) > 100


def test_matching_agrees_with_match() -> None:
    patterns = names.compile_patterns("", ["a/%", "INBOX"])
    candidates = ["a/b", "a/b/c", "inbox", "b"]
    assert asyncio.run(names.matching(patterns, candidates)) == {"a/b", "inbox"}
