"""Storage: one API (:mod:`mailstead.store.api`), several backends."""

from __future__ import annotations

from pathlib import Path

from mailstead.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    AccountRole,
    AddressRecords,
    Alias,
    ChangeFeed,
    CopyResult,
    DeliveryOutcome,
    DeliveryRequest,
    DeliveryTarget,
    DkimKey,
    DkimKeyAlgorithm,
    Domain,
    ExpungeResult,
    FlagOp,
    FlagUpdate,
    MailboxChanges,
    MailboxInfo,
    MessageFlags,
    MessageInfo,
    QueueItem,
    QueueRecipient,
    QueueRecipientRequest,
    QueueRequest,
    QueueState,
    QueueUpdate,
    ReportAction,
    Store,
)
from mailstead.store.errors import StoreError, StoreErrorCode

__all__ = [
    "DEFAULT_MAILBOXES",
    "Account",
    "AccountRole",
    "AddressRecords",
    "Alias",
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
    "open_sqlite",
]


def open_sqlite(
    path: Path,
    *,
    compression_level: int = 3,
    group_commit_max_batch: int = 512,
    group_commit_max_delay: float = 0.0,
) -> Store:
    """The embedded backend (not yet opened: call ``await store.open()``)."""
    from mailstead.store.sqlite.backend import SQLiteStore

    return SQLiteStore(
        path,
        compression_level=compression_level,
        group_commit_max_batch=group_commit_max_batch,
        group_commit_max_delay=group_commit_max_delay,
    )
