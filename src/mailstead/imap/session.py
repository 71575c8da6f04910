"""One IMAP session: typed commands in (from the sans-IO core), responses out, the store between.

The shell (``servers.imap``) owns the socket, TLS, IDLE waiting and compression; this class owns
what the commands mean. Responses are built with ``protocols.imap.response`` and handed to the
core with ``core.send``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime
import enum
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from mailstead import sasl
from mailstead.directory import Directory
from mailstead.imap import names
from mailstead.imap.context import (
    MAX_CONTEXTS,
    SearchContext,
    esearch_line,
    ordered_set,
    partial_item,
    update_items,
)
from mailstead.imap.fetch import Fetcher, HeaderCache
from mailstead.imap.search import (
    Candidate,
    Searcher,
    candidates_only,
    email_id,
    index_is_exact,
    leaves,
    needs_rows,
    text_scope,
)
from mailstead.imap.sort import MessageView, sort_uids
from mailstead.imap.thread import ordered_subject
from mailstead.imap.thread import references as thread_references
from mailstead.imap.thread import wire as thread_wire
from mailstead.imap.view import MailboxGone, MailboxView, Updates, ViewSeed, ViewSeeds
from mailstead.login import (
    Client,
    LoggedIn,
    LoginFailed,
    LoginRefused,
    LoginService,
    SaslLogin,
    SaslOutcome,
)
from mailstead.message import from_json
from mailstead.message.headers import parse_header_fields
from mailstead.protocols.imap import ServerCore, State
from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import response as r
from mailstead.security.memory import MemoryBudget
from mailstead.store import (
    Account,
    DeliveryRequest,
    DeliveryTarget,
    FlagOp,
    MailboxInfo,
    Store,
    StoreError,
    StoreErrorCode,
)

log = logging.getLogger("mailstead.imap")

# Long per-message loops give the event loop to other sessions this often.
YIELD_EVERY = 500

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")

# One table maps storage failures to IMAP response codes (RFC 5530).
STORE_CODES: dict[StoreErrorCode, tuple[str, str]] = {
    StoreErrorCode.NONEXISTENT: ("NONEXISTENT", "Mailbox does not exist"),
    StoreErrorCode.ALREADYEXISTS: ("ALREADYEXISTS", "Mailbox already exists"),
    StoreErrorCode.OVERQUOTA: ("OVERQUOTA", "Quota exceeded"),
    StoreErrorCode.TOOBIG: ("OVERQUOTA", "Message larger than the quota"),
    StoreErrorCode.CANNOT: ("CANNOT", "Operation not allowed"),
    StoreErrorCode.INUSE: ("INUSE", "Mailbox in use"),
    StoreErrorCode.INVALID: ("CANNOT", "Invalid name"),
    StoreErrorCode.UNAVAILABLE: ("UNAVAILABLE", "Temporary failure, try again later"),
}


class Action(enum.Enum):
    """What the shell must do after a command."""

    NONE = "none"
    STARTTLS = "starttls"
    LOGOUT = "logout"
    IDLE = "idle"
    COMPRESS = "compress"
    AUTHENTICATE = "authenticate"


@dataclass(slots=True)
class SessionConfig:
    hostname: str
    append_limit: int
    allow_insecure_auth: bool  # LOGIN/AUTHENTICATE before TLS (loopback only, when configured)
    starttls_available: bool
    # SCRAM-SHA-256-PLUS: what our TLS connections can be bound to (tls-server-end-point of
    # our certificate, RFC 5929), used only when the connection is under TLS
    channel_bindings: dict[str, bytes] = field(default_factory=dict)


class ImapSession:
    """Command handlers for one connection."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        config: SessionConfig,
        core: ServerCore,
        *,
        tls_active: bool,
        peer: str,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        seeds: ViewSeeds | None = None,
        header_cache: HeaderCache | None = None,
        login: LoginService | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        # one login path for every protocol (bans, credentials, log events); without one
        # (unit tests) logins are checked against the directory with no bans
        self.login = login if login is not None else LoginService(directory)
        self._sasl: SaslLogin | None = None
        self._sasl_success: LoggedIn | None = None  # SCRAM: waiting for the client's "" to v=
        # FETCH of large messages: writes pending output mid-command; the server-wide budget
        self.flush = flush
        self.memory = memory
        self.store = store
        self.seeds = seeds
        self.header_cache = header_cache
        self.directory = directory
        self.config = config
        self.core = core
        self.tls_active = tls_active
        self.peer = peer
        self.now = now
        self.account: Account | None = None
        self.view: MailboxView | None = None
        self.enabled: set[str] = set()
        self.saved_search: list[int] | None = None
        self.contexts: dict[str, SearchContext] = {}  # RFC 5267 live searches, by tag
        self.compressed = False
        self._auth_tag: str | None = None

    # -- capabilities ----------------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.account is None:
            if self.config.starttls_available and not self.tls_active:
                caps.append("STARTTLS")
            mechanisms = self._mechanisms()
            caps += [f"AUTH={m}" for m in mechanisms]
            if not self._auth_allowed():
                caps.append("LOGINDISABLED")
            return caps
        caps += [
            "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE",
            "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "ESEARCH",
            "SEARCHRES", "CONDSTORE", "QRESYNC", "MULTIAPPEND",
            f"APPENDLIMIT={self.config.append_limit}", "UTF8=ACCEPT", "OBJECTID", "QUOTA",
            "QUOTA=RES-STORAGE", "BINARY",
            "SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
            "CONTEXT=SEARCH", "CONTEXT=SORT",
        ]  # fmt: skip
        if not self.compressed:
            caps.append("COMPRESS=DEFLATE")
        return caps

    def greeting(self) -> None:
        self.core.greet(f"{self.config.hostname} Mailstead ready", self.capabilities())

    def _auth_allowed(self) -> bool:
        return self.tls_active or self.config.allow_insecure_auth

    def _channel_bindings(self) -> dict[str, bytes]:
        return self.config.channel_bindings if self.tls_active else {}

    def _mechanisms(self) -> list[str]:
        return sasl.mechanisms(
            tls=self.tls_active,
            allow_plaintext=self.config.allow_insecure_auth,
            channel_binding=bool(self._channel_bindings()),
        )

    # -- output helpers --------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        self.core.send(data)

    def _ok(self, tag: str, text: str, code: bytes | None = None) -> None:
        self._send(r.tagged(tag, "OK", text, code))

    def _no(self, tag: str, text: str, code: bytes | None = None) -> None:
        self._send(r.tagged(tag, "NO", text, code))

    def _bad(self, tag: str, text: str) -> None:
        self._send(r.tagged(tag, "BAD", text))

    def _store_error(self, tag: str, exc: StoreError) -> None:
        code, text = STORE_CODES.get(exc.code, ("SERVERBUG", "Internal error"))
        self._no(tag, text, r.code(code))

    def _mailbox_out(self, name: str) -> bytes:
        return r.mailbox(name, utf8="UTF8=ACCEPT" in self.enabled)

    # -- dispatch --------------------------------------------------------------------------------
    async def handle(self, tag: str, command: c.Command) -> Action:
        handler = getattr(self, "cmd_" + type(command).__name__.lower(), None)
        if handler is None:
            self._bad(tag, f"{command.NAME} is not supported")
            return Action.NONE
        try:
            action: Action = await handler(tag, command)
        except StoreError as exc:
            self._store_error(tag, exc)
            return Action.NONE
        except MailboxGone:
            self._send(r.untagged("BYE", "Selected mailbox was deleted"))
            return Action.LOGOUT
        except Exception:  # a bug or bad data in one command must not end the session
            log.error("imap.command_failed", exc_info=True, extra={"fields": {
                "client": self.peer, "command": command.NAME,
                "user": self.account.address if self.account else None}})  # fmt: skip
            # RFC 5530 §3: SERVERBUG, the server encountered a bug in itself
            self._no(tag, "Internal error, the command was not completed", r.code("SERVERBUG"))
            return Action.NONE
        return action

    # -- any state -------------------------------------------------------------------------------
    async def cmd_capability(self, tag: str, cmd: c.Capability) -> Action:
        self._send(r.untagged("CAPABILITY", *self.capabilities()))
        self._ok(tag, "Capability completed")
        return Action.NONE

    async def cmd_noop(self, tag: str, cmd: c.Noop) -> Action:
        await self.sync(expunges_allowed=True)
        self._ok(tag, "NOOP completed")
        return Action.NONE

    async def cmd_check(self, tag: str, cmd: c.Check) -> Action:
        await self.sync(expunges_allowed=True)
        self._ok(tag, "CHECK completed")
        return Action.NONE

    async def cmd_logout(self, tag: str, cmd: c.Logout) -> Action:
        self._send(r.untagged("BYE", "Logging out"))
        self._ok(tag, "Logout completed")
        return Action.LOGOUT

    async def cmd_id(self, tag: str, cmd: c.Id) -> Action:
        self._send(r.untagged("ID", r.plist([r.quoted("name"), r.quoted("Mailstead")])))
        self._ok(tag, "ID completed")
        return Action.NONE

    # -- not authenticated -----------------------------------------------------------------------
    async def cmd_starttls(self, tag: str, cmd: c.StartTLS) -> Action:
        if self.tls_active or not self.config.starttls_available:
            self._bad(tag, "TLS is not available" if not self.tls_active else "TLS already active")
            return Action.NONE
        self._ok(tag, "Begin TLS negotiation now")
        return Action.STARTTLS

    async def cmd_login(self, tag: str, cmd: c.Login) -> Action:
        if not self._auth_allowed():
            self._no(tag, "Use STARTTLS first", r.code("PRIVACYREQUIRED"))
            return Action.NONE
        await self._login(tag, cmd.username, cmd.password)
        return Action.NONE

    async def cmd_authenticate(self, tag: str, cmd: c.Authenticate) -> Action:
        if not self._auth_allowed():
            self._no(tag, "Use STARTTLS first", r.code("PRIVACYREQUIRED"))
            return Action.NONE
        if cmd.mechanism.upper() not in self._mechanisms():
            self._no(tag, "Unsupported authentication mechanism", r.code("CANNOT"))
            return Action.NONE
        exchange = self.login.sasl_exchange(
            Client("imap", self.peer), cmd.mechanism, self._channel_bindings()
        )
        self._sasl = exchange
        self._auth_tag = tag
        initial: bytes | None = None
        if cmd.initial_response is not None:  # RFC 4959 SASL-IR ("=" is an empty response)
            decoded = sasl.decode_response(cmd.initial_response.encode("ascii"))
            if not isinstance(decoded, bytes):
                exchange.cancel("invalid initial response", malformed=True)
                return self._sasl_end(tag, "Invalid SASL initial response", bad=True)
            initial = decoded
        return await self._sasl_outcome(await exchange.start(initial))

    async def authenticate_line(self, data: bytes, *, too_long: bool = False) -> Action:
        """The client's answer to our ``+`` during AUTHENTICATE: AUTHENTICATE again when the
        exchange goes on (another ``+`` was queued). A failure inside ends the exchange with
        ``NO [SERVERBUG]``, as for any command, and the session goes on."""
        tag = self._auth_tag
        try:
            return await self._authenticate_line(data, too_long=too_long)
        except Exception:
            log.error("imap.command_failed", exc_info=True, extra={"fields": {
                "client": self.peer, "command": "AUTHENTICATE"}})  # fmt: skip
            exchange, self._sasl, self._sasl_success, self._auth_tag = self._sasl, None, None, None
            if exchange is not None and not exchange.done:
                exchange.cancel("internal error", malformed=False)
            assert tag is not None
            self._no(tag, "Internal error, the command was not completed", r.code("SERVERBUG"))
            return Action.NONE

    async def _authenticate_line(self, data: bytes, *, too_long: bool) -> Action:
        tag, exchange = self._auth_tag, self._sasl
        assert tag is not None
        assert exchange is not None
        if too_long:
            exchange.cancel("response too long", malformed=True)
            return self._sasl_end(tag, "SASL response too long", bad=True)
        decoded = sasl.decode_response(data.strip())
        if isinstance(decoded, sasl.Aborted):
            exchange.cancel("cancelled by the client", malformed=False)
            return self._sasl_end(tag, "Authentication cancelled", bad=True)
        if isinstance(decoded, sasl.Malformed):
            exchange.cancel(decoded.reason, malformed=True)
            return self._sasl_end(tag, "Invalid base64 in SASL response", bad=True)
        if self._sasl_success is not None:  # the empty answer to our final data (RFC 9051 §6.2.2)
            return self._sasl_finish(tag)
        return await self._sasl_outcome(await exchange.respond(decoded))

    async def _sasl_outcome(self, outcome: SaslOutcome) -> Action:
        """Frame what the login service answered: a challenge, or how the exchange ended."""
        tag = self._auth_tag
        assert tag is not None
        if isinstance(outcome, sasl.Challenge):
            self._send(r.continuation(base64.b64encode(outcome.data)))
            return Action.AUTHENTICATE
        if isinstance(outcome, LoggedIn):
            self._sasl_success = outcome
            if outcome.final_data:  # SCRAM's server-final: sent, then the client says ""
                self._send(r.continuation(base64.b64encode(outcome.final_data)))
                return Action.AUTHENTICATE
            return self._sasl_finish(tag)
        if isinstance(outcome, LoginRefused):
            self._sasl = self._sasl_success = None
            self._auth_tag = None
            self._refused(tag)
            return Action.NONE
        text = "Invalid SASL response" if outcome.malformed else "Authentication failed"
        return self._sasl_end(tag, text, bad=outcome.malformed)

    def _sasl_finish(self, tag: str) -> Action:
        success = self._sasl_success
        self._sasl = self._sasl_success = None
        self._auth_tag = None
        assert success is not None
        self._logged_in(tag, success.account)
        return Action.NONE

    def _sasl_end(self, tag: str, text: str, *, bad: bool) -> Action:
        self._sasl = self._sasl_success = None
        self._auth_tag = None
        if bad:
            self._bad(tag, text)
        else:
            self._no(tag, text, r.code("AUTHENTICATIONFAILED"))
        return Action.NONE

    def _refused(self, tag: str) -> None:
        """RFC 5530 UNAVAILABLE for a client banned after too many failed logins (issue 4:
        even a right password is refused until the ban ends)."""
        self._no(tag, "Too many authentication failures, try again later", r.code("UNAVAILABLE"))

    async def _login(self, tag: str, username: str, password: str) -> None:
        outcome = await self.login.password(
            Client("imap", self.peer), username, password, mechanism="login"
        )
        if isinstance(outcome, LoginRefused):
            self._refused(tag)
        elif isinstance(outcome, LoginFailed):
            self._no(tag, "Authentication failed", r.code("AUTHENTICATIONFAILED"))
        else:
            self._logged_in(tag, outcome.account)

    def _logged_in(self, tag: str, account: Account) -> None:
        self.account = account
        self.core.set_state(State.AUTHENTICATED)
        self._ok(tag, "Logged in", r.code("CAPABILITY", *self.capabilities()))

    # -- authenticated ---------------------------------------------------------------------------
    def _account(self) -> Account:
        assert self.account is not None
        return self.account

    async def cmd_enable(self, tag: str, cmd: c.Enable) -> Action:
        supported = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
        newly = [
            name for name in cmd.capabilities if name in supported and name not in self.enabled
        ]
        for name in newly:
            self.enabled.add(name)
            if name == "UTF8=ACCEPT":
                self.core.enable_utf8()
        if "QRESYNC" in newly:
            self.enabled.add("CONDSTORE")  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
        self._send(r.untagged("ENABLED", *[_enabled_name(n) for n in newly]))
        self._ok(tag, "Enabled")
        return Action.NONE

    async def cmd_namespace(self, tag: str, cmd: c.Namespace) -> Action:
        personal = r.plist([r.plist([r.quoted(""), r.quoted(names.DELIMITER)])])
        self._send(r.untagged("NAMESPACE", personal, b"NIL", b"NIL"))
        self._ok(tag, "Namespace completed")
        return Action.NONE

    async def cmd_create(self, tag: str, cmd: c.Create) -> Action:
        account = self._account()
        try:
            # RFC 9051 §6.3.4: a trailing delimiter only declares the intent to create children
            name = names.check_name(cmd.mailbox.removesuffix(names.DELIMITER))
        except names.BadName as exc:
            self._no(tag, str(exc), r.code("CANNOT"))
            return Action.NONE
        if name == "INBOX":
            self._no(tag, "INBOX always exists", r.code("ALREADYEXISTS"))
            return Action.NONE
        special = None
        if cmd.special_use:
            if len(cmd.special_use) > 1 or cmd.special_use[0] not in SPECIAL_USES:
                self._no(tag, "Unsupported special-use flag", r.code("USEATTR"))
                return Action.NONE
            special = cmd.special_use[0]
        existing = {m.name for m in await self.store.list_mailboxes(account.id)}
        await self._create_parents(account.id, name, existing)
        await self.store.create_mailbox(account.id, name, special)
        self._ok(tag, "Create completed")
        return Action.NONE

    async def _create_parents(self, account_id: int, name: str, existing: set[str]) -> None:
        """RFC 9051 §6.3.4: CREATE (and RENAME) make the missing superiors of ``name``."""
        for parent in names.parents(name):
            if parent not in existing and parent != "INBOX":
                await self.store.create_mailbox(account_id, parent)

    async def cmd_delete(self, tag: str, cmd: c.Delete) -> Action:
        account = self._account()
        name = _canonical(cmd.mailbox)
        if name == "INBOX":
            self._no(tag, "INBOX cannot be deleted", r.code("CANNOT"))
            return Action.NONE
        boxes = await self.store.list_mailboxes(account.id)
        if not any(m.name == name for m in boxes):
            self._no(tag, "Mailbox does not exist", r.code("NONEXISTENT"))
            return Action.NONE
        if any(m.name.startswith(name + names.DELIMITER) for m in boxes):
            self._no(tag, "Mailbox has children, delete them first", r.code("HASCHILDREN"))
            return Action.NONE
        if self.view is not None and self.view.info.name == name:
            self._unselect()
        await self.store.delete_mailbox(account.id, name)
        self._ok(tag, "Delete completed")
        return Action.NONE

    async def cmd_rename(self, tag: str, cmd: c.Rename) -> Action:
        account = self._account()
        try:
            new = names.check_name(cmd.new_name)
        except names.BadName as exc:
            self._no(tag, str(exc), r.code("CANNOT"))
            return Action.NONE
        old = _canonical(cmd.mailbox)
        if new == "INBOX" or new.startswith(old + names.DELIMITER):
            self._no(tag, "Cannot rename there", r.code("CANNOT"))
            return Action.NONE
        existing = {m.name for m in await self.store.list_mailboxes(account.id)}
        if old not in existing:
            self._no(tag, "Mailbox does not exist", r.code("NONEXISTENT"))
            return Action.NONE
        await self._create_parents(account.id, new, existing)
        await self.store.rename_mailbox(account.id, old, new)
        self._ok(tag, "Rename completed")
        return Action.NONE

    async def cmd_subscribe(self, tag: str, cmd: c.Subscribe) -> Action:
        account = self._account()
        name = _canonical(cmd.mailbox)
        if await self.store.get_mailbox(account.id, name) is None:
            self._no(tag, "Mailbox does not exist", r.code("NONEXISTENT"))
            return Action.NONE
        await self.store.set_subscribed(account.id, name, True)
        self._ok(tag, "Subscribe completed")
        return Action.NONE

    async def cmd_unsubscribe(self, tag: str, cmd: c.Unsubscribe) -> Action:
        await self.store.set_subscribed(self._account().id, _canonical(cmd.mailbox), False)
        self._ok(tag, "Unsubscribe completed")
        return Action.NONE

    async def cmd_list(self, tag: str, cmd: c.List) -> Action:
        account = self._account()
        if not cmd.extended and cmd.patterns == ("",):
            # RFC 9051 §6.3.9: an empty pattern asks for the delimiter and root
            self._send(
                r.untagged("LIST", r.plist(["\\Noselect"]), r.quoted(names.DELIMITER), r.quoted(""))
            )
            self._ok(tag, "List completed")
            return Action.NONE
        boxes = {m.name: m for m in await self.store.list_mailboxes(account.id)}
        subscribed = set(await self.store.list_subscriptions(account.id))
        try:
            regexes = names.compile_patterns(cmd.reference, cmd.patterns)
        except names.BadPattern as exc:
            self._no(tag, str(exc), r.code("LIMIT"))
            return Action.NONE
        only_subscribed = "SUBSCRIBED" in cmd.selection
        only_special = "SPECIAL-USE" in cmd.selection
        show_special = (not cmd.extended) or "SPECIAL-USE" in cmd.returns or only_special
        show_subscribed = only_subscribed or "SUBSCRIBED" in cmd.returns
        candidates = sorted(
            set(boxes) | (subscribed if only_subscribed else set()), key=_list_order
        )
        recursive = only_subscribed and "RECURSIVEMATCH" in cmd.selection
        if recursive:  # parents of subscribed names may be answered with CHILDINFO
            candidates = sorted(
                set(candidates) | {p for n in subscribed for p in names.parents(n)},
                key=_list_order,
            )
        matched = await names.matching(regexes, set(candidates) | subscribed)
        for name in candidates:
            if name not in matched:
                continue
            box = boxes.get(name)
            childinfo = b""
            if only_subscribed and name not in subscribed:
                # RFC 5258 §3.5: a name that fails the selection but has a descendant that
                # passes it and is not itself listed gets CHILDINFO
                prefix = name + names.DELIMITER
                if not recursive or not any(
                    s.startswith(prefix) and s not in matched
                    for s in subscribed
                ):
                    continue
                childinfo = b' ("CHILDINFO" ("SUBSCRIBED"))'
            if only_special and (box is None or box.special_use is None):
                continue
            if only_special and (box is None or box.special_use is None):
                continue
            attrs: list[str] = []
            if box is None:
                attrs.append("\\NonExistent")
            else:
                has_children = any(n.startswith(name + names.DELIMITER) for n in boxes)
                attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
                if show_special and box.special_use:
                    attrs.append(box.special_use)
            if show_subscribed and name in subscribed:
                attrs.append("\\Subscribed")
            if childinfo and "CHILDREN" not in cmd.returns:
                attrs = [a for a in attrs if a not in ("\\HasChildren", "\\HasNoChildren")]
            line = r.untagged(
                "LIST", r.plist(attrs), r.quoted(names.DELIMITER), self._mailbox_out(name)
            )
            self._send(line[:-2] + childinfo + b"\r\n" if childinfo else line)
            if cmd.status_items is not None and box is not None:
                await self._status_line(box, cmd.status_items)
        self._ok(tag, "List completed")
        return Action.NONE

    async def cmd_lsub(self, tag: str, cmd: c.Lsub) -> Action:
        account = self._account()
        boxes = {m.name for m in await self.store.list_mailboxes(account.id)}
        try:
            rx = names.compile_pattern(cmd.reference, cmd.pattern)
        except names.BadPattern as exc:
            self._no(tag, str(exc), r.code("LIMIT"))
            return Action.NONE
        subscribed = set(await self.store.list_subscriptions(account.id))
        matched = await names.matching([rx], subscribed)
        # RFC 3501 §6.3.9: with %, an unsubscribed parent of subscribed names is listed
        # as \Noselect
        parents = {
            p
            for n in subscribed
            if n not in matched
            for p in names.parents(n)
            if p not in subscribed
        }
        matched |= await names.matching([rx], parents)
        for name in sorted(subscribed | parents, key=_list_order):
            if name in matched:
                attrs = [] if name in boxes and name not in parents else ["\\Noselect"]
                self._send(
                    r.untagged(
                        "LSUB", r.plist(attrs), r.quoted(names.DELIMITER), self._mailbox_out(name)
                    )
                )
        self._ok(tag, "Lsub completed")
        return Action.NONE

    async def cmd_status(self, tag: str, cmd: c.Status) -> Action:
        box = await self.store.get_mailbox(self._account().id, _canonical(cmd.mailbox))
        if box is None:
            self._no(tag, "Mailbox does not exist", r.code("NONEXISTENT"))
            return Action.NONE
        await self._status_line(box, cmd.items)
        self._ok(tag, "Status completed")
        return Action.NONE

    async def _status_line(self, box: MailboxInfo, items: Iterable[str]) -> None:
        values: list[bytes | str | int] = []
        for item in items:
            value: int | bytes
            if item == "MESSAGES":
                value = box.messages
            elif item == "UIDNEXT":
                value = box.uidnext
            elif item == "UIDVALIDITY":
                value = box.uidvalidity
            elif item == "UNSEEN":
                value = box.unseen
            elif item == "DELETED":
                value = box.deleted
            elif item == "SIZE":
                value = box.size
            elif item == "RECENT":
                first = await self.store.claim_recent(box.id, 0, claim=False)
                value = sum(1 for m in await self.store.message_index(box.id) if m.uid >= first)
            elif item == "HIGHESTMODSEQ":
                value = box.highestmodseq
            elif item == "APPENDLIMIT":
                value = self.config.append_limit
            elif item == "MAILBOXID":
                value = r.plist([mailbox_id(box)])
            else:
                continue
            values += [item, value]
        self._send(r.untagged("STATUS", self._mailbox_out(box.name), r.plist(
            [v if isinstance(v, bytes) else str(v).encode() for v in values]
        )))  # fmt: skip

    async def cmd_append(self, tag: str, cmd: c.Append) -> Action:
        account = self._account()
        name = _canonical(cmd.mailbox)
        box = await self.store.get_mailbox(account.id, name)
        if box is None:
            self._no(tag, "Mailbox does not exist", r.code("TRYCREATE"))
            return Action.NONE
        uids: list[int] = []
        for message in cmd.messages:
            if len(message.data) > self.config.append_limit:
                self._no(tag, "Message too large", r.code("TOOBIG"))
                return Action.NONE
            if not message.data:
                self._no(tag, "Empty message", r.code("CANNOT"))
                return Action.NONE
        for message in cmd.messages:
            when = message.internal_date or self.now()
            # Stored messages have CRLF line endings (as SMTP delivers them), so sizes and
            # BODY[] agree; literal8 (BINARY) content is kept exactly.
            data = message.data if message.binary else _BARE_LF.sub(b"\r\n", message.data)
            flags = frozenset(f for f in message.flags if f.lower() != "\\recent")
            outcome = await self.store.deliver(
                DeliveryRequest(
                    raw=data,
                    targets=[DeliveryTarget(account.id, name, flags)],
                    internal_date=int(when.timestamp()),
                )
            )
            error = outcome.errors[0]
            if error is not None:
                self._store_error(tag, error)
                return Action.NONE
            uid = outcome.uids[0]
            assert uid is not None
            uids.append(uid)
        await self.sync(expunges_allowed=False)
        self._ok(
            tag, "Append completed", r.code("APPENDUID", box.uidvalidity, r.sequence_set(uids))
        )
        return Action.NONE

    # -- select ------------------------------------------------------------------------------------
    async def cmd_select(self, tag: str, cmd: c.Select | c.Examine) -> Action:
        read_only = isinstance(cmd, c.Examine)
        if self.view is not None:
            self._unselect()
            self._send(r.untagged("OK", r.code("CLOSED"), "Previous mailbox closed"))
        box = await self.store.get_mailbox(self._account().id, _canonical(cmd.mailbox))
        if box is None:
            self._no(tag, "Mailbox does not exist", r.code("NONEXISTENT"))
            return Action.NONE
        if cmd.qresync is not None and "QRESYNC" not in self.enabled:
            self._bad(tag, "ENABLE QRESYNC first")  # RFC 7162 §3.2.5
            return Action.NONE
        if cmd.condstore or cmd.qresync is not None:
            self.enabled.add("CONDSTORE")
        seed = self.seeds.get(box) if self.seeds is not None else None
        if seed is None:
            seed = ViewSeed.build(box, await self.store.message_index(box.id))
            if self.seeds is not None:
                self.seeds.put(box.id, seed)
        view = MailboxView(box, seed, read_only)
        # a read, and a write only when there are new messages to claim as \Recent
        first_recent = box.first_recent_uid  # read with the mailbox: no second round trip
        if not read_only and first_recent <= view.max_uid:
            first_recent = await self.store.claim_recent(box.id, view.max_uid + 1, claim=True)
        view.recent = set(view.uids[bisect.bisect_left(view.uids, first_recent) :])
        self.view = view
        rev1 = "IMAP4REV2" not in self.enabled
        # the untagged answer depends only on the seed and these, so sessions share it
        key = ("SELECT", box.id, read_only, rev1, len(view.recent), view.uidnext)
        answer = seed.rendered.get(key)
        if answer is None:
            answer = seed.rendered[key] = self._selected_untagged(box, view, seed, rev1)
        self._send(answer)
        if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
            await self._resync(view, cmd.qresync)
        self.core.set_state(State.SELECTED)
        mode = "READ-ONLY" if read_only else "READ-WRITE"
        self._ok(tag, f"{'Examine' if read_only else 'Select'} completed", r.code(mode))
        return Action.NONE

    cmd_examine = cmd_select

    @staticmethod
    def _selected_untagged(
        box: MailboxInfo, view: MailboxView, seed: ViewSeed, rev1: bool
    ) -> bytes:
        """The untagged responses a SELECT or EXAMINE owes (RFC 9051 §6.3.2, RFC 3501 §6.3.1)."""
        flags = list(SYSTEM_FLAGS) + sorted(view.keywords)
        permanent = [] if view.read_only else [*flags, "\\*"]
        lines = [
            r.untagged("FLAGS", r.flag_list(flags)),
            r.untagged("OK", r.code("PERMANENTFLAGS", r.flag_list(permanent)), "Flags permitted"),
            r.untagged(view.exists, "EXISTS"),
        ]
        if rev1:
            lines.append(r.untagged(len(view.recent), "RECENT"))
            unseen = seed.first_unseen  # the view is still the seed here
            if unseen is not None:
                lines.append(r.untagged("OK", r.code("UNSEEN", unseen), "First unseen"))
        lines += [
            r.untagged("OK", r.code("UIDVALIDITY", view.uidvalidity), "UIDs valid"),
            r.untagged("OK", r.code("UIDNEXT", view.uidnext), "Predicted next UID"),
            r.untagged("OK", r.code("HIGHESTMODSEQ", view.highestmodseq), "Highest"),
            r.untagged("OK", r.code("MAILBOXID", r.plist([mailbox_id(box)])), "Ok"),
        ]
        return b"".join(lines)

    def _enable_condstore(self) -> None:
        """A CONDSTORE-enabling command was used (RFC 7162 §3.1)."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled.add("CONDSTORE")
        if self.view is not None:
            self._send(
                r.untagged("OK", r.code("HIGHESTMODSEQ", self.view.highestmodseq), "Highest")
            )

    async def _resync(self, view: MailboxView, qresync: c.QResync) -> None:
        """RFC 7162 §3.2.5.1: what the client missed since its MODSEQ."""
        changes = await self.store.changes_since(view.mailbox_id, qresync.modseq)
        known = qresync.known_uids
        vanished = [
            u for u in changes.vanished if known is None or known.contains(u, changes.uidnext)
        ]
        if vanished:
            self._send(r.vanished(vanished, earlier=True))
        for message in changes.changed:
            seq = view.seq_of(message.uid)
            if seq is None:
                continue
            parts = [b"UID", str(message.uid).encode()]
            parts += [b"FLAGS", r.flag_list(view.display_flags(message.uid))]
            parts += [b"MODSEQ", r.plist([str(view.modseqs[message.uid]).encode()])]
            self._send(r.untagged(seq, "FETCH", r.plist(parts)))

    def _unselect(self) -> None:
        self.view = None
        self.saved_search = None
        self.contexts.clear()
        self.core.set_state(State.AUTHENTICATED)

    def _view(self) -> MailboxView:
        assert self.view is not None
        return self.view

    async def cmd_close(self, tag: str, cmd: c.Close) -> Action:
        view = self._view()
        if not view.read_only:
            await self.store.expunge(view.mailbox_id)  # silently (RFC 9051 §6.4.1)
        self._unselect()
        self._ok(tag, "Close completed")
        return Action.NONE

    async def cmd_unselect(self, tag: str, cmd: c.Unselect) -> Action:
        self._unselect()
        self._ok(tag, "Unselect completed")
        return Action.NONE

    async def cmd_expunge(self, tag: str, cmd: c.Expunge) -> Action:
        view = self._view()
        if view.read_only:
            self._no(tag, "Mailbox is read-only", r.code("READ-ONLY"))
            return Action.NONE
        result = await self.store.expunge(view.mailbox_id)
        self._announce_expunges(view, result.uids)
        await self.sync(expunges_allowed=True)
        self._ok(tag, "Expunge completed", r.code("HIGHESTMODSEQ", view.highestmodseq))
        return Action.NONE

    async def cmd_uidexpunge(self, tag: str, cmd: c.UidExpunge) -> Action:
        view = self._view()
        if view.read_only:
            self._no(tag, "Mailbox is read-only", r.code("READ-ONLY"))
            return Action.NONE
        uids = view.uids_in_ranges(cmd.uids.resolve(view.max_uid or 1))
        result = await self.store.expunge(view.mailbox_id, uids)
        self._announce_expunges(view, result.uids)
        await self.sync(expunges_allowed=True)
        self._ok(tag, "Expunge completed", r.code("HIGHESTMODSEQ", view.highestmodseq))
        return Action.NONE

    def _announce_expunges(self, view: MailboxView, uids: Iterable[int]) -> None:
        uids = list(uids)
        gone = set(uids)
        for context in self.contexts.values():  # RFC 5267 §4.3: REMOVEFROM before EXPUNGE
            if gone.isdisjoint(context.result):
                continue
            numbers = {u: u if context.uid else view.seq_of(u) or 0 for u in context.result}
            kept = [u for u in context.result if u not in gone]
            removes, _ = update_items(context, kept, numbers, {})
            context.result = kept
            self._send(esearch_line(context, removes))
        if "QRESYNC" in self.enabled:
            view.remove(uids)
            if uids:
                self._send(r.vanished(uids))
            return
        for seq in view.remove(uids):
            self._send(r.untagged(seq, "EXPUNGE"))

    # -- message sets ------------------------------------------------------------------------------
    def _resolve(self, sequence: c.SequenceSet, uid: bool) -> list[int] | None:
        """UIDs named by a set; None when a sequence number is out of range (BAD)."""
        view = self._view()
        if sequence.saved:
            saved = set(self.saved_search or ())
            return [u for u in view.uids if u in saved]
        if uid:
            return view.uids_in_ranges(sequence.resolve(view.max_uid or 1))
        if view.exists == 0:
            return None
        seqs: set[int] = set()
        for lo, hi in sequence.resolve(view.exists):
            if lo < 1 or hi > view.exists:
                return None
            seqs.update(range(lo, hi + 1))
        return [view.uid_of(s) for s in sorted(seqs)]

    async def cmd_fetch(self, tag: str, cmd: c.Fetch) -> Action:
        view = self._view()
        uids = self._resolve(cmd.sequence, cmd.uid)
        if uids is None:
            self._bad(tag, "Invalid message sequence number")
            return Action.NONE
        if cmd.changedsince is not None or any(
            isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in cmd.items
        ):
            self._enable_condstore()
        if cmd.changedsince is not None:
            if cmd.vanished:
                # RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE
                if not cmd.uid or "QRESYNC" not in self.enabled:
                    self._bad(tag, "VANISHED needs UID FETCH and ENABLE QRESYNC")
                    return Action.NONE
                changes = await self.store.changes_since(view.mailbox_id, cmd.changedsince)
                gone = [u for u in changes.vanished if cmd.sequence.contains(u, changes.uidnext)]
                if gone:
                    self._send(r.vanished(gone, earlier=True))
            uids = [u for u in uids if view.modseqs.get(u, 0) > cmd.changedsince]
        fetcher = Fetcher(
            self.store, view, utf8="UTF8=ACCEPT" in self.enabled, headers=self.header_cache,
            flush=self.flush, memory=self.memory,
        )  # fmt: skip
        items = list(cmd.items)
        if cmd.uid and not any(isinstance(i, c.FetchAtt) and i.name == "UID" for i in items):
            items.insert(0, c.FetchAtt("UID"))
        if (
            "CONDSTORE" in self.enabled
            and cmd.changedsince is not None
            and not any(isinstance(i, c.FetchAtt) and i.name == "MODSEQ" for i in items)
        ):
            items.append(c.FetchAtt("MODSEQ"))
        failure = await fetcher.fetch(uids, items, self._send)
        if failure is not None:
            self._no(tag, failure[1], r.code(failure[0]))
            return Action.NONE
        await self.sync(expunges_allowed=cmd.uid)
        self._ok(tag, "Fetch completed")
        return Action.NONE

    async def cmd_store(self, tag: str, cmd: c.Store) -> Action:
        view = self._view()
        if view.read_only:
            self._no(tag, "Mailbox is read-only", r.code("READ-ONLY"))
            return Action.NONE
        uids = self._resolve(cmd.sequence, cmd.uid)
        if uids is None:
            self._bad(tag, "Invalid message sequence number")
            return Action.NONE
        if cmd.unchangedsince is not None:
            self._enable_condstore()
        op = {"+": FlagOp.ADD, "-": FlagOp.REMOVE, "": FlagOp.REPLACE}[cmd.action]
        flags = frozenset(f for f in cmd.flags if f.lower() != "\\recent")
        result = await self.store.store_flags(view.mailbox_id, uids, op, flags, cmd.unchangedsince)
        changed = {m.uid for m in result.changed}
        for message in result.changed:
            view.set_flags(message)
        condstore = "CONDSTORE" in self.enabled
        for uid in uids:
            if uid in set(result.modified):
                continue
            if cmd.silent and not (condstore and uid in changed):
                continue
            seq = view.seq_of(uid)
            if seq is None:
                continue
            parts: list[bytes] = []
            if cmd.uid:
                parts += [b"UID", str(uid).encode()]
            if not cmd.silent:
                parts += [b"FLAGS", r.flag_list(view.display_flags(uid))]
            if condstore:
                parts += [b"MODSEQ", r.plist([str(view.modseqs[uid]).encode()])]
            self._send(r.untagged(seq, "FETCH", r.plist(parts)))
        await self.sync(expunges_allowed=cmd.uid)
        if result.modified:
            modified = (
                result.modified
                if cmd.uid
                else [s for u in result.modified if (s := view.seq_of(u))]
            )
            self._ok(tag, "Conditional store failed", r.code("MODIFIED", r.sequence_set(modified)))
        else:
            self._ok(tag, "Store completed")
        return Action.NONE

    async def _copy_or_move(self, tag: str, cmd: c.Copy | c.Move, move: bool) -> Action:
        view = self._view()
        uids = self._resolve(cmd.sequence, cmd.uid)
        if uids is None:
            self._bad(tag, "Invalid message sequence number")
            return Action.NONE
        target = await self.store.get_mailbox(self._account().id, _canonical(cmd.mailbox))
        if target is None:
            self._no(tag, "Mailbox does not exist", r.code("TRYCREATE"))
            return Action.NONE
        if move and view.read_only:
            self._no(tag, "Mailbox is read-only", r.code("READ-ONLY"))
            return Action.NONE
        if not uids:
            self._ok(tag, "No messages")
            return Action.NONE
        result = await self.store.copy_messages(view.mailbox_id, uids, target.id, move=move)
        copyuid = r.code(
            "COPYUID",
            result.uidvalidity,
            r.sequence_set(p[0] for p in result.pairs),
            r.sequence_set(p[1] for p in result.pairs),
        )
        if move:
            # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges
            self._send(r.untagged("OK", copyuid, "Moved"))
            self._announce_expunges(view, [p[0] for p in result.pairs])
            await self.sync(expunges_allowed=True)
            self._ok(tag, "Move completed")
        else:
            await self.sync(expunges_allowed=cmd.uid)
            self._ok(tag, "Copy completed", copyuid)
        return Action.NONE

    async def cmd_copy(self, tag: str, cmd: c.Copy) -> Action:
        return await self._copy_or_move(tag, cmd, move=False)

    async def cmd_move(self, tag: str, cmd: c.Move) -> Action:
        return await self._copy_or_move(tag, cmd, move=True)

    async def cmd_search(self, tag: str, cmd: c.Search) -> Action:
        view = self._view()
        uses_modseq = _has_modseq_key(cmd.criteria)
        if uses_modseq:
            self._enable_condstore()
        found = await self._search(cmd.criteria)
        # RFC 7162 §3.1.5: with a MODSEQ key, report the highest mod-sequence of the messages
        # returned (with only MIN and/or MAX, of those messages alone).
        returned = found
        options = cmd.returns.options if cmd.returns is not None else frozenset({"ALL"})
        if found and not options & {"ALL", "COUNT", "SAVE"}:
            returned = [
                u
                for u in (found[0], found[-1])
                if ("MIN" in options and u == found[0]) or ("MAX" in options and u == found[-1])
            ]
        top_modseq = max((view.modseqs.get(u, 0) for u in returned), default=0)
        numbers = found if cmd.uid else [s for u in found if (s := view.seq_of(u))]
        returns = cmd.returns
        if returns is None and "IMAP4REV2" not in self.enabled:
            tail: list[bytes] = []
            if uses_modseq and numbers:
                tail = [b"(MODSEQ " + str(top_modseq).encode() + b")"]
            self._send(r.untagged("SEARCH", *[str(n) for n in numbers], *tail))
        else:
            options = returns.options if returns is not None else frozenset({"ALL"})
            if "SAVE" in options:
                self.saved_search = found
            result: list[bytes] = []
            if "MIN" in options and numbers:
                result += [b"MIN", str(min(numbers)).encode()]
            if "MAX" in options and numbers:
                result += [b"MAX", str(max(numbers)).encode()]
            if "ALL" in options and numbers:
                result += [b"ALL", r.sequence_set(numbers)]
            if "COUNT" in options:
                result += [b"COUNT", str(len(numbers)).encode()]
            if returns is not None and returns.partial is not None:
                result += partial_item(returns.partial, numbers, ordered=False)
            if uses_modseq and numbers:
                result += [b"MODSEQ", str(top_modseq).encode()]
            head = b"(TAG " + r.quoted(tag) + b")"
            self._send(r.untagged("ESEARCH", head, *(["UID"] if cmd.uid else []), *result))
            if "UPDATE" in options:
                self._keep_context(SearchContext(tag, cmd.criteria, cmd.uid, None, found, 0))
        await self.sync(expunges_allowed=cmd.uid)
        self._ok(tag, "Search completed")
        return Action.NONE

    async def _search(self, criteria: c.SearchKey) -> list[int]:
        view = self._view()
        # The full-text index narrows text keys to the messages that may match; those (and
        # messages it has not indexed yet) are checked against their text.
        prefilter: dict[c.SearchKey, tuple[set[int], set[int]]] = {}
        exact: set[c.SearchKey] = set()
        all_rows = needs_rows(criteria)
        for leaf in leaves(criteria):
            if isinstance(leaf, c.HeaderKey | c.TextKey) and leaf not in prefilter:
                scope, needle = text_scope(leaf)
                sets = await self.store.text_candidates(view.mailbox_id, needle, scope)
                if sets is None:
                    all_rows = True
                else:
                    prefilter[leaf] = sets
                    if index_is_exact(leaf):
                        exact.add(leaf)
        if all_rows:
            wanted = view.uids
        else:
            # rows for what will be checked against its text (an exact key's indexed matches
            # are answered without it)
            wanted = sorted(
                {
                    u
                    for leaf, (found, todo) in prefilter.items()
                    for u in (todo if leaf in exact else found | todo)
                }
            )
        infos = {m.uid: m for m in await self.store.get_messages(view.mailbox_id, wanted)}
        searcher = Searcher(
            view, self.store.read_blob, self.saved_search, self.now(), prefilter, exact
        )
        narrow = candidates_only(criteria, prefilter)
        if narrow is None:
            pairs: Iterable[tuple[int, int]] = enumerate(view.uids, start=1)
        else:  # only the index's candidates can match: the others need no look
            pairs = sorted((seq, u) for u in narrow if (seq := view.seq_of(u)))
        found = []
        for count, (seq, uid) in enumerate(pairs, start=1):
            if count % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let other sessions run during a long SEARCH
            info = infos.get(uid)
            if info is None and all_rows:  # expunged by another session meanwhile
                continue
            if await searcher.matches(criteria, Candidate(seq, uid, info)):
                found.append(uid)
        return found

    async def _sort_views(
        self, uids: list[int], numbers: list[int], references: bool
    ) -> list[MessageView]:
        """What SORT/THREAD need per message; ``numbers`` are what the answer names (UIDs or
        sequence numbers)."""
        view = self._view()
        infos = {m.uid: m for m in await self.store.get_messages(view.mailbox_id, uids)}
        views = []
        for count, (uid, number) in enumerate(zip(uids, numbers, strict=True)):
            if count % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let other sessions run during a long SORT/THREAD
            info = infos.get(uid)
            if info is None:
                continue
            parsed = from_json(info.structure)
            refs = None
            if references:
                raw = await self.store.read_blob(info.blob_id)
                refs = _header_value(raw, parsed.header_end, "references")
            when = datetime.datetime.fromtimestamp(info.internal_date, datetime.UTC)
            views.append(MessageView(number, when, info.size, parsed, refs))
        return views

    async def _sorted(self, search: c.SearchKey, criteria: tuple[str, ...]) -> list[int]:
        """UIDs of the messages matching ``search``, in the order of the SORT ``criteria``."""
        found = await self._search(search)
        return sort_uids(list(criteria), await self._sort_views(found, found, references=False))

    async def cmd_sort(self, tag: str, cmd: c.Sort) -> Action:
        view = self._view()
        criteria: list[str] = []
        for key in cmd.criteria:
            criteria += ["REVERSE", key.key] if key.reverse else [key.key]
        sorted_uids = await self._sorted(cmd.search, tuple(criteria))
        ordered = sorted_uids if cmd.uid else [view.seq_of(u) or 0 for u in sorted_uids]
        if cmd.returns is None:
            self._send(r.untagged("SORT", *[str(n) for n in ordered]))
        else:
            # RFC 5267 §4.2: MIN and MAX are the first and last in sort order, ALL keeps it
            options = cmd.returns.options
            result: list[bytes] = []
            if "MIN" in options and ordered:
                result += [b"MIN", str(ordered[0]).encode()]
            if "MAX" in options and ordered:
                result += [b"MAX", str(ordered[-1]).encode()]
            if "ALL" in options and ordered:
                result += [b"ALL", ordered_set(ordered)]
            if "COUNT" in options:
                result += [b"COUNT", str(len(ordered)).encode()]
            if cmd.returns.partial is not None:
                result += partial_item(cmd.returns.partial, ordered, ordered=True)
            head = b"(TAG " + r.quoted(tag) + b")"
            self._send(r.untagged("ESEARCH", head, *(["UID"] if cmd.uid else []), *result))
            if "UPDATE" in options:
                context = SearchContext(tag, cmd.search, cmd.uid, tuple(criteria), sorted_uids, 0)
                self._keep_context(context)
        await self.sync(expunges_allowed=cmd.uid)
        self._ok(tag, "Sort completed")
        return Action.NONE

    async def cmd_thread(self, tag: str, cmd: c.Thread) -> Action:
        view = self._view()
        found = await self._search(cmd.search)
        numbers = found if cmd.uid else [view.seq_of(u) or 0 for u in found]
        if cmd.algorithm == "ORDEREDSUBJECT":
            threads = ordered_subject(await self._sort_views(found, numbers, references=False))
        elif cmd.algorithm in ("REFERENCES", "REFS"):
            threads = thread_references(await self._sort_views(found, numbers, references=True))
        else:
            self._bad(tag, "Unknown threading algorithm")
            return Action.NONE
        self._send(b"* THREAD " + thread_wire(threads) + b"\r\n")
        await self.sync(expunges_allowed=cmd.uid)
        self._ok(tag, "Thread completed")
        return Action.NONE

    def _keep_context(self, context: SearchContext) -> None:
        """Remember a RETURN (UPDATE) search (RFC 5267 §4.1) as of the view's current state."""
        context.generation = self._view().generation
        if context.tag not in self.contexts and len(self.contexts) >= MAX_CONTEXTS:
            text = "Too many search contexts, this one is not updated"
            self._send(b"* NO [NOUPDATE " + r.quoted(context.tag) + b"] " + text.encode() + b"\r\n")
            return
        self.contexts[context.tag] = context

    async def cmd_cancelupdate(self, tag: str, cmd: c.CancelUpdate) -> Action:
        for name in cmd.tags:
            self.contexts.pop(name, None)
        self._ok(tag, "Updates cancelled")
        return Action.NONE

    async def _context_news(self, before: dict[int, int]) -> tuple[list[bytes], list[bytes]]:
        """Re-run the live searches the mailbox changed under; ``before`` maps UIDs to the
        sequence numbers the client knew. Returns the REMOVEFROM and ADDTO lines to send."""
        view = self._view()
        removals: list[bytes] = []
        additions: list[bytes] = []
        for context in list(self.contexts.values()):
            if context.generation == view.generation:
                continue
            if context.sort is None:
                new = await self._search(context.criteria)
            else:
                new = await self._sorted(context.criteria, context.sort)
            if context.uid:
                old_numbers: dict[int, int] = {u: u for u in context.result}
                new_numbers = {u: u for u in new}
            else:
                old_numbers = {u: before[u] for u in context.result if u in before}
                new_numbers = {u: s for u in new if (s := view.seq_of(u))}
            removes, adds = update_items(context, new, old_numbers, new_numbers)
            context.result, context.generation = new, view.generation
            if removes:
                removals.append(esearch_line(context, removes))
            if adds:
                additions.append(esearch_line(context, adds))
        return removals, additions

    def _context_numbers(self) -> dict[int, int]:
        """Sequence numbers of the messages in the live searches' results, as the client knows
        them now (REMOVEFROM goes out before the EXPUNGEs that renumber them)."""
        view = self._view()
        return {
            u: seq
            for context in self.contexts.values()
            if not context.uid
            for u in context.result
            if (seq := view.seq_of(u))
        }

    # -- quota ----------------------------------------------------------------------------------
    async def cmd_getquotaroot(self, tag: str, cmd: c.GetQuotaRoot) -> Action:
        account = await self.store.get_account_by_id(self._account().id)
        assert account is not None
        self._send(
            r.untagged("QUOTAROOT", self._mailbox_out(_canonical(cmd.mailbox)), r.quoted(""))
        )
        self._quota_line(account)
        self._ok(tag, "Getquotaroot completed")
        return Action.NONE

    async def cmd_getquota(self, tag: str, cmd: c.GetQuota) -> Action:
        if cmd.root != "":
            self._no(tag, "No such quota root", r.code("NONEXISTENT"))
            return Action.NONE
        account = await self.store.get_account_by_id(self._account().id)
        assert account is not None
        self._quota_line(account)
        self._ok(tag, "Getquota completed")
        return Action.NONE

    def _quota_line(self, account: Account) -> None:
        if account.quota:
            # RFC 9208 §5.1: STORAGE in units of 1024 octets
            usage = [
                b"STORAGE",
                str(account.used // 1024).encode(),
                str(account.quota // 1024).encode(),
            ]
            self._send(r.untagged("QUOTA", r.quoted(""), r.plist(usage)))

    async def cmd_setquota(self, tag: str, cmd: c.SetQuota) -> Action:
        self._no(tag, "Quotas are set by the administrator", r.code("NOPERM"))
        return Action.NONE

    # -- idle and compression ------------------------------------------------------------------
    async def cmd_idle(self, tag: str, cmd: c.Idle) -> Action:
        self.idle_tag = tag
        return Action.IDLE

    async def idle_done(self) -> None:
        await self.sync(expunges_allowed=True)
        self._ok(self.idle_tag, "Idle completed")

    async def cmd_compress(self, tag: str, cmd: c.Compress) -> Action:
        if self.compressed:
            self._no(tag, "Already compressing", r.code("COMPRESSIONACTIVE"))
            return Action.NONE
        if cmd.mechanism != "DEFLATE":
            self._bad(tag, "Unknown compression mechanism")
            return Action.NONE
        self._ok(tag, "Begin compression")
        self.compressed = True
        return Action.COMPRESS

    # -- updates from other sessions -----------------------------------------------------------
    async def sync(self, *, expunges_allowed: bool) -> None:
        """Tell the client what changed in its selected mailbox since it last heard."""
        view = self.view
        if view is None:
            return
        try:
            changes = await self.store.changes_since(view.mailbox_id, view.highestmodseq)
        except StoreError as exc:
            if exc.code is StoreErrorCode.NONEXISTENT:
                raise MailboxGone(str(exc)) from None
            raise
        before = self._context_numbers() if self.contexts else {}
        updates = view.apply(changes, expunges_allowed=expunges_allowed)
        if updates.new_uids:
            first = await self.store.claim_recent(
                view.mailbox_id, updates.new_uids[-1] + 1, claim=not view.read_only
            )
            view.recent.update(u for u in updates.new_uids if u >= first)
        removals, additions = await self._context_news(before) if self.contexts else ([], [])
        self._send_updates(view, updates, removals, additions)

    def _send_updates(
        self,
        view: MailboxView,
        updates: Updates,
        removals: Iterable[bytes] = (),
        additions: Iterable[bytes] = (),
    ) -> None:
        # Flag changes carry the sequence numbers from before the expunges: send them first.
        condstore = "CONDSTORE" in self.enabled
        for seq, message in updates.flag_changes:
            parts = [b"FLAGS", r.flag_list(view.display_flags(message.uid))]
            parts += [b"UID", str(message.uid).encode()]
            if condstore:
                parts += [b"MODSEQ", r.plist([str(message.modseq).encode()])]
            self._send(r.untagged(seq, "FETCH", r.plist(parts)))
        for line in removals:  # RFC 5267 §4.3: before the EXPUNGEs renumber the messages
            self._send(line)
        if "QRESYNC" in self.enabled and updates.vanished_uids:
            self._send(r.vanished(updates.vanished_uids))
        else:
            for seq in updates.expunged_seqs:
                self._send(r.untagged(seq, "EXPUNGE"))
        if updates.exists is not None:
            self._send(r.untagged(updates.exists, "EXISTS"))
            if "IMAP4REV2" not in self.enabled:
                self._send(r.untagged(len(view.recent), "RECENT"))
        for line in additions:
            self._send(line)


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _header_value(raw: bytes, end: int, name: str) -> bytes | None:
    """The first ``name`` field's raw value in the header that ends at ``end``."""
    for header_field in parse_header_fields(raw, 0, end):
        if header_field.name.lower() == name:
            return header_field.value
    return None


def _has_modseq_key(key: c.SearchKey) -> bool:
    if isinstance(key, c.ModSeqKey):
        return True
    if isinstance(key, c.And):
        return any(_has_modseq_key(k) for k in key.keys)
    if isinstance(key, c.Or):
        return _has_modseq_key(key.a) or _has_modseq_key(key.b)
    if isinstance(key, c.Not):
        return _has_modseq_key(key.key)
    return False


def _canonical(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def _list_order(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" else 1, name)


def _enabled_name(name: str) -> str:
    return {"IMAP4REV2": "IMAP4rev2"}.get(name, name)


def mailbox_id(box: MailboxInfo) -> str:
    """RFC 8474 MAILBOXID: stable across renames, never reused."""
    return f"F{box.id:08x}{box.uidvalidity:08x}"


__all__ = ["Action", "ImapSession", "SessionConfig", "email_id", "mailbox_id"]
