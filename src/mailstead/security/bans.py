"""Brute-force protection for logins: count failed authentications, ban the clients that guess.

Sans-IO: the caller passes the time (``now``, seconds on a monotonic clock) to every method and
logs the :class:`Banned` events it gets back. Clients are counted by
:func:`mailstead.security.limits.client_key` (an IPv4 address, or an IPv6 /64); the methods
take either a client key or a plain address, which they turn into its key.

The rules, in the spirit of fail2ban and Dovecot's ``auth_penalty``:

- **Per client**: ``max_failures`` failed logins within ``window`` seconds ban the client for
  ``ban_time`` seconds, whatever accounts it tried. A successful login forgets the client's
  earlier failures (a user who mistyped once is not one step closer to a ban forever).
- **Per account**, against attacks spread over many addresses that each stay under the client
  limit: once an account has had ``account_max_failures`` failures within ``window`` (from any
  clients), it is *under attack*, and a client that fails on it *again* (it already failed,
  on any account, within the window) is banned at once. The account itself is never locked:
  a locked account would let anyone lock its owner out, and the owner, who usually gets the
  password right the first time, has no earlier failure and is never banned by this rule.
- **Exempt networks** (e.g. a webmail front end that logs in for many users) are never
  counted nor banned.

Memory is bounded: at most ``max_tracked`` clients and as many accounts are remembered (the
least recently seen are forgotten first), and at most ``max_tracked`` bans (the oldest go
first). Forgetting a client under a flood of addresses only makes it start from zero.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from mailstead.security.limits import client_key

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# one failed login: (time, account key or None)
_Failure = tuple[float, str | None]

DEFAULT_MAX_FAILURES = 5
DEFAULT_ACCOUNT_MAX_FAILURES = 10
DEFAULT_WINDOW = 600.0
DEFAULT_BAN_TIME = 900.0
DEFAULT_MAX_TRACKED = 100_000


@dataclass(frozen=True, slots=True)
class Banned:
    """``ip_key`` is banned until ``until`` (same clock as ``now``) after ``failures`` failed
    logins; ``account`` is set when the per-account rule triggered the ban."""

    ip_key: str
    until: float
    failures: int
    account: str | None = None


class Admission(Enum):
    """What :meth:`AuthFailureTracker.begin` says to a new login attempt."""

    ADMITTED = "admitted"  # go on; call ``end`` when its outcome is recorded
    BANNED = "banned"  # the client is banned
    BUSY = "busy"  # failures + attempts in flight reach the limit: wait for one to end


class AuthFailureTracker:
    """Counts failed logins per client and per account; decides bans. Not thread-safe (one
    tracker per event loop)."""

    def __init__(
        self,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window: float = DEFAULT_WINDOW,
        ban_time: float = DEFAULT_BAN_TIME,
        account_max_failures: int = DEFAULT_ACCOUNT_MAX_FAILURES,
        exempt: Iterable[IPNetwork | str] = (),
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if max_failures < 1 or account_max_failures < 1 or max_tracked < 1:
            raise ValueError("failure limits and max_tracked must be at least 1")
        if window <= 0 or ban_time <= 0:
            raise ValueError("window and ban_time must be positive")
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self.account_max_failures = account_max_failures
        self.max_tracked = max_tracked
        self.exempt: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in exempt
        )
        self._exempt_v4 = [n for n in self.exempt if isinstance(n, ipaddress.IPv4Network)]
        self._exempt_v6 = [n for n in self.exempt if isinstance(n, ipaddress.IPv6Network)]
        # failure (time, account key), oldest first; at most the limit is kept (older ones
        # cannot matter)
        self._clients: OrderedDict[str, deque[_Failure]] = OrderedDict()
        self._accounts: OrderedDict[str, deque[_Failure]] = OrderedDict()  # (time, None)
        self._bans: OrderedDict[str, float] = OrderedDict()  # ip_key -> until
        # attempts being verified, per client (as many entries as attempts at most)
        self._in_flight: dict[str, int] = {}

    def is_exempt(self, ip: str) -> bool:
        """Whether the client ``ip`` (an address or a client key) is in an exempt network. An
        IPv6 client is its /64, exempt when the /64 overlaps an exempt network (so exempting one
        IPv6 host exempts its /64: it is counted as one client anyway)."""
        if not self.exempt:
            return False
        try:
            network = ipaddress.ip_network(client_key(ip), strict=False)
        except ValueError:
            return False
        if isinstance(network, ipaddress.IPv4Network):
            return any(network.overlaps(n) for n in self._exempt_v4)
        return any(network.overlaps(n) for n in self._exempt_v6)

    def is_banned(self, ip_key: str, now: float) -> float | None:
        """Seconds left of ``ip_key``'s ban, or None if it may try to log in."""
        ip_key = client_key(ip_key)
        until = self._bans.get(ip_key)
        if until is None:
            return None
        if until <= now:
            del self._bans[ip_key]
            return None
        return until - now

    def begin(self, ip_key: str, now: float) -> Admission:
        """May ``ip_key`` have one more login attempt verified now? When ADMITTED the attempt
        counts as in flight until :meth:`end`. Exempt clients are always admitted."""
        ip_key = client_key(ip_key)
        if self.is_banned(ip_key, now) is not None:
            return Admission.BANNED
        in_flight = self._in_flight.get(ip_key, 0)
        if not self.is_exempt(ip_key) and self.failures(ip_key, now) + in_flight >= (
            self.max_failures
        ):
            return Admission.BUSY
        self._in_flight[ip_key] = in_flight + 1
        return Admission.ADMITTED

    def end(self, ip_key: str) -> None:
        """An admitted attempt is over (its outcome recorded, or abandoned)."""
        ip_key = client_key(ip_key)
        left = self._in_flight.get(ip_key, 0) - 1
        if left > 0:
            self._in_flight[ip_key] = left
        else:
            self._in_flight.pop(ip_key, None)

    def in_flight(self, ip_key: str) -> int:
        """Attempts of ``ip_key`` admitted and not ended."""
        return self._in_flight.get(client_key(ip_key), 0)

    def failures(self, ip_key: str, now: float) -> int:
        """Failures of ``ip_key`` within the window."""
        times = self._clients.get(client_key(ip_key))
        if not times:
            return 0
        return sum(1 for t, _ in times if t > now - self.window)

    def record_failure(self, ip_key: str, account: str | None, now: float) -> Banned | None:
        """A failed login from ``ip_key`` (for ``account``, when the client named one that
        parses). Returns the ban it caused, if any."""
        ip_key = client_key(ip_key)
        if self.is_exempt(ip_key):
            return None
        key = account.casefold() if account is not None else None
        failures = self._remember(self._clients, ip_key, now, self.max_failures)
        failed_before = len(failures) > 0
        failures.append((now, key))
        if len(failures) >= self.max_failures:
            return self._ban(ip_key, len(failures), None, now)
        if key is not None:
            hits = self._remember(self._accounts, key, now, self.account_max_failures)
            hits.append((now, None))
            if failed_before and len(hits) >= self.account_max_failures:
                return self._ban(ip_key, len(failures), key, now)
        return None

    def record_success(self, ip_key: str, account: str | None, now: float) -> None:
        """A successful login to ``account``: the client's earlier failures on that account
        are forgotten, those on other accounts (or with no account) stay. The account's own
        count stays too: an attack on it does not end because its owner logged in."""
        ip_key = client_key(ip_key)
        failures = self._clients.get(ip_key)
        if failures is None or account is None:
            return
        key = account.casefold()
        kept = [f for f in failures if f[1] != key]
        if not kept:
            del self._clients[ip_key]
        elif len(kept) < len(failures):
            failures.clear()
            failures.extend(kept)

    def prune(self, now: float) -> None:
        """Forget expired bans and failures older than the window (memory is bounded anyway;
        this only returns it sooner)."""
        for key in [k for k, until in self._bans.items() if until <= now]:
            del self._bans[key]
        for table in (self._clients, self._accounts):
            for key in [k for k, times in table.items() if times[-1][0] <= now - self.window]:
                del table[key]

    @property
    def tracked(self) -> tuple[int, int, int]:
        """(clients, accounts, bans) currently remembered."""
        return len(self._clients), len(self._accounts), len(self._bans)

    # -- internals -------------------------------------------------------------------------------
    def _remember(
        self, table: OrderedDict[str, deque[_Failure]], key: str, now: float, limit: int
    ) -> deque[_Failure]:
        """The key's failure times within the window (creating the entry, evicting the least
        recently seen beyond ``max_tracked``)."""
        times = table.get(key)
        if times is None:
            times = deque(maxlen=limit)
            table[key] = times
            while len(table) > self.max_tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        while times and times[0][0] <= now - self.window:
            times.popleft()
        return times

    def _ban(self, ip_key: str, failures: int, account: str | None, now: float) -> Banned:
        until = now + self.ban_time
        self._bans[ip_key] = until
        self._bans.move_to_end(ip_key)
        while len(self._bans) > self.max_tracked:
            self._bans.popitem(last=False)
        self._clients.pop(ip_key, None)  # a fresh start once the ban is over
        return Banned(ip_key, until, failures, account)


__all__ = ["Admission", "AuthFailureTracker", "Banned"]
