"""What the SMTP server asks at MAIL FROM: the HELO and MAIL FROM identities checked (RFC 7208
§2.3, §2.4), which one decides, and the Received-SPF field (§9.1)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from mailstead.dns import InvalidName, IPAddress, Resolver, normalize_name
from mailstead.mailauth.spf._check import SpfCheck, SpfResult, check_host, split_sender

Identity = Literal["mailfrom", "helo"]

_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    """The SPF outcome of one transaction. ``decided_by`` is "mailfrom", or "helo" for the null
    sender (§2.4: its MAIL FROM identity is ``postmaster@<helo>``, the same check).
    ``helo`` is None when the HELO name is not a domain name (an address literal, one label)
    and was not checked. ``smtp_mailfrom`` is the MAIL FROM domain (the HELO name for the null
    sender) and ``smtp_helo`` the HELO name, for Authentication-Results (RFC 8601 §2.7.2)."""

    decided_by: Identity
    mailfrom: SpfCheck
    helo: SpfCheck | None
    sender: str
    smtp_mailfrom: str
    smtp_helo: str

    @property
    def check(self) -> SpfCheck:
        """The check whose result stands."""
        if self.decided_by == "helo" and self.helo is not None:
            return self.helo
        return self.mailfrom

    @property
    def result(self) -> SpfResult:
        return self.check.result


def is_host_name(name: str) -> bool:
    """Whether a HELO name is a domain name worth checking (§2.3): two labels or more of
    letters, digits, hyphens (and underscores, seen in the wild) or U-labels, and not an IPv4
    address or address literal."""
    text = name[:-1] if name.endswith(".") else name
    labels = text.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return False
    if not all(label and (not label.isascii() or _HOST_LABEL.fullmatch(label)) for label in labels):
        return False
    if not text.isascii():  # U-labels: valid only if IDNA can encode them
        try:
            normalize_name(text)
        except InvalidName:
            return False
    return True


async def check_sender(
    resolver: Resolver,
    ip: str | IPAddress,
    *,
    helo: str,
    mail_from: str,
    receiver: str = "",
    now: float | None = None,
) -> SpfVerdict:
    """Check the HELO identity (when it is a domain name) and the MAIL FROM identity of a
    transaction. ``mail_from`` is the reverse-path without angle brackets ("" for ``<>``); a
    sender without a local-part is checked as ``postmaster@`` its domain (§4.3)."""

    async def run(domain: str, sender: str) -> SpfCheck:
        return await check_host(resolver, ip, domain, sender, helo=helo, receiver=receiver, now=now)

    helo_name = helo[:-1] if helo.endswith(".") else helo
    checks_helo = is_host_name(helo_name)
    if not mail_from:
        sender = f"postmaster@{helo_name}"
        # §2.4: the null sender's MAIL FROM check is the HELO check; done once.
        mailfrom = await run(helo_name, sender)
        return SpfVerdict(
            "helo", mailfrom, mailfrom if checks_helo else None, sender, helo_name, helo_name
        )
    local, domain = split_sender(mail_from)
    sender = f"{local}@{domain}"
    if checks_helo:
        helo_check, mailfrom = await asyncio.gather(
            run(helo_name, f"postmaster@{helo_name}"), run(domain, sender)
        )
    else:
        helo_check, mailfrom = None, await run(domain, sender)
    return SpfVerdict("mailfrom", mailfrom, helo_check, sender, domain, helo_name)


_COMMENTS = {
    SpfResult.PASS: "domain of {sender} designates {ip} as permitted sender",
    SpfResult.FAIL: "domain of {sender} does not designate {ip} as permitted sender",
    SpfResult.SOFTFAIL: "domain of {sender} does not designate {ip} as permitted sender",
    SpfResult.NEUTRAL: "{ip} is neither permitted nor denied by domain of {sender}",
    SpfResult.NONE: "domain of {sender} does not publish SPF",
    SpfResult.TEMPERROR: "error in processing during lookup of {sender}",
    SpfResult.PERMERROR: "permanent error in processing domain of {sender}",
}


def _value(text: str) -> str:
    """A key-value-pair value (§9.1): a dot-atom as it is, anything else quoted."""
    if _DOT_ATOM.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def received_spf(verdict: SpfVerdict, ip: str | IPAddress, receiver: str) -> bytes:
    """A Received-SPF header field (§9.1) for the deciding check, folded, ending in CRLF."""
    check = verdict.check
    identity = verdict.decided_by
    subject = verdict.sender if identity == "mailfrom" else verdict.smtp_helo
    comment = _COMMENTS[check.result].format(sender=subject, ip=ip)
    comment = re.sub(r"[()\\\r\n]", "", f"{receiver}: {comment}" if receiver else comment)
    pairs = [f"client-ip={ip};"]
    if identity == "mailfrom":
        pairs.append(f"envelope-from={_value(verdict.sender)};")
    pairs.append(f"helo={_value(verdict.smtp_helo)};")
    if receiver:
        pairs.append(f"receiver={_value(receiver)};")
    pairs.append(f"identity={identity};")
    if check.mechanism:
        pairs.append(f"mechanism={_value(check.mechanism)};")
    if check.problem:
        pairs.append(f"problem={_value(check.problem)};")
    # RFC 5322 §3.2.4: folding white space may sit inside a quoted-string, so any space folds.
    words = [f"Received-SPF: {check.result}", *f"({comment}) {' '.join(pairs)}".split(" ")]
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) > 78:
            lines.append("\t" + word)
        else:
            lines[-1] += " " + word
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
