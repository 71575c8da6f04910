"""The fixed set of storage errors every backend raises and every protocol maps to replies."""

from __future__ import annotations

import enum


class StoreErrorCode(enum.Enum):
    """Why a storage operation failed (mapped to SMTP/IMAP/POP3 replies in one table each)."""

    NONEXISTENT = "nonexistent"  # no such domain, account, mailbox or message
    ALREADYEXISTS = "alreadyexists"  # the name is taken
    OVERQUOTA = "overquota"  # the account's quota would be exceeded (temporary)
    TOOBIG = "toobig"  # larger than the account's whole quota (permanent)
    CANNOT = "cannot"  # the operation is never allowed (e.g. deleting INBOX)
    INUSE = "inuse"  # something still refers to it (e.g. a domain with accounts)
    INVALID = "invalid"  # a malformed name or value
    UNAVAILABLE = "unavailable"  # the backend failed (disk full, I/O error); try again later


class StoreError(Exception):
    """A storage failure with a fixed code and a human-readable detail."""

    def __init__(self, code: StoreErrorCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail
