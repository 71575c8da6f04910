"""Domains, accounts, aliases and recipient resolution."""

from mailstead.directory.credentials import (
    APP_PASSWORD_PREFIX,
    MAIN_CREDENTIAL,
    AuthResult,
    app_password_label,
    generate_app_password,
)
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
    "APP_PASSWORD_PREFIX",
    "CATCH_ALL_KEY",
    "MAIN_CREDENTIAL",
    "AuthResult",
    "Directory",
    "DirectoryError",
    "NormalizedAddress",
    "RecipientStatus",
    "Resolution",
    "app_password_label",
    "generate_app_password",
    "hash_password",
    "normalize_address",
    "verify_password",
]
