"""DNSSEC for tests: a zone signed at test time (ldns-keygen, ldns-signzone) and a private
validating unbound on loopback that trusts it.

    signed = sign_zone("test", ZONE_TEXT, tmp_path / "keys")
    with nsd_server({"test": signed.text, "plain": PLAIN}, tmp_path / "nsd") as ns, \\
         unbound_server(ns, ["test", "plain"], signed.trust_anchor, tmp_path / "unbound") as ub:
        resolver = StubResolver([ub.nameserver])   # answers under test. carry the AD bit

unbound reads only its own configuration file (no system trust anchor, no root hints): names
under a zone given a trust anchor are validated, every other zone it forwards to is insecure.
``dnssec_missing()`` says why this cannot run here (the Debian packages ``unbound`` and
``ldnsutils``, installed by ``scripts/install-test-deps``).
"""

from __future__ import annotations

import contextlib
import datetime
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from mailstead.testing.nsd import NsdServer, _binary, run_on_free_port


class DnssecError(RuntimeError):
    """Signing failed or unbound did not start (the message has its output)."""


def dnssec_missing() -> str | None:
    """Why signed zones or unbound cannot be had here, or None."""
    for tool, package in (("ldns-keygen", "ldnsutils"), ("ldns-signzone", "ldnsutils"),
                          ("unbound", "unbound")):  # fmt: skip
        if _binary(tool) is None:
            return f"{tool} is not installed (scripts/install-test-deps installs {package})"
    return None


@dataclass(frozen=True)
class SignedZone:
    text: str  # the signed master file
    trust_anchor: str  # the KSK's DS record, as unbound's trust-anchor-file wants it


def _run(args: Sequence[str], cwd: Path) -> str:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DnssecError(f"{' '.join(args)}: {done.stdout}{done.stderr}".strip())
    return done.stdout.strip()


def sign_zone(zone: str, text: str, directory: Path) -> SignedZone:
    """``text`` (a master file of ``zone``) signed with a new KSK and ZSK (ECDSA P-256, NSEC),
    valid from yesterday for 30 days."""
    keygen, signer = _binary("ldns-keygen"), _binary("ldns-signzone")
    if keygen is None or signer is None:
        raise DnssecError(dnssec_missing() or "ldnsutils missing")
    directory.mkdir(parents=True, exist_ok=True)
    origin = zone.rstrip(".") + "."
    ksk = _run([keygen, "-a", "ECDSAP256SHA256", "-k", origin], directory)
    zsk = _run([keygen, "-a", "ECDSAP256SHA256", origin], directory)
    source = directory / f"{zone}.zone"
    if not text.lstrip().startswith("$ORIGIN"):
        text = f"$ORIGIN {origin}\n{text}"
    source.write_text(text, encoding="utf-8")
    today = datetime.datetime.now(datetime.UTC)
    inception = (today - datetime.timedelta(days=1)).strftime("%Y%m%d")
    expiration = (today + datetime.timedelta(days=30)).strftime("%Y%m%d")
    _run([signer, "-i", inception, "-e", expiration, "-o", origin, str(source), zsk, ksk],
         directory)  # fmt: skip
    signed = (directory / f"{zone}.zone.signed").read_text(encoding="utf-8")
    anchor = (directory / f"{ksk}.ds").read_text(encoding="utf-8")
    return SignedZone(signed, anchor)


@dataclass(frozen=True)
class UnboundServer:
    host: str
    port: int

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"


def _config(directory: Path, port: int, upstream: NsdServer, zones: Sequence[str]) -> str:
    lines = [
        "# written by mailstead.testing.dnssec",
        "server:",
        "    interface: 127.0.0.1",
        f"    port: {port}",
        "    do-ip6: no",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{directory}"',
        f'    pidfile: "{directory}/unbound.pid"',
        f'    logfile: "{directory}/unbound.log"',
        "    use-syslog: no",
        "    verbosity: 1",
        "    num-threads: 1",
        "    do-not-query-localhost: no",
        '    module-config: "validator iterator"',
        f'    trust-anchor-file: "{directory}/anchors.txt"',
        "    val-log-level: 2",
        "    qname-minimisation: no",
        "    access-control: 127.0.0.0/8 allow",
    ]
    # RFC 6761 names such as test. are answered locally by default: these are served
    lines += [f'    local-zone: "{zone.rstrip(".")}." nodefault' for zone in zones]
    lines += ["remote-control:", "    control-enable: no"]
    for zone in zones:
        lines += [
            "stub-zone:",
            f'    name: "{zone.rstrip(".")}."',
            f"    stub-addr: {upstream.host}@{upstream.port}",
        ]
    return "\n".join(lines) + "\n"


def _validated(port: int, zone: str) -> bool | None:
    """Whether unbound answers the SOA of ``zone`` with AD set (None: no answer)."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA, want_dnssec=True)
    query.flags |= dns.flags.AD
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
    except (dns.exception.DNSException, OSError):
        return None
    if response.rcode() != dns.rcode.NOERROR:
        return None
    return bool(response.flags & dns.flags.AD)


@contextlib.contextmanager
def unbound_server(
    upstream: NsdServer,
    zones: Sequence[str],
    trust_anchors: str,
    directory: Path,
    *,
    signed: Sequence[str] = (),
) -> Iterator[UnboundServer]:
    """A validating unbound on 127.0.0.1 and a free port, forwarding ``zones`` to ``upstream``
    (stub zones) and trusting ``trust_anchors`` (DS or DNSKEY lines). It is ready when each zone
    of ``signed`` answers with the AD bit (and the others answer at all)."""
    unbound = _binary("unbound")
    if unbound is None:
        raise DnssecError(dnssec_missing() or "unbound missing")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "anchors.txt").write_text(trust_anchors, encoding="utf-8")
    conf = directory / "unbound.conf"

    def command(port: int) -> list[str]:
        conf.write_text(_config(directory, port, upstream, zones), encoding="utf-8")
        (directory / "unbound.log").unlink(missing_ok=True)
        return [unbound, "-d", "-c", str(conf)]

    def ready(port: int) -> bool:
        answers = {zone: _validated(port, zone) for zone in zones}
        return all(answers[z] is not None and (answers[z] or z not in signed) for z in zones)

    def why_not(port: int) -> str:
        log = directory / "unbound.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        out_tail = (directory / "unbound.out").read_text(errors="replace")[-1000:]
        return f"unbound on port {port} did not validate {list(signed)}:\n{tail}{out_tail}"

    with run_on_free_port(
        "127.0.0.1", directory, "unbound", command, ready, why_not, DnssecError
    ) as port:
        yield UnboundServer("127.0.0.1", port)
