"""The one storage API every protocol uses; backends (SQLite now, PostgreSQL later) implement it.

Protocols never see SQL: they call these coroutines and catch :class:`StoreError`. Names given to
the store are already normalised by the directory (domain as a lower-case U-label, local parts as
written plus a case-folded lookup key).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from mailstead.store.errors import StoreError, StoreErrorCode
from mailstead.store.feed import ChangeFeed

__all__ = [
    "DEFAULT_MAILBOXES",
    "Account",
    "AccountRole",
    "AddressRecords",
    "Alias",
    "AppPassword",
    "AuthRecords",
    "ChangeFeed",
    "CopyResult",
    "DeliveryOutcome",
    "DeliveryRequest",
    "DeliveryTarget",
    "DkimKey",
    "DkimKeyAlgorithm",
    "Domain",
    "ExpungeResult",
    "FlagOp",
    "FlagUpdate",
    "MailboxChanges",
    "MailboxInfo",
    "MessageFlags",
    "MessageInfo",
    "QueueItem",
    "QueueRecipient",
    "QueueRecipientRequest",
    "QueueRequest",
    "QueueState",
    "QueueUpdate",
    "ReportAction",
    "Store",
    "StoreError",
    "StoreErrorCode",
    "TextScope",
]

# RFC 6154 special-use mailboxes created for every new account, as (name, special-use).
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


# What a text search looks at: header values, body text, or both (IMAP HEADER/BODY/TEXT).
TextScope = Literal["HEADER", "BODY", "TEXT", "SUBJECT", "FROM", "TO", "CC", "BCC"]
"""Where a text search looks: every header, the body, both, or one of the header fields the
index keeps on its own (a match there is exact: the field's decoded values contain the text)."""


DkimKeyAlgorithm = Literal["rsa", "ed25519"]
"""A DKIM key's type (the DNS record's ``k=``): RSA (rsa-sha256) or Ed25519 (RFC 8463)."""


class AccountRole(enum.Enum):
    """What an account may administer."""

    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Domain:
    """A domain this server receives mail for (name is the lower-case U-label)."""

    id: int
    name: str
    created: int


@dataclass(frozen=True, slots=True)
class Account:
    """A mailbox owner. ``address`` is ``localpart@domain`` as created."""

    id: int
    domain: str
    localpart: str
    password_hash: str
    quota: int  # bytes; 0 means unlimited
    used: int  # bytes currently stored
    role: AccountRole
    enabled: bool
    created: int

    @property
    def address(self) -> str:
        return f"{self.localpart}@{self.domain}"


@dataclass(frozen=True, slots=True)
class Alias:
    """``source`` (``local@domain``, or ``@domain`` for the catch-all) delivers to ``target``."""

    source: str
    target: str


@dataclass(frozen=True, slots=True)
class AddressRecords:
    """What one domain holds for some local-part keys, fetched in one round trip."""

    domain_exists: bool
    aliases: dict[str, list[str]]  # local key -> targets (only keys that have aliases)
    accounts: dict[str, Account]  # local key -> account (only keys that are accounts)


@dataclass(frozen=True, slots=True)
class AppPassword:
    """A second password of an account, for one client (``name``), revocable on its own.

    ``scram`` is the encoded SCRAM-SHA-256 secret, derived with the account's salt (None if it
    could not be made); the plaintext is never stored.
    """

    id: int
    account_id: int
    name: str
    password_hash: str  # argon2id
    scram: str | None
    created: int


@dataclass(frozen=True, slots=True)
class AuthRecords:
    """What authenticating one account needs, fetched in one round trip: the account, the
    encoded SCRAM secret of its main password (None for accounts whose password was set before
    SCRAM was stored) and its app passwords."""

    account: Account
    scram: str | None
    app_passwords: tuple[AppPassword, ...]


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A domain's DKIM signing key. At most one key per algorithm is ``active`` (signs outgoing
    mail); the others are kept for rotation. ``private_key`` is unencrypted PKCS#8 PEM;
    ``public_key`` the DNS record's ``p=`` value (base64)."""

    id: int
    domain: str
    selector: str
    algorithm: DkimKeyAlgorithm
    private_key: str = field(repr=False)
    public_key: str
    created: int
    active: bool


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """A mailbox and the counters IMAP STATUS/SELECT need."""

    id: int
    account_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool
    messages: int
    unseen: int
    size: int
    deleted: int = 0
    first_recent_uid: int = 1  # IMAP4rev1 \Recent: messages from this UID on are new


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message in one mailbox (the bytes are fetched separately by ``blob_id``)."""

    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: int  # Unix seconds
    size: int
    blob_id: int
    subject: str
    from_: str
    to: str
    date: int | None  # the Date header as Unix seconds, when it parses
    message_id: str | None
    structure: bytes  # JSON of mailstead.message.ParsedMessage (envelope + MIME tree)


class FlagOp(enum.Enum):
    """How STORE changes flags (RFC 9051 §6.4.6)."""

    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


class MessageFlags(NamedTuple):
    """A message's UID, MODSEQ and flags: what SELECT, FETCH FLAGS and CONDSTORE need (a
    named tuple: a mailbox of 20,000 messages builds 20,000 of them per SELECT)."""

    uid: int
    modseq: int
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """What a STORE did: the messages it changed, and those UNCHANGEDSINCE protected."""

    changed: tuple[MessageFlags, ...]
    modified: tuple[int, ...]  # UIDs refused by UNCHANGEDSINCE (RFC 7162 §3.1.3)
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class ExpungeResult:
    uids: tuple[int, ...]
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """COPY/MOVE: pairs of (source UID, destination UID) for COPYUID (RFC 4315)."""

    uidvalidity: int
    pairs: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """Everything that happened to a mailbox after a MODSEQ: new or changed messages, expunges."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int
    changed: tuple[MessageFlags, ...]  # UID order; includes messages added since
    vanished: tuple[int, ...]  # expunged UIDs, ascending


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Put the message in ``mailbox`` (a name; INBOX by default) of ``account_id``."""

    account_id: int
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
    """One message for one or more mailboxes, stored once (content-addressed).

    ``envelope`` is what the SMTP transaction said (MAIL FROM, RCPT TO, DSN parameters); it is
    kept with each message row as JSON-able data.
    """

    raw: bytes
    targets: Sequence[DeliveryTarget]
    internal_date: int
    envelope: dict[str, object] = field(default_factory=dict)
    # Refuse the whole request if any target fails quota (SMTP has one reply for DATA).
    all_or_nothing: bool = True


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """Per target (same order as the request): the new UID, or the error that prevented it."""

    uids: tuple[int | None, ...]
    errors: tuple[StoreError | None, ...]

    @property
    def ok(self) -> bool:
        return all(e is None for e in self.errors)


class QueueState(enum.Enum):
    """Where one queued recipient stands (docs/queue.md)."""

    PENDING = "pending"  # not tried yet
    DEFERRED = "deferred"  # tried, failed temporarily; tried again at next_attempt
    DELIVERED = "delivered"  # a remote server took responsibility (2xx)
    FAILED = "failed"  # refused permanently, or expired

    @property
    def active(self) -> bool:
        return self in (QueueState.PENDING, QueueState.DEFERRED)


ReportAction = Literal["failed", "delayed", "delivered", "relayed"]
"""What a delivery status notification owed to the sender says about a recipient
(RFC 3464 §2.3.3)."""


@dataclass(frozen=True, slots=True)
class QueueRecipientRequest:
    """One recipient to queue, with its DSN parameters (RFC 3461 §4.1, §4.2)."""

    address: str
    notify: tuple[str, ...] | None = None  # None: NOTIFY not given
    orcpt: tuple[str, str] | None = None  # (addr-type, address as received, xtext)


@dataclass(frozen=True, slots=True)
class QueueRequest:
    """A message for remote recipients: stored once (a content-addressed blob), one row per
    recipient. ``queue_id`` is the caller's (the SMTP transaction's id, so logs match)."""

    queue_id: str
    raw: bytes
    mail_from: str  # "" for the null sender
    recipients: Sequence[QueueRecipientRequest]
    queued_at: float
    envid: str | None = None
    ret: Literal["FULL", "HDRS"] | None = None
    smtputf8: bool = False
    body: str | None = None
    origin: str = ""
    held: bool = False


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    """One queued recipient and its delivery state."""

    id: int
    address: str
    domain: str
    state: QueueState
    attempts: int
    next_attempt: float
    last_attempt: float | None
    last_error: str | None
    status: str | None
    remote_mta: str | None
    notify: tuple[str, ...] | None
    orcpt: tuple[str, str] | None
    delay_warned: bool
    report: ReportAction | None  # a report owed to the sender, not yet made


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A queued message: its envelope and (some of) its recipients; the content is read with
    ``read_blob(blob_id)``."""

    queue_id: str
    blob_id: int
    size: int
    mail_from: str
    envid: str | None
    ret: Literal["FULL", "HDRS"] | None
    smtputf8: bool
    body: str | None
    origin: str
    queued_at: float
    held: bool
    recipients: tuple[QueueRecipient, ...]


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    """The outcome of one attempt for one recipient, as absolute values (recording it twice
    changes nothing). A recipient already delivered or failed is never changed again.
    ``report`` None keeps a report already owed; a value replaces it."""

    recipient_id: int
    state: QueueState
    attempts: int
    next_attempt: float
    last_attempt: float | None = None
    last_error: str | None = None
    status: str | None = None
    remote_mta: str | None = None
    delay_warned: bool = False
    report: ReportAction | None = None


class Store(Protocol):
    """Storage for the directory and the mailboxes. All methods are coroutines; writes are durable
    (fsync'd, group-committed) when they return."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # -- directory ---------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain: ...
    async def remove_domain(self, name: str) -> None: ...
    async def get_domain(self, name: str) -> Domain | None: ...
    async def list_domains(self) -> list[Domain]: ...

    async def add_account(
        self,
        domain: str,
        localpart: str,
        local_key: str,
        password_hash: str,
        *,
        quota: int = 0,
        role: AccountRole = AccountRole.USER,
        scram: str | None = None,
    ) -> Account: ...
    async def remove_account(self, domain: str, local_key: str) -> None: ...
    async def get_account(self, domain: str, local_key: str) -> Account | None: ...
    async def get_account_by_id(self, account_id: int) -> Account | None: ...
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...
    async def update_account(
        self,
        account_id: int,
        *,
        password_hash: str | None = None,
        quota: int | None = None,
        enabled: bool | None = None,
        role: AccountRole | None = None,
        scram: str | None = None,
    ) -> None: ...
    async def get_auth_records(self, domain: str, local_key: str) -> AuthRecords | None:
        """The account, its SCRAM secret and its app passwords (login time, one read)."""
        ...
    async def add_app_password(
        self, account_id: int, name: str, password_hash: str, scram: str | None
    ) -> AppPassword:
        """ALREADYEXISTS if the account has one of that name, NONEXISTENT without the account."""
        ...
    async def list_app_passwords(self, account_id: int) -> list[AppPassword]: ...
    async def remove_app_password(self, account_id: int, name: str) -> None:
        """NONEXISTENT if the account has none of that name."""
        ...

    async def add_dkim_key(
        self,
        domain: str,
        selector: str,
        algorithm: DkimKeyAlgorithm,
        private_key: str,
        public_key: str,
        *,
        active: bool = True,
    ) -> DkimKey:
        """Store a key under ``selector`` (lower case). With ``active`` it becomes the domain's
        active key of its algorithm, and the one it replaces stays stored, inactive.
        NONEXISTENT without the domain, ALREADYEXISTS if the domain has that selector, INVALID
        for an unknown algorithm."""
        ...
    async def list_dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        """Every key (of ``domain``), by domain, then oldest first."""
        ...
    async def active_dkim_keys(self, domain: str) -> list[DkimKey]:
        """The keys that sign mail from ``domain``: RSA first, then Ed25519 (none for a domain
        that has none or does not exist)."""
        ...
    async def activate_dkim_key(self, domain: str, selector: str) -> DkimKey:
        """Make a stored key the active one of its algorithm (rollback, or a rotation whose
        DNS record went out first). NONEXISTENT without that key."""
        ...
    async def remove_dkim_key(self, domain: str, selector: str) -> DkimKey:
        """Forget a key (an active one too: its algorithm then signs nothing); returns it.
        NONEXISTENT without that key."""
        ...

    async def add_alias(self, domain: str, local_key: str, localpart: str, target: str) -> None: ...
    async def remove_alias(self, domain: str, local_key: str, target: str | None = None) -> int: ...
    async def get_alias_targets(self, domain: str, local_key: str) -> list[str]: ...
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...
    async def lookup_addresses(self, domain: str, local_keys: Sequence[str]) -> AddressRecords:
        """Domain existence, aliases and accounts for ``local_keys`` (RCPT time, one read)."""
        ...

    # -- mailboxes and messages --------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]: ...
    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None: ...
    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo: ...
    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]: ...
    async def get_message(self, mailbox_id: int, uid: int) -> MessageInfo | None: ...
    async def read_blob(self, blob_id: int) -> bytes: ...
    async def read_blobs(self, blob_ids: Sequence[int]) -> dict[int, bytes]:
        """Several messages' bytes in one round trip (missing ids are left out)."""
        ...
    async def read_blob_head(self, blob_id: int, size: int) -> bytes:
        """The first ``size`` octets of a message (its header block, for IMAP), without
        reading and decompressing the rest of a large one."""
        ...
    def stream_blob(self, blob_id: int, piece: int = 256 << 10) -> AsyncGenerator[bytes, None]:
        """A message's bytes in pieces of at most ``piece`` octets, each read (and
        decompressed) when it is asked for, so a large message is never whole in memory.
        `StoreError` NONEXISTENT when the message does not exist, also in the middle when it
        is removed before it has been read to the end; close the iterator (``aclose``) when
        leaving it early."""
        ...
    async def deliver(self, request: DeliveryRequest) -> DeliveryOutcome: ...
    async def check_integrity(self) -> list[str]: ...

    # -- IMAP --------------------------------------------------------------------------------
    feed: ChangeFeed

    async def delete_mailbox(self, account_id: int, name: str) -> None: ...
    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Renames ``old`` and every ``old/...`` below it; INBOX's messages move instead."""
        ...
    async def list_subscriptions(self, account_id: int) -> list[str]: ...
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None: ...
    async def message_index(self, mailbox_id: int) -> list[MessageFlags]: ...
    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageInfo]: ...
    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagUpdate: ...
    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> ExpungeResult:
        """Remove the messages flagged \\Deleted (among ``uids`` when given)."""
        ...
    async def copy_messages(
        self, source_id: int, uids: Sequence[int], target_id: int, *, move: bool = False
    ) -> CopyResult: ...
    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges: ...
    async def index_pending(self, limit: int = 256) -> int:
        """Add up to ``limit`` messages not yet in the full-text index; returns how many."""
        ...
    async def text_candidates(
        self, mailbox_id: int, needle: str, scope: TextScope
    ) -> tuple[set[int], set[int]] | None:
        """UIDs whose indexed text may contain ``needle`` (case-folded substring) and UIDs not
        indexed yet; None when the index cannot answer (fewer than 3 characters)."""
        ...
    async def claim_recent(self, mailbox_id: int, up_to_uid: int, *, claim: bool) -> int:
        """IMAP4rev1 \\Recent (RFC 3501 §2.3.2): the first UID that is recent. With ``claim``,
        the UIDs below ``up_to_uid`` stop being recent for every other session."""
        ...

    # -- outbound queue ----------------------------------------------------------------------
    async def enqueue(
        self, request: QueueRequest, *, local: DeliveryRequest | None = None
    ) -> DeliveryOutcome | None:
        """Queue ``request`` durably. With ``local``, that delivery is made in the same
        transaction (one reply to DATA covers both): when it is refused as a whole
        (``all_or_nothing``), nothing is queued either; its outcome is returned.
        ALREADYEXISTS if the queue id is taken, INVALID without recipients."""
        ...
    async def due_queue_items(self, now: float, limit: int = 1000) -> list[QueueItem]:
        """Messages with recipients due at ``now`` (pending or deferred, ``next_attempt`` past,
        message not held), each with only those recipients; earliest first, at most ``limit``
        recipients in all."""
        ...
    async def next_queue_attempt(self) -> float | None:
        """The earliest ``next_attempt`` of a recipient that can be tried (not held)."""
        ...
    async def record_queue_results(self, updates: Sequence[QueueUpdate]) -> None:
        """Record attempts' outcomes durably; a message whose recipients are all done and owe
        no report is removed (its blob released)."""
        ...
    async def owed_reports(self, limit: int = 100) -> list[QueueItem]:
        """Messages with reports owed to their senders, each with only those recipients."""
        ...
    async def settle_reports(
        self, recipient_ids: Sequence[int], dsn: QueueRequest | None = None
    ) -> None:
        """The reports of ``recipient_ids`` are made: forget them, and queue ``dsn`` (the
        report, for a remote sender) in the same transaction. Finished messages are removed."""
        ...
    async def list_queue(self) -> list[QueueItem]:
        """Every queued message with all its recipients, oldest first."""
        ...
    async def get_queue_item(self, queue_id: str) -> QueueItem | None: ...
    async def hold_queue_item(self, queue_id: str, held: bool) -> None:
        """Hold (no delivery attempts) or release a message; NONEXISTENT without it."""
        ...
    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        """Make the unfinished recipients of one message (or of all: None) due at ``now``;
        returns how many were not due yet. NONEXISTENT for an unknown id."""
        ...
    async def delete_queue_item(self, queue_id: str) -> None:
        """Drop a message without a report; NONEXISTENT without it."""
        ...
