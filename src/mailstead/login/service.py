"""The one login path: every protocol's password check goes through :class:`LoginService`.

SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS/AUTH (and later ManageSieve and the web)
keep only their framing: how a challenge is encoded, which reply code means what. This module
owns the rest, in one place:

1. the ban check when an attempt starts (:class:`LoginRefused`, logged ``login.refused_banned``);
2. admission to verification: a client with ``k`` failures and ``m`` attempts in flight starts
   another only while ``k + m < max_failures`` (:meth:`AuthFailureTracker.begin`); the others
   wait for one in flight to end and are then admitted or refused (banned), so parallel
   guesses cannot outrun the failure count;
3. the credential lookups a SASL exchange asks for (a password to check, SCRAM secrets), in
   the directory, whose argon2 and PBKDF2 work runs in a worker thread;
4. the ban check again after verification: a client banned while its password was being
   checked (by its other connections) is refused, right password or not, and no answer tells
   which it was;
5. recording the outcome (a success forgets only the failures on that account) and one set of
   log events, with the same fields whatever the protocol: ``login.succeeded``,
   ``login.failed``, ``login.banned``, ``login.refused_banned`` (and ``login.error`` when the
   directory fails), each with ``protocol``, ``peer``, ``user``, ``mechanism`` and ``reason``.

``mechanism`` is the SASL mechanism name, or the protocol's own command in lower case
(``login`` for IMAP LOGIN, ``user`` for POP3 USER/PASS). :class:`AuthFailureTracker` stays
sans-IO; the waiting and the lookups happen here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeVar

from mailstead import sasl
from mailstead.directory.credentials import MAIN_CREDENTIAL, AuthResult
from mailstead.observability.log import log_event
from mailstead.security.bans import Admission, AuthFailureTracker
from mailstead.security.limits import client_key
from mailstead.store import Account, StoreError

log = logging.getLogger("mailstead.login")
T = TypeVar("T")

# Attempts of one client that may wait for admission at once; past that a new one is refused
# (the connection limits bound this already; this bounds it per client whatever they are).
MAX_WAITING = 64

BANNED = "banned"
BANNED_DURING_VERIFICATION = "banned while the credentials were checked"
TOO_MANY_WAITING = "too many login attempts in flight"
INVALID_CREDENTIALS = sasl.server.INVALID_CREDENTIALS

_NO_BINDINGS: Mapping[str, bytes] = MappingProxyType({})


class Credentials(Protocol):
    """What the service asks of the directory (:class:`mailstead.directory.Directory`)."""

    async def authenticate_detailed(self, address: str, password: str) -> AuthResult | None: ...

    async def scram_lookup(self, address: str) -> tuple[Account, sasl.ScramCredentials] | None: ...


@dataclass(frozen=True, slots=True)
class Client:
    """Who logs in, over what: ``protocol`` (``smtp``, ``imap``, ``pop3``...) and the peer's
    address."""

    protocol: str
    peer: str


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """Authenticated as ``account`` with ``credential`` (``password`` or
    ``app-password:NAME``). ``final_data`` is SCRAM's server-final-message, for the shell to
    send as its protocol allows (the login is already recorded)."""

    account: Account
    credential: str
    final_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """Not authenticated. ``malformed``: a protocol violation (bad syntax, oversize data, "*"
    counts as not malformed) rather than wrong credentials; ``reason`` is for logs only."""

    reason: str
    malformed: bool = False


@dataclass(frozen=True, slots=True)
class LoginRefused:
    """Refused without an answer on the credentials: the client is banned (``seconds`` left,
    when known) or has too many attempts in flight. A temporary condition."""

    reason: str
    seconds: float | None = None


Outcome = LoggedIn | LoginFailed | LoginRefused
SaslOutcome = sasl.Challenge | LoggedIn | LoginFailed | LoginRefused


class LoginService:
    """Logins for every protocol of one server. ``bans`` is shared by all of them (None: no
    brute-force protection, e.g. in unit tests); ``clock`` is monotonic seconds."""

    def __init__(
        self,
        directory: Credentials,
        bans: AuthFailureTracker | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.directory = directory
        self.bans = bans
        self.clock = clock
        self.max_waiting = max_waiting
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    # -- the entry points --------------------------------------------------------------------------
    def refusal(self, client: Client, mechanism: str, user: str = "") -> LoginRefused | None:
        """The ban check at the start of an attempt (logged when it refuses)."""
        bans = self.bans
        if bans is None:
            return None
        left = bans.is_banned(client.peer, self.clock())
        if left is None:
            return None
        return self._refused(client, user, mechanism, BANNED, left)

    async def password(
        self, client: Client, user: str, password: str, *, mechanism: str
    ) -> Outcome:
        """A user name and password (IMAP LOGIN, POP3 USER/PASS, a web form)."""
        refused = self.refusal(client, mechanism, user)
        if refused is not None:
            return refused
        refused = await self._admit(client, user, mechanism)
        if refused is not None:
            return refused
        try:
            try:
                result = await self.directory.authenticate_detailed(user, password)
            except StoreError as exc:
                self._log("login.error", logging.ERROR, client, user, mechanism, str(exc))
                raise
            if result is None:
                step: sasl.Success | sasl.Failure = sasl.Failure(INVALID_CREDENTIALS, False)
            else:
                step = sasl.Success(user, user, result.account, None, result.credential)
            # recorded before the attempt leaves the count, so a waiting one sees its failure
            return self._conclude(client, user, mechanism, step)
        finally:
            self._end(client)

    def sasl_exchange(
        self,
        client: Client,
        mechanism: str,
        channel_bindings: Mapping[str, bytes] = _NO_BINDINGS,
    ) -> SaslLogin:
        """A SASL exchange (raises :class:`mailstead.sasl.UnknownMechanism`)."""
        server = sasl.SaslServer(mechanism, channel_bindings=channel_bindings)
        return SaslLogin(self, client, server)

    # -- internals ---------------------------------------------------------------------------------
    async def _admit(self, client: Client, user: str, mechanism: str) -> LoginRefused | None:
        """Wait until the client may have one more attempt verified (see the module doc)."""
        bans = self.bans
        if bans is None:
            return None
        key = client_key(client.peer)
        while True:
            now = self.clock()
            admission = bans.begin(key, now)
            if admission is Admission.ADMITTED:
                return None
            if admission is Admission.BANNED:
                return self._refused(client, user, mechanism, BANNED, bans.is_banned(key, now))
            # BUSY: an attempt is in flight, and its end wakes us
            waiters = self._waiters.setdefault(key, [])
            if len(waiters) >= self.max_waiting:
                return self._refused(client, user, mechanism, TOO_MANY_WAITING, None)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append(future)
            try:
                await future
            finally:
                waiting = self._waiters.get(key)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiters[key]

    def _end(self, client: Client) -> None:
        """An admitted attempt is over: wake the client's waiting attempts to try again."""
        if self.bans is None:
            return
        key = client_key(client.peer)
        self.bans.end(key)
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(None)

    def _conclude(
        self, client: Client, user: str, mechanism: str, step: sasl.Success | sasl.Failure
    ) -> Outcome:
        """Re-check the ban, record the outcome, log it."""
        bans = self.bans
        now = self.clock()
        if bans is not None:
            left = bans.is_banned(client.peer, now)
            if left is not None:
                return self._refused(client, user, mechanism, BANNED_DURING_VERIFICATION, left)
        if isinstance(step, sasl.Success):
            account = step.account
            assert isinstance(account, Account)
            credential = step.credential or MAIN_CREDENTIAL
            if bans is not None:
                bans.record_success(client.peer, account.address, now)
            self._log("login.succeeded", logging.INFO, client, account.address, mechanism, "",
                      credential=credential)  # fmt: skip
            return LoggedIn(account, credential, step.final_data)
        self._log("login.failed", logging.WARNING, client, user, mechanism, step.reason)
        if bans is not None and not step.malformed:
            banned = bans.record_failure(client.peer, user or None, now)
            if banned is not None:
                reason = (
                    f"account {banned.account} under attack"
                    if banned.account
                    else f"{banned.failures} failed logins"
                )
                self._log("login.banned", logging.WARNING, client, user, mechanism, reason,
                          failures=banned.failures, seconds=round(banned.until - now))  # fmt: skip
        return LoginFailed(step.reason, step.malformed)

    def _refused(
        self, client: Client, user: str, mechanism: str, reason: str, left: float | None
    ) -> LoginRefused:
        seconds = round(left) if left is not None else None
        self._log("login.refused_banned", logging.WARNING, client, user, mechanism, reason,
                  seconds=seconds)  # fmt: skip
        return LoginRefused(reason, left)

    def _log(
        self,
        event: str,
        level: int,
        client: Client,
        user: str,
        mechanism: str,
        reason: str,
        **extra: object,
    ) -> None:
        log_event(log, event, level, protocol=client.protocol, peer=client.peer, user=user,
                  mechanism=mechanism, reason=reason, **extra)  # fmt: skip


class SaslLogin:
    """One SASL exchange through the service (made by :meth:`LoginService.sasl_exchange`).

    The shell decodes each client line (:func:`mailstead.sasl.decode_response`) and calls
    :meth:`start`, then :meth:`respond` while the outcome is a :class:`~mailstead.sasl.Challenge`;
    a "*", undecodable or oversize line ends the exchange through :meth:`cancel`. The service
    answers the mechanism's credential questions itself and admits the attempt to verification
    just before it: when the password is checked (PLAIN, LOGIN), or when SCRAM's client-final
    proof is (its secrets are looked up earlier, outside the count).
    """

    def __init__(self, service: LoginService, client: Client, server: sasl.SaslServer) -> None:
        self.service = service
        self.client = client
        self.server = server
        self.mechanism = server.mechanism
        self.user = ""  # the authentication identity, once the client named it
        self._proof_next = False  # SCRAM: the next response carries the proof
        self.outcome: LoggedIn | LoginFailed | LoginRefused | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    async def start(self, initial_response: bytes | None) -> SaslOutcome:
        """Begin (the ban check), with the client's decoded initial response, if any."""
        refused = self.service.refusal(self.client, self.mechanism)
        if refused is not None:
            self.server.abort()
            return self._finish(refused)
        return await self._drive(self.server.start(initial_response))

    async def respond(self, data: bytes) -> SaslOutcome:
        """The client's decoded answer to the last challenge."""
        if not self._proof_next:
            return await self._drive(self.server.respond(data))
        self._proof_next = False
        service = self.service
        refused = await service._admit(self.client, self.user, self.mechanism)
        if refused is not None:
            self.server.abort()
            return self._finish(refused)
        try:
            step = self.server.respond(data)  # the proof is checked here, synchronously
            return self._outcome(step)  # recorded before the attempt leaves the count
        finally:
            service._end(self.client)

    def cancel(self, reason: str, *, malformed: bool) -> LoginFailed:
        """The shell ends the exchange: the client's "*" (not malformed), or a line it could not
        take (malformed). Logged as ``login.failed``, never counted towards a ban."""
        if not self.server.done:
            self.server.abort()
        failed = LoginFailed(reason, malformed)
        self.service._log("login.failed", logging.WARNING, self.client, self.user,
                          self.mechanism, reason)  # fmt: skip
        self._finish(failed)
        return failed

    async def _drive(self, step: sasl.Step) -> SaslOutcome:
        service, client = self.service, self.client
        while True:
            if isinstance(step, sasl.Challenge):
                return step
            if isinstance(step, sasl.NeedScram):
                self.user = step.authcid
                found = await self._guarded(service.directory.scram_lookup(step.authcid))
                # unknown user: the exchange goes on with a fake salt (RFC 5802 §5.1)
                step = self.server.scram_credentials(*(found[1], found[0]) if found else (None,))
                self._proof_next = isinstance(step, sasl.Challenge)
                continue
            if isinstance(step, sasl.NeedPassword):
                self.user = step.authcid
                refused = await service._admit(client, self.user, self.mechanism)
                if refused is not None:
                    self.server.abort()
                    return self._finish(refused)
                try:
                    result = await self._guarded(
                        service.directory.authenticate_detailed(step.authcid, step.password)
                    )
                    if result is None:
                        step = self.server.password_checked(None)
                    else:
                        step = self.server.password_checked(result.account, result.credential)
                    return self._outcome(step)  # recorded before the attempt leaves the count
                finally:
                    service._end(client)
            return self._outcome(step)

    def _outcome(self, step: sasl.Step) -> SaslOutcome:
        """The exchange's end (a challenge only where a mechanism has more to say)."""
        if isinstance(step, sasl.Challenge | sasl.NeedPassword | sasl.NeedScram):
            raise sasl.SaslStateError(f"{step!r} after verification")
        if isinstance(step, sasl.Failure) and step.malformed:
            return self.cancel(step.reason, malformed=True)  # a syntax error: not counted
        return self._finish(self.service._conclude(self.client, self.user, self.mechanism, step))

    async def _guarded(self, lookup: Awaitable[T]) -> T:
        """A directory lookup; a store failure is logged and ends the exchange (the shell
        answers it with its temporary-failure reply)."""
        try:
            return await lookup
        except StoreError as exc:
            self.service._log("login.error", logging.ERROR, self.client, self.user,
                              self.mechanism, str(exc))  # fmt: skip
            self.server.abort()
            self.outcome = LoginFailed("directory unavailable")
            raise

    def _finish(self, outcome: LoggedIn | LoginFailed | LoginRefused) -> SaslOutcome:
        self.outcome = outcome
        return outcome
