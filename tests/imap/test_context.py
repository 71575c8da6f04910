"""Search contexts and PARTIAL windows (RFC 5267, RFC 9394): the pure parts."""

from __future__ import annotations

import pytest

from mailstead.imap.context import SearchContext, partial_item, partial_window, update_items
from mailstead.protocols.imap import commands as c

ITEMS = [10, 20, 30, 40, 50]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ((1, 1), [10]),
        ((2, 4), [20, 30, 40]),
        ((4, 9), [40, 50]),
        ((6, 6), []),
        ((-1, -1), [50]),
        ((-1, -3), [30, 40, 50]),
        ((-4, -9), [10, 20]),
        ((-6, -7), []),
    ],
)
def test_partial_window(window: tuple[int, int], expected: list[int]) -> None:
    assert partial_window(ITEMS, window) == expected


def test_partial_item_names_the_window_and_nil_when_empty() -> None:
    assert partial_item((2, 3), [1, 2, 4, 5], ordered=False) == [b"PARTIAL", b"(2:3 2,4)"]
    assert partial_item((6, 6), [1, 2], ordered=False) == [b"PARTIAL", b"(6:6 NIL)"]
    assert partial_item((-1, -2), [1, 2, 3], ordered=False) == [b"PARTIAL", b"(-1:-2 2:3)"]
    # sorted results keep their order
    assert partial_item((1, 3), [5, 4, 3], ordered=True) == [b"PARTIAL", b"(1:3 5,4,3)"]


def _context(result: list[int], *, sort: tuple[str, ...] | None = None) -> SearchContext:
    return SearchContext("T1", c.All(), False, sort, result, 0)


def test_unsorted_updates_use_position_zero_and_sets() -> None:
    context = _context([1, 2, 4])
    old = {1: 1, 2: 2, 4: 4}
    new = {2: 1, 4: 3, 7: 5}
    removes, adds = update_items(context, [2, 4, 7], old, new)
    assert removes == [b"REMOVEFROM", b"(0 1)"]
    assert adds == [b"ADDTO", b"(0 5)"]


def test_unsorted_update_without_change_says_nothing() -> None:
    context = _context([3])
    assert update_items(context, [3], {3: 3}, {3: 3}) == ([], [])


def _apply(old: list[int], removes: list[bytes], adds: list[bytes]) -> list[int]:
    """What a client does with sorted REMOVEFROM/ADDTO items, one pair at a time."""
    result = list(old)
    for name, value in zip(removes[::2], removes[1::2], strict=True):
        assert name == b"REMOVEFROM"
        place, number = map(int, value.strip(b"()").split())
        assert result[place - 1] == number
        del result[place - 1]
    for name, value in zip(adds[::2], adds[1::2], strict=True):
        assert name == b"ADDTO"
        place, number = map(int, value.strip(b"()").split())
        result.insert(place - 1, number)
    return result


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ([5, 3, 9, 1], [5, 9, 1]),
        ([5, 3, 9, 1], [8, 5, 3, 9, 1, 2]),
        ([5, 3, 9, 1], [3, 7, 1]),
        ([], [4, 2]),
        ([4, 2], []),
    ],
)
def test_sorted_updates_replay_to_the_new_order(old: list[int], new: list[int]) -> None:
    context = _context(old, sort=("ARRIVAL",))
    identity = {u: u for u in [*old, *new]}
    removes, adds = update_items(context, new, identity, identity)
    assert _apply(old, removes, adds) == new
