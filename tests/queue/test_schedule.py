"""The retry schedule: backoff steps, then the last step repeated, and a deadline."""

from __future__ import annotations

import pytest

from mailstead.queue.schedule import RetrySchedule

T0 = 1_000_000.0


def test_default_backoff_then_hourly_until_five_days():
    schedule = RetrySchedule()
    # attempt n failed at time now: the next one after the n-th step
    assert schedule.next_attempt(T0, 1, T0) == T0 + 60
    assert schedule.next_attempt(T0, 2, T0 + 60) == T0 + 60 + 300
    assert schedule.next_attempt(T0, 5, T0 + 5000) == T0 + 5000 + 3600
    assert schedule.next_attempt(T0, 40, T0 + 86400) == T0 + 86400 + 3600
    # the last try is at the deadline, and after it nothing
    deadline = T0 + 5 * 86400
    assert schedule.next_attempt(T0, 99, deadline - 10) == deadline
    assert schedule.next_attempt(T0, 100, deadline) is None
    assert schedule.expired(T0, deadline) and not schedule.expired(T0, deadline - 1)


def test_custom_schedule():
    schedule = RetrySchedule(steps=(10.0, 20.0), max_age=100.0)
    assert schedule.next_attempt(T0, 1, T0) == T0 + 10
    assert schedule.next_attempt(T0, 3, T0 + 30) == T0 + 50
    assert schedule.next_attempt(T0, 4, T0 + 90) == T0 + 100


@pytest.mark.parametrize("kwargs", [{"steps": ()}, {"steps": (0.0,)}, {"max_age": 0.0}])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError, match="must"):
        RetrySchedule(**kwargs)
