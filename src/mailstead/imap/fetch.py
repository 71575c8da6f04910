"""FETCH: the data items of RFC 9051 §6.4.5 for a list of messages of the selected mailbox."""

from __future__ import annotations

import datetime
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, overload

from mailstead.imap import render, sections
from mailstead.imap.search import email_id
from mailstead.imap.view import MailboxView
from mailstead.message import ParsedMessage, from_json
from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import response as r
from mailstead.security.memory import MemoryBudget
from mailstead.store import FlagOp, MessageInfo, Store, StoreError

BATCH = 256  # messages read from the store per query
MAX_CACHED_ANSWER = 4 << 20  # bytes of a bulk FETCH answer kept for the next identical one
LARGE_MESSAGE = 1 << 20  # messages from this size on are read one at a time and streamed
MEMORY_WAIT = 120.0  # seconds a large message waits for the memory budget before NO [LIMIT]

# RFC 9051 §6.4.5: the RFC822 items are BODY sections under another name.
_RFC822 = {
    "RFC822": sections.Section(),
    "RFC822.HEADER": sections.Section(kind="HEADER"),
    "RFC822.TEXT": sections.Section(kind="TEXT"),
}

_NO_FLAGS: frozenset[str] = frozenset()

# Items answered from the session's view alone, without reading the store.
_VIEW_ONLY = frozenset({"UID", "FLAGS", "MODSEQ"})


def internal_date(timestamp: int) -> bytes:
    """``"23-Nov-2026 10:00:00 +0000"`` (RFC 9051 date-time, UTC)."""
    when = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return b'"' + when.strftime("%d-%b-%Y %H:%M:%S +0000").encode() + b'"'


def _sets_seen(item: c.FetchItem) -> bool:
    if isinstance(item, c.BodySection):
        return not item.peek
    return isinstance(item, c.FetchAtt) and item.name in ("RFC822", "RFC822.TEXT")


def _needs_raw(item: c.FetchItem) -> bool:
    if isinstance(item, c.BodySection | c.BinarySize):
        return True
    return isinstance(item, c.FetchAtt) and item.name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT")


def _header_only(item: c.FetchItem) -> bool:
    """Whether the item needs no more of the message than its top-level header block."""
    if isinstance(item, c.BodySection):
        return not item.binary and sections.is_header_only(_section(item.section))
    return isinstance(item, c.FetchAtt) and item.name in ("UID", "FLAGS", "MODSEQ", "RFC822.HEADER")


class HeaderCache:
    """Top-level header blocks of recently fetched messages, shared by the sessions of one
    process, as Dovecot's cache file keeps the header fields clients ask for: a client that
    lists the newest messages again is answered without reading and decompressing them. A
    stored message never changes, so entries never go stale; bounded in bytes (LRU)."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._blocks: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()

    def get(self, key: tuple[int, int, int]) -> bytes | None:
        block = self._blocks.get(key)
        if block is not None:
            self._blocks.move_to_end(key)
        return block

    def put(self, key: tuple[int, int, int], block: bytes) -> None:
        if len(block) > self.max_bytes // 64 or key in self._blocks:
            return
        self._blocks[key] = block
        self.size += len(block)
        while self.size > self.max_bytes:
            _, old = self._blocks.popitem(last=False)
            self.size -= len(old)


class Fetcher:
    """Answers one FETCH command."""

    def __init__(
        self,
        store: Store,
        view: MailboxView,
        *,
        utf8: bool,
        headers: HeaderCache | None = None,
        flush: Callable[[], Awaitable[None]] | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self.store = store
        self.view = view
        self.utf8 = utf8
        self.headers = headers
        # writes what was sent so far to the client (waiting while it does not read): with it,
        # the big literals of large messages are sent in pieces instead of whole
        self.flush = flush
        self.memory = memory

    async def fetch(
        self, uids: Sequence[int], items: Sequence[c.FetchItem], send: Callable[[bytes], None]
    ) -> tuple[str, str] | None:
        """Send one untagged FETCH per message; a (code, text) failure stops the command."""
        view = self.view
        wants_seen = not view.read_only and any(_sets_seen(i) for i in items)
        implicit_flags = wants_seen and not any(
            isinstance(i, c.FetchAtt) and i.name == "FLAGS" for i in items
        )
        if wants_seen:
            unseen = [u for u in uids if "\\Seen" not in view.flags.get(u, frozenset())]
            if unseen:
                update = await self.store.store_flags(
                    view.mailbox_id, unseen, FlagOp.ADD, frozenset({"\\Seen"})
                )
                for message in update.changed:
                    view.set_flags(message)
        view_only = all(isinstance(i, c.FetchAtt) and i.name in _VIEW_ONLY for i in items)
        if view_only:
            self._from_view(uids, [i.name for i in items if isinstance(i, c.FetchAtt)], send)
            return None
        if self.headers is not None and not implicit_flags and all(map(_header_only, items)):
            await self._from_headers(self.headers, uids, items, send)
            return None
        needs_raw = any(_needs_raw(i) for i in items)
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            infos = {m.uid: m for m in await self.store.get_messages(view.mailbox_id, chunk)}
            blobs: dict[int, bytes] = {}
            large = self.flush is not None and needs_raw
            if needs_raw:  # one round trip for the chunk, not one per message
                wanted = [m.blob_id for m in infos.values() if not large or not _is_large(m)]
                blobs = await self.store.read_blobs(wanted) if wanted else {}
            for uid in chunk:
                seq = view.seq_of(uid)
                if seq is None:
                    continue
                info = infos.get(uid)
                if info is None:
                    continue  # expunged meanwhile by another session
                if large and _is_large(info):
                    failure = await self._large(seq, uid, info, items, implicit_flags, send)
                    if failure is not None:
                        return failure
                    continue
                raw = blobs.get(info.blob_id) if needs_raw else None
                if needs_raw and raw is None:
                    continue
                parts, failure = self._message(uid, info, raw, items)
                if failure is not None:
                    return failure
                if implicit_flags:
                    parts += [b"FLAGS", r.flag_list(view.display_flags(uid))]
                send(r.untagged(seq, "FETCH", r.plist(parts)))
        return None

    async def _large(
        self,
        seq: int,
        uid: int,
        info: MessageInfo,
        items: Sequence[c.FetchItem],
        implicit_flags: bool,
        send: Callable[[bytes], None],
    ) -> tuple[str, str] | None:
        """One large message: read alone (within the server's memory budget) and answered with
        its big literals sent in pieces, each written before the next is made."""
        flush = self.flush
        assert flush is not None
        charge = 0
        if self.memory is not None:
            got = await self.memory.acquire(info.size, MEMORY_WAIT)
            if got is None:
                return "LIMIT", "Too many large messages in flight, try again later"
            charge = got
        try:
            try:
                raw = await self.store.read_blob(info.blob_id)
            except StoreError:
                return None  # expunged meanwhile by another session
            parts, failure = self._message(uid, info, raw, items, stream=True)
            if failure is not None:
                return failure
            if implicit_flags:
                parts += [b"FLAGS", r.flag_list(self.view.display_flags(uid))]
            # r.untagged(seq, "FETCH", r.plist(parts)), with streamed items sent piece by piece
            pending = [b"* %d FETCH (" % seq]
            for i, part in enumerate(parts):
                if i:
                    pending.append(b" ")
                if isinstance(part, sections.Streamed):
                    pending.append(part.head)
                    send(b"".join(pending))
                    pending = []
                    for piece in part.pieces():
                        send(piece)
                        await flush()
                else:
                    pending.append(part)
            pending.append(b")\r\n")
            send(b"".join(pending))
            del raw
            await flush()
        except sections.BinaryError as exc:
            return exc.code, exc.text
        finally:
            if self.memory is not None:
                self.memory.release(charge)
        return None

    def _from_view(
        self, uids: Sequence[int], names: Sequence[str], send: Callable[[bytes], None]
    ) -> None:
        """UID/FLAGS/MODSEQ straight from the view, a bulk path for ``FETCH 1:* (FLAGS)``: each
        distinct flag set is formatted once, the lines are made column by column and sent as
        one piece. The answer is remembered until the view changes: clients that poll
        ``FETCH 1:* (FLAGS)`` on an unchanged mailbox get it again without the work."""
        view = self.view
        key = (tuple(names), len(uids), uids[0] if uids else 0, uids[-1] if uids else 0)
        cache = view.answer_cache()
        cached = cache.get(key)
        if cached is not None:
            send(cached)
            return
        in_view = view.uids
        if len(uids) == len(in_view):  # uids is a subset of the view: then it is the view
            seqs: Sequence[int] = range(1, len(in_view) + 1)
            wanted: Sequence[int] = in_view
        else:
            pairs = [(seq, uid) for uid in uids if (seq := view.seq_of(uid))]
            seqs, wanted = [p[0] for p in pairs], [p[1] for p in pairs]
        flags_of, recent = view.flags, view.recent
        columns: list[Sequence[int] | list[bytes] | list[int]] = [seqs]
        for name in names:
            if name == "UID":
                columns.append(wanted)
            elif name == "FLAGS":
                text = {fs: r.flag_list(sorted(fs)) for fs in set(flags_of.values())}
                text[_NO_FLAGS] = r.flag_list([])
                column = [text[flags_of.get(u, _NO_FLAGS)] for u in wanted]
                if recent:
                    for i, uid in enumerate(wanted):
                        if uid in recent:
                            column[i] = r.flag_list(view.display_flags(uid))
                columns.append(column)
            else:
                modseqs = view.modseqs
                columns.append([modseqs.get(u, 0) for u in wanted])
        pieces = {"UID": b"UID %d", "FLAGS": b"FLAGS %b", "MODSEQ": b"MODSEQ (%d)"}
        template = b"* %d FETCH (" + b" ".join(pieces[n] for n in names) + b")\r\n"
        data = b"".join([template % values for values in zip(*columns, strict=True)])
        if len(data) <= MAX_CACHED_ANSWER:
            cache.clear()  # one answer per view state is enough for the polling it serves
            cache[key] = data
        send(data)

    async def _from_headers(
        self,
        cache: HeaderCache,
        uids: Sequence[int],
        items: Sequence[c.FetchItem],
        send: Callable[[bytes], None],
    ) -> None:
        """Header sections (and UID/FLAGS/MODSEQ) from header blocks: cached ones without a
        store round trip, the others read once and kept."""
        view = self.view
        # what to do per message, worked out once: (kind, section, partial, item name)
        plan: list[tuple[str, sections.Section | None, sections.Partial | None, bytes]] = []
        for item in items:
            if isinstance(item, c.BodySection):
                section, partial = _section(item.section), _partial(item)
                plan.append(("section", section, partial, sections.item_name(section, partial)))
            else:
                assert isinstance(item, c.FetchAtt)
                plan.append((item.name, None, None, b""))
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            box, validity = view.mailbox_id, view.uidvalidity
            blocks = {u: b for u in chunk if (b := cache.get((box, validity, u)))}
            missing = [u for u in chunk if u not in blocks]
            if missing:
                infos = await self.store.get_messages(view.mailbox_id, missing)
                small = [m.blob_id for m in infos if not _is_large(m)]
                raws = await self.store.read_blobs(small) if small else {}
                for info in infos:
                    header_end = from_json(info.structure).header_end
                    if _is_large(info):  # alone, and only its header
                        try:
                            raw = await self.store.read_blob_head(info.blob_id, header_end)
                        except StoreError:
                            continue  # expunged meanwhile
                    else:
                        found_raw = raws.get(info.blob_id)
                        if found_raw is None:
                            continue
                        raw = found_raw
                    block = raw[:header_end]
                    blocks[info.uid] = block
                    cache.put((box, validity, info.uid), block)
            for uid in chunk:
                seq = view.seq_of(uid)
                found = blocks.get(uid)
                if seq is None or found is None:
                    continue  # expunged meanwhile by another session
                block = found
                parts: list[bytes] = []
                for kind, wanted, window, name in plan:
                    if kind == "section":
                        assert wanted is not None
                        data = sections.header_section(block, wanted, window)
                        parts.append(name + b" {%d}\r\n" % len(data) + data)
                    elif kind == "RFC822.HEADER":
                        data = sections.header_section(block, _RFC822["RFC822.HEADER"])
                        parts += [b"RFC822.HEADER", r.literal(data)]
                    elif kind == "UID":
                        parts.append(b"UID %d" % uid)
                    elif kind == "FLAGS":
                        parts += [b"FLAGS", r.flag_list(view.display_flags(uid))]
                    else:
                        parts.append(b"MODSEQ (%d)" % view.modseqs.get(uid, 0))
                send(b"* %d FETCH (%b)\r\n" % (seq, b" ".join(parts)))

    @overload
    def _message(
        self,
        uid: int,
        info: MessageInfo | None,
        raw: bytes | None,
        items: Sequence[c.FetchItem],
    ) -> tuple[list[bytes], tuple[str, str] | None]: ...

    @overload
    def _message(
        self,
        uid: int,
        info: MessageInfo | None,
        raw: bytes | None,
        items: Sequence[c.FetchItem],
        *,
        stream: bool,
    ) -> tuple[list[bytes | sections.Streamed], tuple[str, str] | None]: ...

    def _message(
        self,
        uid: int,
        info: MessageInfo | None,
        raw: bytes | None,
        items: Sequence[c.FetchItem],
        *,
        stream: bool = False,
    ) -> tuple[list[Any], tuple[str, str] | None]:
        """The FETCH items of one message; with ``stream``, BODY[...] and BINARY[n] items that
        are big slices or decodings of the message come as :class:`sections.Streamed`."""
        view = self.view
        parts: list[Any] = []
        parsed: ParsedMessage | None = None
        for item in items:
            if isinstance(item, c.FetchAtt):
                name = item.name
                if name == "UID":
                    parts += [b"UID", str(uid).encode()]
                elif name == "FLAGS":
                    parts += [b"FLAGS", r.flag_list(view.display_flags(uid))]
                elif name == "MODSEQ":
                    parts += [b"MODSEQ", r.plist([str(view.modseqs.get(uid, 0)).encode()])]
                else:
                    assert info is not None
                    if parsed is None and name in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
                        parsed = from_json(info.structure)
                    if name == "INTERNALDATE":
                        parts += [b"INTERNALDATE", internal_date(info.internal_date)]
                    elif name == "RFC822.SIZE":
                        parts += [b"RFC822.SIZE", str(info.size).encode()]
                    elif name == "ENVELOPE":
                        assert parsed is not None
                        parts += [b"ENVELOPE", render.envelope(parsed)]
                    elif name == "BODYSTRUCTURE":
                        assert parsed is not None
                        parts += [b"BODYSTRUCTURE", render.bodystructure(parsed.root, True)]
                    elif name == "BODY":
                        assert parsed is not None
                        parts += [b"BODY", render.bodystructure(parsed.root, False)]
                    elif name == "EMAILID":
                        parts += [b"EMAILID", r.plist([email_id(info)])]
                    elif name == "THREADID":
                        parts += [b"THREADID", b"NIL"]
                    elif name == "SAVEDATE":
                        parts += [b"SAVEDATE", b"NIL"]
                    elif name in _RFC822:
                        assert raw is not None
                        if parsed is None:
                            parsed = from_json(info.structure)
                        data = sections.body_section(raw, parsed, _RFC822[name])
                        parts += [name.encode(), r.literal(data)]
                continue
            assert info is not None
            assert raw is not None
            if parsed is None:
                parsed = from_json(info.structure)
            try:
                streamed: sections.Streamed | None = None
                if isinstance(item, c.BinarySize):
                    parts.append(sections.binary_size_item(raw, parsed, item.part))
                elif item.binary:
                    if stream:
                        streamed = sections.binary_item_streamed(
                            raw, parsed, item.section.part, _partial(item)
                        )
                    parts.append(
                        streamed
                        or sections.binary_item(raw, parsed, item.section.part, _partial(item))
                    )
                else:
                    section = _section(item.section)
                    if stream:
                        streamed = sections.body_item_streamed(raw, parsed, section, _partial(item))
                    parts.append(
                        streamed or sections.body_item(raw, parsed, section, _partial(item))
                    )
            except sections.BinaryError as exc:
                return parts, (exc.code, exc.text)
        return parts, None


def _is_large(info: MessageInfo) -> bool:
    return info.size >= LARGE_MESSAGE


def _section(spec: c.Section) -> sections.Section:
    return sections.Section(spec.part, spec.text or "", spec.fields, spec.quoted)


def _partial(item: c.BodySection) -> sections.Partial | None:
    if item.partial is None:
        return None
    return sections.Partial(*item.partial)
