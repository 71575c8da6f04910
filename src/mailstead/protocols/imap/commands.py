"""Typed IMAP commands: one frozen dataclass per command, every argument parsed and validated.

`grammar.parse_command` builds these; the session logic dispatches on their type. The tag is not
part of a command (it travels in `events.CommandReceived`). Strings are Unicode: mailbox names are
already decoded from modified UTF-7 (or taken as UTF-8 once UTF8=ACCEPT is enabled) and INBOX, in
any case, is spelt ``"INBOX"``. Flags keep their spelling, system flags capitalised (``\\Seen``).

Shared values: `SequenceSet` (with ``*`` as `STAR` and ``$`` as ``saved``), `Section` (a body
section), the FETCH items (`FetchAtt`, `BodySection`, `BinarySize`) and the SEARCH key tree
(`And`, `Or`, `Not` over leaf keys).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal

__all__ = [
    "STAR",
    "AgeKey",
    "All",
    "And",
    "Append",
    "AppendMessage",
    "Authenticate",
    "BinarySize",
    "BodySection",
    "CancelUpdate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Compress",
    "Copy",
    "Create",
    "DateKey",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAtt",
    "FetchItem",
    "FlagKey",
    "GetQuota",
    "GetQuotaRoot",
    "HeaderKey",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "ModSeqKey",
    "Move",
    "Namespace",
    "Noop",
    "Not",
    "ObjectIdKey",
    "Or",
    "QResync",
    "Rename",
    "SaveDateSupported",
    "Search",
    "SearchKey",
    "SearchReturn",
    "Section",
    "Select",
    "SeqKey",
    "SequenceSet",
    "SetQuota",
    "SizeKey",
    "Sort",
    "SortKey",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "TextKey",
    "Thread",
    "UidExpunge",
    "UidKey",
    "Unselect",
    "Unsubscribe",
]

STAR: Final = 0
"""``*`` in a sequence set: the largest number in use (message count or highest UID)."""


# --- shared values --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A sequence set as sent (RFC 9051 §9 ``sequence-set``), or ``$`` (RFC 5182 SEARCHRES).

    ``ranges`` are (first, last) pairs in the client's order; a single number is ``(n, n)``, either
    end may be `STAR` and a range may be written backwards (``4:2``). Resolve against the
    mailbox with `resolve`, which normalises both.
    """

    ranges: tuple[tuple[int, int], ...]
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """(low, high) pairs with ``*`` replaced by ``largest`` and each pair ordered.

        Not merged and not clipped: seq-numbers beyond ``largest`` are the caller's to refuse.
        ``$`` cannot be resolved here (the session holds the saved result).
        """
        if self.saved:
            raise ValueError("'$' refers to the saved search result; resolve it in the session")
        out: list[tuple[int, int]] = []
        for a, b in self.ranges:
            a = largest if a == STAR else a
            b = largest if b == STAR else b
            out.append((a, b) if a <= b else (b, a))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.resolve(largest))

    def iter(self, largest: int) -> Iterator[int]:
        """Every number in the set up to ``largest``, ascending, once each."""
        spans = sorted(self.resolve(largest))
        nxt = 1
        for lo, hi in spans:
            lo = max(lo, nxt)
            hi = min(hi, largest)
            if lo <= hi:
                yield from range(lo, hi + 1)
                nxt = hi + 1


SectionText = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]


@dataclass(frozen=True, slots=True)
class Section:
    """A body section (RFC 9051 §6.4.5): ``part`` numbers (``1.2.3`` → (1, 2, 3)), then an optional
    ``text`` specifier; ``fields`` are the header names of HEADER.FIELDS[.NOT], as sent."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()
    # which field names were sent quoted (or as literals), to echo them the same way; it does
    # not change what the section means
    quoted: tuple[bool, ...] = field(default=(), compare=False)

    def spec(self) -> bytes:
        """The section-spec as the client would write it: ``1.2.HEADER.FIELDS (FROM TO)``."""
        parts = [str(p) for p in self.part]
        if self.text is not None:
            parts.append(self.text)
        out = ".".join(parts)
        if self.fields:
            out += " (" + " ".join(self.fields) + ")"
        return out.encode("ascii")


FetchAttName = Literal[
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
    "RFC822.SIZE",
    "UID",
    "BODY",
    "BODYSTRUCTURE",
    "MODSEQ",
    "EMAILID",
    "THREADID",
    "SAVEDATE",
]


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """A FETCH item without arguments. ``BODY`` is the non-extensible BODYSTRUCTURE. RFC822 is
    BODY[] that sets \\Seen but is answered as ``RFC822``; RFC822.HEADER is BODY.PEEK[HEADER];
    RFC822.TEXT is BODY[TEXT]."""

    name: FetchAttName


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<partial>``, ``BODY.PEEK[...]``, ``BINARY[...]``, ``BINARY.PEEK[...]``.

    ``partial`` is (origin, count). BINARY sections have only part numbers (RFC 3516 §4.1).
    """

    section: Section
    peek: bool = False
    partial: tuple[int, int] | None = None
    binary: bool = False


@dataclass(frozen=True, slots=True)
class BinarySize:
    """``BINARY.SIZE[part]`` (RFC 3516)."""

    part: tuple[int, ...]


FetchItem = FetchAtt | BodySection | BinarySize


# --- SEARCH keys ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class All:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class And:
    """All keys match (a search-key list, or a parenthesised list)."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class Or:
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class FlagKey:
    """ANSWERED/UNANSWERED, DELETED, DRAFT, FLAGGED, SEEN, RECENT (rev1), KEYWORD/UNKEYWORD.

    ``present`` is False for the UN- forms. NEW is And(RECENT, UNSEEN); OLD is NOT RECENT."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """HEADER field value; FROM/TO/CC/BCC/SUBJECT are HEADER with that field name."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """BODY (the text body) or TEXT (header and body) contains ``value``."""

    scope: Literal["BODY", "TEXT"]
    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date), SENTBEFORE/SENTON/SENTSINCE (Date: header),
    SAVEDBEFORE/SAVEDON/SAVEDSINCE (RFC 8514 save date). Dates carry no time zone."""

    field: Literal["INTERNALDATE", "SENTDATE", "SAVEDATE"]
    relation: Literal["BEFORE", "ON", "SINCE"]
    date: datetime.date


@dataclass(frozen=True, slots=True)
class AgeKey:
    """OLDER/YOUNGER seconds (RFC 5032 WITHIN), against the internal date."""

    relation: Literal["OLDER", "YOUNGER"]
    seconds: int


@dataclass(frozen=True, slots=True)
class SizeKey:
    relation: Literal["LARGER", "SMALLER"]
    size: int


@dataclass(frozen=True, slots=True)
class SeqKey:
    """A bare sequence set: messages with those sequence numbers."""

    set: SequenceSet


@dataclass(frozen=True, slots=True)
class UidKey:
    set: SequenceSet


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ [entry-name entry-type] modseq (RFC 7162 §3.1.5): mod-sequence ≥ ``modseq``."""

    modseq: int
    entry: str | None = None
    entry_type: Literal["priv", "shared", "all"] | None = None


@dataclass(frozen=True, slots=True)
class SaveDateSupported:
    """SAVEDATESUPPORTED (RFC 8514)."""


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """EMAILID / THREADID objectid (RFC 8474 §5)."""

    kind: Literal["EMAILID", "THREADID"]
    id: str


SearchKey = (
    All
    | And
    | Or
    | Not
    | FlagKey
    | HeaderKey
    | TextKey
    | DateKey
    | AgeKey
    | SizeKey
    | SeqKey
    | UidKey
    | ModSeqKey
    | SaveDateSupported
    | ObjectIdKey
)


@dataclass(frozen=True, slots=True)
class SearchReturn:
    """ESEARCH RETURN options (RFC 4731, RFC 9051 §6.4.4): a subset of MIN MAX ALL COUNT SAVE
    UPDATE (RFC 5267 §4.1),
    and PARTIAL (RFC 9394) as a (first, last) range: ``1:100`` → (1, 100); ``-1:-100`` (the last
    hundred, counting from the end) → (-1, -100); either way ``abs(first) <= abs(last)``.
    ``RETURN ()`` means ALL (RFC 4731 §3.1), so ``options`` is never empty without a partial."""

    options: frozenset[str]
    partial: tuple[int, int] | None = None


SortKeyName = Literal[
    "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"
]


@dataclass(frozen=True, slots=True)
class SortKey:
    """A SORT criterion (RFC 5256 §3; DISPLAYFROM/DISPLAYTO RFC 5957)."""

    key: SortKeyName
    reverse: bool = False


# --- commands -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command. ``NAME`` is the command word (also the state table's key)."""

    NAME: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """``mechanism`` upper-cased; ``initial_response`` is the SASL-IR base64 text as sent, ``"="``
    for an empty response (RFC 4959 §3), None when absent. Decoding is the SASL layer's job."""

    NAME: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: str | None = None


@dataclass(frozen=True, slots=True)
class Login(Command):
    """Credentials as UTF-8; octets that are not UTF-8 are U+FFFD (no account has such a
    name, and passwords are stored as Unicode)."""

    NAME: ClassVar[str] = "LOGIN"
    username: str
    password: str

    def __repr__(self) -> str:  # never log a password
        return f"Login(username={self.username!r}, password=<redacted>)"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """Capability names, upper-cased (RFC 5161)."""

    NAME: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QResync:
    """``(QRESYNC (uidvalidity modseq [known-uids [(seq-match-data)]]))`` (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    NAME: ClassVar[str] = "SELECT"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Examine(Command):
    NAME: ClassVar[str] = "EXAMINE"
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create(Command):
    """``special_use`` from ``(USE (\\Sent ...))`` (RFC 6154 §3)."""

    NAME: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete(Command):
    NAME: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    NAME: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    NAME: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    NAME: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, basic or extended (RFC 5258; RFC 9051 §6.3.9).

    ``selection``: subset of SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE. ``returns``: subset of
    SUBSCRIBED CHILDREN SPECIAL-USE STATUS MYRIGHTS; ``status_items`` are the STATUS items of
    RETURN (STATUS (...)) (RFC 5819), None when not asked. ``extended`` is True when a selection
    option, a pattern list or RETURN was used (then the response follows LIST-EXTENDED rules).
    """

    NAME: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    NAME: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """``items`` upper-cased, in the client's order, no duplicates."""

    NAME: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND. ``binary`` when sent as literal8 (``~{n}``, RFC 3516 §4.4);
    ``utf8`` when wrapped as ``UTF8 (~{n})`` (RFC 6855 §4)."""

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime.datetime | None = None
    binary: bool = False
    utf8: bool = False

    def __repr__(self) -> str:
        return (
            f"AppendMessage(<{len(self.data)} octets>, flags={self.flags!r}, "
            f"internal_date={self.internal_date!r}, binary={self.binary}, utf8={self.utf8})"
        )


@dataclass(frozen=True, slots=True)
class Append(Command):
    """APPEND; more than one message is MULTIAPPEND (RFC 3502)."""

    NAME: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Check(Command):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """CANCELUPDATE (RFC 5267 §4.2): stop updating the named search contexts."""

    NAME: ClassVar[str] = "CANCELUPDATE"
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    NAME: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    NAME: ClassVar[str] = "EXPUNGE"
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH / UID SEARCH. ``charset`` upper-cased (only US-ASCII and UTF-8 get here; others are
    refused with NO [BADCHARSET]); ``returns`` None for a plain SEARCH response, else ESEARCH."""

    NAME: ClassVar[str] = "SEARCH"
    criteria: SearchKey
    charset: str | None = None
    returns: SearchReturn | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH / UID FETCH. Macros are expanded (``macro`` remembers which); UID FETCH adds no UID
    item here, the session answers with UID anyway (RFC 9051 §6.4.9). ``changedsince`` and
    ``vanished`` are the RFC 7162 modifiers."""

    NAME: ClassVar[str] = "FETCH"
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool = False
    changedsince: int | None = None
    vanished: bool = False
    macro: Literal["ALL", "FAST", "FULL"] | None = None


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE / UID STORE: ``action`` "+" adds, "-" removes, "" replaces (RFC 9051 §6.4.6)."""

    NAME: ClassVar[str] = "STORE"
    sequence: SequenceSet
    action: Literal["", "+", "-"]
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(Command):
    NAME: ClassVar[str] = "COPY"
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    NAME: ClassVar[str] = "MOVE"
    sequence: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT (RFC 5256), with ESORT RETURN options (RFC 5267)."""

    NAME: ClassVar[str] = "SORT"
    criteria: tuple[SortKey, ...]
    charset: str
    search: SearchKey
    returns: SearchReturn | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD (RFC 5256): ``algorithm`` ORDEREDSUBJECT, REFERENCES (or REFS), upper-cased."""

    NAME: ClassVar[str] = "THREAD"
    algorithm: str
    charset: str
    search: SearchKey
    uid: bool = False


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    NAME: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    NAME: ClassVar[str] = "GETQUOTAROOT"
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    """``limits``: (resource name upper-cased, limit) pairs (RFC 9208 §4.1.3)."""

    NAME: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Compress(Command):
    """COMPRESS mechanism, upper-cased (RFC 4978: DEFLATE)."""

    NAME: ClassVar[str] = "COMPRESS"
    mechanism: str


@dataclass(frozen=True, slots=True)
class Id(Command):
    """ID (RFC 2971): field/value pairs, None for ``ID NIL``."""

    NAME: ClassVar[str] = "ID"
    fields: tuple[tuple[str, str | None], ...] | None
