"""When to try a deferred recipient again, and when to give up (RFC 5321 §4.5.4.1: retry at
least 30 minutes apart after the first tries, give up after 4-5 days)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_STEPS = (60.0, 300.0, 900.0, 1800.0, 3600.0)
DEFAULT_MAX_AGE = 5 * 86400.0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """``steps[i]`` seconds after attempt ``i + 1`` failed; after the last step, every
    ``steps[-1]`` seconds; no attempt after ``max_age`` seconds in the queue."""

    steps: Sequence[float] = DEFAULT_STEPS
    max_age: float = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps):
            raise ValueError("retry steps must be positive and at least one")
        if self.max_age <= 0:
            raise ValueError("max_age must be positive")

    def next_attempt(self, queued_at: float, attempts: int, now: float) -> float | None:
        """When to try after ``attempts`` failed attempts (counted from 1), or None when the
        message has been queued too long for another try (then it is expired)."""
        index = min(attempts, len(self.steps)) - 1
        when = now + self.steps[max(index, 0)]
        if when >= queued_at + self.max_age:
            return None if now >= queued_at + self.max_age else queued_at + self.max_age
        return when

    def expired(self, queued_at: float, now: float) -> bool:
        return now >= queued_at + self.max_age
