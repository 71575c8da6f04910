"""SEARCH evaluation: a search-key tree (from the protocol core) against the selected mailbox.

Flags, UIDs, sizes and dates come from the session's view and the store's message rows; header
and text keys read the message itself. Text matching is a case-insensitive substring match on
decoded text (RFC 9051 §6.4.4): header fields have their encoded words decoded, bodies their
transfer encoding and charset.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailstead.imap.view import MailboxView
from mailstead.message import ParsedMessage, from_json
from mailstead.message.text import body_text, header_values
from mailstead.protocols.imap import commands as c
from mailstead.store import MessageInfo
from mailstead.store.api import TextScope

# Keys that need the message text (so the search reads the blob).
_TEXT_KEYS = (c.HeaderKey, c.TextKey)


@dataclass(slots=True)
class Candidate:
    """One message under evaluation, its data loaded on demand."""

    seq: int
    uid: int
    info: MessageInfo | None  # loaded only when a key needs it
    raw: bytes | None = None
    parsed: ParsedMessage | None = None
    headers: dict[str, list[str]] | None = None
    body_text: str | None = None
    cache: dict[str, str] = field(default_factory=dict)


# Keys that need the stored message row (size, dates, blob id).
_META_KEYS = (c.SizeKey, c.DateKey, c.AgeKey, c.ObjectIdKey)


def leaves(key: c.SearchKey) -> list[c.SearchKey]:
    """Every leaf key of a search tree."""
    if isinstance(key, c.And):
        return [leaf for k in key.keys for leaf in leaves(k)]
    if isinstance(key, c.Or):
        return leaves(key.a) + leaves(key.b)
    if isinstance(key, c.Not):
        return leaves(key.key)
    return [key]


_FIELD_SCOPES: dict[str, TextScope] = {
    "subject": "SUBJECT", "from": "FROM", "to": "TO", "cc": "CC", "bcc": "BCC"
}  # fmt: skip


def text_scope(key: c.HeaderKey | c.TextKey) -> tuple[TextScope, str]:
    """(index scope, needle) for a text key."""
    if isinstance(key, c.HeaderKey):
        return _FIELD_SCOPES.get(key.field.lower(), "HEADER"), key.value
    return key.scope, key.value


def index_is_exact(key: c.HeaderKey | c.TextKey) -> bool:
    """Whether the index's match for ``key`` is the answer itself, with nothing to verify: a
    field it keeps on its own (values one per line), a needle without line breaks."""
    scope, needle = text_scope(key)
    return scope in _FIELD_SCOPES.values() and "\n" not in needle and "\r" not in needle


def candidates_only(
    key: c.SearchKey, prefilter: dict[c.SearchKey, tuple[set[int], set[int]]]
) -> set[int] | None:
    """UIDs outside which ``key`` cannot match: the index's candidates (found or not indexed
    yet) of the text keys it requires; None when any message may match (e.g. under NOT)."""
    sets = prefilter.get(key)
    if sets is not None:
        return sets[0] | sets[1]
    if isinstance(key, c.And):
        required = [s for k in key.keys if (s := candidates_only(k, prefilter)) is not None]
        return set.intersection(*required) if required else None
    if isinstance(key, c.Or):
        a, b = candidates_only(key.a, prefilter), candidates_only(key.b, prefilter)
        return None if a is None or b is None else a | b
    return None


def needs_rows(key: c.SearchKey) -> bool:
    return any(isinstance(leaf, _META_KEYS) for leaf in leaves(key))


class Searcher:
    """Evaluates keys for one SEARCH command."""

    def __init__(
        self,
        view: MailboxView,
        read_blob: Callable[[int], Awaitable[bytes]],
        saved: list[int] | None,
        now: datetime.datetime,
        prefilter: dict[c.SearchKey, tuple[set[int], set[int]]] | None = None,
        exact: set[c.SearchKey] | None = None,
    ) -> None:
        self.view = view
        self.read_blob = read_blob
        self.saved = set(saved or ())
        self.now = now
        # text key → (UIDs the full-text index says may match, UIDs it has not indexed yet)
        self.prefilter = prefilter or {}
        # keys whose indexed matches need no verification (index_is_exact)
        self.exact = exact or set()

    def _excluded(self, key: c.SearchKey, uid: int) -> bool:
        """The index proves ``key`` cannot match ``uid``."""
        sets = self.prefilter.get(key)
        return sets is not None and uid not in sets[0] and uid not in sets[1]

    async def matches(self, key: c.SearchKey, msg: Candidate) -> bool:
        view = self.view
        if isinstance(key, c.All):
            return True
        if isinstance(key, c.And):
            for sub in key.keys:
                if not await self.matches(sub, msg):
                    return False
            return True
        if isinstance(key, c.Or):
            return await self.matches(key.a, msg) or await self.matches(key.b, msg)
        if isinstance(key, c.Not):
            return not await self.matches(key.key, msg)
        if isinstance(key, c.FlagKey):
            flags = view.flags.get(msg.uid, frozenset())
            if key.flag.upper() == "\\RECENT":
                has = msg.uid in view.recent
            else:
                has = _has_flag(flags, key.flag)
            return has == key.present
        if isinstance(key, c.SeqKey):
            if key.set.saved:
                return msg.uid in self.saved
            return key.set.contains(msg.seq, view.exists)
        if isinstance(key, c.UidKey):
            if key.set.saved:
                return msg.uid in self.saved
            return key.set.contains(msg.uid, view.max_uid)
        if isinstance(key, c.SizeKey):
            assert msg.info is not None
            size = msg.info.size
            return size > key.size if key.relation == "LARGER" else size < key.size
        if isinstance(key, c.DateKey):
            return _date_matches(key, msg)
        if isinstance(key, c.AgeKey):
            assert msg.info is not None
            age = self.now.timestamp() - msg.info.internal_date
            return age > key.seconds if key.relation == "OLDER" else age <= key.seconds
        if isinstance(key, c.ModSeqKey):
            return view.modseqs.get(msg.uid, 0) >= key.modseq
        if isinstance(key, c.ObjectIdKey):
            if key.kind == "EMAILID":
                assert msg.info is not None
                return key.id == email_id(msg.info)
            return False
        if isinstance(key, c.SaveDateSupported):
            return False
        if isinstance(key, c.HeaderKey):
            if key in self.exact:
                found, unindexed = self.prefilter[key]
                if msg.uid not in unindexed:
                    return msg.uid in found
            return not self._excluded(key, msg.uid) and await self._header_matches(key, msg)
        if isinstance(key, c.TextKey):
            return not self._excluded(key, msg.uid) and await self._text_matches(key, msg)
        raise TypeError(f"unknown search key {key!r}")

    async def _load(self, msg: Candidate) -> None:
        assert msg.info is not None
        if msg.raw is None:
            msg.raw = await self.read_blob(msg.info.blob_id)
            msg.parsed = from_json(msg.info.structure)

    async def _header_values(self, msg: Candidate) -> dict[str, list[str]]:
        if msg.headers is None:
            await self._load(msg)
            assert msg.raw is not None
            assert msg.parsed is not None
            msg.headers = header_values(msg.raw, msg.parsed.header_end)
        return msg.headers

    async def _header_matches(self, key: c.HeaderKey, msg: Candidate) -> bool:
        values = (await self._header_values(msg)).get(key.field.lower())
        if values is None:
            return False
        needle = key.value.casefold()
        return any(needle in v for v in values)

    async def _text_matches(self, key: c.TextKey, msg: Candidate) -> bool:
        needle = key.value.casefold()
        if key.scope == "TEXT":
            headers = await self._header_values(msg)
            if any(needle in v for vs in headers.values() for v in vs):
                return True
            await self._load(msg)
            assert msg.raw is not None
            assert msg.parsed is not None
            # TEXT covers attached messages' headers too (they are part of the text)
            inner = body_text(msg.raw, msg.parsed.root, embedded_headers=True).casefold()
            return needle in inner
        if msg.body_text is None:
            await self._load(msg)
            assert msg.raw is not None
            assert msg.parsed is not None
            msg.body_text = body_text(msg.raw, msg.parsed.root).casefold()
        return needle in msg.body_text


def _has_flag(flags: frozenset[str], flag: str) -> bool:
    if flag.startswith("\\"):
        wanted = flag.lower()
        return any(f.lower() == wanted for f in flags)
    wanted = flag.lower()  # keywords are case-insensitive (RFC 9051 §2.3.2)
    return any(f.lower() == wanted for f in flags)


def _date_matches(key: c.DateKey, msg: Candidate) -> bool:
    assert msg.info is not None
    if key.field == "INTERNALDATE":
        day = datetime.datetime.fromtimestamp(msg.info.internal_date, datetime.UTC).date()
    elif key.field == "SENTDATE":
        # The date as written in the Date header, in its own zone; without a usable Date
        # header, 1-Jan-1970 (Dovecot's choice: such messages are "sent" before any date).
        if msg.parsed is None:
            msg.parsed = from_json(msg.info.structure)
        sent = msg.parsed.sent_date
        day = datetime.date(1970, 1, 1) if sent is None else sent.date()
    else:
        return False
    if key.relation == "BEFORE":
        return day < key.date
    if key.relation == "ON":
        return day == key.date
    return day >= key.date


def email_id(info: MessageInfo) -> str:
    """RFC 8474 EMAILID: the same for copies of the same stored content."""
    return f"M{info.blob_id:011x}"
