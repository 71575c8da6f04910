"""Brute-force bans: per client, per account under a spread attack, exemptions, bounded memory.

The clock is a number the test passes in; nothing sleeps.
"""

from __future__ import annotations

import ipaddress

import pytest

from mailstead.security.bans import Admission, AuthFailureTracker, Banned


def tracker(**options):
    defaults = {"max_failures": 3, "window": 60.0, "ban_time": 300.0, "account_max_failures": 5}
    return AuthFailureTracker(**{**defaults, **options})


def test_a_client_is_banned_after_max_failures_within_the_window():
    t = tracker()
    assert t.record_failure("192.0.2.1", "alice@example.org", now=0.0) is None
    assert t.record_failure("192.0.2.1", "bob@example.org", now=10.0) is None
    assert t.is_banned("192.0.2.1", now=10.0) is None
    assert t.record_failure("192.0.2.1", None, now=20.0) == Banned("192.0.2.1", 320.0, 3)
    assert t.is_banned("192.0.2.1", now=20.0) == 300.0
    assert t.is_banned("192.0.2.1", now=319.5) == 0.5
    assert t.is_banned("192.0.2.2", now=21.0) is None  # other clients are not affected
    assert t.is_banned("192.0.2.1", now=320.0) is None  # over
    # and it starts from zero afterwards
    assert t.record_failure("192.0.2.1", None, now=321.0) is None


def test_failures_older_than_the_window_do_not_count():
    t = tracker()
    t.record_failure("192.0.2.1", None, now=0.0)
    t.record_failure("192.0.2.1", None, now=30.0)
    assert t.record_failure("192.0.2.1", None, now=60.0) is None  # the first one left the window
    assert t.record_failure("192.0.2.1", None, now=61.0) == Banned("192.0.2.1", 361.0, 3)


def test_a_success_forgets_the_clients_failures():
    t = tracker()
    t.record_failure("192.0.2.1", "alice@example.org", now=0.0)
    t.record_failure("192.0.2.1", "alice@example.org", now=1.0)
    t.record_success("192.0.2.1", "alice@example.org", now=2.0)
    assert t.record_failure("192.0.2.1", "alice@example.org", now=3.0) is None
    assert t.record_failure("192.0.2.1", "alice@example.org", now=4.0) is None


def test_a_success_on_an_own_account_keeps_the_failures_on_others():
    """The attack: guesses against alice between logins to the attacker's own account."""
    t = tracker()
    assert t.record_failure("192.0.2.1", "alice@example.org", now=0.0) is None
    t.record_success("192.0.2.1", "mallory@example.org", now=1.0)
    assert t.record_failure("192.0.2.1", "ALICE@example.org", now=2.0) is None
    t.record_success("192.0.2.1", "mallory@example.org", now=3.0)
    assert t.failures("192.0.2.1", now=3.0) == 2
    assert t.record_failure("192.0.2.1", "alice@example.org", now=4.0) == Banned(
        "192.0.2.1", 304.0, 3
    )
    # a success forgets the failures on its own account only (names compared casefolded)
    t = tracker()
    t.record_failure("192.0.2.1", "alice@example.org", now=0.0)
    t.record_failure("192.0.2.1", "bob@example.org", now=0.0)
    t.record_failure("192.0.2.1", None, now=0.0)
    assert t.is_banned("192.0.2.1", now=0.0) == 300.0
    t = tracker()
    t.record_failure("192.0.2.1", "Alice@Example.org", now=0.0)
    t.record_failure("192.0.2.1", None, now=0.0)
    t.record_success("192.0.2.1", "alice@example.org", now=1.0)
    assert t.failures("192.0.2.1", now=1.0) == 1


def test_attempts_in_flight_count_against_the_limit():
    t = tracker()  # max_failures 3
    assert [t.begin("192.0.2.1", now=0.0) for _ in range(4)] == [Admission.ADMITTED] * 3 + [
        Admission.BUSY
    ]
    assert t.in_flight("192.0.2.1") == 3
    assert t.begin("192.0.2.2", now=0.0) is Admission.ADMITTED  # other clients are apart
    t.record_failure("192.0.2.1", "alice@example.org", now=1.0)
    t.end("192.0.2.1")
    assert t.begin("192.0.2.1", now=1.0) is Admission.BUSY  # 1 failure + 2 in flight
    t.end("192.0.2.1")
    assert t.begin("192.0.2.1", now=1.0) is Admission.ADMITTED
    t.record_failure("192.0.2.1", "alice@example.org", now=2.0)
    t.record_failure("192.0.2.1", "alice@example.org", now=2.0)  # banned
    assert t.begin("192.0.2.1", now=3.0) is Admission.BANNED
    for _ in range(2):
        t.end("192.0.2.1")
    assert t.in_flight("192.0.2.1") == 0
    # exempt clients are admitted whatever they have in flight
    t = tracker(exempt=["10.0.0.0/8"])
    assert {t.begin("10.0.0.1", now=0.0) for _ in range(10)} == {Admission.ADMITTED}


def test_ipv6_clients_are_counted_per_64():
    t = tracker()
    t.record_failure("2001:db8:1:2::1", None, now=0.0)
    t.record_failure("2001:db8:1:2::ffff", None, now=1.0)
    ban = t.record_failure("2001:db8:1:2:aaaa::3", None, now=2.0)
    assert ban == Banned("2001:db8:1:2::/64", 302.0, 3)
    assert t.is_banned("2001:db8:1:2::9", now=3.0) == 299.0
    assert t.is_banned("2001:db8:1:2::/64", now=3.0) == 299.0
    assert t.is_banned("2001:db8:1:3::1", now=3.0) is None
    # an IPv4-mapped address is its IPv4 client
    t.record_failure("::ffff:192.0.2.7", None, now=0.0)
    t.record_failure("192.0.2.7", None, now=0.0)
    assert t.record_failure("::ffff:192.0.2.7", None, now=0.0).ip_key == "192.0.2.7"


def test_spread_attack_on_one_account_bans_repeat_offenders_only():
    """Many clients, two guesses each, one account: under the per-client limit of 3, but the
    account's 5 failures mark it as under attack; from then on a client failing on it again
    is banned at once, while a client with no earlier failure (its owner) is not."""
    t = tracker()
    events = []
    for n in range(1, 4):  # 3 clients x 1 failure
        events.append(t.record_failure(f"198.51.100.{n}", "alice@example.org", now=float(n)))
    events.append(t.record_failure("198.51.100.1", "ALICE@example.org", now=4.0))  # 4 failures
    assert events == [None] * 4
    ban = t.record_failure("198.51.100.2", "alice@example.org", now=5.0)  # 5th: under attack
    assert ban == Banned("198.51.100.2", 305.0, 2, "alice@example.org")
    # the owner mistypes once from home: no earlier failure, so no ban
    assert t.record_failure("203.0.113.9", "alice@example.org", now=6.0) is None
    assert t.is_banned("203.0.113.9", now=6.0) is None
    # a first-time client failing on another account is not concerned either
    assert t.record_failure("198.51.100.50", "bob@example.org", now=7.0) is None
    # the account stays under attack while its failures are within the window
    assert t.record_failure("198.51.100.3", "alice@example.org", now=8.0).account == (
        "alice@example.org"
    )
    # ...and is not once they have aged out
    t.record_failure("198.51.100.60", "alice@example.org", now=100.0)
    assert t.record_failure("198.51.100.60", "alice@example.org", now=101.0) is None


def test_exempt_networks_are_never_counted_nor_banned():
    t = tracker(exempt=["10.0.0.0/8", ipaddress.ip_network("2001:db8::1/128")])
    for i in range(10):
        assert t.record_failure("10.1.2.3", "alice@example.org", now=float(i)) is None
        assert t.record_failure("2001:db8::99", "alice@example.org", now=float(i)) is None
    assert t.is_banned("10.1.2.3", now=10.0) is None
    assert t.is_exempt("10.255.0.1")
    assert t.is_exempt("::ffff:10.0.0.1")
    assert t.is_exempt("2001:db8::1")
    assert t.is_exempt("2001:db8::/64")  # the /64 of an exempt host is one client
    assert not t.is_exempt("11.0.0.1")
    assert not t.is_exempt("2001:db8:0:1::1")
    assert not t.is_exempt("not an address")
    assert not tracker().is_exempt("10.0.0.1")
    # exempt clients' failures did not count towards the account either
    assert t.tracked == (0, 0, 0)


def test_memory_is_bounded_and_the_least_recently_seen_go_first():
    t = tracker(max_tracked=100)
    for n in range(1000):
        t.record_failure(f"10.0.{n // 250}.{n % 250}", f"user{n}@example.org", now=0.0)
    assert t.tracked == (100, 100, 0)
    # bans too: a flood of banned clients keeps only the most recent ones
    t = tracker(max_failures=1, max_tracked=10)
    for n in range(50):
        t.record_failure(f"203.0.113.{n}", None, now=float(n))
    assert t.tracked[2] == 10
    assert t.is_banned("203.0.113.49", now=50.0) is not None
    assert t.is_banned("203.0.113.0", now=50.0) is None


def test_prune_returns_memory_of_old_entries():
    t = tracker()
    t.record_failure("192.0.2.1", "alice@example.org", now=0.0)
    for _ in range(3):
        t.record_failure("192.0.2.2", None, now=0.0)  # banned until 300
    assert t.tracked == (1, 1, 1)
    t.prune(now=61.0)
    assert t.tracked == (0, 0, 1)
    t.prune(now=300.0)
    assert t.tracked == (0, 0, 0)


@pytest.mark.parametrize(
    "options",
    [{"max_failures": 0}, {"window": 0}, {"ban_time": -1}, {"max_tracked": 0},
     {"account_max_failures": 0}],
)  # fmt: skip
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the setting
        tracker(**options)
