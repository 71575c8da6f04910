"""Mailbox views and the seeds SELECT shares between sessions."""

from __future__ import annotations

import dataclasses

from mailstead.imap.view import MailboxView, ViewSeed, ViewSeeds
from mailstead.store import MailboxInfo, MessageFlags

INFO = MailboxInfo(7, 1, "INBOX", None, 100, 5, 9, True, 3, 1, 300)
MESSAGES = [
    MessageFlags(1, 3, frozenset({"\\Seen"})),
    MessageFlags(2, 5, frozenset({"\\Seen", "$Work"})),
    MessageFlags(4, 9, frozenset()),
]


def test_seed_holds_what_select_reports():
    seed = ViewSeed.build(INFO, MESSAGES)
    assert seed.uids == [1, 2, 4]
    assert seed.keywords == {"$Work"}
    assert seed.first_unseen == 3
    assert ViewSeed.build(INFO, MESSAGES[:2]).first_unseen is None


def test_views_copy_the_seed_and_never_change_it():
    seed = ViewSeed.build(INFO, MESSAGES)
    view = MailboxView(INFO, seed, read_only=False)
    view.set_flags(MessageFlags(4, 10, frozenset({"\\Seen"})))
    view.remove([1])
    assert seed.uids == [1, 2, 4] and seed.flags[4] == frozenset()
    other = MailboxView(INFO, seed, read_only=True)
    assert other.uids == [1, 2, 4] and other.flags[4] == frozenset()


def test_seeds_are_used_only_for_the_same_modseq_and_uidvalidity():
    seeds = ViewSeeds()
    seed = ViewSeed.build(INFO, MESSAGES)
    seeds.put(INFO.id, seed)
    assert seeds.get(INFO) is seed
    assert seeds.get(dataclasses.replace(INFO, highestmodseq=10)) is None
    assert seeds.get(INFO) is None  # a stale seed is dropped
    seeds.put(INFO.id, seed)
    assert seeds.get(dataclasses.replace(INFO, uidvalidity=101)) is None


def test_seeds_hold_a_bounded_number_of_messages():
    seeds = ViewSeeds(max_messages=5)
    infos = [dataclasses.replace(INFO, id=n) for n in range(3)]
    for info in infos:
        seeds.put(info.id, ViewSeed.build(info, MESSAGES))
    assert seeds.get(infos[0]) is None  # least recently used went first
    assert seeds.get(infos[2]) is not None
