"""Brute-force bans bypassed (issue 11), performed against a real server with imaplib, poplib
and smtplib:

- logging into the attacker's own account between wrong guesses against another account used
  to clear the client's failures (60 guesses in a row, no ban): now the ban lands at the limit;
- 40 guesses sent at once used to be all evaluated, and IMAP and POP3 took a right password
  after the ban: now at most the limit is evaluated (counted from the server's log events)
  and the right password is refused on every protocol;
- the three protocols used to log different events: now one set, with the same fields.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailstead.login import BANNED_DURING_VERIFICATION
from mailstead.testing.server import RunningServer

VICTIM, VICTIM_PW = "alice@example.org", "alice-pw"
OWN, OWN_PW = "bob@example.org", "bob-pw"
LIMIT = 5
PARALLEL = 40
OVERRIDES: dict[str, dict[str, object]] = {
    "auth": {"max_failures": LIMIT},
    # room for 40 connections from loopback on every protocol (the attack is about logins)
    "smtp": {"max_connections_per_ip": 100},
    "imap": {"max_connections_per_ip": 100},
    "pop3": {"max_connections_per_ip": 100},
    "submission": {"max_connections_per_ip": 100},
}
FIELDS = {"protocol", "peer", "user", "mechanism", "reason"}
TIMEOUT = 60


class ImapLogin:
    def __init__(self, server: RunningServer) -> None:
        self.client = imaplib.IMAP4(*server.imap_address, timeout=TIMEOUT)

    def attempt(self, user: str, password: str) -> str:
        try:
            self.client.login(user, password)
        except imaplib.IMAP4.error as exc:
            self.client.shutdown()
            if "[UNAVAILABLE]" in str(exc):
                return "banned"
            return "failed" if "[AUTHENTICATIONFAILED]" in str(exc) else f"unexpected: {exc}"
        self.client.logout()
        return "ok"


class Pop3Login:
    def __init__(self, server: RunningServer) -> None:
        self.client = poplib.POP3(*server.pop3_address, timeout=TIMEOUT)

    def attempt(self, user: str, password: str) -> str:
        try:
            self.client.user(user)
            self.client.pass_(password)
        except poplib.error_proto as exc:
            self.client.close()
            reply = exc.args[0]
            if reply == b"-ERR [IN-USE] Too many failed logins, try again later":
                return "banned"
            return (
                "failed"
                if reply == b"-ERR [AUTH] Authentication failed"
                else f"unexpected: {reply!r}"
            )
        self.client.quit()
        return "ok"


class SmtpLogin:
    def __init__(self, server: RunningServer) -> None:
        self.client = smtplib.SMTP(*server.submission_address, timeout=TIMEOUT)
        self.client.ehlo("client.example")

    def attempt(self, user: str, password: str) -> str:
        plain = f"\0{user}\0{password}"
        try:
            self.client.auth("PLAIN", lambda challenge=None: plain)
        except smtplib.SMTPAuthenticationError as exc:
            self.client.close()
            if exc.smtp_code == 421:
                return "banned"
            if (exc.smtp_code, exc.smtp_error) == (
                535,
                b"5.7.8 Authentication credentials invalid",
            ):
                return "failed"
            return f"unexpected: {exc}"
        self.client.quit()
        return "ok"


PROTOCOLS: dict[str, Callable[[RunningServer], ImapLogin | Pop3Login | SmtpLogin]] = {
    "imap": ImapLogin,
    "pop3": Pop3Login,
    "smtp": SmtpLogin,
}


def login_events(server: RunningServer) -> list[dict[str, object]]:
    return [e for e in server.log_lines() if str(e.get("msg", "")).startswith("login.")]


def shapes(events: list[dict[str, object]]) -> set[tuple[str, frozenset[str]]]:
    """(event name, its field names) of login events, without the log line's own keys."""
    own = {"ts", "level", "logger", "msg"}
    return {(str(e["msg"]), frozenset(set(e) - own)) for e in events}


def test_own_account_logins_do_not_reset_the_count(mail_server):
    """Wrong guesses against alice interleaved with right logins as bob (the attacker's own
    account), over each protocol: the ban lands at the 5th guess, and bob is refused too.
    The events the three runs logged have the same names and fields."""
    seen: dict[str, set[tuple[str, frozenset[str]]]] = {}
    for protocol, login in PROTOCOLS.items():
        server = mail_server(OVERRIDES, name=protocol)
        outcomes = []
        for _ in range(LIMIT + 1):
            outcomes.append(login(server).attempt(VICTIM, "guess"))
            outcomes.append(login(server).attempt(OWN, OWN_PW))
        guesses, own = outcomes[0::2], outcomes[1::2]
        assert guesses == ["failed"] * LIMIT + ["banned"], protocol
        assert own == ["ok"] * (LIMIT - 1) + ["banned"] * 2, protocol
        events = login_events(server)
        assert {e["protocol"] for e in events} == {protocol}
        [banned] = [e for e in events if e["msg"] == "login.banned"]
        assert banned["failures"] == LIMIT and banned["user"] == VICTIM
        seen[protocol] = shapes(events)
        server.stop()
    names = {name for name, _ in seen["imap"]}
    assert names == {"login.succeeded", "login.failed", "login.banned", "login.refused_banned"}
    assert seen["imap"] == seen["pop3"] == seen["smtp"]
    assert all(fields >= FIELDS for _, fields in seen["imap"])


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_parallel_guesses_are_not_all_evaluated(mail_server, protocol):
    """40 connections guess at once (limit 5): at most 5 guesses are evaluated, and then the
    right password is refused on IMAP, POP3 and SMTP alike."""
    server = mail_server(OVERRIDES)
    login = PROTOCOLS[protocol]
    barrier = threading.Barrier(PARALLEL, timeout=TIMEOUT)

    def guess(n: int) -> str:
        session = login(server)  # connected (and greeted) before the barrier
        barrier.wait()
        return session.attempt(VICTIM, f"guess-{n}")

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        outcomes = list(pool.map(guess, range(PARALLEL)))
    events = login_events(server)
    evaluated = [
        e
        for e in events
        if e["msg"] == "login.failed"
        or (e["msg"] == "login.refused_banned" and e["reason"] == BANNED_DURING_VERIFICATION)
    ]
    assert len(evaluated) <= LIMIT
    assert outcomes.count("failed") == LIMIT
    assert outcomes.count("banned") == PARALLEL - LIMIT
    # the right password, after the ban, on every protocol
    for other in PROTOCOLS.values():
        assert other(server).attempt(VICTIM, VICTIM_PW) == "banned"
    assert not [e for e in login_events(server) if e["msg"] == "login.succeeded"]


def test_login_events_are_the_same_on_every_protocol(mail_server):
    """One wrong and one right login per protocol: the same two events, the same fields, only
    the protocol (and the mechanism: IMAP LOGIN, POP3 USER, SMTP PLAIN) differ."""
    server = mail_server(OVERRIDES)
    for login in PROTOCOLS.values():
        assert login(server).attempt(VICTIM, "wrong") == "failed"
        assert login(server).attempt(VICTIM, VICTIM_PW) == "ok"
    events = login_events(server)
    own = {"ts", "level", "logger", "msg"}
    summary = [
        (e["msg"], e["protocol"], e["mechanism"], e["user"], e["peer"], e["reason"]) for e in events
    ]
    assert summary == [
        ("login.failed", "imap", "login", VICTIM, "127.0.0.1", "invalid credentials"),
        ("login.succeeded", "imap", "login", VICTIM, "127.0.0.1", ""),
        ("login.failed", "pop3", "user", VICTIM, "127.0.0.1", "invalid credentials"),
        ("login.succeeded", "pop3", "user", VICTIM, "127.0.0.1", ""),
        ("login.failed", "smtp", "PLAIN", VICTIM, "127.0.0.1", "invalid credentials"),
        ("login.succeeded", "smtp", "PLAIN", VICTIM, "127.0.0.1", ""),
    ]
    assert len({frozenset(set(e) - own) for e in events if e["msg"] == "login.failed"}) == 1
    assert len({frozenset(set(e) - own) for e in events if e["msg"] == "login.succeeded"}) == 1
