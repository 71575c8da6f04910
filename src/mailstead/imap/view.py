"""A session's view of its selected mailbox: sequence numbers, flags, and what it has not yet
been told.

IMAP sequence numbers are per session: they change only when the session is told of an expunge
(RFC 9051 §7.5.1). The view keeps the UIDs in order and learns about other sessions' changes from
the store (``changes_since`` the MODSEQ it last saw), turning them into untagged EXISTS, EXPUNGE
(or VANISHED) and FETCH FLAGS responses when the protocol allows them to be sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailstead.store import MailboxChanges, MailboxInfo, MessageFlags


@dataclass(slots=True)
class Updates:
    """Untagged news for the client, computed by :meth:`MailboxView.apply`."""

    expunged_seqs: list[int] = field(default_factory=list)  # in the order to send them
    vanished_uids: list[int] = field(default_factory=list)
    exists: int | None = None
    new_uids: list[int] = field(default_factory=list)
    flag_changes: list[tuple[int, MessageFlags]] = field(default_factory=list)  # (seq, message)


@dataclass(frozen=True, slots=True)
class ViewSeed:
    """A mailbox's messages as of one MODSEQ, from which views are built by copying.

    Never changed once made (views copy its containers), so sessions can share it."""

    uidvalidity: int
    highestmodseq: int
    uids: list[int]
    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]
    keywords: frozenset[str]
    first_unseen: int | None  # sequence number of the first message without \\Seen
    # bulk FETCH answers for views still equal to the seed (see MailboxView.answer_cache)
    rendered: dict[tuple[object, ...], bytes] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, info: MailboxInfo, messages: Iterable[MessageFlags]) -> ViewSeed:
        uids: list[int] = []
        flags: dict[int, frozenset[str]] = {}
        modseqs: dict[int, int] = {}
        for message in messages:
            uids.append(message.uid)
            flags[message.uid] = message.flags
            modseqs[message.uid] = message.modseq
        distinct = set(flags.values())
        keywords = frozenset(f for fl in distinct for f in fl if f[:1] != "\\")
        unseen = {fl for fl in distinct if "\\Seen" not in fl}
        first_unseen = next((i for i, u in enumerate(uids, 1) if flags[u] in unseen), None)
        return cls(
            info.uidvalidity, info.highestmodseq, uids, flags, modseqs, keywords, first_unseen
        )


class ViewSeeds:
    """Seeds of recently selected mailboxes, shared by the sessions of one process: a SELECT of
    a mailbox nobody changed since the last one copies the seed instead of reading and
    converting every message row again. Bounded by the number of messages held."""

    def __init__(self, max_messages: int = 500_000) -> None:
        self.max_messages = max_messages
        self._seeds: dict[int, ViewSeed] = {}  # insertion order = least recently used first

    def get(self, info: MailboxInfo) -> ViewSeed | None:
        seed = self._seeds.pop(info.id, None)
        if seed is None:
            return None
        if (seed.uidvalidity, seed.highestmodseq) != (info.uidvalidity, info.highestmodseq):
            return None  # changed since: dropped, the caller makes a new one
        self._seeds[info.id] = seed
        return seed

    def put(self, mailbox_id: int, seed: ViewSeed) -> None:
        if len(seed.uids) > self.max_messages:
            return
        self._seeds.pop(mailbox_id, None)
        self._seeds[mailbox_id] = seed
        total = sum(len(s.uids) for s in self._seeds.values())
        while total > self.max_messages:
            oldest = next(iter(self._seeds))
            total -= len(self._seeds.pop(oldest).uids)


class MailboxView:
    """The selected mailbox as this session knows it."""

    def __init__(
        self,
        info: MailboxInfo,
        messages: Iterable[MessageFlags] | ViewSeed,
        read_only: bool,
    ) -> None:
        seed = messages if isinstance(messages, ViewSeed) else ViewSeed.build(info, messages)
        self.info = info
        self.mailbox_id = info.id
        self.read_only = read_only
        self.uidvalidity = info.uidvalidity
        # the seed's containers, shared until this view first changes (then copied: _own)
        self.uids: list[int] = seed.uids
        self.flags: dict[int, frozenset[str]] = seed.flags
        self.modseqs: dict[int, int] = seed.modseqs
        self._shared = True
        self.highestmodseq = seed.highestmodseq
        self.uidnext = info.uidnext
        self.keywords: set[str] = set(seed.keywords)  # small: copied at once
        self.recent: set[int] = set()  # IMAP4rev1 \Recent, for this session only
        # news from the store not yet told to the client (expunges wait for an allowed moment)
        self._pending_expunges: set[int] = set()
        # bumped whenever a message's flags, presence or arrival changes (search contexts re-run)
        self.generation = 0
        # bulk FETCH answers made from the view alone, with the generation they were made at
        self._rendered: dict[tuple[object, ...], bytes] = {}
        self._rendered_at = 0
        self.seed = seed

    def answer_cache(self) -> dict[tuple[object, ...], bytes]:
        """Where to remember answers made from the view alone: while the view is still its
        seed (nothing changed, no \\Recent of its own) in the seed, shared by every session that
        selected that state; else in the view, forgotten at its next change."""
        if self.generation == 0 and not self.recent:
            return self.seed.rendered
        if self._rendered_at != self.generation:
            self._rendered.clear()
            self._rendered_at = self.generation
        return self._rendered

    # -- numbers -------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def uid_of(self, seq: int) -> int:
        return self.uids[seq - 1]

    @property
    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def uids_in_ranges(self, ranges: list[tuple[int, int]]) -> list[int]:
        """UIDs of the view within UID ranges (RFC 9051 §6.4.8: non-existent ones ignored)."""
        out: set[int] = set()
        for lo, hi in ranges:
            start = bisect.bisect_left(self.uids, lo)
            end = bisect.bisect_right(self.uids, hi)
            out.update(self.uids[start:end])
        return sorted(out)

    # -- own changes ---------------------------------------------------------------------------
    def _own(self) -> None:
        """Copy the seed's containers before the first change (copy-on-write)."""
        if self._shared:
            self.uids, self.flags = list(self.uids), dict(self.flags)
            self.modseqs = dict(self.modseqs)
            self._shared = False

    def set_flags(self, message: MessageFlags) -> None:
        if message.uid in self.flags:
            self._own()
            self.generation += 1
            self.flags[message.uid] = message.flags
            self.modseqs[message.uid] = message.modseq
            self.keywords.update(f for f in message.flags if f[:1] != "\\")

    def display_flags(self, uid: int) -> list[str]:
        """Flags as FETCH shows them: stored flags plus this session's \\Recent."""
        flags = sorted(self.flags.get(uid, ()))
        return [*flags, "\\Recent"] if uid in self.recent else flags

    def remove(self, uids: Iterable[int]) -> list[int]:
        """Forget expunged ``uids``; returns the sequence numbers to announce, in sending order
        (each EXPUNGE renumbers what follows, so highest first keeps them all valid)."""
        seqs = []
        self._own()
        self.generation += 1
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            seqs.append(seq)
            del self.uids[seq - 1]
            self.flags.pop(uid, None)
            self.modseqs.pop(uid, None)
            self.recent.discard(uid)
            self._pending_expunges.discard(uid)
        return seqs

    # -- other sessions' changes -----------------------------------------------------------------
    def apply(self, changes: MailboxChanges, *, expunges_allowed: bool) -> Updates:
        """Merge what the store says changed; return what to tell the client now."""
        updates = Updates()
        if changes.uidvalidity != self.uidvalidity:
            raise MailboxGone("UIDVALIDITY changed")
        if changes.changed or changes.vanished:
            self._own()
            self.generation += 1
        self._pending_expunges.update(u for u in changes.vanished if u in self.flags)
        new = [m for m in changes.changed if m.uid > self.max_uid and m.uid not in self.flags]
        for message in changes.changed:
            if message.uid in self.flags and message.uid not in self._pending_expunges:
                if message.flags != self.flags[message.uid]:
                    self.set_flags(message)
                    seq = self.seq_of(message.uid)
                    assert seq is not None
                    updates.flag_changes.append((seq, message))
                else:
                    self.modseqs[message.uid] = message.modseq
        if expunges_allowed and self._pending_expunges:
            gone = sorted(self._pending_expunges)
            updates.vanished_uids = gone
            updates.expunged_seqs = self.remove(gone)
        if new:
            for message in new:
                self.uids.append(message.uid)
                self.flags[message.uid] = message.flags
                self.modseqs[message.uid] = message.modseq
                self.keywords.update(f for f in message.flags if f[:1] != "\\")
            updates.exists = self.exists
            updates.new_uids = [m.uid for m in new]
        self.uidnext = max(self.uidnext, changes.uidnext)
        if not self._pending_expunges:
            self.highestmodseq = max(self.highestmodseq, changes.highestmodseq)
        return updates


class MailboxGone(Exception):
    """The selected mailbox was deleted or recreated under the session."""
