"""Domains, accounts, aliases and recipient resolution."""

from mailstead.directory.passwords import hash_password, verify_password
from mailstead.directory.service import (
    CATCH_ALL_KEY,
    Directory,
    DirectoryError,
    NormalizedAddress,
    RecipientStatus,
    Resolution,
    normalize_address,
)

__all__ = [
    "CATCH_ALL_KEY",
    "Directory",
    "DirectoryError",
    "NormalizedAddress",
    "RecipientStatus",
    "Resolution",
    "hash_password",
    "normalize_address",
    "verify_password",
]
