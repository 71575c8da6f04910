"""The checks of one inbound message, put together: SPF at MAIL FROM, then DKIM, ARC and DMARC at
the end of DATA, one Authentication-Results field (RFC 8601), and what to do with the message.

The SMTP server calls :func:`check_spf` when it accepts MAIL FROM and :func:`check_message`
with the content; the verdict says accept, deliver to Junk, refuse (550 5.7.1) or defer (451:
a DNS timeout is never a reason to refuse for good). Which DMARC policies are enforced, and
which ARC sealers may vouch for a message that fails DMARC, is :class:`InboundPolicy`.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailstead.dns import Resolver
from mailstead.mailauth.arc import ArcResult, ArcVerdict, verify_arc
from mailstead.mailauth.dkim_verify import DkimVerdict, verify_dkim
from mailstead.mailauth.dmarc import DmarcVerdict, FromDomainError, author_domains, check_dmarc
from mailstead.mailauth.results import (
    MethodResult,
    format_authentication_results,
    remove_own_results,
)
from mailstead.mailauth.spf import SpfVerdict, check_sender

__all__ = [
    "Action",
    "InboundPolicy",
    "InboundVerdict",
    "check_message",
    "check_spf",
    "header_block",
    "strip_own_results",
]


class Action(enum.Enum):
    """What becomes of the message."""

    ACCEPT = "accept"
    JUNK = "junk"  # delivered to each recipient's Junk folder (DMARC quarantine)
    REJECT = "reject"  # 550 5.7.1 at the end of DATA (DMARC reject, or a malformed From)
    DEFER = "defer"  # 451 4.7.5: the outcome depends on a DNS answer that did not come


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """The administrator's choices ([mailauth] in the configuration)."""

    authserv_id: str
    dmarc_reject: str = "reject"  # reject | quarantine | none
    dmarc_quarantine: str = "quarantine"  # quarantine | none
    arc_trusted_sealers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class InboundVerdict:
    """The outcome of every check, the header field to add, and the action."""

    action: Action
    header: bytes  # the Authentication-Results field, CRLF-terminated
    results: str  # the same results without the authserv-id (for an ARC set, RFC 8617 §4.1.1)
    reason: str = ""  # for the SMTP reply and the log when the action is not ACCEPT
    spf: SpfVerdict | None = None
    dkim: tuple[DkimVerdict, ...] = ()
    arc: ArcVerdict | None = None
    dmarc: DmarcVerdict | None = None
    from_domain: str = ""
    log: dict[str, object] = field(default_factory=dict)
    malformed_from: str = ""  # why the From field cannot be read (the action is REJECT)


async def check_spf(
    resolver: Resolver, ip: str, *, helo: str, mail_from: str, receiver: str
) -> SpfVerdict:
    """RFC 7208 for the HELO and MAIL FROM identities of a transaction (at MAIL FROM)."""
    return await check_sender(
        resolver, ipaddress.ip_address(ip), helo=helo, mail_from=mail_from, receiver=receiver
    )


def header_block(message: bytes) -> bytes:
    """The header section of ``message`` including the blank line (all of it when there is no
    body)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end >= 0:
            return message[: end + len(separator)]
    return message


def strip_own_results(message: bytes, authserv_id: str) -> bytes:
    """``message`` without Authentication-Results fields that claim ``authserv_id`` (RFC 8601
    §5: a forged field must not reach the user's client looking like ours)."""
    head = header_block(message)
    cleaned = remove_own_results(head, authserv_id)
    if cleaned == head:
        return message
    return cleaned + message[len(head) :]


def _spf_result(verdict: SpfVerdict) -> MethodResult:
    check = verdict.check
    properties = (
        {"smtp.helo": verdict.smtp_helo}
        if verdict.decided_by == "helo"
        else {"smtp.mailfrom": verdict.smtp_mailfrom}
    )
    comment = check.problem or (f"matched {check.mechanism}" if check.mechanism else "")
    return MethodResult(str(check.result), properties, comment=comment)


def _dkim_result(verdict: DkimVerdict) -> MethodResult:
    properties = {"header.d": verdict.domain, "header.s": verdict.selector}
    if verdict.identity:
        properties["header.i"] = verdict.identity
    properties["header.a"] = verdict.algorithm
    if verdict.header_b:
        properties["header.b"] = verdict.header_b
    comment = verdict.reason
    if verdict.key_bits:
        comment = f"{verdict.key_bits}-bit key" + (f"; {comment}" if comment else "")
    return MethodResult(str(verdict.result), properties, comment=comment)


def _dmarc_result(verdict: DmarcVerdict | None, from_domain: str, error: str) -> MethodResult:
    if verdict is None:
        return MethodResult(error or "none")
    comment = f"p={verdict.policy} dis={verdict.disposition}"
    if not verdict.sampled:
        comment += " pct"
    return MethodResult(str(verdict.result), {"header.from": verdict.from_domain}, comment=comment)


def _arc_result(verdict: ArcVerdict) -> MethodResult:
    comment = f"i={verdict.instances}" if verdict.instances else ""
    if verdict.sealers:
        comment += " sealers " + ",".join(verdict.sealers)
    if verdict.result is ArcResult.FAIL and verdict.reason:
        comment += f"; {verdict.reason}"
    return MethodResult(str(verdict.result), {}, comment=comment.strip())


def _results_text(header: bytes) -> str:
    """The resinfo part of an Authentication-Results field, unfolded."""
    text = header.decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
    _, _, rest = text.partition(";")
    return " ".join(rest.split())


def _chosen(published: str, policy: InboundPolicy) -> str:
    """What the administrator does with a failure under the ``published`` policy."""
    if published == "reject":
        return policy.dmarc_reject
    if published == "quarantine":
        return policy.dmarc_quarantine
    return "none"


# Authors in more domains than this are refused rather than each looked up (a From field
# with many co-authors in as many domains is not mail anyone sends).
MAX_AUTHOR_DOMAINS = 10

# how strict an action is, to pick the strictest among several From domains
_SEVERITY = {Action.ACCEPT: 0, Action.JUNK: 1, Action.DEFER: 2, Action.REJECT: 3}


def _dmarc_action(
    dmarc: DmarcVerdict | None, arc: ArcVerdict | None, policy: InboundPolicy
) -> tuple[Action, str]:
    if dmarc is None:
        return Action.ACCEPT, ""
    enforcing = policy.dmarc_reject != "none" or policy.dmarc_quarantine != "none"
    if dmarc.record is not None:
        # the policy is known: only a failure under an enforced one changes what happens
        enforcing = _chosen(dmarc.policy, policy) != "none"
    if dmarc.result == "temperror" and enforcing:
        # the answer might be "reject" when asked again: the sender retries (never a 5xx)
        why = f"DMARC check of {dmarc.from_domain} failed temporarily: {dmarc.reason}"
        return Action.DEFER, why
    if dmarc.result != "fail" or dmarc.disposition == "none":
        return Action.ACCEPT, ""
    trusted = (
        arc is not None
        and bool(arc.sealers)
        and arc.sealers[-1].lower() in policy.arc_trusted_sealers
    )
    if trusted and arc is not None and arc.result is ArcResult.PASS:
        # RFC 8617 §7.2: a trusted intermediary vouches for what it received
        return Action.ACCEPT, ""
    chosen = _chosen(dmarc.disposition, policy)
    if trusted and arc is not None and arc.temporary and chosen != "none":
        # the trusted chain might pass when asked again: never refuse for DNS trouble
        why = f"ARC chain sealed by {arc.sealers[-1]} could not be checked: {arc.reason}"
        return Action.DEFER, why
    why = f"DMARC policy of {dmarc.from_domain} ({dmarc.disposition}): {dmarc.reason}"
    if chosen == "reject":
        return Action.REJECT, why
    if chosen == "quarantine":
        return Action.JUNK, why
    return Action.ACCEPT, ""


async def check_message(
    resolver: Resolver,
    message: bytes,
    *,
    spf: SpfVerdict | None,
    policy: InboundPolicy,
    now: float | None = None,
) -> InboundVerdict:
    """DKIM, ARC and DMARC for ``message`` (SPF came at MAIL FROM), the header field, and the
    action. ``message`` should already be without forged results (:func:`strip_own_results`)."""
    dkim_task = asyncio.ensure_future(verify_dkim(resolver, message, now=now))
    arc_task = asyncio.ensure_future(verify_arc(resolver, message, now=now))
    dkim: Sequence[DkimVerdict] = await dkim_task
    arc = await arc_task
    dmarc: DmarcVerdict | None = None
    domains: tuple[str, ...] = ()
    dmarc_error = malformed = ""
    try:
        domains = author_domains(header_block(message))
    except FromDomainError as exc:
        # RFC 5322 §3.6: exactly one From field; one that cannot be read never falls back to
        # a weaker check (the spoof would be delivered as permerror)
        dmarc_error, malformed = str(exc.result), str(exc)
    if len(domains) > MAX_AUTHOR_DOMAINS:  # each costs DNS lookups: bounded
        dmarc_error = "permerror"
        malformed = f"the From field has addresses in {len(domains)} domains"
        domains = ()
    # RFC 7489 §4.1: the MAIL FROM identity (for the null sender, postmaster@HELO)
    spf_input = (str(spf.mailfrom.result), spf.mailfrom.domain) if spf is not None else None
    dkim_input = [(str(v.result), v.domain) for v in dkim if v.domain]
    verdicts = await asyncio.gather(
        *(check_dmarc(resolver, d, spf=spf_input, dkim=dkim_input) for d in domains)
    )
    # several authors in several domains: each domain's policy, the strictest outcome counts
    # (RFC 7489 §6.6.1 leaves the choice to the receiver; the weakest would let the sender pick)
    action, reason = Action.ACCEPT, ""
    for candidate in verdicts:
        candidate_action, candidate_reason = _dmarc_action(candidate, arc, policy)
        if dmarc is None or _SEVERITY[candidate_action] > _SEVERITY[action]:
            dmarc, action, reason = candidate, candidate_action, candidate_reason
    if malformed:
        action, reason = Action.REJECT, f"malformed From: {malformed}"
    from_domain = dmarc.from_domain if dmarc is not None else ""
    header = format_authentication_results(
        policy.authserv_id,
        spf=_spf_result(spf) if spf is not None else None,
        dkim=[_dkim_result(v) for v in dkim] or [MethodResult("none")],
        dmarc=_dmarc_result(dmarc, from_domain, dmarc_error),
        arc=_arc_result(arc),
    )
    log: dict[str, object] = {
        "spf": str(spf.result) if spf is not None else None,
        "dkim": [f"{v.result}:{v.domain}" for v in dkim],
        "arc": str(arc.result),
        "dmarc": str(dmarc.result) if dmarc is not None else dmarc_error or "none",
        "from_domain": ",".join(domains),
        "action": action.value,
    }
    return InboundVerdict(
        action,
        header,
        _results_text(header),
        reason,
        spf,
        tuple(dkim),
        arc,
        dmarc,
        from_domain,
        log,
        malformed,
    )
