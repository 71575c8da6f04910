"""The login service with a fake directory and a fake clock: bans, attempts in flight, the ban
re-check after verification, SASL through it, and the one set of log events."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest

from mailstead import sasl
from mailstead.directory import AuthResult
from mailstead.login import (
    BANNED,
    BANNED_DURING_VERIFICATION,
    TOO_MANY_WAITING,
    Client,
    LoggedIn,
    LoginFailed,
    LoginRefused,
    LoginService,
)
from mailstead.sasl import SaslClient, scram
from mailstead.security.bans import AuthFailureTracker
from mailstead.store import Account, AccountRole, StoreError, StoreErrorCode

ALICE = Account(1, "example.org", "alice", "", 0, 0, AccountRole.USER, True, 0)
MALLORY = Account(2, "example.org", "mallory", "", 0, 0, AccountRole.USER, True, 0)
PASSWORDS = {"alice@example.org": ("alice-pw", ALICE), "mallory@example.org": ("m-pw", MALLORY)}
SALT = b"0123456789abcdef"
IMAP = Client("imap", "192.0.2.7")
FIELDS = {"protocol", "peer", "user", "mechanism", "reason"}


class FakeDirectory:
    """Two accounts. ``gate``, when set, holds every password check until it opens, so tests
    can pile attempts up in flight; ``checks`` counts the checks started."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.checks = 0
        self.broken = False
        self._watches: list[tuple[int, asyncio.Event]] = []

    def reached(self, checks: int) -> asyncio.Event:
        """Set once ``checks`` password checks have started."""
        event = asyncio.Event()
        if self.checks >= checks:
            event.set()
        else:
            self._watches.append((checks, event))
        return event

    async def authenticate_detailed(self, address: str, password: str) -> AuthResult | None:
        self.checks += 1
        for checks, event in self._watches:
            if self.checks >= checks:
                event.set()
        if self.broken:
            raise StoreError(StoreErrorCode.UNAVAILABLE, "database is locked")
        if self.gate is not None:
            await self.gate.wait()
        found = PASSWORDS.get(address.casefold())
        if found is None or found[0] != password:
            return None
        return AuthResult(found[1], "password")

    async def scram_lookup(self, address: str) -> tuple[Account, sasl.ScramCredentials] | None:
        found = PASSWORDS.get(address.casefold())
        if found is None:
            return None
        key = scram.derive_keys(found[0], SALT, 4096)
        return found[1], sasl.ScramCredentials(SALT, 4096, [key])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(max_failures: int = 5, **options: int) -> tuple[LoginService, FakeDirectory]:
    directory = FakeDirectory()
    bans = AuthFailureTracker(max_failures=max_failures, window=600, ban_time=900)
    return LoginService(directory, bans, clock=Clock(), **options), directory


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [(r.getMessage(), r.fields) for r in caplog.records if r.name == "mailstead.login"]


def test_password_outcomes_and_their_log_events(caplog):
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, _ = service()

    async def main():
        ok = await login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
        bad = await login.password(IMAP, "alice@example.org", "nope", mechanism="login")
        return ok, bad

    ok, bad = asyncio.run(main())
    assert ok == LoggedIn(ALICE, "password")
    assert bad == LoginFailed("invalid credentials")
    (name1, fields1), (name2, fields2) = events(caplog)
    assert (name1, name2) == ("login.succeeded", "login.failed")
    assert fields1.keys() >= FIELDS and fields2.keys() >= FIELDS
    assert fields1["credential"] == "password"
    assert fields2 == {"protocol": "imap", "peer": "192.0.2.7", "user": "alice@example.org",
                       "mechanism": "login", "reason": "invalid credentials"}  # fmt: skip


def test_logging_into_an_own_account_does_not_reset_the_count_against_another(caplog):
    """The attack: a wrong guess against alice, then a right login as mallory, again and
    again. Mallory's successes forget nothing of the failures on alice: banned at the 5th."""
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, _ = service(max_failures=5)

    async def main():
        outcomes = []
        for _ in range(6):
            outcomes.append(await login.password(IMAP, "alice@example.org", "guess",
                                                 mechanism="login"))  # fmt: skip
            outcomes.append(await login.password(IMAP, "mallory@example.org", "m-pw",
                                                 mechanism="login"))  # fmt: skip
        return outcomes

    outcomes = asyncio.run(main())
    guesses, own = outcomes[0::2], outcomes[1::2]
    assert all(isinstance(o, LoginFailed) for o in guesses[:5])
    assert all(isinstance(o, LoggedIn) for o in own[:4])
    assert isinstance(own[4], LoginRefused)  # banned by the 5th guess: not even mallory
    assert isinstance(guesses[5], LoginRefused) and guesses[5].reason == BANNED
    [banned] = [f for name, f in events(caplog) if name == "login.banned"]
    assert banned["failures"] == 5 and banned["user"] == "alice@example.org"


def test_a_success_forgets_the_failures_on_its_own_account():
    login, _ = service(max_failures=3)

    async def main():
        for _ in range(2):
            await login.password(IMAP, "alice@example.org", "typo", mechanism="login")
        assert isinstance(
            await login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login"),
            LoggedIn,
        )
        for _ in range(2):  # two more typos are allowed again
            assert isinstance(
                await login.password(IMAP, "alice@example.org", "typo", mechanism="login"),
                LoginFailed,
            )

    asyncio.run(main())


def test_parallel_guesses_are_evaluated_at_most_up_to_the_limit(caplog):
    """40 attempts at once, limit 5: 5 are checked, the others wait and are then refused."""
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, directory = service(max_failures=5)

    async def main():
        directory.gate = asyncio.Event()
        tasks = [
            asyncio.create_task(
                login.password(IMAP, "alice@example.org", f"guess{n}", mechanism="login")
            )
            for n in range(40)
        ]
        await directory.reached(5).wait()
        for _ in range(10):  # let every other task run up to its wait
            await asyncio.sleep(0)
        assert directory.checks == 5
        assert login.bans is not None and login.bans.in_flight(IMAP.peer) == 5
        directory.gate.set()
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(main())
    assert directory.checks == 5
    assert sum(isinstance(o, LoginFailed) for o in outcomes) == 5
    assert sum(isinstance(o, LoginRefused) and o.reason == BANNED for o in outcomes) == 35
    assert login.bans is not None and login.bans.in_flight(IMAP.peer) == 0
    # the right password after the ban: refused, and not even looked at
    again = asyncio.run(login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login"))
    assert isinstance(again, LoginRefused)
    assert directory.checks == 5
    names = [name for name, _ in events(caplog)]
    assert names.count("login.failed") == 5 and names.count("login.banned") == 1


def test_parallel_right_passwords_wait_their_turn_and_all_succeed():
    """A client opening 12 connections at once with the right password (limit 5): the ones
    beyond the limit wait for a check to end, none is refused."""
    login, directory = service(max_failures=5)

    async def main():
        directory.gate = asyncio.Event()
        tasks = [
            asyncio.create_task(
                login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
            )
            for _ in range(12)
        ]
        await directory.reached(5).wait()
        directory.gate.set()
        return await asyncio.gather(*tasks)

    assert all(isinstance(o, LoggedIn) for o in asyncio.run(main()))
    assert directory.checks == 12


def test_failures_shrink_the_room_for_attempts_in_flight():
    login, directory = service(max_failures=5)
    bans = login.bans
    assert bans is not None

    async def main():
        for _ in range(3):
            await login.password(IMAP, "alice@example.org", "guess", mechanism="login")
        directory.gate = asyncio.Event()
        tasks = [
            asyncio.create_task(login.password(IMAP, "bob@example.org", "x", mechanism="login"))
            for _ in range(6)
        ]
        await directory.reached(5).wait()
        for _ in range(10):
            await asyncio.sleep(0)
        assert bans.in_flight(IMAP.peer) == 2  # 3 failures + 2 in flight = the limit
        directory.gate.set()
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(main())
    assert sum(isinstance(o, LoginFailed) for o in outcomes) == 2
    assert directory.checks == 5


def test_a_ban_that_lands_during_verification_refuses_even_the_right_password(caplog):
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, directory = service(max_failures=5)
    bans = login.bans
    assert bans is not None

    async def main():
        directory.gate = asyncio.Event()
        task = asyncio.create_task(
            login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
        )
        await directory.reached(1).wait()
        # meanwhile the per-account rule bans this client (e.g. through another protocol)
        for _ in range(5):
            bans.record_failure(IMAP.peer, "bob@example.org", 1000.0)
        directory.gate.set()
        return await task

    outcome = asyncio.run(main())
    assert outcome == LoginRefused(BANNED_DURING_VERIFICATION, 900.0)
    assert [name for name, _ in events(caplog)] == ["login.refused_banned"]
    assert bans.in_flight(IMAP.peer) == 0


def test_too_many_waiting_attempts_are_refused():
    login, directory = service(max_failures=1, max_waiting=3)

    async def main():
        directory.gate = asyncio.Event()
        tasks = [
            asyncio.create_task(
                login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
            )
            for _ in range(6)
        ]
        await directory.reached(1).wait()
        for _ in range(10):
            await asyncio.sleep(0)
        directory.gate.set()
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(main())
    refused = [o for o in outcomes if isinstance(o, LoginRefused)]
    assert [o.reason for o in refused] == [TOO_MANY_WAITING] * 2
    assert sum(isinstance(o, LoggedIn) for o in outcomes) == 4


def test_a_cancelled_attempt_gives_its_place_back():
    login, directory = service(max_failures=1)

    async def main():
        directory.gate = asyncio.Event()
        first = asyncio.create_task(
            login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
        )
        await directory.reached(1).wait()
        second = asyncio.create_task(
            login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login")
        )
        await asyncio.sleep(0)
        first.cancel()  # the connection went away during the check
        with pytest.raises(asyncio.CancelledError):
            await first
        directory.gate.set()
        return await second

    assert isinstance(asyncio.run(main()), LoggedIn)
    assert login.bans is not None and login.bans.in_flight(IMAP.peer) == 0


def test_a_store_failure_is_logged_and_releases_the_attempt(caplog):
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, directory = service()
    directory.broken = True
    with pytest.raises(StoreError):
        asyncio.run(login.password(IMAP, "alice@example.org", "alice-pw", mechanism="login"))
    assert [name for name, _ in events(caplog)] == ["login.error"]
    assert login.bans is not None and login.bans.in_flight(IMAP.peer) == 0
    assert login.bans.failures(IMAP.peer, 1000.0) == 0


def test_sasl_plain_and_scram_through_the_service(caplog):
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, _ = service()
    smtp = Client("smtp", "192.0.2.7")

    async def main():
        plain = login.sasl_exchange(smtp, "PLAIN")
        ok = await plain.start(b"\0alice@example.org\0alice-pw")
        exchange = login.sasl_exchange(smtp, "SCRAM-SHA-256")
        client = SaslClient("SCRAM-SHA-256", authcid="alice@example.org", password="alice-pw")
        challenge = await exchange.start(client.initial_response())
        assert isinstance(challenge, sasl.Challenge)
        outcome = await exchange.respond(client.respond(challenge.data))
        return ok, outcome

    ok, outcome = asyncio.run(main())
    assert ok == LoggedIn(ALICE, "password")
    assert isinstance(outcome, LoggedIn) and outcome.final_data is not None
    assert outcome.credential == "password"
    assert [(n, f["mechanism"]) for n, f in events(caplog)] == [
        ("login.succeeded", "PLAIN"),
        ("login.succeeded", "SCRAM-SHA-256"),
    ]


def test_scram_exchanges_started_before_the_ban_cannot_prove_after_it():
    """SCRAM checks its proof in the exchange's last step, so admission is decided there: 10
    exchanges brought that far before any failure, all with wrong passwords, then every proof
    sent: 3 (the limit) are checked, the 7 after the ban are refused unchecked."""
    login, _ = service(max_failures=3)

    async def main():
        pending = []
        for n in range(10):
            exchange = login.sasl_exchange(IMAP, "SCRAM-SHA-256")
            client = SaslClient("SCRAM-SHA-256", authcid="alice@example.org", password=f"guess{n}")
            challenge = await exchange.start(client.initial_response())
            assert isinstance(challenge, sasl.Challenge)
            pending.append((exchange, client.respond(challenge.data)))
        return [await exchange.respond(proof) for exchange, proof in pending]

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [LoginFailed] * 3 + [LoginRefused] * 7


def test_cancelled_and_malformed_exchanges_are_logged_but_not_counted(caplog):
    caplog.set_level(logging.INFO, logger="mailstead.login")
    login, _ = service(max_failures=1)

    async def main():
        exchange = login.sasl_exchange(IMAP, "LOGIN")
        assert isinstance(await exchange.start(None), sasl.Challenge)
        exchange.cancel("cancelled by the client", malformed=False)
        bad = login.sasl_exchange(IMAP, "PLAIN")
        return await bad.start(b"no nul here")

    assert asyncio.run(main()) == LoginFailed("PLAIN message without exactly two NULs", True)
    assert [name for name, _ in events(caplog)] == ["login.failed", "login.failed"]
    assert login.bans is not None and login.bans.is_banned(IMAP.peer, 1000.0) is None


def test_a_banned_client_is_refused_at_the_start_of_an_exchange():
    login, _ = service(max_failures=1)

    async def main():
        await login.password(IMAP, "alice@example.org", "guess", mechanism="login")
        exchange = login.sasl_exchange(IMAP, "PLAIN")
        initial = base64.b64decode(base64.b64encode(b"\0alice@example.org\0alice-pw"))
        return await exchange.start(initial)

    outcome = asyncio.run(main())
    assert isinstance(outcome, LoginRefused) and outcome.reason == BANNED
