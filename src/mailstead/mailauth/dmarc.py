"""DMARC (RFC 7489): the author domain, policy discovery, record parsing, identifier alignment
and what to do with a message that fails.

The inputs are plain: the RFC 5322.From domain (see :func:`author_domain`), the SPF result with
the domain it was evaluated for (the MAIL FROM domain, or the HELO name for a null sender, as
RFC 7208 §2.4 has it), and the result and ``d=`` of every DKIM signature. The answer is a
:class:`DmarcVerdict`. DNS goes through ``mailstead.dns.Resolver``; a temporary DNS failure is
``temperror`` (the caller answers 4xx), never a reason to refuse mail permanently.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from mailstead.dns import Resolver, Status
from mailstead.mailauth.author import AuthorError, parse_mailbox_list
from mailstead.mailauth.psl import ascii_domain, organizational_domain
from mailstead.message.headers import parse_header_fields

__all__ = [
    "DmarcRecord",
    "DmarcRecordError",
    "DmarcResult",
    "DmarcVerdict",
    "FromDomainError",
    "Policy",
    "aligned",
    "author_domain",
    "author_domains",
    "check_dmarc",
    "check_message_dmarc",
    "is_dmarc_record",
    "parse_dmarc_record",
]

DmarcResult = Literal["pass", "fail", "none", "temperror", "permerror"]
Policy = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]

POLICIES: tuple[Policy, ...] = get_args(Policy)
# RFC 7489 §6.6.4: messages left out by pct= get the next policy down.
_LOWER: dict[Policy, Policy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}

DEFAULT_REPORT_INTERVAL = 86_400
_MAX_URIS = 16  # more reporting addresses than anyone needs; the rest are ignored
# RFC 7489 §6.4: dmarc-version = "v" *WSP "=" *WSP %x44 %x4d %x41 %x52 %x43 %x31 (case-sensitive)
_VERSION = re.compile(r"^[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")
_TAG = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*?)[ \t]*$", re.DOTALL)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s,;!]+(?:![0-9]+[kmgtKMGT]?)?$")
_FO = re.compile(r"^[01ds](?:[ \t]*:[ \t]*[01ds])*$")
_RF = re.compile(r"^[A-Za-z0-9-]+(?:[ \t]*:[ \t]*[A-Za-z0-9-]+)*$")


class DmarcRecordError(ValueError):
    """A TXT record that cannot be used as a DMARC policy."""


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed DMARC record (RFC 7489 §6.3). Tags with bad values take their defaults and are
    named in ``notes``; unknown tags are ignored."""

    policy: Policy
    subdomain_policy: Policy | None = None
    nonexistent_policy: Policy | None = None  # np=, RFC 9091 §4.1
    adkim: Alignment = "r"
    aspf: Alignment = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    rf: str = "afrf"
    ri: int = DEFAULT_REPORT_INTERVAL
    notes: tuple[str, ...] = ()


def is_dmarc_record(text: bytes | str) -> bool:
    """Whether a TXT record starts with ``v=DMARC1`` (RFC 7489 §6.6.3 step 3 keeps only those)."""
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return _VERSION.match(value.lstrip(" \t")) is not None


def _uris(value: str, notes: list[str], tag: str) -> tuple[str, ...]:
    good = []
    for part in value.split(","):
        uri = part.strip(" \t")
        if _URI.match(uri):
            good.append(uri)
        elif uri:
            notes.append(f"{tag}: {uri!r} is not a URI; ignored")
    return tuple(good[:_MAX_URIS])


def _policy(value: str) -> Policy | None:
    lowered = value.lower()
    for policy in POLICIES:
        if lowered == policy:
            return policy
    return None


def parse_dmarc_record(text: bytes | str) -> DmarcRecord:
    """Parse one TXT record (RFC 7489 §6.3, §6.4). Raises ``DmarcRecordError`` when it is not a
    DMARC record or has no usable policy. A bad or missing ``p=`` (or a bad ``sp=``) with a
    usable ``rua=`` reads as ``p=none`` (§6.6.3 step 6)."""
    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    value = value.lstrip(" \t")
    if not _VERSION.match(value):
        raise DmarcRecordError("does not start with v=DMARC1")
    tags: dict[str, str] = {}
    notes: list[str] = []
    for part in value.split(";")[1:]:
        if not part.strip(" \t"):
            continue
        m = _TAG.match(part.strip(" \t"))
        if m is None:
            notes.append(f"{part.strip()!r} is not a tag=value pair; ignored")
            continue
        name, tag_value = m.group(1).lower(), m.group(2)
        if name in tags:
            notes.append(f"{name}= given twice; the first one counts")
            continue
        tags[name] = tag_value

    rua = _uris(tags["rua"], notes, "rua") if "rua" in tags else ()
    ruf = _uris(tags["ruf"], notes, "ruf") if "ruf" in tags else ()
    policy = _policy(tags["p"]) if "p" in tags else None
    subdomain_policy = _policy(tags["sp"]) if "sp" in tags else None
    sp_bad = "sp" in tags and subdomain_policy is None
    if policy is None or sp_bad:
        problem = "sp= is not none, quarantine or reject" if sp_bad else "no valid p= tag"
        if policy is None and "p" in tags:
            problem = f"p={tags['p']} is not none, quarantine or reject"
        if not rua:
            raise DmarcRecordError(problem)
        # RFC 7489 §6.6.3 step 6: keep the reports coming, apply nothing.
        notes.append(f"{problem}: read as p=none because rua= is valid")
        policy, subdomain_policy = "none", None

    nonexistent_policy = None
    if "np" in tags:
        nonexistent_policy = _policy(tags["np"])
        if nonexistent_policy is None:
            notes.append(f"np={tags['np']} is not a policy; ignored")

    def alignment(tag: str) -> Alignment:
        if tag not in tags:
            return "r"
        mode = tags[tag].lower()
        if mode == "s":
            return "s"
        if mode != "r":
            notes.append(f"{tag}={tags[tag]} is not r or s; relaxed assumed")
        return "r"

    adkim, aspf = alignment("adkim"), alignment("aspf")
    pct = 100
    if "pct" in tags:
        if tags["pct"].isdigit() and int(tags["pct"]) <= 100:
            pct = int(tags["pct"])
        else:
            notes.append(f"pct={tags['pct']} is not 0..100; 100 assumed")
    fo = "0"
    if "fo" in tags:
        if _FO.match(tags["fo"]):
            fo = re.sub(r"[ \t]", "", tags["fo"])
        else:
            notes.append(f"fo={tags['fo']} is not a list of 0, 1, d, s; 0 assumed")
    rf = "afrf"
    if "rf" in tags:
        if _RF.match(tags["rf"]):
            rf = re.sub(r"[ \t]", "", tags["rf"]).lower()
        else:
            notes.append(f"rf={tags['rf']} is not a list of formats; afrf assumed")
    ri = DEFAULT_REPORT_INTERVAL
    if "ri" in tags:
        if tags["ri"].isdigit() and int(tags["ri"]) < 2**32:
            ri = int(tags["ri"])
        else:
            notes.append(f"ri={tags['ri']} is not a number of seconds; 86400 assumed")
    return DmarcRecord(
        policy=policy,
        subdomain_policy=subdomain_policy,
        nonexistent_policy=nonexistent_policy,
        adkim=adkim,
        aspf=aspf,
        pct=pct,
        rua=rua,
        ruf=ruf,
        fo=fo,
        rf=rf,
        ri=ri,
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class DmarcVerdict:
    """What DMARC says about one message.

    ``result`` is what goes into Authentication-Results. ``policy`` is the published policy that
    applies to ``from_domain`` (``p=``, or ``sp=``/``np=`` for a subdomain; ``none`` without a
    record); ``disposition`` is what to do with the message: the policy when it failed and was
    sampled by ``pct=``, the next policy down when it was not, ``none`` otherwise. Domains are
    A-labels in lower case."""

    result: DmarcResult
    policy: Policy
    disposition: Policy
    from_domain: str
    org_domain: str
    reason: str
    record: DmarcRecord | None = None
    record_domain: str = ""  # where the record was found: from_domain or org_domain
    spf_aligned: bool = False
    dkim_aligned: tuple[str, ...] = ()  # the d= of the aligned, passing signatures
    sampled: bool = True  # False when pct= left this message out of the policy
    notes: tuple[str, ...] = field(default=())

    @property
    def comment(self) -> str:
        """``p=reject dis=none`` (with ``sp=`` when published), for Authentication-Results."""
        if self.record is None:
            return ""
        parts = [f"p={self.record.policy}"]
        if self.record.subdomain_policy is not None:
            parts.append(f"sp={self.record.subdomain_policy}")
        parts.append(f"dis={self.disposition}")
        return " ".join(parts)


def aligned(a: str, b: str, mode: Alignment) -> bool:
    """RFC 7489 §3.1: strict alignment wants the same name, relaxed the same organizational
    domain. Names that are not domains align with nothing."""
    try:
        first, second = ascii_domain(a), ascii_domain(b)
    except ValueError:
        return False
    if first == second:
        return True
    return mode == "r" and organizational_domain(first) == organizational_domain(second)


@dataclass(frozen=True, slots=True)
class _Discovery:
    record: DmarcRecord | None
    domain: str
    result: DmarcResult  # "none" or "temperror" when there is no record
    reason: str


async def _ask(resolver: Resolver, domain: str) -> _Discovery | None:
    """The DMARC record at ``_dmarc.domain``; None when there is none there."""
    name = f"_dmarc.{domain}"
    answer = await resolver.txt(name)
    if answer.status is Status.TEMPORARY:
        detail = answer.detail or "temporary DNS failure"
        return _Discovery(None, domain, "temperror", f"TXT {name}: {detail}")
    records = [r for r in answer.records if is_dmarc_record(r)] if answer.found else []
    if not records:
        return None
    if len(records) > 1:
        # RFC 7489 §6.6.3 step 5: more than one record means no DMARC at all.
        reason = f"{len(records)} DMARC records at {name}: none applies (RFC 7489 §6.6.3)"
        return _Discovery(None, domain, "none", reason)
    try:
        record = parse_dmarc_record(records[0])
    except DmarcRecordError as exc:
        # RFC 7489 §6.6.3 step 6: an unusable record is no record; discovery stops here.
        return _Discovery(None, domain, "none", f"invalid DMARC record at {name} ignored: {exc}")
    return _Discovery(record, domain, "none", "")


async def _discover(resolver: Resolver, domain: str, org: str) -> _Discovery:
    """RFC 7489 §6.6.3: the From domain's record, else the organizational domain's."""
    found = await _ask(resolver, domain)
    if found is None and org != domain:
        found = await _ask(resolver, org)
    if found is None:
        where = domain if org == domain else f"{domain} or {org}"
        return _Discovery(None, domain, "none", f"no DMARC record for {where}")
    return found


async def _nonexistent(resolver: Resolver, domain: str) -> bool | None:
    """RFC 9091 §2.7: the domain does not exist (NXDOMAIN); None when DNS could not say."""
    answer = await resolver.mx(domain)
    if answer.temporary:
        return None
    return answer.status is Status.NXDOMAIN


async def check_dmarc(
    resolver: Resolver,
    from_domain: str,
    *,
    spf: tuple[str, str] | None,
    dkim: Sequence[tuple[str, str]] = (),
    random: Callable[[], float] = _random.random,
) -> DmarcVerdict:
    """Evaluate DMARC for a message whose RFC 5322.From domain is ``from_domain``.

    ``spf`` is (result, domain evaluated) or None when SPF was not checked; ``dkim`` holds
    (result, d=) for each signature. ``random`` returns a float in [0, 1) for ``pct=``
    sampling; tests pass a fixed one."""
    try:
        domain = ascii_domain(from_domain)
        if domain.startswith("["):
            raise ValueError("an address literal has no DMARC policy")
        org = organizational_domain(domain)
    except ValueError as exc:
        shown = from_domain.lower()
        return DmarcVerdict(
            "permerror", "none", "none", shown, shown, f"From domain {from_domain!r}: {exc}"
        )

    found = await _discover(resolver, domain, org)
    record = found.record
    if record is None:
        return DmarcVerdict(found.result, "none", "none", domain, org, found.reason)

    notes = list(record.notes)
    policy: Policy = record.policy
    if found.domain != domain:  # a subdomain under its organization's record
        policy = record.subdomain_policy or record.policy
        if record.nonexistent_policy is not None:
            missing = await _nonexistent(resolver, domain)
            if missing:
                policy = record.nonexistent_policy
            elif missing is None:
                notes.append(f"could not tell whether {domain} exists; np= not applied")

    spf_ok = False
    temporary: list[str] = []
    unaligned: list[str] = []
    if spf is not None:
        spf_result, spf_domain = spf[0].lower(), spf[1]
        spf_match = aligned(spf_domain, domain, record.aspf)
        if spf_result == "pass" and spf_match:
            spf_ok = True
        elif spf_result == "temperror" and spf_match:
            temporary.append(f"SPF temperror for {spf_domain}")
        elif spf_result == "pass":
            unaligned.append(f"SPF pass for {spf_domain} is not aligned")
    dkim_ok = []
    for dkim_result, d in dkim:
        d_match = aligned(d, domain, record.adkim)
        if dkim_result.lower() == "pass" and d_match:
            dkim_ok.append(ascii_domain(d))
        elif dkim_result.lower() == "temperror" and d_match:
            temporary.append(f"DKIM temperror for d={d}")
        elif dkim_result.lower() == "pass":
            unaligned.append(f"DKIM pass for d={d} is not aligned")

    def verdict(
        result: DmarcResult, disposition: Policy, reason: str, *, sampled: bool = True
    ) -> DmarcVerdict:
        return DmarcVerdict(
            result,
            policy,
            disposition,
            domain,
            org,
            reason,
            record,
            found.domain,
            spf_ok,
            tuple(dkim_ok),
            sampled,
            tuple(notes),
        )

    if spf_ok or dkim_ok:
        how = [f"SPF ({spf[1] if spf else ''})"] if spf_ok else []
        how += [f"DKIM d={d}" for d in dkim_ok]
        return verdict("pass", "none", "aligned pass: " + ", ".join(how))
    if temporary:
        # An aligned identifier could not be checked: it might pass when asked again.
        return verdict("temperror", "none", "; ".join(temporary))
    reason = "no aligned SPF or DKIM pass"
    if unaligned:
        reason += " (" + "; ".join(unaligned) + ")"
    if record.pct >= 100 or random() * 100 < record.pct:
        return verdict("fail", policy, reason)
    reason += f"; left out by pct={record.pct}"
    return verdict("fail", _LOWER[policy], reason, sampled=False)


class FromDomainError(ValueError):
    """The header block has no single author domain. ``result`` is ``none`` (no From field:
    not subject to DMARC, RFC 7489 §6.6.1) or ``permerror`` (several From fields, addresses of
    different domains, or an address without a usable domain)."""

    def __init__(self, result: DmarcResult, message: str) -> None:
        super().__init__(message)
        self.result: DmarcResult = result


def author_domains(header_block: bytes) -> tuple[str, ...]:
    """Every RFC 5322.From domain of the header block (RFC 7489 §6.6.1), as A-labels in lower
    case, each once, in order.

    Exactly one From field is required, and it must parse as an address-list in full
    (:func:`mailstead.mailauth.author.parse_mailbox_list`): a lenient reading would evaluate
    one address while the reader's client shows another. Raises ``FromDomainError``: ``none``
    without a From field, ``permerror`` for several From fields, one that does not parse or
    holds no address, or an address without a usable domain."""
    fields = [f for f in parse_header_fields(header_block) if f.name.lower() == "from"]
    if not fields:
        raise FromDomainError("none", "no From header field")
    if len(fields) > 1:
        raise FromDomainError("permerror", f"{len(fields)} From header fields")
    try:
        addresses = parse_mailbox_list(fields[0].value)
    except AuthorError as exc:
        raise FromDomainError("permerror", f"the From field is invalid: {exc}") from None
    if not addresses:
        raise FromDomainError("permerror", "the From field has no address")
    domains: list[str] = []
    for address in addresses:
        if address.literal:
            raise FromDomainError("permerror", f"From address {address.addr_spec!r} has no domain")
        try:
            name = ascii_domain(address.domain)
        except ValueError as exc:
            raise FromDomainError("permerror", f"From domain: {exc}") from None
        if name not in domains:
            domains.append(name)
    return tuple(domains)


def author_domain(header_block: bytes) -> str:
    """The one RFC 5322.From domain (:func:`author_domains`). Several addresses are accepted
    only when they share one domain; RFC 7489 §6.6.1 leaves the choice to the receiver (the
    SMTP server evaluates each domain instead and applies the strictest outcome). Raises
    ``FromDomainError``."""
    domains = author_domains(header_block)
    if len(domains) > 1:
        listed = ", ".join(sorted(domains))
        raise FromDomainError(
            "permerror", f"the From field has addresses in several domains: {listed}"
        )
    return domains[0]


async def check_message_dmarc(
    resolver: Resolver,
    header_block: bytes,
    *,
    spf: tuple[str, str] | None,
    dkim: Sequence[tuple[str, str]] = (),
    random: Callable[[], float] = _random.random,
) -> DmarcVerdict:
    """:func:`author_domain` then :func:`check_dmarc`; a message without a single author
    domain gets ``none`` or ``permerror`` and no policy."""
    try:
        domain = author_domain(header_block)
    except FromDomainError as exc:
        return DmarcVerdict(exc.result, "none", "none", "", "", str(exc))
    return await check_dmarc(resolver, domain, spf=spf, dkim=dkim, random=random)
