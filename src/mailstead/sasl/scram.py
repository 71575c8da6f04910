"""SCRAM-SHA-256 (RFC 5802, RFC 7677): key derivation, storage encoding and message syntax.

Shared by the server (:mod:`mailstead.sasl.server`), the client (:mod:`mailstead.sasl.client`)
and the directory, which stores one :class:`ScramSecret` per password. All of an account's
secrets (its main password and its app passwords) share one salt and iteration count, because
the server must send the salt in its first message, before it knows which password the client
holds.

Passwords are prepared with a simplified SASLprep (RFC 4013): the mapping step (§2.1: non-ASCII
spaces to SPACE, "commonly mapped to nothing" characters removed) and NFKC (§2.2) are applied; the
prohibited-output and bidirectional checks (§2.3, §2.4) are not, so a password full SASLprep
would refuse is used as mapped instead of being rejected. ASCII passwords are never changed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"

# RFC 7677 §4: "the hash iteration-count announced by a server SHOULD be at least 4096"
MIN_ITERATIONS = 4096
DEFAULT_ITERATIONS = 10_000
# A bound on what we accept from storage or from a server: PBKDF2 costs grow linearly with it.
MAX_ITERATIONS = 1_000_000
SALT_LENGTH = 16
NONCE_BYTES = 18  # 24 base64 characters, 144 bits

_STORAGE_PREFIX = "SCRAM-SHA-256$"


class ScramSyntaxError(ValueError):
    """A SCRAM message that does not follow the RFC 5802 §7 grammar."""


@dataclass(frozen=True, slots=True)
class ScramKey:
    """One password's server-side keys (RFC 5802 §3); ``label`` says which password it is."""

    stored_key: bytes
    server_key: bytes
    label: str = ""


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """Everything the server needs for one account: its salt, its iteration count and the keys
    of every password that may log in (tried in order; the first whose StoredKey matches wins)."""

    salt: bytes
    iterations: int
    keys: list[ScramKey] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ScramSecret:
    """What is stored for one password: the salt and iteration count it was derived with."""

    salt: bytes
    iterations: int
    key: ScramKey


def saslprep(password: str) -> str:
    """Simplified SASLprep (RFC 4013 §2.1 mapping and §2.2 NFKC; no prohibition checks)."""
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    return unicodedata.normalize("NFKC", mapped)


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2."""
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def keys_from_salted(salted: bytes, label: str = "") -> tuple[bytes, ScramKey]:
    """(ClientKey, the server's keys) from a SaltedPassword."""
    client_key = hmac_sha256(salted, b"Client Key")
    server_key = hmac_sha256(salted, b"Server Key")
    return client_key, ScramKey(sha256(client_key), server_key, label)


def derive_keys(password: str, salt: bytes, iterations: int, label: str = "") -> ScramKey:
    """The StoredKey and ServerKey of ``password`` (PBKDF2: tens of ms, keep off event loops)."""
    check_iterations(iterations)
    return keys_from_salted(salted_password(password, salt, iterations), label)[1]


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_LENGTH)


def new_secret(
    password: str,
    *,
    salt: bytes | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    label: str = "",
) -> ScramSecret:
    """A storable secret for ``password``: a new random salt unless one is given."""
    salt = new_salt() if salt is None else salt
    return ScramSecret(salt, iterations, derive_keys(password, salt, iterations, label))


def check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(
            f"SCRAM iteration count {iterations} outside {MIN_ITERATIONS}..{MAX_ITERATIONS}"
        )


def encode_key(secret: ScramSecret) -> str:
    """``SCRAM-SHA-256$<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`` (the layout
    PostgreSQL uses; the label is not stored, the caller knows whose secret it is)."""
    return (
        f"{_STORAGE_PREFIX}{secret.iterations}:{b64(secret.salt)}"
        f"${b64(secret.key.stored_key)}:{b64(secret.key.server_key)}"
    )


_STORED = re.compile(
    r"SCRAM-SHA-256\$(\d{1,9}):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)"
)


def decode_key(text: str, label: str = "") -> ScramSecret:
    """The inverse of :func:`encode_key`; raises ValueError for anything malformed."""
    match = _STORED.fullmatch(text)
    if match is None:
        raise ValueError("not an encoded SCRAM-SHA-256 secret")
    iterations = int(match.group(1))
    check_iterations(iterations)
    try:
        salt, stored, server = (unb64(match.group(i)) for i in (2, 3, 4))
    except ScramSyntaxError:
        raise ValueError("bad base64 in an encoded SCRAM-SHA-256 secret") from None
    if not salt or len(stored) != 32 or len(server) != 32:
        raise ValueError("bad key lengths in an encoded SCRAM-SHA-256 secret")
    return ScramSecret(salt, iterations, ScramKey(stored, server, label))


def credentials(secrets_: Sequence[ScramSecret]) -> ScramCredentials | None:
    """One account's credentials from its stored secrets: those sharing the first one's salt and
    iteration count (a secret derived with another salt cannot be offered and is left out)."""
    if not secrets_:
        return None
    first = secrets_[0]
    keys = [s.key for s in secrets_ if (s.salt, s.iterations) == (first.salt, first.iterations)]
    return ScramCredentials(first.salt, first.iterations, keys)


# -- primitives ---------------------------------------------------------------------------------
def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64 (RFC 5802 §7 ``base64``): alphabet and padding checked."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ScramSyntaxError("bad base64") from None


def new_nonce() -> str:
    """Printable, comma-free random characters (RFC 5802 §7 ``c-nonce``/``s-nonce``)."""
    return b64(secrets.token_bytes(NONCE_BYTES))


# -- message syntax (RFC 5802 §7) ---------------------------------------------------------------
# printable = %x21-2B / %x2D-7E: visible ASCII except ","
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_SASLNAME_BAD = re.compile(r"=(?!2C|3D)|,")


def encode_saslname(name: str) -> str:
    """RFC 5802 §5.1: "," and "=" in a username or authzid are sent as "=2C" and "=3D"."""
    return name.replace("=", "=3D").replace(",", "=2C")


def decode_saslname(value: str) -> str:
    if not value or _SASLNAME_BAD.search(value):
        raise ScramSyntaxError("bad saslname")
    return value.replace("=2C", ",").replace("=3D", "=")


def check_nonce(value: str) -> str:
    if not _PRINTABLE.fullmatch(value):
        raise ScramSyntaxError("bad nonce")
    return value


def attributes(message: str) -> list[tuple[str, str]]:
    """``a=x,b=y`` as [(a, x), (b, y)]: each attribute one ASCII letter followed by "="."""
    result = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not ("a" <= part[0] <= "z" or "A" <= part[0] <= "Z"):
            raise ScramSyntaxError(f"bad attribute {part[:20]!r}")
        result.append((part[0], part[2:]))
    return result


@dataclass(frozen=True, slots=True)
class ClientFirst:
    """A parsed client-first-message."""

    cb_flag: str  # "n", "y" or "p"
    cb_name: str | None  # with "p"
    authzid: str  # "" when absent
    username: str
    nonce: str
    gs2_header: str  # "n,,", "y,a=x,", "p=tls-exporter,," ... as sent
    bare: str  # client-first-message-bare, as sent


_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")


def parse_client_first(message: str) -> ClientFirst:
    """RFC 5802 §7 client-first-message; ``m=`` (reserved-mext) is refused."""
    parts = message.split(",", 2)
    if len(parts) != 3:
        raise ScramSyntaxError("no GS2 header")
    flag, authz, bare = parts
    cb_name = None
    if flag.startswith("p="):
        cb_name = flag[2:]
        if not _CB_NAME.fullmatch(cb_name):
            raise ScramSyntaxError("bad channel binding name")
        flag = "p"
    elif flag not in ("n", "y"):
        raise ScramSyntaxError("bad GS2 channel binding flag")
    authzid = ""
    if authz:
        if not authz.startswith("a="):
            raise ScramSyntaxError("bad authzid")
        authzid = decode_saslname(authz[2:])
    attrs = attributes(bare)
    if attrs[0][0] == "m":
        raise ScramSyntaxError("unsupported mandatory extension (m=)")
    if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
        raise ScramSyntaxError("expected n=username,r=nonce")
    username = decode_saslname(attrs[0][1])
    nonce = check_nonce(attrs[1][1])
    gs2_header = message[: len(message) - len(bare)]
    return ClientFirst(flag, cb_name, authzid, username, nonce, gs2_header, bare)


@dataclass(frozen=True, slots=True)
class ClientFinal:
    """A parsed client-final-message."""

    channel_binding: bytes  # decoded c=
    nonce: str
    proof: bytes
    without_proof: str


def parse_client_final(message: str) -> ClientFinal:
    attrs = attributes(message)
    if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
        raise ScramSyntaxError("expected c=...,r=...,[extensions,]p=...")
    proof = unb64(attrs[-1][1])
    if len(proof) != 32:
        raise ScramSyntaxError("bad proof length")
    without_proof = message[: message.rindex(",p=")]
    return ClientFinal(unb64(attrs[0][1]), check_nonce(attrs[1][1]), proof, without_proof)


@dataclass(frozen=True, slots=True)
class ServerFirst:
    nonce: str
    salt: bytes
    iterations: int


def parse_server_first(message: str) -> ServerFirst:
    attrs = attributes(message)
    if attrs[0][0] == "m":
        raise ScramSyntaxError("unsupported mandatory extension (m=)")
    if len(attrs) < 3 or [a[0] for a in attrs[:3]] != ["r", "s", "i"]:
        raise ScramSyntaxError("expected r=...,s=...,i=...")
    if not attrs[2][1].isdigit() or len(attrs[2][1]) > 9:
        raise ScramSyntaxError("bad iteration count")
    salt = unb64(attrs[1][1])
    if not salt:
        raise ScramSyntaxError("empty salt")
    return ServerFirst(check_nonce(attrs[0][1]), salt, int(attrs[2][1]))


__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_ITERATIONS",
    "MECHANISM",
    "MECHANISM_PLUS",
    "MIN_ITERATIONS",
    "ClientFinal",
    "ClientFirst",
    "ScramCredentials",
    "ScramKey",
    "ScramSecret",
    "ScramSyntaxError",
    "ServerFirst",
    "credentials",
    "decode_key",
    "derive_keys",
    "encode_key",
    "new_salt",
    "new_secret",
    "saslprep",
]
