"""ARC (RFC 8617): validating an Authenticated Received Chain and sealing the next set.

Every intermediary that changes a message may add an ARC set of three header fields:
ARC-Authentication-Results (AAR, what it saw), ARC-Message-Signature (AMS, a DKIM-like
signature over the message as it forwards it) and ARC-Seal (AS, a signature over all the ARC
sets so far). :func:`verify_arc` walks the chain as §5.2 says and returns one
:class:`ArcVerdict`; :func:`seal` makes the three fields of the next set (§5.1).

The signatures are DKIM signatures (RFC 6376) with other tags, so canonicalization, key
records and the crypto come from :mod:`mailstead.mailauth.dkim_verify` and
:mod:`mailstead.mailauth.dkim`. ARC signs with ``rsa-sha256`` (§4.1.3); ``ed25519-sha256``
(RFC 8463) is accepted and produced too, for peers that know it.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mailstead.dns import Resolver
from mailstead.mailauth.dkim import (
    HeaderFolder,
    SigningKey,
    TagListError,
    parse_tag_list,
    relaxed_header,
    sign_data,
)
from mailstead.mailauth.dkim_verify import (
    LARGE_BODY,
    DkimKey,
    DkimResult,
    KeyLookup,
    ParsedMessage,
    VerificationFailure,
    check_domain,
    check_key,
    decode_base64,
    fetch_keys,
    header_names,
    parse_algorithm,
    parse_canonicalization,
    parse_message,
    parse_time,
    signature_matches,
)

__all__ = [
    "ARC_SIGNED_HEADERS",
    "MAX_INSTANCES",
    "ArcError",
    "ArcResult",
    "ArcVerdict",
    "seal",
    "verify_arc",
]

MAX_INSTANCES = 50  # RFC 8617 §4.2.1: at most 50 ARC sets

AAR = "ARC-Authentication-Results"
AMS = "ARC-Message-Signature"
AS = "ARC-Seal"

# Header fields the AMS signs when present: DKIM's list and the DKIM-Signature fields
# (RFC 8617 §4.1.2 suggests them); never ARC-Seal (§4.1.2) nor Authentication-Results.
ARC_SIGNED_HEADERS: tuple[str, ...] = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "In-Reply-To",
    "References", "Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "Content-ID", "Content-Description", "Resent-Date", "Resent-From", "Resent-Sender",
    "Resent-To", "Resent-Cc", "Resent-Message-ID", "List-Id", "List-Help", "List-Unsubscribe",
    "List-Unsubscribe-Post", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
    "DKIM-Signature",
)  # fmt: skip

_AAR_INSTANCE = re.compile(rb"\A[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*([0-9]+)[ \t\r\n]*;")
_INSTANCE = re.compile(r"[1-9][0-9]{0,1}\Z")
_CV_VALUES = ("none", "pass", "fail")  # §4.1.3, case-sensitive like every tag value here
_AMS_REQUIRED = ("i", "a", "b", "bh", "d", "h", "s")
_AS_REQUIRED = ("i", "a", "b", "cv", "d", "s")


class ArcResult(StrEnum):
    """The chain validation status (RFC 8617 §4.4), also the ``arc=`` result of
    Authentication-Results."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class ArcVerdict:
    """What the chain came to. ``sealers`` are the ``d=`` of the ARC-Seals by instance (i=1
    first); ``oldest_pass`` is §5.2's "oldest-pass" (0 when every AMS still verifies);
    ``latest_cv`` is the ``cv=`` of the most recent ARC-Seal (``""`` when none is readable);
    ``temporary`` says the failure came from DNS trouble."""

    result: ArcResult
    instances: int = 0
    sealers: tuple[str, ...] = ()
    oldest_pass: int = 0
    reason: str = ""
    latest_cv: str = ""
    temporary: bool = False


class ArcError(ValueError):
    """A message that cannot be sealed as asked."""


# -- the chain ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Set:
    instance: int
    aar: list[int] = field(default_factory=list)  # field indexes, one expected of each
    ams: list[int] = field(default_factory=list)
    seal: list[int] = field(default_factory=list)
    ams_tags: dict[str, str] = field(default_factory=dict)
    seal_tags: dict[str, str] = field(default_factory=dict)


class _Broken(Exception):
    """The chain fails for ``reason``."""


def _instance(value: str, what: str) -> int:
    if not _INSTANCE.match(value) or int(value) > MAX_INSTANCES:
        raise _Broken(f"{what} has a bad instance i={value}")
    return int(value)


def _collect(msg: ParsedMessage) -> dict[int, _Set]:
    """The ARC fields grouped by instance; :class:`_Broken` for a field whose instance cannot
    be read (§5.2 step 1)."""
    sets: dict[int, _Set] = {}
    for index, f in enumerate(msg.fields):
        name = f.name.lower()
        if name == AAR.lower():
            match = _AAR_INSTANCE.match(f.value)
            if match is None:
                raise _Broken(f"{AAR} without i= in front")
            number = _instance(match.group(1).decode("ascii"), AAR)
            sets.setdefault(number, _Set(number)).aar.append(index)
        elif name in (AMS.lower(), AS.lower()):
            label = AMS if name == AMS.lower() else AS
            try:
                tags = parse_tag_list(f.value)
            except TagListError as exc:
                raise _Broken(f"{label}: {exc}") from None
            if "i" not in tags:
                raise _Broken(f"{label} without i=")
            number = _instance(tags["i"], label)
            entry = sets.setdefault(number, _Set(number))
            if label == AMS:
                entry.ams.append(index)
                entry.ams_tags = tags
            else:
                entry.seal.append(index)
                entry.seal_tags = tags
    return sets


def _check_structure(sets: Mapping[int, _Set]) -> None:
    """§5.2 step 3: sets 1..N, one field of each kind per set, cv= none then pass."""
    if sorted(sets) != list(range(1, len(sets) + 1)):
        raise _Broken(f"ARC instances {sorted(sets)} are not 1..{len(sets)}")
    for number, entry in sorted(sets.items()):
        for label, indexes in ((AAR, entry.aar), (AMS, entry.ams), (AS, entry.seal)):
            if len(indexes) != 1:
                raise _Broken(f"instance {number} has {len(indexes)} {label} fields")
        expected = "none" if number == 1 else "pass"
        cv = entry.seal_tags.get("cv")
        if cv != expected:
            raise _Broken(f"ARC-Seal i={number} has cv={cv}, expected cv={expected}")


def _check_ams(msg: ParsedMessage, entry: _Set, keys: Mapping[tuple[str, str], KeyLookup]) -> None:
    """An AMS verifies (RFC 8617 §4.1.2: a DKIM signature without v=, i= the instance)."""
    tags = entry.ams_tags
    missing = [tag for tag in _AMS_REQUIRED if tag not in tags]
    if missing:
        raise _Broken(f"{AMS} i={entry.instance} lacks {missing[0]}=")
    try:
        key_type, hash_name = _arc_algorithm(tags["a"])
        header_method, body_method = parse_canonicalization(tags.get("c"))
        names = header_names(tags["h"])
        if AS.lower() in {name.lower() for name in names}:
            raise _Broken(f"{AMS} i={entry.instance} signs {AS} (§4.1.2)")
        parse_time(tags, "t")
        key = _key(keys, tags)
        check_key(key, key_type, hash_name)
        body_hash = msg.body_hash(body_method, hash_name, None)
        if body_hash != decode_base64(tags["bh"], "bh"):
            raise _Broken(f"{AMS} i={entry.instance}: body hash did not verify")
        [index] = entry.ams
        data = msg.signed_headers(names, header_method, index)
        data += msg.signature_field(index, header_method)
        if not signature_matches(key, hash_name, data, decode_base64(tags["b"], "b")):
            raise _Broken(f"{AMS} i={entry.instance}: signature did not verify")
    except VerificationFailure as exc:
        raise _failure(f"{AMS} i={entry.instance}", exc) from None


def _check_seal(
    msg: ParsedMessage,
    sets: Mapping[int, _Set],
    number: int,
    keys: Mapping[tuple[str, str], KeyLookup],
) -> None:
    """AS(number) verifies over the sets 1..number (§5.1.1, relaxed header canonicalization)."""
    entry = sets[number]
    tags = entry.seal_tags
    missing = [tag for tag in _AS_REQUIRED if tag not in tags]
    if missing:
        raise _Broken(f"{AS} i={number} lacks {missing[0]}=")
    if "h" in tags:
        raise _Broken(f"{AS} i={number} has h= (§4.1.3 forbids it)")
    try:
        key_type, hash_name = _arc_algorithm(tags["a"])
        parse_time(tags, "t")
        key = _key(keys, tags)
        check_key(key, key_type, hash_name)
        data = _seal_data(msg, sets, number)
        if not signature_matches(key, hash_name, data, decode_base64(tags["b"], "b")):
            raise _Broken(f"{AS} i={number}: signature did not verify")
    except VerificationFailure as exc:
        raise _failure(f"{AS} i={number}", exc) from None


def _seal_data(msg: ParsedMessage, sets: Mapping[int, _Set], number: int) -> bytes:
    parts = []
    for j in range(1, number + 1):
        entry = sets[j]
        parts.append(msg.canonical_field(entry.aar[0], "relaxed"))
        parts.append(msg.canonical_field(entry.ams[0], "relaxed"))
        if j < number:
            parts.append(msg.canonical_field(entry.seal[0], "relaxed"))
    parts.append(msg.signature_field(sets[number].seal[0], "relaxed"))
    return b"".join(parts)


def _arc_algorithm(value: str) -> tuple[str, str]:
    key_type, hash_name = parse_algorithm(value)
    if hash_name != "sha256":  # §4.1.3: rsa-sha256 (rsa-sha1 is not an ARC algorithm)
        raise VerificationFailure(DkimResult.PERMERROR, f"a={value} is not allowed in ARC")
    return key_type, hash_name


def _key(keys: Mapping[tuple[str, str], KeyLookup], tags: Mapping[str, str]) -> DkimKey:
    domain = check_domain(tags["d"], "d")
    selector = check_domain(tags["s"], "s")
    lookup = keys.get((selector, domain))
    if lookup is None or lookup.key is None:
        failure = lookup.failure if lookup is not None else None
        raise failure or VerificationFailure(DkimResult.PERMERROR, "no key for the selector")
    return lookup.key


class _Failure(_Broken):
    def __init__(self, reason: str, temporary: bool) -> None:
        super().__init__(reason)
        self.temporary = temporary


def _failure(where: str, exc: VerificationFailure) -> _Failure:
    return _Failure(f"{where}: {exc.reason}", exc.result == DkimResult.TEMPERROR)


def _selectors(sets: Iterable[_Set]) -> list[tuple[str, str]]:
    wanted = []
    for entry in sets:
        for tags in (entry.ams_tags, entry.seal_tags):
            try:
                wanted.append((check_domain(tags["s"], "s"), check_domain(tags["d"], "d")))
            except (KeyError, VerificationFailure):
                continue  # the check of that signature reports it
    return wanted


def _judge(
    msg: ParsedMessage, sets: Mapping[int, _Set], keys: Mapping[tuple[str, str], KeyLookup]
) -> int:
    """§5.2 steps 4 to 7; returns oldest-pass, raises :class:`_Broken` for a failed chain."""
    newest = len(sets)
    _check_ams(msg, sets[newest], keys)
    oldest_pass = 0
    for number in range(newest - 1, 0, -1):
        try:
            _check_ams(msg, sets[number], keys)
        except _Broken:
            oldest_pass = number + 1
            break
    for number in range(newest, 0, -1):
        _check_seal(msg, sets, number, keys)
    return oldest_pass


async def verify_arc(resolver: Resolver, message: bytes, *, now: float | None = None) -> ArcVerdict:
    """Validate the message's ARC chain (RFC 8617 §5.2). ``now`` is accepted for symmetry with
    DKIM; ARC has no expiry, so it only documents the verification time."""
    del now  # ARC signatures carry no x=; t= is informational (§4.1.3)
    large = len(message) > LARGE_BODY
    msg = await asyncio.to_thread(parse_message, message) if large else parse_message(message)
    try:
        sets = _collect(msg)
    except _Broken as exc:
        return ArcVerdict(ArcResult.FAIL, reason=str(exc))
    if not sets:
        return ArcVerdict(ArcResult.NONE, reason="no ARC sets")
    newest = max(sets)
    sealers = tuple(
        sets[n].seal_tags.get("d", "").lower() if n in sets else "" for n in range(1, newest + 1)
    )
    latest_cv = sets[newest].seal_tags.get("cv", "") if sets[newest].seal else ""
    verdict = ArcVerdict(ArcResult.FAIL, newest, sealers, latest_cv=latest_cv)
    if latest_cv == "fail":  # §5.2 step 2
        return _with(verdict, reason=f"ARC-Seal i={newest} says the chain already failed")
    try:
        _check_structure(sets)
    except _Broken as exc:
        return _with(verdict, reason=str(exc))
    keys = await fetch_keys(resolver, _selectors(sets.values()))
    try:
        if large:
            oldest_pass = await asyncio.to_thread(_judge, msg, sets, keys)
        else:
            oldest_pass = _judge(msg, sets, keys)
    except _Broken as exc:
        temporary = isinstance(exc, _Failure) and exc.temporary
        return _with(verdict, reason=str(exc), temporary=temporary)
    return ArcVerdict(
        ArcResult.PASS, newest, sealers, oldest_pass, f"{newest} ARC sets verified", latest_cv
    )


def _with(verdict: ArcVerdict, *, reason: str, temporary: bool = False) -> ArcVerdict:
    return ArcVerdict(
        verdict.result, verdict.instances, verdict.sealers, verdict.oldest_pass, reason,
        verdict.latest_cv, temporary,
    )  # fmt: skip


# -- sealing --------------------------------------------------------------------------------------
_ARC_ALGORITHM = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}


def seal(
    message: bytes,
    *,
    key: SigningKey,
    domain: str,
    authserv_id: str,
    authentication_results: str,
    chain: ArcVerdict,
    timestamp: int | None = None,
    headers_to_sign: Sequence[str] = ARC_SIGNED_HEADERS,
    linesep: bytes | None = None,
) -> bytes:
    """The fields of the next ARC set, to put in front of ``message`` (RFC 8617 §5.1):
    ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results, in that order.

    ``chain`` is :func:`verify_arc`'s verdict on ``message``; it gives ``cv=``. When the most
    recent seal already says ``cv=fail``, or the chain is full, nothing is added (``b""``,
    §5.1 step 1). A failed chain is sealed with ``cv=fail`` over the new set alone (§5.1.2).
    ``authentication_results`` is the results part of this host's Authentication-Results
    (``spf=pass smtp.mailfrom=...; dkim=...``), without the authserv-id. ``timestamp`` is
    ``t=`` (default: the clock). Plain CPU work: run it off the event loop.
    """
    if chain.latest_cv == "fail" or chain.instances >= MAX_INSTANCES:
        return b""
    if timestamp is None:
        timestamp = int(time.time())
    if linesep is None:
        first = message.find(b"\n")
        linesep = b"\n" if first > 0 and message[first - 1] != 0x0D else b"\r\n"
    try:
        ascii_domain = check_domain(domain, "d")
    except VerificationFailure as exc:
        raise ArcError(f"bad sealing domain {domain!r}") from exc
    if not authserv_id or any(c in authserv_id for c in " \t\r\n;"):
        raise ArcError(f"bad authserv-id {authserv_id!r}")
    number = chain.instances + 1
    cv = chain.result.value
    msg = parse_message(message)
    previous: dict[int, _Set] = {}
    if chain.result != ArcResult.FAIL:
        try:
            previous = _collect(msg)
            if previous:
                _check_structure(previous)
        except _Broken as exc:
            raise ArcError(f"the message's ARC sets do not match the verdict: {exc}") from None
        if len(previous) != chain.instances:
            raise ArcError("the message's ARC sets do not match the verdict")
    algorithm = _ARC_ALGORITHM[key.algorithm]
    common = [("a", algorithm)]

    # ARC-Authentication-Results (§4.1.1): i=, then an Authentication-Results payload
    results = " ".join(authentication_results.split()) or "none"
    aar = HeaderFolder(f"{AAR}:", linesep)
    for token in f"i={number}; {authserv_id}; {results}".split(" "):
        aar.add(token)
    aar_field = aar.text() + linesep

    # ARC-Message-Signature (§4.1.2): relaxed/relaxed over the message with the new AAR on top
    with_aar = parse_message(aar_field + message)
    body_hash = base64.b64encode(with_aar.body_hash("relaxed", "sha256", None)).decode("ascii")
    names = _present_names(with_aar, headers_to_sign)
    ams_tags = [
        *common,
        ("b", ""),
        ("bh", body_hash),
        ("c", "relaxed/relaxed"),
        ("d", ascii_domain),
        ("h", ":".join(names)),
        ("i", str(number)),
        ("s", key.selector),
        ("t", str(timestamp)),
    ]
    unsigned = _fold(AMS, ams_tags, linesep, None)
    data = with_aar.signed_headers(names, "relaxed", -1)
    data += relaxed_header(AMS, unsigned[len(AMS) + 1 :])[:-2]
    ams_field = _fold(AMS, ams_tags, linesep, sign_data(key, data)) + linesep

    # ARC-Seal (§4.1.3): the sets 1..N and the new one, or the new one alone when failed
    seal_tags = [
        *common,
        ("b", ""),
        ("cv", cv),
        ("d", ascii_domain),
        ("i", str(number)),
        ("s", key.selector),
        ("t", str(timestamp)),
    ]
    unsigned = _fold(AS, seal_tags, linesep, None)
    parts = []
    for j in sorted(previous):
        entry = previous[j]
        parts += [
            msg.canonical_field(i, "relaxed") for i in (entry.aar[0], entry.ams[0], entry.seal[0])
        ]
    parts.append(relaxed_header(AAR, aar_field[len(AAR) + 1 :].rstrip(b"\r\n")))
    parts.append(relaxed_header(AMS, ams_field[len(AMS) + 1 :].rstrip(b"\r\n")))
    parts.append(relaxed_header(AS, unsigned[len(AS) + 1 :])[:-2])
    seal_field = _fold(AS, seal_tags, linesep, sign_data(key, b"".join(parts))) + linesep
    return seal_field + ams_field + aar_field


def _present_names(msg: ParsedMessage, names: Sequence[str]) -> list[str]:
    """Each name as often as the message has that field (absent ones left out)."""
    counts: dict[str, int] = {}
    for f in msg.fields:
        counts[f.name.lower()] = counts.get(f.name.lower(), 0) + 1
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        lower = name.lower()
        if lower in seen:
            continue
        seen.add(lower)
        if lower in (AS.lower(), AMS.lower()):
            raise ArcError(f"{name} may not be signed by the {AMS} (§4.1.2)")
        out += [name] * counts.get(lower, 0)
    return out


def _fold(
    name: str, tags: Sequence[tuple[str, str]], linesep: bytes, signature: bytes | None
) -> bytes:
    """``name: a=...; b=...; ...`` folded at 78 columns, tags in the order given, the last one
    without ``;``. ``b=`` is empty when ``signature`` is None (the form that is signed)."""
    folder = HeaderFolder(f"{name}:", linesep)
    for position, (tag, value) in enumerate(tags):
        end = "" if position == len(tags) - 1 else ";"
        if tag == "b" and signature is not None:
            # b= on lines of its own, 72 columns: the layout of the ARC test suite, whose
            # seals we reproduce bit for bit (folding inside b= becomes a space that later
            # ARC-Seals sign)
            folder.add_block("b=", base64.b64encode(signature).decode("ascii") + end)
        elif tag == "b":
            folder.add("b=" + end)
        else:
            folder.add(f"{tag}={value}{end}")
    return folder.text()
