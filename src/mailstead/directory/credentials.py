"""Which password logs in: the main password or an app password, by argon2 or SCRAM.

Every account stores two forms of each password (docs/decisions.md, "SCRAM secrets next to
argon2"): an argon2id hash, checked for PLAIN and LOGIN, and a SCRAM-SHA-256 secret. All of an
account's SCRAM secrets share the account's salt and iteration count, because SCRAM sends the
salt before the server knows which password the client holds.

App passwords are random (:func:`generate_app_password`, 82 bits), so their SCRAM secrets
(PBKDF2) are strong enough to check them by: one derivation with the account's salt checks them
all at once, where argon2 would cost one slow verification each. Their argon2 hashes serve
rows without a usable SCRAM secret.

The functions that hash or verify are slow on purpose: call them in a worker thread.
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from dataclasses import dataclass

from mailstead.directory.passwords import hash_password, verify_password
from mailstead.sasl import scram
from mailstead.store import Account
from mailstead.store.api import AuthRecords

MAIN_CREDENTIAL = "password"
APP_PASSWORD_PREFIX = "app-password:"

# 4 groups of 4 from 36 characters: 16 * log2(36) = 82.7 bits
_APP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_APP_GROUPS = 4
_APP_GROUP_LENGTH = 4
MAX_APP_PASSWORD_NAME = 64
_NAME = re.compile(r"[^\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """An authenticated account and the password that matched (``"password"`` or
    ``"app-password:NAME"``)."""

    account: Account
    credential: str


class CredentialError(ValueError):
    """A bad app password name."""


def app_password_label(name: str) -> str:
    return f"{APP_PASSWORD_PREFIX}{name}"


def generate_app_password() -> str:
    """``abcd-efgh-ijkl-mnop``: lower-case letters and digits, easy to type on a phone."""
    return "-".join(
        "".join(secrets.choice(_APP_ALPHABET) for _ in range(_APP_GROUP_LENGTH))
        for _ in range(_APP_GROUPS)
    )


def check_app_password_name(name: str) -> str:
    """The name, stripped; 1 to 64 characters without control characters."""
    name = name.strip()
    if not _NAME.fullmatch(name) or len(name) > MAX_APP_PASSWORD_NAME:
        raise CredentialError(
            f"an app password name has 1 to {MAX_APP_PASSWORD_NAME} characters,"
            " no control characters"
        )
    return name


def scram_parameters(records: AuthRecords | None) -> tuple[bytes, int]:
    """The account's SCRAM salt and iteration count: those of its stored secrets (main password
    first), or new ones for an account that has none yet."""
    if records is not None:
        for encoded in (records.scram, *(a.scram for a in records.app_passwords)):
            secret = _decode(encoded)
            if secret is not None:
                return secret.salt, secret.iterations
    return scram.new_salt(), scram.DEFAULT_ITERATIONS


def hash_both(password: str, salt: bytes, iterations: int) -> tuple[str, str]:
    """(argon2id hash, encoded SCRAM secret) of ``password``."""
    secret = scram.new_secret(password, salt=salt, iterations=iterations)
    return hash_password(password), scram.encode_key(secret)


def scram_credentials_of(records: AuthRecords) -> scram.ScramCredentials | None:
    """The account's SCRAM credentials: the main password's key first, then each app
    password's (labelled ``"password"`` and ``"app-password:NAME"``)."""
    stored = [_decode(records.scram, MAIN_CREDENTIAL)]
    stored += [_decode(a.scram, app_password_label(a.name)) for a in records.app_passwords]
    return scram.credentials([s for s in stored if s is not None])


def check_password(records: AuthRecords | None, password: str) -> str | None:
    """The label of the password of ``records`` that ``password`` is, or None (also for no
    records: then as much time is spent as on a real account's failure)."""
    if records is None:
        verify_password(_dummy_hash(), password)
        _dummy_derivation(password)
        return None
    if verify_password(records.account.password_hash, password):
        return MAIN_CREDENTIAL
    return _check_app_passwords(records, password)


def _check_app_passwords(records: AuthRecords, password: str) -> str | None:
    derived: dict[tuple[bytes, int], bytes] = {}  # (salt, iterations) -> StoredKey
    unchecked = []
    for app in records.app_passwords:
        secret = _decode(app.scram)
        if secret is None:
            unchecked.append(app)
            continue
        params = (secret.salt, secret.iterations)
        if params not in derived:  # one PBKDF2 for every secret sharing the account's salt
            derived[params] = scram.derive_keys(password, *params).stored_key
        if hmac.compare_digest(derived[params], secret.key.stored_key):
            return app_password_label(app.name)
    if not derived:
        _dummy_derivation(password)
    for app in unchecked:
        if verify_password(app.password_hash, password):
            return app_password_label(app.name)
    return None


def _decode(encoded: str | None, label: str = "") -> scram.ScramSecret | None:
    if not encoded:
        return None
    try:
        return scram.decode_key(encoded, label)
    except ValueError:
        return None


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the account does not exist (a hash of a random password)."""
    return hash_password(secrets.token_hex(16))


_DUMMY_SALT = secrets.token_bytes(scram.SALT_LENGTH)


def _dummy_derivation(password: str) -> None:
    """The PBKDF2 an app password check costs, for accounts that have none."""
    scram.derive_keys(password, _DUMMY_SALT, scram.DEFAULT_ITERATIONS)
