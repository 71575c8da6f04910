"""The maildrop a POP3 session works on: the INBOX as it stood at login, with the session's
deletion marks, and the lock that gives one session at a time a maildrop.

RFC 1939 §5: message numbers are 1..n as at login and do not change during the session;
messages marked deleted are not counted, listed or retrieved; RSET unmarks them, and only QUIT
(UPDATE state) removes them from the store. Unique ids are ``UIDVALIDITY.UID`` of the INBOX:
stable across sessions and restarts, never reused (RFC 1939 §7 UIDL).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mailstead.store import Store, StoreError, StoreErrorCode

__all__ = ["Entry", "Maildrop", "MaildropLocks", "NoSuchMessage"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of the maildrop: its INBOX UID, size in octets and blob."""

    uid: int
    size: int
    blob_id: int


class NoSuchMessage(Exception):
    """A message number out of range or marked deleted; the text is the ``-ERR`` reply."""


@dataclass(slots=True)
class Maildrop:
    mailbox_id: int
    uidvalidity: int
    entries: list[Entry]
    deleted: set[int] = field(default_factory=set)  # message numbers marked by DELE
    retrieved: set[int] = field(default_factory=set)  # message numbers sent whole by RETR

    @classmethod
    async def load(cls, store: Store, account_id: int) -> Maildrop:
        inbox = await store.get_mailbox(account_id, "INBOX")
        if inbox is None:
            raise StoreError(StoreErrorCode.NONEXISTENT, "no INBOX")
        messages = await store.list_messages(inbox.id)
        entries = [Entry(m.uid, m.size, m.blob_id) for m in messages]
        return cls(inbox.id, inbox.uidvalidity, entries)

    def entry(self, number: int) -> Entry:
        """The message numbered ``number``, unless it does not exist or is marked deleted."""
        if not 1 <= number <= len(self.entries):
            raise NoSuchMessage("No such message")
        if number in self.deleted:
            raise NoSuchMessage(f"Message {number} is deleted")
        return self.entries[number - 1]

    def visible(self) -> Iterator[tuple[int, Entry]]:
        """(number, entry) of every message not marked deleted."""
        deleted = self.deleted
        for number, entry in enumerate(self.entries, 1):
            if number not in deleted:
                yield number, entry

    def stat(self) -> tuple[int, int]:
        """Messages not marked deleted, and their octets."""
        count = size = 0
        for _, entry in self.visible():
            count += 1
            size += entry.size
        return count, size

    def unique_id(self, entry: Entry) -> str:
        return f"{self.uidvalidity}.{entry.uid}"

    def reset(self) -> None:
        """RSET: no deletion marks, nothing retrieved (the maildrop as at login)."""
        self.deleted.clear()
        self.retrieved.clear()

    def deleted_uids(self) -> list[int]:
        return [self.entries[n - 1].uid for n in sorted(self.deleted)]

    def seen_uids(self) -> list[int]:
        """Messages retrieved and kept: they get ``\\Seen`` at QUIT."""
        return [self.entries[n - 1].uid for n in sorted(self.retrieved - self.deleted)]


class MaildropLocks:
    """Accounts whose maildrop a POP3 session of this process holds (RFC 1939 §8 locks the
    maildrop for a session; a second login gets ``-ERR [IN-USE]``, RFC 2449 §8.1.2)."""

    def __init__(self) -> None:
        self._held: set[int] = set()

    def acquire(self, account_id: int) -> bool:
        if account_id in self._held:
            return False
        self._held.add(account_id)
        return True

    def release(self, account_id: int) -> None:
        self._held.discard(account_id)

    def __contains__(self, account_id: int) -> bool:
        return account_id in self._held
