"""DKIM verification (RFC 6376, with RFC 8301's crypto rules and RFC 8463's Ed25519).

:func:`verify_dkim` judges every DKIM-Signature field of a message and returns one
:class:`DkimVerdict` each, in the order the fields appear. Key records are fetched through
``mailstead.dns.Resolver``, all at once; the header block is parsed once; canonicalization,
hashing and the signature checks of a message with a large body run on a worker thread so
the event loop never waits on them.

How results are chosen (RFC 8601 §2.7.1 names them): a signature that cannot be parsed as a
tag list is ``neutral``; one that breaks a rule of RFC 6376 §6.1.1 or §6.1.2 (missing tag,
bad version, From not signed, ``i=`` outside ``d=``, no or revoked or unusable key, RSA key
below 1024 bits) is ``permerror``; DNS trouble is ``temperror``; a body hash or signature that
does not verify, or an expired ``x=``, is ``fail``. An ``rsa-sha1`` signature is verified but
reported as ``policy`` (RFC 8301 §3.1: verifiers must not treat it as valid); a key in testing
mode (``t=y``) keeps its result and sets ``testing``.

The building blocks (parsed message, key records, signed data) are shared with
:mod:`mailstead.mailauth.arc`, whose signatures are DKIM signatures with other tags.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailstead.dns import Resolver, Status
from mailstead.mailauth.dkim import (
    RSA_MIN_BITS,
    TagListError,
    parse_tag_list,
    relaxed_header,
    simple_body,
)
from mailstead.message.headers import HeaderField, parse_header_fields, split_header_body

__all__ = [
    "FUTURE_SKEW",
    "LARGE_BODY",
    "MAX_SIGNATURES",
    "DkimKey",
    "DkimResult",
    "DkimVerdict",
    "KeyLookup",
    "ParsedMessage",
    "VerificationFailure",
    "fetch_keys",
    "parse_algorithm",
    "parse_key_record",
    "parse_message",
    "verify_dkim",
]

MAX_SIGNATURES = 10
"""Signatures judged per message (RFC 6376 §6.1: verifiers may limit them); later ones are
reported as ``policy``."""
FUTURE_SKEW = 900
"""Seconds a ``t=`` may lie in the future (clock skew) before the signature is refused."""
LARGE_BODY = 64 * 1024
"""Above this many octets, canonicalization and hashing run on a worker thread."""
HEADER_B_MIN = 8  # RFC 6008 §4: header.b carries at least the first 8 characters of b=

_ALGORITHMS: dict[str, tuple[str, str]] = {
    "rsa-sha256": ("rsa", "sha256"),
    "rsa-sha1": ("rsa", "sha1"),
    "ed25519-sha256": ("ed25519", "sha256"),
}
_CANONICALIZATIONS = ("simple", "relaxed")
_DIGITS = re.compile(r"[0-9]{1,76}\Z")  # RFC 6376 §3.5: l=, t=, x= are at most 76 digits
_WSP = re.compile(r"[ \t\r\n]+")
_WSP_BYTES = re.compile(rb"[ \t]+")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
# RFC 6376 §3.7: the b= value (and the whitespace around it) is hashed as empty
_B_VALUE = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")


class DkimResult(StrEnum):
    """The result of one signature, as in Authentication-Results (RFC 8601 §2.7.1)."""

    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    POLICY = "policy"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class DkimVerdict:
    """What one DKIM-Signature field came to. ``header_b`` is the start of ``b=`` (at least 8
    characters, more when needed to tell the message's signatures apart; RFC 6008)."""

    result: DkimResult
    domain: str
    selector: str
    algorithm: str
    identity: str
    header_b: str
    reason: str
    testing: bool = False  # the key record says t=y (RFC 6376 §3.6.1)
    key_bits: int = 0


class VerificationFailure(Exception):
    """A signature check stopped with ``result`` for ``reason``."""

    def __init__(self, result: DkimResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


# -- the message ----------------------------------------------------------------------------------
def _to_crlf(data: bytes) -> bytes:
    """Line ends as CRLF (a message read from a file may use bare LF)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return re.sub(rb"\r?\n", b"\r\n", data)


@dataclass(slots=True)
class ParsedMessage:
    """A message with CRLF line ends, its header fields (top first) and a cache of its
    canonical bodies and body hashes."""

    data: bytes
    fields: list[HeaderField]
    body_start: int
    _bodies: dict[str, bytes] = field(default_factory=dict)
    _hashes: dict[tuple[str, str, int | None], bytes] = field(default_factory=dict)

    @property
    def body_size(self) -> int:
        return len(self.data) - self.body_start

    def indexes(self, name: str) -> list[int]:
        """The positions in :attr:`fields` of the fields called ``name`` (any case)."""
        lower = name.lower()
        return [i for i, f in enumerate(self.fields) if f.name.lower() == lower]

    def canonical_body(self, method: str) -> bytes:
        body = self._bodies.get(method)
        if body is None:
            raw = self.data[self.body_start :]
            if method == "relaxed":
                body = b"".join(relaxed_body_chunks(raw))
            else:
                body = simple_body(raw)
            self._bodies[method] = body
        return body

    def body_hash(self, method: str, hash_name: str, length: int | None) -> bytes:
        """The digest of the canonical body, cut to ``length`` octets (``l=``); a ``length``
        past the end is a :class:`VerificationFailure`."""
        key = (method, hash_name, length)
        digest = self._hashes.get(key)
        if digest is None:
            body = self.canonical_body(method)
            if length is not None:
                if length > len(body):
                    raise VerificationFailure(DkimResult.FAIL, "l= is longer than the body")
                body = body[:length]
            digest = self._hashes[key] = hashlib.new(hash_name, body).digest()
        return digest

    def canonical_field(self, index: int, method: str) -> bytes:
        """One header field in the ``simple`` or ``relaxed`` form, CRLF-ended."""
        f = self.fields[index]
        if method == "relaxed":
            return relaxed_header(f.name, f.value)
        raw = self.data[f.start : f.end]
        return raw if raw.endswith(b"\r\n") else raw + b"\r\n"

    def signed_headers(self, names: Iterable[str], method: str, exclude: int) -> bytes:
        """The fields named in ``h=``, each name taking the lowest unused field of that name
        (RFC 6376 §5.4.2); a name with no field left contributes nothing. The field at
        ``exclude`` (the signature itself) is never taken."""
        stacks: dict[str, list[int]] = {}
        for i, f in enumerate(self.fields):
            if f.name and i != exclude:
                stacks.setdefault(f.name.lower(), []).append(i)
        out = []
        for name in names:
            stack = stacks.get(name.lower())
            if stack:
                out.append(self.canonical_field(stack.pop(), method))
        return b"".join(out)

    def signature_field(self, index: int, method: str) -> bytes:
        """The signature field with its ``b=`` value emptied and no final CRLF: the last thing
        hashed (RFC 6376 §3.7)."""
        f = self.fields[index]
        value = _B_VALUE.sub(rb"\1", f.value, count=1)
        if method == "relaxed":
            return relaxed_header(f.name, value)[:-2]
        raw = self.data[f.start : f.end]
        return raw[: raw.index(b":") + 1] + value


_CHUNK = 64 * 1024
_BARE_CR = re.compile(rb"\r(?!\n)")


def relaxed_body_chunks(body: bytes) -> Iterator[bytes]:
    """The relaxed form of a CRLF body (RFC 6376 §3.4.4) in pieces of about 64 KiB cut at line
    ends: each regular-expression pass holds the GIL, so a worker thread doing this lets the
    event loop run between pieces."""
    end = len(body.rstrip(b" \t\r\n"))  # empty and blank lines at the end go,
    for bare_cr in _BARE_CR.finditer(body, end):  # but a CR without its LF is content
        end = bare_cr.end()
    if end == 0:
        return  # an empty body stays empty
    pos = 0
    while pos < end:
        cut = body.find(b"\r\n", min(pos + _CHUNK, end))
        stop = end if cut < 0 or cut >= end else cut + 2
        chunk = _WSP_BYTES.sub(b" ", body[pos:stop]).replace(b" \r\n", b"\r\n")
        if stop == end:
            chunk = chunk.removesuffix(b" ")
            yield chunk + b"\r\n"
            return
        yield chunk
        pos = stop


def parse_message(message: bytes) -> ParsedMessage:
    """Parse the header block once (CRLF line ends assumed or made)."""
    data = _to_crlf(message)
    body_start = split_header_body(data)
    return ParsedMessage(data, parse_header_fields(data, 0, body_start), body_start)


# -- keys -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DkimKey:
    """A key record (RFC 6376 §3.6.1) that may verify mail."""

    key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    key_type: str  # k=: rsa or ed25519
    hashes: frozenset[str] | None  # h=, None when absent (any hash)
    testing: bool  # t=y
    strict: bool  # t=s: i= must be exactly d=

    @property
    def bits(self) -> int:
        return self.key.key_size if isinstance(self.key, rsa.RSAPublicKey) else 256


def parse_key_record(text: bytes) -> DkimKey:
    """A key record, or :class:`VerificationFailure` (permerror) saying what is wrong with it."""

    def bad(reason: str) -> VerificationFailure:
        return VerificationFailure(DkimResult.PERMERROR, reason)

    try:
        tags = parse_tag_list(text)
    except TagListError as exc:
        raise bad(f"bad key record: {exc}") from None
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        raise bad(f"bad key record version v={tags['v']} (DKIM1, first)")
    if "p" not in tags:
        raise bad("key record without p=")
    public = _WSP.sub("", tags["p"])
    if not public:
        raise bad("key revoked")  # §3.6.1: an empty p= means revoked
    services = {s.strip() for s in tags.get("s", "*").split(":")}
    if not services & {"*", "email"}:
        raise bad(f"key is not for email (s={tags['s']})")
    key_type = tags.get("k", "rsa")
    hash_list = None
    if "h" in tags:
        hash_list = frozenset(h.strip() for h in tags["h"].split(":"))
    flags = {f.strip() for f in tags.get("t", "").split(":")}
    try:
        raw = base64.b64decode(public, validate=True)
    except (binascii.Error, ValueError):
        raise bad("key record p= is not base64") from None
    key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    if key_type == "rsa":
        try:
            loaded = serialization.load_der_public_key(raw)
        except (ValueError, UnsupportedAlgorithm):
            raise bad("key record p= is not an RSA public key") from None
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise bad("key record p= is not an RSA public key")
        key = loaded
    elif key_type == "ed25519":
        if len(raw) != 32:  # RFC 8463 §4.2: the bare 32-octet key
            raise bad("key record p= is not an Ed25519 public key")
        key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    else:
        raise bad(f"unknown key type k={key_type}")
    return DkimKey(key, key_type, hash_list, "y" in flags, "s" in flags)


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The key published under one selector, or why there is none to use."""

    key: DkimKey | None
    failure: VerificationFailure | None


def _key_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


async def _lookup(resolver: Resolver, name: str) -> KeyLookup:
    answer = await resolver.txt(name)
    if answer.status == Status.TEMPORARY:
        return KeyLookup(None, VerificationFailure(DkimResult.TEMPERROR, "key lookup failed"))
    if answer.status != Status.FOUND or not answer.records:
        reason = "no key for the selector" + (
            " (NXDOMAIN)" if answer.status == Status.NXDOMAIN else ""
        )
        return KeyLookup(None, VerificationFailure(DkimResult.PERMERROR, reason))
    # §3.6.2.2: several TXT records at a selector are undefined; the first one is used
    try:
        return KeyLookup(parse_key_record(answer.records[0]), None)
    except VerificationFailure as exc:
        return KeyLookup(None, exc)


async def fetch_keys(
    resolver: Resolver, selectors: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], KeyLookup]:
    """The key records of ``(selector, domain)`` pairs, looked up concurrently."""
    wanted = list(dict.fromkeys((s.lower(), d.lower()) for s, d in selectors))
    found = await asyncio.gather(*(_lookup(resolver, _key_name(s, d)) for s, d in wanted))
    return dict(zip(wanted, found, strict=True))


# -- shared checks --------------------------------------------------------------------------------
def parse_algorithm(value: str) -> tuple[str, str]:
    """``a=`` as (key type, hash name); permerror when unknown."""
    try:
        return _ALGORITHMS[value.lower()]
    except KeyError:
        raise VerificationFailure(DkimResult.PERMERROR, f"unknown algorithm a={value}") from None


def parse_canonicalization(value: str | None) -> tuple[str, str]:
    """``c=`` as (header, body) methods; the body method defaults to simple (§3.5)."""
    header, _, body = (value or "simple/simple").lower().partition("/")
    body = body or "simple"
    if header not in _CANONICALIZATIONS or body not in _CANONICALIZATIONS:
        raise VerificationFailure(DkimResult.PERMERROR, f"unknown canonicalization c={value}")
    return header, body


def decode_base64(value: str, tag: str) -> bytes:
    """A base64 tag value (whitespace inside ignored, §3.5); permerror when malformed."""
    compact = _WSP.sub("", value)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailure(DkimResult.PERMERROR, f"{tag}= is not base64") from None
    if not data:
        raise VerificationFailure(DkimResult.PERMERROR, f"{tag}= is empty")
    return data


def check_domain(value: str, tag: str) -> str:
    """A domain name (or selector) in lower case; permerror when it is not one."""
    text = value.strip().rstrip(".")
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_LABEL.match(label) for label in labels):
        if not text.isascii() and all(labels):
            return text.lower()  # U-labels (RFC 8616); the resolver asks them as A-labels
        raise VerificationFailure(DkimResult.PERMERROR, f"bad {tag}={value}")
    return text.lower()


def check_key(key: DkimKey, key_type: str, hash_name: str) -> None:
    """The key may make this kind of signature (RFC 6376 §6.1.2, RFC 8301 §3.2)."""
    if key.key_type != key_type:
        raise VerificationFailure(
            DkimResult.PERMERROR, f"key type {key.key_type} does not match the algorithm"
        )
    if key.hashes is not None and hash_name not in key.hashes:
        raise VerificationFailure(DkimResult.PERMERROR, f"key does not allow {hash_name}")
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < RSA_MIN_BITS:
        raise VerificationFailure(
            DkimResult.PERMERROR,
            f"RSA key of {key.key.key_size} bits (at least {RSA_MIN_BITS}, RFC 8301)",
        )


def signature_matches(key: DkimKey, hash_name: str, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``data`` (Ed25519 signs the SHA-256 of the
    data, RFC 8463 §3)."""
    try:
        if isinstance(key.key, rsa.RSAPublicKey):
            algorithm = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()
            key.key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            key.key.verify(signature, hashlib.sha256(data).digest())
    except InvalidSignature:
        return False
    return True


def header_names(value: str) -> list[str]:
    """``h=`` as a list of names (whitespace around the colons allowed; an empty name, as in
    ``from::to``, selects nothing, as dkimpy and the ARC test suite have it)."""
    return [name for name in (n.strip(" \t\r\n") for n in value.split(":")) if name]


def parse_time(tags: Mapping[str, str], tag: str) -> int | None:
    if tag not in tags:
        return None
    if not _DIGITS.match(tags[tag]):
        raise VerificationFailure(DkimResult.PERMERROR, f"{tag}= is not a number")
    return int(tags[tag])


# -- DKIM-Signature -------------------------------------------------------------------------------
_REQUIRED = ("v", "a", "b", "bh", "d", "h", "s")


@dataclass(slots=True)
class _Signature:
    index: int
    b_text: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    identity: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    failure: VerificationFailure | None = None


def _read_signature(msg: ParsedMessage, index: int, now: float) -> _Signature:
    try:
        tags = parse_tag_list(msg.fields[index].value)
    except TagListError as exc:
        b_match = re.search(rb"(?:^|;)\s*b\s*=([^;]*)", msg.fields[index].value)
        b_text = _WSP.sub("", b_match.group(1).decode("ascii", "replace")) if b_match else ""
        failure = VerificationFailure(DkimResult.NEUTRAL, f"signature syntax error: {exc}")
        return _Signature(index, b_text, failure=failure)
    sig = _Signature(
        index,
        _WSP.sub("", tags.get("b", "")),
        domain=tags.get("d", "").lower(),
        selector=tags.get("s", "").lower(),
        algorithm=tags.get("a", "").lower(),
        identity=tags.get("i", "@" + tags.get("d", "")),
        tags=tags,
    )
    try:
        _check_signature_tags(sig, tags, now)
    except VerificationFailure as exc:
        sig.failure = exc
    return sig


def _check_signature_tags(sig: _Signature, tags: Mapping[str, str], now: float) -> None:
    """RFC 6376 §6.1.1, before any key is fetched."""
    missing = [tag for tag in _REQUIRED if tag not in tags]
    if missing:
        raise VerificationFailure(DkimResult.PERMERROR, f"required tag {missing[0]}= missing")
    if tags["v"] != "1":
        raise VerificationFailure(DkimResult.PERMERROR, f"unsupported version v={tags['v']}")
    parse_algorithm(tags["a"])
    parse_canonicalization(tags.get("c"))
    sig.domain = check_domain(tags["d"], "d")
    sig.selector = check_domain(tags["s"], "s")
    if "from" not in {name.lower() for name in header_names(tags["h"])}:
        raise VerificationFailure(DkimResult.PERMERROR, "From is not signed (h=)")
    _local, at, identity_domain = sig.identity.rpartition("@")
    identity_domain = identity_domain.lower().rstrip(".")
    if not at or not (identity_domain == sig.domain or identity_domain.endswith("." + sig.domain)):
        raise VerificationFailure(DkimResult.PERMERROR, f"i={sig.identity} is not within d=")
    if "q" in tags and "dns/txt" not in {q.strip() for q in tags["q"].split(":")}:
        raise VerificationFailure(DkimResult.PERMERROR, f"unsupported query method q={tags['q']}")
    if "l" in tags and not _DIGITS.match(tags["l"]):
        raise VerificationFailure(DkimResult.PERMERROR, "l= is not a number")
    decode_base64(tags["bh"], "bh")
    decode_base64(tags["b"], "b")
    signed_at, expires = parse_time(tags, "t"), parse_time(tags, "x")
    if signed_at is not None and expires is not None and expires < signed_at:
        raise VerificationFailure(DkimResult.PERMERROR, "x= is earlier than t=")
    if signed_at is not None and signed_at > now + FUTURE_SKEW:
        raise VerificationFailure(DkimResult.PERMERROR, "signature timestamp in the future")
    if expires is not None and expires < now:
        raise VerificationFailure(DkimResult.FAIL, "signature expired")


def _judge(msg: ParsedMessage, sig: _Signature, lookup: KeyLookup | None) -> DkimVerdict:
    key = lookup.key if lookup is not None else None
    try:
        if sig.failure is not None:
            raise sig.failure
        if lookup is None or key is None:
            raise (
                lookup.failure
                if lookup and lookup.failure
                else VerificationFailure(DkimResult.PERMERROR, "no key for the selector")
            )
        tags = sig.tags
        key_type, hash_name = parse_algorithm(tags["a"])
        check_key(key, key_type, hash_name)
        if key.strict and sig.identity.rpartition("@")[2].lower().rstrip(".") != sig.domain:
            raise VerificationFailure(DkimResult.PERMERROR, "key requires i= to be d= (t=s)")
        header_method, body_method = parse_canonicalization(tags.get("c"))
        length = int(tags["l"]) if "l" in tags else None
        if msg.body_hash(body_method, hash_name, length) != decode_base64(tags["bh"], "bh"):
            raise VerificationFailure(DkimResult.FAIL, "body hash did not verify")
        data = msg.signed_headers(header_names(tags["h"]), header_method, sig.index)
        data += msg.signature_field(sig.index, header_method)
        if not signature_matches(key, hash_name, data, decode_base64(tags["b"], "b")):
            raise VerificationFailure(DkimResult.FAIL, "signature did not verify")
        if hash_name == "sha1":  # RFC 8301 §3.1
            raise VerificationFailure(
                DkimResult.POLICY, "rsa-sha1 signature verified, but RFC 8301 forbids relying on it"
            )
        result, reason = DkimResult.PASS, "signature verified"
    except VerificationFailure as exc:
        result, reason = exc.result, exc.reason
    if key is not None and key.testing:
        reason += " (key in testing mode, t=y)"
    return DkimVerdict(
        result=result,
        domain=sig.domain,
        selector=sig.selector,
        algorithm=sig.algorithm,
        identity=sig.identity,
        header_b=sig.b_text,  # shortened by _shorten_header_b
        reason=reason,
        testing=key.testing if key is not None else False,
        key_bits=key.bits if key is not None else 0,
    )


def _shorten_header_b(values: Sequence[str]) -> list[str]:
    """Each ``b=`` cut to the shortest prefix of at least 8 characters that no other
    signature of the message shares (RFC 6008 §4)."""
    out = []
    for i, value in enumerate(values):
        others = [v for j, v in enumerate(values) if j != i]
        length = HEADER_B_MIN
        while length < len(value) and any(o.startswith(value[:length]) for o in others):
            length += 1
        out.append(value[:length])
    return out


def _judge_all(
    msg: ParsedMessage,
    signatures: Sequence[_Signature],
    keys: Mapping[tuple[str, str], KeyLookup],
) -> list[DkimVerdict]:
    return [_judge(msg, sig, keys.get((sig.selector, sig.domain))) for sig in signatures]


async def verify_dkim(
    resolver: Resolver,
    message: bytes,
    *,
    now: float | None = None,
    max_signatures: int = MAX_SIGNATURES,
) -> list[DkimVerdict]:
    """One verdict per DKIM-Signature field of ``message``, top first; empty when unsigned.

    ``now`` (Unix seconds, default the clock) judges ``t=`` and ``x=``. At most
    ``max_signatures`` are checked; later ones get ``policy`` without a key lookup.
    """
    when = time.time() if now is None else now
    large = len(message) > LARGE_BODY
    msg = await asyncio.to_thread(parse_message, message) if large else parse_message(message)
    indexes = msg.indexes("DKIM-Signature")
    if not indexes:
        return []
    signatures = [_read_signature(msg, i, when) for i in indexes[:max_signatures]]
    keys = await fetch_keys(
        resolver, ((s.selector, s.domain) for s in signatures if s.failure is None)
    )
    if large:
        verdicts = await asyncio.to_thread(_judge_all, msg, signatures, keys)
    else:
        verdicts = _judge_all(msg, signatures, keys)
    for index in indexes[max_signatures:]:
        skipped = _read_signature(msg, index, when)
        verdicts.append(
            DkimVerdict(
                DkimResult.POLICY,
                skipped.domain,
                skipped.selector,
                skipped.algorithm,
                skipped.identity,
                skipped.b_text,
                f"not checked: more than {max_signatures} signatures",
            )
        )
    shortened = _shorten_header_b([v.header_b for v in verdicts])
    return [replace(v, header_b=b) for v, b in zip(verdicts, shortened, strict=True)]
