"""SEARCH evaluation: a search-key tree (from the protocol core) against the selected mailbox.

Flags, UIDs, sizes and dates come from the session's view and the store's message rows; header
and text keys read the message itself. Text matching is a case-insensitive substring match on
decoded text (RFC 9051 §6.4.4): header fields have their encoded words decoded, bodies their
transfer encoding and charset.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import quopri
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailstead.imap.view import MailboxView
from mailstead.message import MimePart, ParsedMessage, from_json, parse_address_list
from mailstead.message.headers import decode_header_value, parse_header_fields
from mailstead.protocols.imap import commands as c
from mailstead.store import MessageInfo

_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc", "sender", "reply-to"})

# Keys that need the message text (so the search reads the blob).
_TEXT_KEYS = (c.HeaderKey, c.TextKey)


@dataclass(slots=True)
class Candidate:
    """One message under evaluation, its data loaded on demand."""

    seq: int
    uid: int
    info: MessageInfo
    raw: bytes | None = None
    parsed: ParsedMessage | None = None
    headers: dict[str, list[str]] | None = None
    body_text: str | None = None
    cache: dict[str, str] = field(default_factory=dict)


def needs_text(key: c.SearchKey) -> bool:
    if isinstance(key, _TEXT_KEYS):
        return True
    if isinstance(key, c.And):
        return any(needs_text(k) for k in key.keys)
    if isinstance(key, c.Or):
        return needs_text(key.a) or needs_text(key.b)
    if isinstance(key, c.Not):
        return needs_text(key.key)
    return False


class Searcher:
    """Evaluates keys for one SEARCH command."""

    def __init__(
        self,
        view: MailboxView,
        read_blob: Callable[[int], Awaitable[bytes]],
        saved: list[int] | None,
        now: datetime.datetime,
    ) -> None:
        self.view = view
        self.read_blob = read_blob
        self.saved = set(saved or ())
        self.now = now

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
            size = msg.info.size
            return size > key.size if key.relation == "LARGER" else size < key.size
        if isinstance(key, c.DateKey):
            return _date_matches(key, msg)
        if isinstance(key, c.AgeKey):
            age = self.now.timestamp() - msg.info.internal_date
            return age > key.seconds if key.relation == "OLDER" else age <= key.seconds
        if isinstance(key, c.ModSeqKey):
            return view.modseqs.get(msg.uid, 0) >= key.modseq
        if isinstance(key, c.ObjectIdKey):
            if key.kind == "EMAILID":
                return key.id == email_id(msg.info)
            return False
        if isinstance(key, c.SaveDateSupported):
            return False
        if isinstance(key, c.HeaderKey):
            return await self._header_matches(key, msg)
        if isinstance(key, c.TextKey):
            return await self._text_matches(key, msg)
        raise TypeError(f"unknown search key {key!r}")

    async def _load(self, msg: Candidate) -> None:
        if msg.raw is None:
            msg.raw = await self.read_blob(msg.info.blob_id)
            msg.parsed = from_json(msg.info.structure)

    async def _header_values(self, msg: Candidate) -> dict[str, list[str]]:
        if msg.headers is None:
            await self._load(msg)
            assert msg.raw is not None
            assert msg.parsed is not None
            headers: dict[str, list[str]] = {}
            for f in parse_header_fields(msg.raw, 0, msg.parsed.header_end):
                name = f.name.lower()
                values = headers.setdefault(name, [])
                values.append(decode_header_value(f.value).casefold())
                if name in _ADDRESS_FIELDS:
                    # match addresses as written once comments and routes are gone
                    for address in parse_address_list(f.value):
                        if address.local and address.domain:
                            values.append(f"{address.local}@{address.domain}".casefold())
                        if address.name:
                            values.append(address.name.casefold())
            msg.headers = headers
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
    if key.field == "INTERNALDATE":
        day = datetime.datetime.fromtimestamp(msg.info.internal_date, datetime.UTC).date()
    elif key.field == "SENTDATE":
        # The date as written in the Date header, in its own zone; without a usable Date
        # header, the internal date (as Dovecot does).
        if msg.parsed is None:
            msg.parsed = from_json(msg.info.structure)
        sent = msg.parsed.date
        if sent is None:
            day = datetime.datetime.fromtimestamp(msg.info.internal_date, datetime.UTC).date()
        else:
            day = sent.date()
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


def body_text(raw: bytes, root: MimePart) -> str:
    """The decoded text of every text part (and the raw text of parts that claim none)."""
    pieces: list[str] = []
    for part in root.walk():
        if part.children:
            continue
        if part.message is not None:
            pieces.append(body_text(raw, part.message.root))
            continue
        if part.type.lower() not in ("text", "message"):
            continue
        data = raw[part.body_start : part.body_end]
        encoding = part.encoding.lower()
        try:
            if encoding == "base64":
                data = base64.b64decode(b"".join(data.split()), validate=False)
            elif encoding == "quoted-printable":
                data = quopri.decodestring(data)
        except (binascii.Error, ValueError):
            pass
        charset = part.param("charset") or "utf-8"
        try:
            pieces.append(data.decode(charset, errors="replace"))
        except LookupError:
            pieces.append(data.decode("utf-8", errors="replace"))
    return "\n".join(pieces)
