"""The change feed: sessions watching a mailbox hear when its HIGHESTMODSEQ moved.

In one process, an in-memory notifier: the store publishes after each committed change, and every
watcher of that mailbox is woken. A session then asks the store what changed since the MODSEQ it
last saw (``changes_since``), so a missed or merged wake-up loses nothing. Across processes or
nodes a backend adds its own transport (PostgreSQL LISTEN/NOTIFY) feeding the same ``publish``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class ChangeFeed:
    """Wake-ups per mailbox id."""

    def __init__(self) -> None:
        self._watchers: dict[int, set[asyncio.Event]] = {}
        self.any_change = asyncio.Event()  # set on every publish (for background work)

    @contextmanager
    def watch(self, mailbox_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever ``mailbox_id`` changes, while the context is open."""
        event = asyncio.Event()
        self._watchers.setdefault(mailbox_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(mailbox_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[mailbox_id]

    def publish(self, mailbox_ids: Iterable[int]) -> None:
        self.any_change.set()
        for mailbox_id in mailbox_ids:
            for event in self._watchers.get(mailbox_id, ()):
                event.set()
