"""One POP3 session: typed commands in (from the sans-IO core), replies out, the store between.

The shell (``servers.pop3``) owns the socket, TLS and timeouts; this class owns what the
commands mean. Replies are built with ``protocols.pop3.replies`` and handed to the core with
``core.send``; the shell calls ``command_done`` unless the returned `Action` says otherwise.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailstead import sasl
from mailstead.directory import Directory
from mailstead.login import Client, LoggedIn, LoginRefused, LoginService, SaslLogin, SaslOutcome
from mailstead.observability.log import log_event
from mailstead.pop3.maildrop import Entry, Maildrop, MaildropLocks, NoSuchMessage
from mailstead.protocols.pop3 import AuthResponse, ServerCore, State, replies
from mailstead.protocols.pop3 import commands as c
from mailstead.security.memory import MemoryBudget
from mailstead.store import Account, FlagOp, Store, StoreError, StoreErrorCode

log = logging.getLogger("mailstead.pop3")

# Messages from this size on are read from the store and sent piece by piece, each piece
# written before the next is read: RETR of a large message holds a few pieces, never all of it.
LARGE_MESSAGE = 1 << 20
PIECE = 256 << 10
# What a streamed message holds in memory at most (a stored row, the decompressor's window, a
# piece before and after byte-stuffing and encryption): its share of the memory budget.
STREAM_CHARGE = 4 << 20
MEMORY_WAIT = 120.0  # seconds a large message waits for the memory budget before -ERR

SEEN = "\\Seen"
DELETED = "\\Deleted"

# RFC 2449 §8 / RFC 3206 response codes, in one place.
AUTH_FAILED = ("Authentication failed", "AUTH")
PLAINTEXT_REFUSED = ("Plaintext authentication disallowed, use STLS first", "AUTH")
IN_USE = ("Maildrop is locked by another session", "IN-USE")
# A client banned for failed logins is refused before its credentials are looked at.
BANNED = ("Too many failed logins, try again later", "IN-USE")
TEMPORARY = ("Temporary failure, try again later", "SYS/TEMP")
BUSY = ("Too many large messages in flight, try again later", "SYS/TEMP")


class Action(enum.Enum):
    """What the shell must do after a command."""

    NONE = "none"  # call command_done() and go on
    STLS = "stls"  # flush, start TLS, then core.tls_started()
    AUTH = "auth"  # a SASL challenge is queued: read the client's response (core.begin_auth())
    CLOSE = "close"  # a message could not be sent to its end: close the connection now


@dataclass(slots=True)
class SessionConfig:
    hostname: str
    allow_insecure_auth: bool  # USER/PASS and AUTH before TLS (loopback only, when configured)
    stls_available: bool
    # SCRAM-SHA-256-PLUS channel bindings of our TLS side, by type (used once TLS is on)
    channel_bindings: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class SessionStats:
    """What the session did, for its log line."""

    user: str | None = None
    retrieved: int = 0
    octets: int = 0
    deleted: int = 0
    login_failures: int = 0


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class Pop3Session:
    """Command handlers for one connection."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        config: SessionConfig,
        core: ServerCore,
        locks: MaildropLocks,
        *,
        tls_active: bool,
        peer: str,
        login: LoginService | None = None,
        flush: Callable[[], Awaitable[bool]] | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.config = config
        self.core = core
        self.locks = locks
        self.tls_active = tls_active
        self.peer = peer
        # one login path for every protocol (bans, credentials, log events); without one
        # (unit tests) logins are checked against the directory with no bans
        self.login = login if login is not None else LoginService(directory)
        # writes what the core queued to the client, waiting while it does not read (False:
        # the connection is gone); with it a large message is sent in pieces, not queued whole
        self.flush = flush
        self.memory = memory  # large messages in flight, shared with the other protocols
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self.stats = SessionStats()
        self._user: str | None = None  # from USER, for PASS
        self._locked: int | None = None  # the account whose maildrop lock we hold
        self._sasl: SaslLogin | None = None  # the AUTH exchange under way
        self._sasl_success: LoggedIn | None = None  # waiting for the answer to final data
        self._handlers: dict[type[c.Command], Callable[[Any], Awaitable[Action]]] = {
            c.Capa: self.cmd_capa, c.Quit: self.cmd_quit, c.Stls: self.cmd_stls,
            c.User: self.cmd_user, c.Pass: self.cmd_pass, c.Auth: self.cmd_auth,
            c.Stat: self.cmd_stat, c.List: self.cmd_list, c.Uidl: self.cmd_uidl,
            c.Retr: self.cmd_retr, c.Top: self.cmd_top, c.Dele: self.cmd_dele,
            c.Rset: self.cmd_rset, c.Noop: self.cmd_noop,
        }  # fmt: skip

    # -- capabilities ----------------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        """RFC 2449 §6 (CAPA); before login also the ways to log in that are open now."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.account is None:
            if self._auth_allowed():
                caps.append("USER")
                mechanisms = self.mechanisms()
                if mechanisms:
                    caps.append("SASL " + " ".join(mechanisms))
            if self.config.stls_available and not self.tls_active:
                caps.append("STLS")
        caps.append("IMPLEMENTATION Mailstead")
        return caps

    def mechanisms(self) -> list[str]:
        """SASL mechanisms offered now (RFC 2449 §6.3: SASL in CAPA)."""
        return sasl.mechanisms(
            tls=self.tls_active,
            allow_plaintext=self.config.allow_insecure_auth,
            channel_binding=bool(self._channel_bindings()),
        )

    def _channel_bindings(self) -> Mapping[str, bytes]:
        return self.config.channel_bindings if self.tls_active else {}

    def greeting(self) -> None:
        self.core.greet(f"{self.config.hostname} Mailstead POP3 ready")

    def _auth_allowed(self) -> bool:
        return self.tls_active or self.config.allow_insecure_auth

    # -- output helpers --------------------------------------------------------------------------
    def _ok(self, text: str = "") -> None:
        self.core.send(replies.ok(text))

    def _err(self, text: str, code: str | None = None) -> None:
        self.core.send(replies.err(text, code))

    def _maildrop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    # -- dispatch --------------------------------------------------------------------------------
    async def handle(self, command: c.Command) -> Action:
        return await self._guarded(self._handlers[type(command)](command))

    async def _guarded(self, handler: Awaitable[Action]) -> Action:
        try:
            return await handler
        except NoSuchMessage as exc:
            self._err(str(exc))
            return Action.NONE
        except StoreError as exc:
            log_event(log, "pop3.store_error", logging.ERROR, client=self.peer,
                      user=self.stats.user, error=str(exc))  # fmt: skip
            if self.account is None:  # a failed login attempt starts over
                self._sasl = self._sasl_success = None
                self.core.set_state(State.AUTHORIZATION)
                self._err(*TEMPORARY)
            elif exc.code is StoreErrorCode.NONEXISTENT:
                self._err("Message was removed by another session")
            else:
                self._err(*TEMPORARY)
            return Action.NONE
        except Exception:  # a bug or bad data in one command must not end the session
            log.error("pop3.command_failed", exc_info=True, extra={"fields": {
                "client": self.peer, "user": self.stats.user}})  # fmt: skip
            if self.account is None:  # a failed login attempt starts over
                self._sasl = self._sasl_success = None
                self.core.set_state(State.AUTHORIZATION)
            self._err(*TEMPORARY)
            return Action.NONE

    def close(self) -> None:
        """The connection is gone (QUIT or not): give up the maildrop. Nothing is deleted
        unless QUIT did it."""
        if self._locked is not None:
            self.locks.release(self._locked)
            self._locked = None

    # -- any state -------------------------------------------------------------------------------
    async def cmd_capa(self, cmd: c.Capa) -> Action:
        self.core.send(replies.multiline(replies.ok("Capability list follows"),
                                         self.capabilities()))  # fmt: skip
        return Action.NONE

    async def cmd_quit(self, cmd: c.Quit) -> Action:
        if self.maildrop is None:
            self._ok("Bye")
        else:
            await self._update()
        self.close()  # before the reply goes out: a client that logs in again finds it free
        self.core.set_state(State.UPDATE)
        return Action.NONE

    async def _update(self) -> None:
        """RFC 1939 §6, the UPDATE state: remove the messages marked deleted (through the store,
        so every IMAP session hears of it), and mark the retrieved ones seen."""
        maildrop = self._maildrop()
        seen, deleted = maildrop.seen_uids(), maildrop.deleted_uids()
        store = self.store
        try:
            if seen:
                await store.store_flags(maildrop.mailbox_id, seen, FlagOp.ADD, frozenset({SEEN}))
            if deleted:
                await store.store_flags(
                    maildrop.mailbox_id, deleted, FlagOp.ADD, frozenset({DELETED})
                )
                result = await store.expunge(maildrop.mailbox_id, deleted)
                self.stats.deleted = len(result.uids)
        except StoreError as exc:
            log_event(log, "pop3.update_failed", logging.ERROR, client=self.peer,
                      user=self.stats.user, error=str(exc))  # fmt: skip
            self._err("Some deleted messages not removed", "SYS/TEMP")
            return
        count, _ = maildrop.stat()
        self._ok(f"Bye, {len(deleted)} deleted, {count} left")

    # -- AUTHORIZATION ---------------------------------------------------------------------------
    async def cmd_stls(self, cmd: c.Stls) -> Action:
        if self.tls_active:
            self._err("TLS is already active")
            return Action.NONE
        if not self.config.stls_available:
            self._err("TLS is not available")
            return Action.NONE
        self._ok("Begin TLS negotiation")
        return Action.STLS

    async def cmd_user(self, cmd: c.User) -> Action:
        if not self._auth_allowed():
            self._err(*PLAINTEXT_REFUSED)
            return Action.NONE
        self._user = cmd.name
        self.core.set_state(State.USER)
        self._ok("Send PASS")  # says nothing of whether the account exists
        return Action.NONE

    async def cmd_pass(self, cmd: c.Pass) -> Action:
        user, self._user = self._user or "", None
        outcome = await self.login.password(
            Client("pop3", self.peer), user, cmd.password, mechanism="user"
        )
        if isinstance(outcome, LoginRefused):
            self._refused()
        elif isinstance(outcome, LoggedIn):
            await self.logged_in(outcome.account)
        else:
            self.login_failed()
        return Action.NONE

    # -- AUTH (RFC 5034) ------------------------------------------------------------------------
    async def cmd_auth(self, cmd: c.Auth) -> Action:
        if cmd.mechanism is None:  # RFC 1734 practice: list the mechanisms
            self.core.send(replies.multiline(replies.ok("Mechanisms follow"), self.mechanisms()))
            return Action.NONE
        if not self._auth_allowed():
            self._err(*PLAINTEXT_REFUSED)
            return Action.NONE
        if cmd.mechanism not in self.mechanisms():
            self._err("Unsupported authentication mechanism")
            return Action.NONE
        exchange = self.login.sasl_exchange(
            Client("pop3", self.peer), cmd.mechanism, self._channel_bindings()
        )
        self._sasl, self._sasl_success = exchange, None
        if cmd.initial_response is None:
            return await self._sasl_step(await exchange.start(None))
        # RFC 5034 §4: "=" is an empty initial response
        initial = sasl.decode_response(cmd.initial_response)
        if not isinstance(initial, bytes):
            return self._sasl_refused(initial)
        return await self._sasl_step(await exchange.start(initial))

    async def auth_response(self, event: AuthResponse) -> Action:
        """The client's line during an AUTH exchange: Action.AUTH while it goes on."""
        return await self._guarded(self._auth_response(event))

    async def _auth_response(self, event: AuthResponse) -> Action:
        exchange = self._sasl
        assert exchange is not None, "AuthResponse without an AUTH exchange"
        if event.too_long:
            return self._sasl_refused(sasl.Malformed("response line too long"))
        data = sasl.decode_response(event.data)
        if not isinstance(data, bytes):
            return self._sasl_refused(data)
        success = self._sasl_success
        if success is not None:  # the answer to the server's final data must be empty
            if data:
                return self._sasl_refused(sasl.Malformed("data after the final challenge"))
            return await self._sasl_step(success)
        return await self._sasl_step(await exchange.respond(data))

    async def _sasl_step(self, outcome: SaslOutcome) -> Action:
        """Frame what the login service answered: a challenge, or how the exchange ended."""
        if isinstance(outcome, sasl.Challenge):
            self.core.send(replies.challenge(outcome.data))
            return Action.AUTH
        if isinstance(outcome, LoggedIn):
            if outcome.final_data is not None and self._sasl_success is None:
                # RFC 4422 §4: no room for data in +OK: a last challenge, answered empty
                self._sasl_success = outcome
                self.core.send(replies.challenge(outcome.final_data))
                return Action.AUTH
            self._sasl = self._sasl_success = None
            await self.logged_in(outcome.account)
            return Action.NONE
        self._sasl = self._sasl_success = None
        if isinstance(outcome, LoginRefused):
            self._refused()
        elif outcome.malformed:
            self._err("Invalid authentication data")
            self.core.count_error()
        else:
            self.login_failed()
        return Action.NONE

    def _sasl_refused(self, problem: sasl.Aborted | sasl.Malformed) -> Action:
        """The exchange ends on the client's "*" or an undecodable line."""
        if self._sasl is not None:
            if isinstance(problem, sasl.Aborted):
                self._sasl.cancel("cancelled by the client", malformed=False)
            else:
                self._sasl.cancel(problem.reason, malformed=True)
        self._sasl = self._sasl_success = None
        if isinstance(problem, sasl.Aborted):
            self._err("Authentication cancelled")  # RFC 5034 §4: "*" gets -ERR
        else:
            self._err("Invalid base64 data" if problem.reason == "invalid base64"
                      else "Invalid authentication data")  # fmt: skip
            self.core.count_error()
        return Action.NONE

    def _refused(self) -> None:
        """A banned client (refused whether or not its credentials were right)."""
        self._err(*BANNED)
        self.core.set_state(State.AUTHORIZATION)
        self.core.count_error()

    def login_failed(self) -> None:
        """The same reply whether or not the account exists."""
        self.stats.login_failures += 1
        self._err(*AUTH_FAILED)
        self.core.set_state(State.AUTHORIZATION)
        self.core.count_error()

    async def logged_in(self, account: Account) -> None:
        """Credentials checked: lock and open the maildrop, enter TRANSACTION."""
        core = self.core
        if not self.locks.acquire(account.id):
            log_event(log, "pop3.in_use", logging.WARNING, client=self.peer,
                      user=account.address)  # fmt: skip
            self._err(*IN_USE)
            core.set_state(State.AUTHORIZATION)
            return
        self._locked = account.id
        try:
            self.maildrop = await Maildrop.load(self.store, account.id)
        except StoreError:
            self.close()
            self._err(*TEMPORARY)
            core.set_state(State.AUTHORIZATION)
            return
        self.account = account
        self.stats.user = account.address
        core.set_state(State.TRANSACTION)
        count, size = self.maildrop.stat()
        self._ok(f"Logged in, {count} messages ({size} octets)")

    # -- TRANSACTION -----------------------------------------------------------------------------
    async def cmd_stat(self, cmd: c.Stat) -> Action:
        count, size = self._maildrop().stat()
        self._ok(f"{count} {size}")
        return Action.NONE

    async def cmd_list(self, cmd: c.List) -> Action:
        maildrop = self._maildrop()
        if cmd.msg is not None:
            self._ok(f"{cmd.msg} {maildrop.entry(cmd.msg).size}")
            return Action.NONE
        count, size = maildrop.stat()
        lines = [f"{n} {entry.size}" for n, entry in maildrop.visible()]
        self.core.send(replies.multiline(replies.ok(f"{count} messages ({size} octets)"), lines))
        return Action.NONE

    async def cmd_uidl(self, cmd: c.Uidl) -> Action:
        maildrop = self._maildrop()
        if cmd.msg is not None:
            self._ok(f"{cmd.msg} {maildrop.unique_id(maildrop.entry(cmd.msg))}")
            return Action.NONE
        lines = [f"{n} {maildrop.unique_id(entry)}" for n, entry in maildrop.visible()]
        self.core.send(replies.multiline(replies.ok("Unique ids follow"), lines))
        return Action.NONE

    async def cmd_retr(self, cmd: c.Retr) -> Action:
        maildrop = self._maildrop()
        entry = maildrop.entry(cmd.msg)
        sent = await self._send_message(entry, replies.ok(f"{entry.size} octets"), None)
        if sent is None:
            return Action.NONE
        if sent < 0:
            return Action.CLOSE
        maildrop.retrieved.add(cmd.msg)
        self.stats.retrieved += 1
        self.stats.octets += sent
        return Action.NONE

    async def cmd_top(self, cmd: c.Top) -> Action:
        entry = self._maildrop().entry(cmd.msg)
        sent = await self._send_message(entry, replies.ok("Top of message follows"), cmd.lines)
        if sent is None:
            return Action.NONE
        if sent < 0:
            return Action.CLOSE
        self.stats.octets += sent
        return Action.NONE

    async def _send_message(self, entry: Entry, status: bytes, lines: int | None) -> int | None:
        """``status`` and the message (its top with ``lines``) as a multi-line response; the
        octets of the body sent, None when an -ERR was sent instead, -1 when the connection
        must close (the client stopped reading, or the message was removed in the middle)."""
        writer = replies.MessageWriter(lines)
        if entry.size < LARGE_MESSAGE:
            raw = await self.store.read_blob(entry.blob_id)
            body = writer.feed(raw) + writer.end()
            self.core.send(status + body)
            return len(body)
        charge = 0
        if self.memory is not None:
            got = await self.memory.acquire(min(entry.size, STREAM_CHARGE), MEMORY_WAIT)
            if got is None:
                self._err(*BUSY)
                return None
            charge = got
        try:
            async with contextlib.aclosing(self.store.stream_blob(entry.blob_id, PIECE)) as pieces:
                piece = await anext(pieces, None)  # a message removed by now gets -ERR
                self.core.send(status)
                sent = 0
                while piece is not None:
                    out = writer.feed(piece)
                    self.core.send(out)
                    sent += len(out)
                    if self.flush is not None and not await self.flush():
                        return -1
                    if writer.done:  # TOP has its lines: the rest is not read
                        break
                    try:
                        piece = await anext(pieces, None)
                    except StoreError as exc:  # too late for -ERR: the client must see a break
                        log_event(log, "pop3.message_broken", logging.WARNING, client=self.peer,
                                  user=self.stats.user, error=str(exc))  # fmt: skip
                        return -1
                    except Exception:  # a bug or bad data: as above, not -ERR amid the message
                        log.error("pop3.message_broken", exc_info=True, extra={"fields": {
                            "client": self.peer, "user": self.stats.user}})  # fmt: skip
                        return -1
            end = writer.end()
            self.core.send(end)
            return sent + len(end)
        finally:
            if self.memory is not None:
                self.memory.release(charge)

    async def cmd_dele(self, cmd: c.Dele) -> Action:
        maildrop = self._maildrop()
        maildrop.entry(cmd.msg)
        maildrop.deleted.add(cmd.msg)
        self._ok(f"Message {cmd.msg} deleted")
        return Action.NONE

    async def cmd_rset(self, cmd: c.Rset) -> Action:
        maildrop = self._maildrop()
        maildrop.reset()
        count, size = maildrop.stat()
        self._ok(f"{count} messages ({size} octets)")
        return Action.NONE

    async def cmd_noop(self, cmd: c.Noop) -> Action:
        self._ok()
        return Action.NONE
