"""Password hashing with argon2id (RFC 9106), via argon2-cffi."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults follow RFC 9106's second recommended option (64 MiB, t=3, p=4).
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An encoded ``$argon2id$...`` hash of ``password``."""
    return _hasher.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """Whether ``password`` matches ``encoded`` (never raises for a mismatch or a bad hash)."""
    try:
        return _hasher.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(encoded)
    except InvalidHashError:
        return True
