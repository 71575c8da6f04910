"""``mailstead dns records|check DOMAIN``: the DNS records a mail domain needs, and whether DNS
serves them.

``records`` prints them ready to paste into a zone file (absolute names, TTL, class, TXT values
quoted and split into strings of at most 255 octets), or as JSON: MX, SPF, DKIM (every active
key), DMARC, MTA-STS (with the policy file to serve over HTTPS), TLS-RPT, the RFC 6186/8314
SRV records, and the server's own addresses when ``--ip`` gives them. ``check`` asks DNS
through the configured resolver (``[dns]``) and says, record by record, whether each is right,
different (both shown) or missing. docs/dns-records.md explains each record.

Exit status of ``check``: 0 when every required record (MX, SPF, DKIM, DMARC) is right, 1 when
one is missing or different, 3 when none is known to be wrong but DNS could not answer for
some (timeout, SERVFAIL). Optional records (MTA-STS, TLS-RPT, SRV) are warnings only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from mailstead.cli.common import CommandError, add_config_option
from mailstead.cli.context import Services, run_command
from mailstead.cli.dkim_cmd import dkim_dns_records
from mailstead.config import Config
from mailstead.dns import Answer, Resolver, Status, StubResolver, normalize_name
from mailstead.mailauth.dmarc import DmarcRecordError, is_dmarc_record, parse_dmarc_record
from mailstead.mailauth.psl import organizational_domain
from mailstead.mailauth.spf import check_host
from mailstead.message.addresses import AddressError, domain_to_ascii, normalize_domain
from mailstead.servers.app import make_resolver

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DEFAULT_TTL = 3600
TXT_STRING_MAX = 255  # RFC 1035 §3.3.14: one character-string holds at most 255 octets
MTA_STS_MAX_AGE = 604_800  # one week; RFC 8461 §3.2 suggests weeks or more
MTA_STS_ID_LENGTH = 20  # RFC 8461 §3.1: id is 1 to 32 letters and digits
DMARC_POLICIES = ("none", "quarantine", "reject")
MTA_STS_MODES = ("testing", "enforce", "none")

# RFC 6186 §3.1 (IMAP, POP3, submission), RFC 8314 §5.1 (implicit TLS): service, listener, port
SRV_SERVICES = (
    ("_submissions._tcp", "submissions", 465),
    ("_submission._tcp", "submission", 587),
    ("_imaps._tcp", "imaps", 993),
    ("_imap._tcp", "imap", 143),
    ("_pop3s._tcp", "pop3s", 995),
    ("_pop3._tcp", "pop3", 110),
)

EXIT_OK = 0
EXIT_WRONG = 1
EXIT_DNS = 3

Kind = Literal["MX", "SPF", "DKIM", "DMARC", "MTA-STS", "TLS-RPT", "SRV", "A", "AAAA"]


@dataclass(frozen=True, slots=True)
class Record:
    """One record to publish. ``value`` is the TXT text (joined) or the presentation form of
    the other types (``10 mail.example.org.``)."""

    kind: Kind
    name: str  # absolute, A-labels, final dot
    rtype: str
    value: str
    required: bool
    purpose: str
    selector: str = ""
    label: str = ""  # how check names it, when not kind and selector

    @property
    def title(self) -> str:
        """``DKIM ms202501``, ``SRV _imaps``, ``MX``…"""
        if self.label:
            return self.label
        if self.kind == "SRV":
            return f"SRV {self.name.split('.')[0]}"
        return self.kind + (f" {self.selector}" if self.selector else "")

    @property
    def strings(self) -> list[str]:
        """A TXT value as character-strings of at most 255 octets."""
        return _split_txt(self.value)

    def zone_text(self, ttl: int) -> str:
        if self.rtype != "TXT":
            return f"{self.name}\t{ttl}\tIN\t{self.rtype}\t{self.value}"
        quoted = [_quote_txt(s) for s in self.strings]
        if len(quoted) == 1:
            return f"{self.name}\t{ttl}\tIN\tTXT\t{quoted[0]}"
        body = "\n\t\t\t\t".join(quoted)
        return f"{self.name}\t{ttl}\tIN\tTXT\t( {body} )"


@dataclass(slots=True)
class Plan:
    """Everything ``records`` prints for one domain."""

    domain: str  # A-labels
    hostname: str  # A-labels
    ttl: int
    records: list[Record]
    mta_sts_policy: str
    notes: list[str] = field(default_factory=list)

    @property
    def mta_sts_url(self) -> str:
        return f"https://mta-sts.{self.domain}/.well-known/mta-sts.txt"


def _split_txt(value: str) -> list[str]:
    if value.startswith("v=DKIM1;"):
        head, sep, key = value.partition("p=")
        parts = [head] if head and sep else []
        rest = sep + key if sep else value
    else:
        parts, rest = [], value
    data = rest.encode("utf-8")
    parts += [
        data[i : i + TXT_STRING_MAX].decode("utf-8") for i in range(0, len(data), TXT_STRING_MAX)
    ]
    return parts or [""]


def _quote_txt(text: str) -> str:
    """A zone-file character-string (RFC 1035 §5.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the plan ---------------------------------------------------------------------------------


def _mailto(address: str) -> str:
    return address if address.lower().startswith("mailto:") else f"mailto:{address}"


def mta_sts_policy(hostname: str, mode: str, max_age: int) -> str:
    """The policy file (RFC 8461 §3.2), CRLF line ends."""
    lines = ["version: STSv1", f"mode: {mode}", f"mx: {hostname}", f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def mta_sts_id(policy: str) -> str:
    """An id that changes whenever the policy text does (RFC 8461 §3.1)."""
    return hashlib.sha256(policy.encode("utf-8")).hexdigest()[:MTA_STS_ID_LENGTH]


def _srv_port(config: Config, listener: str, standard: int) -> int | None:
    """The port a service is offered on (the first listener's; a test listener on port 0
    counts as the standard port), None when the service is not configured."""
    addresses = getattr(config.listen, listener)
    if not addresses:
        return None
    port = int(addresses[0].port)
    return port or standard


def build_plan(
    config: Config,
    domain: str,
    dkim: Sequence[tuple[str, str, str]],
    *,
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    rua: str | None = None,
    dmarc_policy: str = "quarantine",
    mta_sts_mode: str = "testing",
    mta_sts_max_age: int = MTA_STS_MAX_AGE,
    ttl: int = DEFAULT_TTL,
) -> Plan:
    """The records ``domain`` (A-labels) needs. ``dkim`` holds (selector, absolute name, TXT
    value) for each active key."""
    host = normalize_name(config.server.hostname)
    report_to = _mailto(rua or f"postmaster@{domain}")
    records: list[Record] = [
        Record("MX", f"{domain}.", "MX", f"10 {host}.", True, f"mail for {domain} goes to {host}")
    ]
    spf = ["v=spf1"]
    spf += [f"ip{ip.version}:{ip}" for ip in ips]
    spf += ["mx", "-all"]
    records.append(
        Record(
            "SPF",
            f"{domain}.",
            "TXT",
            " ".join(spf),
            True,
            "only this domain's MX hosts"
            + (" and the given addresses" if ips else "")
            + " send its mail",
        )
    )
    for selector, name, value in dkim:
        records.append(
            Record(
                "DKIM",
                name,
                "TXT",
                value,
                True,
                f"the public key of selector {selector}",
                selector=selector,
            )
        )
    records.append(
        Record(
            "DMARC",
            f"_dmarc.{domain}.",
            "TXT",
            f"v=DMARC1; p={dmarc_policy}; rua={report_to}",
            True,
            f"mail failing both SPF and DKIM alignment gets p={dmarc_policy}; reports to "
            f"{report_to.removeprefix('mailto:')}",
        )
    )
    policy = mta_sts_policy(host, mta_sts_mode, mta_sts_max_age)
    records.append(
        Record(
            "MTA-STS",
            f"_mta-sts.{domain}.",
            "TXT",
            f"v=STSv1; id={mta_sts_id(policy)}",
            False,
            f"senders fetch the TLS policy from https://mta-sts.{domain}/ (mode {mta_sts_mode})",
        )
    )
    records.append(
        Record(
            "TLS-RPT",
            f"_smtp._tls.{domain}.",
            "TXT",
            f"v=TLSRPTv1; rua={report_to}",
            False,
            f"TLS failure reports (RFC 8460) go to {report_to.removeprefix('mailto:')}",
        )
    )
    for service, listener, standard in SRV_SERVICES:
        port = _srv_port(config, listener, standard)
        if port is None:
            value, purpose = "0 0 0 .", f"{listener} is not offered (RFC 6186 §3.4)"
        else:
            value, purpose = f"0 1 {port} {host}.", f"{listener} for mail clients"
        records.append(Record("SRV", f"{service}.{domain}.", "SRV", value, False, purpose))
    for ip in ips:
        kind: Kind = "A" if ip.version == 4 else "AAAA"
        records.append(
            Record(kind, f"{host}.", kind, str(ip), False, f"address of the MX host {host}")
        )

    notes = [
        f"mta-sts.{domain} needs A/AAAA records (for example a CNAME to {host}) of an HTTPS "
        f"server with a certificate for that name, serving the policy at "
        f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
    ]
    report_domain = report_to.removeprefix("mailto:").rpartition("@")[2].split("!")[0]
    try:
        external = organizational_domain(report_domain) != organizational_domain(domain)
    except ValueError:
        external = False
    if external:
        # RFC 7489 §7.1: the report receiver must agree to take another domain's reports.
        notes.append(
            f"reports go to another domain: {report_domain} must publish "
            f'{domain}._report._dmarc.{report_domain}. IN TXT "v=DMARC1"'
        )
    if not dkim:
        notes.append(
            f"{domain} has no active DKIM key: make one with mailstead dkim generate {domain}"
        )
    return Plan(domain, host, ttl, records, policy, notes)


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "domain": plan.domain,
        "hostname": plan.hostname,
        "records": [
            {
                "kind": r.kind,
                "name": r.name,
                "type": r.rtype,
                "ttl": plan.ttl,
                "value": r.value,
                **({"strings": r.strings} if r.rtype == "TXT" else {}),
                "required": r.required,
                "purpose": r.purpose,
                **({"selector": r.selector} if r.selector else {}),
            }
            for r in plan.records
        ],
        "mta_sts_policy": {"url": plan.mta_sts_url, "text": plan.mta_sts_policy},
        "notes": plan.notes,
    }


def plan_zone_text(plan: Plan) -> str:
    lines = [f"; DNS records for {plan.domain} (mailstead dns records; docs/dns-records.md)"]
    for record in plan.records:
        need = "required" if record.required else "optional"
        lines += ["", f"; {record.kind} ({need}): {record.purpose}", record.zone_text(plan.ttl)]
    lines += ["", f"; MTA-STS policy: serve this text at {plan.mta_sts_url}"]
    lines += [f";   {line}" for line in plan.mta_sts_policy.splitlines()]
    lines.append("")
    for note in plan.notes:
        lines += textwrap.wrap(note, 98, initial_indent="; note: ", subsequent_indent=";   ")
    return "\n".join(lines) + "\n"


# -- the command line -----------------------------------------------------------------------


def register(subparsers: _Sub) -> None:
    parser = subparsers.add_parser("dns", help="the DNS records a mail domain needs, and checks")
    parser.set_defaults(func=lambda _args: _usage(parser))
    group = parser.add_subparsers(dest="dns_command", metavar="COMMAND")

    p = group.add_parser("records", help="print the records to publish (zone-file text)")
    _common_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=lambda a: run_command(a, lambda s: _records(s, a)))

    p = group.add_parser("check", help="ask DNS whether it serves the records")
    _common_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument(
        "--nameserver",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="ask this nameserver (repeatable; e.g. your authoritative server) instead of those "
        "of [dns]",
    )
    p.set_defaults(func=lambda a: run_command(a, lambda s: _check(s, a)))


def _common_options(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    parser.add_argument("domain")
    parser.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a public address mail leaves from (repeatable): ip4:/ip6: in SPF, A/AAAA of the "
        "MX host; check tests SPF for it",
    )
    parser.add_argument(
        "--rua",
        metavar="ADDRESS",
        help="where DMARC and TLS reports go (default postmaster@DOMAIN)",
    )
    parser.add_argument("--dmarc-policy", choices=DMARC_POLICIES, default="quarantine")
    parser.add_argument("--mta-sts-mode", choices=MTA_STS_MODES, default="testing")
    parser.add_argument("--mta-sts-max-age", type=int, default=MTA_STS_MAX_AGE, metavar="SECONDS")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="SECONDS")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _ips(texts: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            raise CommandError(f"--ip {text!r} is not an IP address") from None
    return out


async def _plan(svc: Services, args: argparse.Namespace) -> Plan:
    try:
        name = normalize_domain(args.domain)
        ascii_name = domain_to_ascii(name)
    except AddressError as exc:
        raise CommandError(f"bad domain {args.domain!r}: {exc}") from None
    if await svc.store.get_domain(name) is None:
        raise CommandError(
            f"{name} is not one of this server's domains (add it with: mailstead domain add {name})"
        )
    if args.ttl < 0 or args.mta_sts_max_age < 0:
        raise CommandError("--ttl and --mta-sts-max-age must not be negative")
    dkim = [(r.selector, r.name, r.value) for r in await dkim_dns_records(svc.store, name)]
    return build_plan(
        svc.config,
        ascii_name,
        dkim,
        ips=_ips(args.ip),
        rua=args.rua,
        dmarc_policy=args.dmarc_policy,
        mta_sts_mode=args.mta_sts_mode,
        mta_sts_max_age=args.mta_sts_max_age,
        ttl=args.ttl,
    )


async def _records(svc: Services, args: argparse.Namespace) -> int:
    plan = await _plan(svc, args)
    if args.json:
        print(json.dumps(plan_json(plan), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(plan_zone_text(plan))
    return EXIT_OK


# -- checking ---------------------------------------------------------------------------------

CheckStatus = Literal["ok", "missing", "different", "dns-error"]


@dataclass(frozen=True, slots=True)
class Finding:
    """What DNS serves for one expected record."""

    record: Record
    status: CheckStatus
    published: tuple[str, ...] = ()
    detail: str = ""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _problem(answer: Answer[Any]) -> str:
    return answer.detail or f"{answer.status.value} for {answer.name}"


def _absent(answer: Answer[Any]) -> bool:
    return answer.status in (Status.NXDOMAIN, Status.NO_DATA, Status.INVALID)


def _tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, tag_value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), tag_value.strip())
    return tags


async def _check_mx(resolver: Resolver, record: Record, plan: Plan) -> Finding:
    answer = await resolver.mx(plan.domain)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    if _absent(answer) or not answer.records:
        return Finding(record, "missing")
    published = tuple(f"{mx.preference} {mx.host}." for mx in answer.records)
    if not any(mx.host == plan.hostname for mx in answer.records):
        return Finding(record, "different", published, f"no MX record points to {plan.hostname}")
    addresses = await resolver.addresses(plan.hostname)
    if addresses.temporary:
        detail = f"addresses of {plan.hostname}: {_problem(addresses)}"
        return Finding(record, "dns-error", published, detail)
    if not addresses.found:
        return Finding(record, "different", published, f"{plan.hostname} has no A/AAAA record")
    shown = ", ".join(str(a) for a in addresses.records)
    return Finding(record, "ok", published, f"{plan.hostname} has {shown}")


def _is_spf(value: bytes) -> bool:
    lowered = value.lower()
    return lowered == b"v=spf1" or lowered.startswith(b"v=spf1 ")


async def _check_spf(resolver: Resolver, record: Record, plan: Plan, ips: Sequence[str]) -> Finding:
    answer = await resolver.txt(plan.domain)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    spf = [_text(v) for v in answer.records if _is_spf(v)] if answer.found else []
    if not spf:
        return Finding(record, "missing")
    published = tuple(spf)
    if len(spf) > 1:
        return Finding(
            record, "different", published, f"{len(spf)} SPF records (RFC 7208 §4.5: permerror)"
        )
    tested = list(ips)
    source = "the given addresses"
    if not tested:
        source = f"the addresses of {plan.hostname}"
        addresses = await resolver.addresses(plan.hostname)
        if addresses.temporary:
            return Finding(record, "dns-error", published, _problem(addresses))
        tested = [str(a) for a in addresses.records]
    if not tested:
        if spf[0] == record.value:
            return Finding(record, "ok", published, f"not tested: {plan.hostname} has no address")
        return Finding(
            record, "different", published, f"not tested: {plan.hostname} has no address"
        )
    results = await asyncio.gather(
        *(
            check_host(resolver, ip, plan.domain, f"postmaster@{plan.domain}", helo=plan.hostname)
            for ip in tested
        )
    )
    outcomes = [f"{ip} gets {check.result}" for ip, check in zip(tested, results, strict=True)]
    if any(check.result == "temperror" for check in results):
        return Finding(record, "dns-error", published, "; ".join(outcomes))
    if all(check.result == "pass" for check in results):
        return Finding(record, "ok", published, f"{source} pass: " + ", ".join(tested))
    return Finding(record, "different", published, "; ".join(outcomes))


async def _check_dkim(resolver: Resolver, record: Record) -> Finding:
    answer = await resolver.txt(record.name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    if _absent(answer) or not answer.records:
        return Finding(record, "missing")
    published = tuple(_text(v) for v in answer.records)
    if len(published) > 1:
        return Finding(record, "different", published, "several TXT records at this name")
    want, have = _tags(record.value), _tags(published[0])
    key = "".join(have.get("p", "").split())
    if key != want["p"]:
        what = "no p= tag" if "p" not in have else "p= is not the stored key"
        return Finding(record, "different", published, what)
    if have.get("k", "rsa").lower() != want["k"]:
        return Finding(record, "different", published, f"k={have.get('k', 'rsa')}, not {want['k']}")
    return Finding(record, "ok", published, "the stored key")


async def _check_dmarc(resolver: Resolver, record: Record) -> Finding:
    answer = await resolver.txt(record.name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    values = [_text(v) for v in answer.records if is_dmarc_record(v)] if answer.found else []
    if not values:
        return Finding(record, "missing")
    published = tuple(values)
    if len(values) > 1:
        return Finding(record, "different", published, "several DMARC records: none applies")
    try:
        parsed = parse_dmarc_record(values[0])
    except DmarcRecordError as exc:
        return Finding(record, "different", published, f"invalid: {exc}")
    detail = f"p={parsed.policy}"
    if parsed.policy == "none":
        detail += " (reports only, no protection)"
    if parsed.notes:
        detail += "; " + "; ".join(parsed.notes)
    return Finding(record, "ok", published, detail)


async def _check_txt(resolver: Resolver, record: Record, prefix: str) -> Finding:
    """An optional TXT record: right when it is exactly the expected text."""
    answer = await resolver.txt(record.name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    values = [_text(v) for v in answer.records] if answer.found else []
    ours = [v for v in values if v.lower().startswith(prefix.lower())]
    if not ours:
        return Finding(record, "missing", tuple(values))
    published = tuple(ours)
    if len(ours) == 1 and _tags(ours[0]) == _tags(record.value):
        return Finding(record, "ok", published)
    detail = "several records" if len(ours) > 1 else ""
    if record.kind == "MTA-STS" and len(ours) == 1:
        detail = "a different id: publish the new id once the new policy file is served"
    return Finding(record, "different", published, detail)


async def _check_srv(resolver: Resolver, record: Record) -> Finding:
    answer = await resolver.srv(record.name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    if _absent(answer) or not answer.records:
        return Finding(record, "missing")
    published = tuple(
        f"{r.priority} {r.weight} {r.port} {'.' if r.is_null else r.target + '.'}"
        for r in answer.records
    )
    _priority, _weight, port, target = record.value.split()
    want_target = "." if target == "." else normalize_name(target)
    if any(r.port == int(port) and r.target == want_target for r in answer.records):
        return Finding(record, "ok", published)
    return Finding(record, "different", published)


async def _check_address(resolver: Resolver, record: Record) -> Finding:
    answer = await (resolver.a if record.rtype == "A" else resolver.aaaa)(record.name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    if _absent(answer) or not answer.records:
        return Finding(record, "missing")
    published = tuple(str(a) for a in answer.records)
    status: CheckStatus = "ok" if record.value in published else "different"
    return Finding(record, status, published)


async def _check_mta_sts_host(resolver: Resolver, plan: Plan) -> Finding:
    name = f"mta-sts.{plan.domain}."
    record = Record(
        "MTA-STS",
        name,
        "A/AAAA",
        "addresses of an HTTPS server",
        False,
        "the host serving the policy file",
        label="MTA-STS host",
    )
    answer = await resolver.addresses(name)
    if answer.temporary:
        return Finding(record, "dns-error", detail=_problem(answer))
    if not answer.found:
        return Finding(record, "missing")
    return Finding(record, "ok", tuple(str(a) for a in answer.records))


async def check_plan(resolver: Resolver, plan: Plan, ips: Sequence[str]) -> list[Finding]:
    """Ask DNS for every record of ``plan``, concurrently."""
    checks = []
    for record in plan.records:
        if record.kind == "MX":
            checks.append(_check_mx(resolver, record, plan))
        elif record.kind == "SPF":
            checks.append(_check_spf(resolver, record, plan, ips))
        elif record.kind == "DKIM":
            checks.append(_check_dkim(resolver, record))
        elif record.kind == "DMARC":
            checks.append(_check_dmarc(resolver, record))
        elif record.kind == "MTA-STS":
            checks.append(_check_txt(resolver, record, "v=STSv1"))
        elif record.kind == "TLS-RPT":
            checks.append(_check_txt(resolver, record, "v=TLSRPTv1"))
        elif record.kind == "SRV":
            checks.append(_check_srv(resolver, record))
        else:
            checks.append(_check_address(resolver, record))
    checks.append(_check_mta_sts_host(resolver, plan))
    return list(await asyncio.gather(*checks))


def exit_status(findings: Sequence[Finding]) -> int:
    required = [f for f in findings if f.record.required]
    if any(f.status in ("missing", "different") for f in required):
        return EXIT_WRONG
    if any(f.status == "dns-error" for f in required):
        return EXIT_DNS
    return EXIT_OK


_LABELS = {"ok": "ok", "missing": "MISSING", "different": "DIFFERENT", "dns-error": "DNS ERROR"}


def _label(finding: Finding) -> str:
    if finding.status == "ok":
        return "ok"
    label = _LABELS[finding.status]
    return label if finding.record.required else f"warning: {label.lower()}"


def findings_text(plan: Plan, findings: Sequence[Finding], nameservers: str) -> str:
    lines = [f"DNS records of {plan.domain}, as {nameservers} answers:"]
    for f in findings:
        lines.append(f"{_label(f):<20} {f.record.title:<16} {f.record.rtype:<6} {f.record.name}")
        if f.status in ("missing", "different"):
            for value in f.published:
                lines.append(f"{'':<21}published: {value}")
            lines.append(f"{'':<21}expected:  {f.record.value}")
        if f.detail:
            lines.append(f"{'':<21}{f.detail}")
    required = [f for f in findings if f.record.required]
    optional = [f for f in findings if not f.record.required]
    right = sum(f.status == "ok" for f in required)
    summary = f"{right} of {len(required)} required records right"
    wrong = [f for f in required if f.status != "ok"]
    if wrong:
        summary += " (" + ", ".join(f"{f.record.title}: {f.status}" for f in wrong) + ")"
    warnings = sum(f.status != "ok" for f in optional)
    summary += f"; {warnings} warning{'s' if warnings != 1 else ''} about optional records"
    lines += ["", summary]
    status = exit_status(findings)
    if status == EXIT_DNS:
        lines.append("DNS did not answer for some required records: try again later")
    return "\n".join(lines) + "\n"


def findings_json(plan: Plan, findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "domain": plan.domain,
        "status": exit_status(findings),
        "records": [
            {
                "kind": f.record.kind,
                "title": f.record.title,
                "name": f.record.name,
                "type": f.record.rtype,
                "required": f.record.required,
                "status": f.status,
                "expected": f.record.value,
                "published": list(f.published),
                "detail": f.detail,
                **({"selector": f.record.selector} if f.record.selector else {}),
            }
            for f in findings
        ],
    }


async def _check(svc: Services, args: argparse.Namespace) -> int:
    plan = await _plan(svc, args)
    dns = svc.config.dns
    try:
        if args.nameserver:
            resolver = StubResolver(args.nameserver, timeout=dns.timeout, attempts=dns.attempts)
        else:
            resolver = make_resolver(svc.config)
    except ValueError as exc:
        raise CommandError(f"--nameserver: {exc}") from None
    findings = await check_plan(resolver, plan, [str(ip) for ip in _ips(args.ip)])
    if args.json:
        print(json.dumps(findings_json(plan, findings), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(findings_text(plan, findings, ", ".join(resolver.nameservers) or "DNS"))
    return exit_status(findings)
