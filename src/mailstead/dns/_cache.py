"""A bounded cache of answers that keeps each one only as long as its TTL allows."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace
from typing import Any, TypeVar

from mailstead.dns._answers import Answer, Status

T = TypeVar("T")

CacheKey = tuple[str, int]  # (name as asked, rdtype)


class AnswerCache:
    """Least-recently-used map of answers, at most ``max_entries``. Positive answers live for
    their TTL up to ``max_ttl``; NXDOMAIN and NO_DATA for their negative TTL up to
    ``max_negative_ttl`` (RFC 2308 §5 suggests one to three hours at most). Temporary
    failures and invalid names are not kept. Time comes in as ``now`` (monotonic seconds)."""

    def __init__(self, max_entries: int, max_ttl: int, max_negative_ttl: int) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._entries: OrderedDict[CacheKey, tuple[float, Answer[Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, now: float) -> Answer[Any] | None:
        """The cached answer with its remaining TTL, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return replace(answer, ttl=math.ceil(expires - now))

    def put(self, key: CacheKey, answer: Answer[T], now: float) -> Answer[T]:
        """Keep ``answer`` if its status and TTL allow; returns it with the TTL it is kept for
        (capped), so the first caller sees what later ones will."""
        if answer.status is Status.FOUND:
            ttl = min(answer.ttl, self.max_ttl)
        elif answer.status in (Status.NXDOMAIN, Status.NO_DATA):
            ttl = min(answer.ttl, self.max_negative_ttl)
        else:
            return answer
        kept = answer if ttl == answer.ttl else replace(answer, ttl=ttl)
        if ttl <= 0 or self.max_entries <= 0:
            return kept
        self._entries[key] = (now + ttl, kept)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return kept

    def clear(self) -> None:
        self._entries.clear()
