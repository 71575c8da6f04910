"""DKIM signing (RFC 6376): keys, the DNS records that publish them, and DKIM-Signature fields.

Two algorithms: ``rsa-sha256`` with 2048-bit keys by default, and ``ed25519-sha256``
(RFC 8463), meant as a second signature next to the RSA one (receivers that do not know
Ed25519 ignore that signature). Canonicalization is relaxed/relaxed, which survives the
whitespace and folding changes relays make.

Signing is a plain, synchronous function: an RSA-2048 signature costs about a millisecond of
CPU, so servers call :func:`sign` from a worker thread, never on the event loop. Nothing here
reads the clock: the signature time (``t=``) is an argument.

We sign with ``cryptography`` rather than dkimpy (docs/decisions.md): dkimpy reads the clock
itself, cannot write ``x=``, and needs PyNaCl for Ed25519. dkimpy and OpenDKIM verify our
signatures in the tests, so the signer is not judged by its own code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailstead.message.addresses import AddressError, domain_to_ascii
from mailstead.message.headers import parse_header_fields, split_header_body

__all__ = [
    "ALGORITHMS",
    "DEFAULT_OVERSIGNED_HEADERS",
    "DEFAULT_SIGNED_HEADERS",
    "RSA_BITS",
    "DkimAlgorithm",
    "DkimError",
    "DnsRecord",
    "HeaderFolder",
    "KeyPair",
    "SigningKey",
    "TagListError",
    "canonical_body",
    "check_selector",
    "dns_record",
    "generate_key",
    "parse_tag_list",
    "relaxed_body",
    "relaxed_header",
    "sign",
    "sign_data",
    "simple_body",
    "split_txt",
    "txt_value",
]

DkimAlgorithm = Literal["rsa", "ed25519"]
"""The key type, as in the DNS record's ``k=`` tag."""

ALGORITHMS: tuple[DkimAlgorithm, ...] = ("rsa", "ed25519")

# RFC 8301 §3.2: signers MUST use at least 1024 bits and SHOULD use at least 2048.
RSA_BITS = 2048
RSA_MIN_BITS = 1024

# Header fields signed when present (RFC 6376 §5.4.1's list, plus the List-* fields of
# RFC 2369/8058 and Autocrypt), in the order they appear in h=.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To",
    "References", "Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "Content-ID", "Content-Description", "Resent-Date", "Resent-From", "Resent-Sender",
    "Resent-To", "Resent-Cc", "Resent-Message-ID", "List-Id", "List-Help", "List-Unsubscribe",
    "List-Unsubscribe-Post", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
    "Autocrypt",
)  # fmt: skip

# Named once more than they occur (RFC 6376 §8.15): a field of that name added in transit, above
# or below, then breaks the signature, so nobody can slip a second From: or Subject: past a
# receiver that shows the other one.
DEFAULT_OVERSIGNED_HEADERS: tuple[str, ...] = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "Sender", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding",
)  # fmt: skip

# RFC 6376 §3.1 / RFC 1035 §2.3.1: a selector is one or more DNS labels.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# RFC 1035 §3.3.14: a TXT record is a sequence of strings of at most 255 octets each.
TXT_STRING_MAX = 255
# RFC 5322 §2.1.1: lines SHOULD be at most 78 characters (without the CRLF).
_LINE = 78
_WSP = re.compile(rb"[ \t]+")


class DkimError(ValueError):
    """A key, selector, domain or message that cannot be signed with."""


# -- keys -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyPair:
    """A new key: the private half as unencrypted PKCS#8 PEM, the public half as the DNS ``p=``
    value (base64 of the SubjectPublicKeyInfo DER for RSA, of the raw 32 octets for Ed25519)."""

    algorithm: DkimAlgorithm
    private_key_pem: str
    public_key: str


def generate_key(algorithm: DkimAlgorithm = "rsa", *, rsa_bits: int = RSA_BITS) -> KeyPair:
    """A fresh signing key (RSA takes some tens of milliseconds to generate)."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        if rsa_bits < RSA_MIN_BITS:
            raise DkimError(f"RSA keys need at least {RSA_MIN_BITS} bits (RFC 8301)")
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    elif algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DkimError(f"unknown DKIM algorithm {algorithm!r} (rsa or ed25519)")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return KeyPair(algorithm, pem, _public_value(private))


def _public_value(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:  # RFC 8463 §4.2: the bare public key, not wrapped in SubjectPublicKeyInfo
        der = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return base64.b64encode(der).decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key ready to sign with, under ``selector``. Build it once with :meth:`from_pem`
    and keep it: parsing and checking an RSA key costs more than signing with it."""

    selector: str
    algorithm: DkimAlgorithm
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, selector: str, private_key_pem: str | bytes) -> SigningKey:
        """Load an unencrypted PEM private key (PKCS#8 or PKCS#1); the algorithm follows from it."""
        data = (
            private_key_pem.encode("ascii") if isinstance(private_key_pem, str) else private_key_pem
        )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise DkimError(
                f"cannot load the private key of selector {selector!r}: {exc}"
            ) from None
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < RSA_MIN_BITS:
                raise DkimError(f"RSA key of {key.key_size} bits: at least {RSA_MIN_BITS} needed")
            return cls(check_selector(selector), "rsa", key)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return cls(check_selector(selector), "ed25519", key)
        raise DkimError(
            f"selector {selector!r}: DKIM keys are RSA or Ed25519, not {type(key).__name__}"
        )

    @property
    def public_key(self) -> str:
        """The DNS ``p=`` value of this key."""
        return _public_value(self.key)


def check_selector(selector: str) -> str:
    """The selector in lower case (DNS names are case-insensitive); DkimError if it is not one or
    more DNS labels of letters, digits and inner hyphens."""
    text = selector.strip().lower().rstrip(".")
    labels = text.split(".")
    if not text or len(text) > 200 or not all(_LABEL.match(label) for label in labels):
        raise DkimError(f"bad selector {selector!r}: DNS labels of letters, digits and hyphens")
    return text


def _ascii_domain(domain: str) -> str:
    try:
        ascii_domain = domain_to_ascii(domain)
    except AddressError as exc:
        raise DkimError(f"bad signing domain {domain!r}: {exc}") from None
    if ascii_domain.startswith("["):
        raise DkimError(f"bad signing domain {domain!r}: an address literal")
    return ascii_domain


# -- DNS ------------------------------------------------------------------------------------------
def txt_value(algorithm: DkimAlgorithm, public_key: str) -> str:
    """The key record (RFC 6376 §3.6.1): ``v=DKIM1; k=rsa; p=...``."""
    if algorithm not in ALGORITHMS:
        raise DkimError(f"unknown DKIM algorithm {algorithm!r} (rsa or ed25519)")
    return f"v=DKIM1; k={algorithm}; p={public_key}"


def split_txt(value: str, limit: int = TXT_STRING_MAX) -> list[str]:
    """``value`` as TXT character-strings of at most ``limit`` octets (RFC 1035 §3.3.14; a
    receiver joins them without separator, RFC 6376 §3.6.2.2). The tags before ``p=`` make a
    string of their own, so the key starts a string, as zone files are usually written."""
    head, sep, key = value.partition("p=")
    if not sep:
        head, key = "", value
    else:
        key = sep + key
    strings = [head] if head else []
    strings += [key[i : i + limit] for i in range(0, len(key), limit)]
    if any(len(s.encode("utf-8")) > limit for s in strings):
        raise DkimError("the record has a tag longer than a TXT string")
    return strings


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """The TXT record publishing one key: ``name`` (absolute, A-labels, with the final dot)."""

    selector: str
    domain: str  # the signing domain as A-labels
    name: str  # selector._domainkey.domain.
    value: str  # v=DKIM1; k=...; p=...

    @property
    def strings(self) -> list[str]:
        """The value as TXT character-strings of at most 255 octets."""
        return split_txt(self.value)

    def zone_text(self) -> str:
        """The record as zone-file text (RFC 1035 §5.1), one character-string per line."""
        quoted = [f'"{s}"' for s in self.strings]
        body = "\n\t".join(quoted)
        return f"{self.name} IN TXT ( {body} )"


def dns_record(domain: str, selector: str, algorithm: DkimAlgorithm, public_key: str) -> DnsRecord:
    """The record that publishes ``public_key`` under ``selector`` for ``domain``."""
    ascii_domain = _ascii_domain(domain)
    selector = check_selector(selector)
    return DnsRecord(
        selector,
        ascii_domain,
        f"{selector}._domainkey.{ascii_domain}.",
        txt_value(algorithm, public_key),
    )


# -- canonicalization (RFC 6376 §3.4) -------------------------------------------------------------
def relaxed_header(name: str, value: bytes) -> bytes:
    """The relaxed form of one field (§3.4.2): name in lower case, value unfolded, runs of
    whitespace made one space, whitespace around the colon and at the end removed; CRLF-ended."""
    unfolded = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return (
        name.strip(" \t").lower().encode("utf-8")
        + b":"
        + _WSP.sub(b" ", unfolded).strip(b" \t")
        + b"\r\n"
    )


def relaxed_body(body: bytes) -> bytes:
    """The relaxed form of a body (§3.4.4): whitespace at line ends removed, runs of whitespace
    made one space, empty lines at the end removed, CRLF line ends; an empty body stays empty.
    A bare LF counts as a line end (the message goes out with CRLF)."""
    text = body.replace(b"\r\n", b"\n")
    text = _WSP.sub(b" ", text).replace(b" \n", b"\n")
    if text.endswith(b" "):
        text = text[:-1]
    text = text.rstrip(b"\n")
    if not text:
        return b""
    return text.replace(b"\n", b"\r\n") + b"\r\n"


def simple_body(body: bytes) -> bytes:
    """The simple form of a CRLF body (§3.4.3): empty lines at the end removed, and the body
    ends with one CRLF (an empty body becomes a lone CRLF)."""
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n"


def canonical_body(body: bytes, method: str) -> bytes:
    """``body`` (CRLF line ends) in the ``simple`` or ``relaxed`` form."""
    return relaxed_body(body) if method == "relaxed" else simple_body(body)


# -- tag lists (RFC 6376 §3.2) --------------------------------------------------------------------
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# tval = 1*VALCHAR (%x21-3A / %x3C-7E) separated by whitespace; UTF-8 is let through (RFC 8616)
_TAG_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class TagListError(ValueError):
    """A tag=value list that does not follow RFC 6376 §3.2."""


def parse_tag_list(text: str | bytes) -> dict[str, str]:
    """The tags of a DKIM-Signature field or key record, whitespace around names and values
    removed (inside values it is kept: callers strip it where the tag allows it). A duplicate
    tag, a missing ``=`` or a bad name or value is a :class:`TagListError`; a final ``;`` is
    allowed (§3.2)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TagListError("the tag list is not UTF-8") from None
    text = text.replace("\r\n", "").replace("\n", "")  # unfold
    parts = text.split(";")
    if parts and not parts[-1].strip(" \t"):
        parts.pop()
    tags: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not sep or not _TAG_NAME.match(name):
            raise TagListError(f"bad tag {part.strip()!r}")
        if name in tags:
            raise TagListError(f"tag {name}= appears twice")
        if _TAG_VALUE_BAD.search(value):
            raise TagListError(f"bad value of tag {name}=")
        tags[name] = value
    return tags


# -- signing --------------------------------------------------------------------------------------
_SIGNATURE_ALGORITHM: dict[DkimAlgorithm, str] = {
    "rsa": "rsa-sha256",
    "ed25519": "ed25519-sha256",
}


def sign(
    message: bytes,
    domain: str,
    keys: Sequence[SigningKey],
    *,
    timestamp: int,
    expire_after: int | None = None,
    headers_to_sign: Iterable[str] = DEFAULT_SIGNED_HEADERS,
    oversign: Iterable[str] = DEFAULT_OVERSIGNED_HEADERS,
    linesep: bytes | None = None,
) -> bytes:
    """The DKIM-Signature fields to put in front of ``message``, one per key, in ``keys`` order.

    ``domain`` is the signing domain (``d=``, written as A-labels). ``timestamp`` is the
    signature time (``t=``, Unix seconds); with ``expire_after`` the signature carries
    ``x=`` that many seconds later. Each name of ``headers_to_sign`` is signed as often as it
    occurs, the names of ``oversign`` once more (an absent one then guards against its
    addition). ``linesep`` ends the lines of the result; by default the message's own (CRLF
    or LF), and the signature is the same either way (it covers the message as sent, in CRLF).

    Plain CPU work (about 1 ms per RSA-2048 key): run it off the event loop.
    """
    if not keys:
        return b""
    ascii_domain = _ascii_domain(domain)
    if expire_after is not None and expire_after <= 0:
        raise DkimError("expire_after must be positive (RFC 6376 §3.5: x= is later than t=)")
    if linesep is None:
        first = message.find(b"\n")
        linesep = b"\n" if first > 0 and message[first - 1] != 0x0D else b"\r\n"

    body_start = split_header_body(message)
    fields = [f for f in parse_header_fields(message, 0, body_start) if f.name]
    by_name: dict[str, list[bytes]] = {}
    for f in fields:
        by_name.setdefault(f.name.lower(), []).append(relaxed_header(f.name, f.value))
    if "from" not in by_name:
        raise DkimError("the message has no From field (RFC 6376 §5.4 requires signing it)")

    names = _signed_names(by_name, headers_to_sign, oversign)
    # §5.4.2: several fields of one name are signed from the bottom up; a name listed more often
    # than it occurs contributes nothing for the extra mentions.
    signed = b""
    remaining = {name: list(values) for name, values in by_name.items()}
    for name in names:
        stack = remaining.get(name.lower())
        if stack:
            signed += stack.pop()

    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(message[body_start:])).digest())
    out = b""
    for key in keys:
        tags = [
            ("v", "1"),
            ("a", _SIGNATURE_ALGORITHM[key.algorithm]),
            ("c", "relaxed/relaxed"),
            ("d", ascii_domain),
            ("s", key.selector),
            ("t", str(timestamp)),
        ]
        if expire_after is not None:
            tags.append(("x", str(timestamp + expire_after)))
        folder = HeaderFolder("DKIM-Signature:", linesep)
        for tag, value in tags:
            folder.add(f"{tag}={value};")
        folder.add_list("h=", names)
        folder.add(f"bh={body_hash.decode('ascii')};")
        folder.add("b=")
        unsigned = folder.text()
        # §3.7: the field itself is hashed last, with an empty b= and without its line end.
        data = signed + relaxed_header("DKIM-Signature", unsigned[len(b"DKIM-Signature:") :])[:-2]
        folder.add_chunks(base64.b64encode(sign_data(key, data)).decode("ascii"))
        out += folder.text() + linesep
    return out


def _signed_names(
    present: dict[str, list[bytes]], headers_to_sign: Iterable[str], oversign: Iterable[str]
) -> list[str]:
    extra = {name.lower() for name in oversign}
    names: list[str] = []
    seen: set[str] = set()
    for name in [*headers_to_sign, *oversign]:
        lower = name.lower()
        if lower in seen:
            continue
        seen.add(lower)
        if not name or ":" in name or not name.isascii() or _WSP.search(name.encode("ascii")):
            raise DkimError(f"bad header field name {name!r}")
        if lower == "dkim-signature":
            raise DkimError("DKIM-Signature fields are not signed (RFC 6376 §3.5)")
        count = len(present.get(lower, ())) + (1 if lower in extra else 0)
        names += [name] * count
    if "from" not in {name.lower() for name in names}:
        raise DkimError("From must be among the signed fields (RFC 6376 §5.4)")
    return names


def sign_data(key: SigningKey, data: bytes) -> bytes:
    """The signature of ``data`` with ``key``: RSASSA-PKCS1-v1_5 over SHA-256, or Ed25519."""
    if isinstance(key.key, rsa.RSAPrivateKey):
        return key.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    # RFC 8463 §3: PureEdDSA Ed25519 over the SHA-256 hash of the data.
    return key.key.sign(hashlib.sha256(data).digest())


class HeaderFolder:
    """Builds one header field, folding before a token that would pass 78 characters."""

    def __init__(self, start: str, linesep: bytes) -> None:
        self._lines = [start]
        self._linesep = linesep.decode("ascii")

    def add(self, token: str, *, space: bool = True) -> None:
        line = self._lines[-1]
        if len(line) + len(token) + (1 if space else 0) > _LINE and line.strip():
            self._lines.append(" " + token)
        else:
            self._lines[-1] = line + (" " if space else "") + token

    def add_list(self, tag: str, names: Sequence[str]) -> None:
        """``h=a:b:c;``: folding may come after a colon (FWS is allowed there)."""
        for i, name in enumerate(names):
            last = i == len(names) - 1
            token = (tag if i == 0 else "") + name + (";" if last else ":")
            self.add(token, space=i == 0)

    def add_chunks(self, value: str) -> None:
        """A base64 value split across lines: whitespace inside b= is ignored (§3.5)."""
        while value:
            room = _LINE - len(self._lines[-1])
            if room < 8:
                self._lines.append(" ")
                room = _LINE - 1
            self._lines[-1] += value[:room]
            value = value[room:]

    def add_block(self, prefix: str, value: str, width: int = 72) -> None:
        """``prefix`` and ``value`` starting a line of their own, the value cut so that no line
        holds more than ``width`` characters of it (whitespace inside b= is ignored, §3.5)."""
        text = prefix + value
        self._lines.append(" " + text[:width])
        for start in range(width, len(text), width):
            self._lines.append(" " + text[start : start + width])

    def text(self) -> bytes:
        return self._linesep.join(self._lines).encode("ascii")
