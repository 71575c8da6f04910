"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §2.2-2.3), shaped after
Dovecot's index-thread*.c where the RFC leaves room:

- message-ids are the ``<...>`` tokens of Message-ID / References / In-Reply-To; a
  message without a (unique) Message-ID gets a private id;
- siblings are ordered by sent date (Date, else internal date), then UID;
- at the root, threads whose base subjects match are merged (§2.2 step 5).

``Thread`` is a node: ``uid`` None for a dummy (a referenced message that is not here).
``wire()`` writes the response form ``(1 2)(3 (4)(5))``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailstead.imap.sort import MessageView, sent_date
from mailstead.imap.subject import base_subject_ex

__all__ = ["Thread", "ordered_subject", "references", "wire"]

_MSGID = re.compile(rb"<([^<>\s]+)>")


@dataclass(slots=True)
class Thread:
    uid: int | None
    children: list[Thread] = field(default_factory=list)
    date: float = 0.0


def _ids(value: bytes | None) -> list[bytes]:
    if value is None:
        return []
    return _MSGID.findall(value.replace(b"\r\n", b"").replace(b"\n", b""))


def _subject(m: MessageView) -> tuple[str, bool]:
    s = m.parsed.envelope.subject
    return ("", False) if s is None else base_subject_ex(s)


def ordered_subject(messages: Sequence[MessageView]) -> list[Thread]:
    """RFC 5256 §2.2 ORDEREDSUBJECT: group by base subject, sort by sent date; every
    message after the first of a group is a child of the first."""
    order = sorted(messages, key=lambda m: (_subject(m)[0].encode(), sent_date(m), m.uid))
    roots: list[Thread] = []
    last: str | None = None
    for m in order:
        subj = _subject(m)[0]
        node = Thread(m.uid, date=sent_date(m))
        if last is not None and subj == last and roots:
            roots[-1].children.append(node)
        else:
            roots.append(node)
            last = subj
    roots.sort(key=lambda t: (t.date, t.uid or 0))
    return roots


class _Node:
    __slots__ = ("children", "id", "msg", "parent")

    def __init__(self, mid: bytes) -> None:
        self.id = mid
        self.msg: MessageView | None = None
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def ancestor_of(self, other: _Node) -> bool:
        n: _Node | None = other
        while n is not None:
            if n is self:
                return True
            n = n.parent
        return False


def _link(parent: _Node, child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def references(messages: Sequence[MessageView]) -> list[Thread]:
    """RFC 5256 §2.2 REFERENCES."""
    table: dict[bytes, _Node] = {}

    def node(mid: bytes) -> _Node:
        n = table.get(mid)
        if n is None:
            n = table[mid] = _Node(mid)
        return n

    for m in messages:
        env = m.parsed.envelope
        own = _ids(env.message_id)
        mid = own[0] if own else None
        if mid is None or (mid in table and table[mid].msg is not None):
            mid = b"\0uid:%d" % m.uid  # missing or duplicate Message-ID
        me = node(mid)
        me.msg = m
        refs = _ids(m.references if m.references is not None else _header(m, "references"))
        if not refs:
            irt = _ids(env.in_reply_to)
            refs = irt[:1]
        refs = [r for r in refs if r != mid]
        # (1)(B) link the references together, never making a loop, never relinking
        prev: _Node | None = None
        for r in refs:
            cur = node(r)
            if prev is not None and cur.parent is None and not cur.ancestor_of(prev):
                _link(prev, cur)
            prev = cur
        # (1)(C) the last reference (or none) is our parent: an earlier link made from another
        # message's References is broken first, even when the new one would make a loop
        if me.parent is not prev:
            if me.parent is not None:
                me.parent.children.remove(me)
                me.parent = None
            if prev is not None and not me.ancestor_of(prev):
                _link(prev, me)
    roots = [n for n in table.values() if n.parent is None]
    out = [t for r in roots for t in _prune(r, True)]
    for t in out:
        _sort(t)
    out.sort(key=lambda t: (t.date, _first_uid(t)))
    return _merge_subjects(out, {m.uid: m for m in messages})


def _header(m: MessageView, name: str) -> bytes | None:
    for f in m.parsed.fields:
        if f.name.lower() == name:
            return f.value
    return None


def _prune(n: _Node, at_root: bool) -> list[Thread]:
    """(3): dummies without children go, dummies with children give way to them (at the
    root only when there is one child)."""
    kids = [t for c in n.children for t in _prune(c, False)]
    if n.msg is not None:
        return [Thread(n.msg.uid, kids, sent_date(n.msg))]
    if not kids:
        return []
    if not at_root or len(kids) == 1:
        return kids
    return [Thread(None, kids)]


def _first_uid(t: Thread) -> int:
    return t.uid if t.uid is not None else (_first_uid(t.children[0]) if t.children else 0)


def _sort(t: Thread) -> None:
    for c in t.children:
        _sort(c)
    t.children.sort(key=lambda c: (c.date, _first_uid(c)))
    if t.uid is None and t.children:
        t.date = t.children[0].date


def _merge_subjects(roots: list[Thread], by_uid: dict[int, MessageView]) -> list[Thread]:
    """(5): root threads with the same base subject are gathered."""

    def subj(t: Thread) -> tuple[str, bool]:
        uid = t.uid if t.uid is not None else _first_uid(t)
        m = by_uid.get(uid)
        return ("", False) if m is None else _subject(m)

    table: dict[str, Thread] = {}
    for t in roots:
        s, refwd = subj(t)
        if not s:
            continue
        old = table.get(s)
        replace = (
            old is not None
            and old.uid is not None
            and (t.uid is None or (subj(old)[1] and not refwd))
        )
        if old is None or replace:
            table[s] = t
    out: list[Thread] = []
    for t in roots:
        s, refwd = subj(t)
        keep = table.get(s) if s else None
        if keep is None or keep is t:
            out.append(t)
            continue
        if keep.uid is None and t.uid is None:
            keep.children.extend(t.children)
        elif keep.uid is None or (not subj(keep)[1] and refwd):
            keep.children.append(t)
        else:
            new = Thread(None, [keep, t], keep.date)
            idx = out.index(keep) if keep in out else -1
            if idx >= 0:
                out[idx] = new
            table[s] = new
            continue
        _sort(keep)
    return out


def wire(threads: Sequence[Thread]) -> bytes:
    """The THREAD response data: ``(1 2)(3 (4)(5))``."""
    return b"".join(_wire(t) for t in threads)


def _wire(t: Thread) -> bytes:
    parts: list[bytes] = []
    node: Thread | None = t
    while node is not None:
        if node.uid is not None:
            parts.append(b"%d" % node.uid)
        if len(node.children) == 1 and node.uid is not None:
            node = node.children[0]
            continue
        if node.children:
            parts.append(b"".join(_wire(c) for c in node.children))
        node = None
    return b"(" + b" ".join(parts) + b")"
