"""`mailstead dns records|check` through the CLI entry (`main([...])`) on a data directory made
by `mailstead init`: the printed records are served by a real NSD on loopback (round trip: all
right, exit 0), then zones with a missing DKIM key, a wrong SPF record, no DMARC record (exit 1)
and a SERVFAIL or silent nameserver (exit 3)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import re
import socket
from pathlib import Path

import dns.rdatatype
import dns.zone
import pytest

from mailstead.cli.dkim_cmd import dkim_dns_records
from mailstead.cli.dns_cmd import EXIT_DNS, EXIT_OK, EXIT_WRONG, build_plan, check_plan
from mailstead.cli.main import main
from mailstead.config import load_config
from mailstead.testing.dns import FakeResolver
from mailstead.testing.nsd import nsd_missing, nsd_server

DOMAINS = ("good.test", "nodkim.test", "badspf.test", "nodmarc.test", "broken.test")
HOST = "mail.example.org"


def run(*args: str) -> tuple[int, str, str]:
    """`mailstead ARGS` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def ok(*args: str) -> str:
    status, out, err = run(*args)
    assert status == 0, f"mailstead {' '.join(args)}: {status}\n{out}{err}"
    return out


class Site:
    def __init__(self, data: Path):
        self.data = data
        self.config = data / "mailstead.toml"
        ok("init", "--dev", "--data", str(data), "--domain", "example.org")
        text = self.config.read_text(encoding="utf-8")
        # POP3 without STLS is not offered: its SRV record says so (RFC 6186 §3.4)
        self.config.write_text(text.replace('pop3 = ["127.0.0.1:10110"]', "pop3 = []"))
        for domain in DOMAINS:
            self("domain", "add", domain)
            self("dkim", "generate", domain)
        self("dkim", "generate", "good.test", "--algorithm", "ed25519")

    def __call__(self, *args: str, config: Path | None = None) -> str:
        return ok(*args, "--config", str(config or self.config))

    def status(self, *args: str, config: Path | None = None) -> tuple[int, str, str]:
        return run(*args, "--config", str(config or self.config))

    def with_nameserver(self, name: str, nameserver: str, timeout: str = "2s") -> Path:
        """A copy of the configuration (same data directory) that asks ``nameserver``."""
        text = self.config.read_text(encoding="utf-8")
        dns_settings = (
            f'[dns]\nnameservers = ["{nameserver}"]\ntimeout = "{timeout}"\nattempts = 1\n'
        )
        path = self.data / name
        path.write_text(text.replace("[dns]\n", dns_settings, 1), encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return Site(tmp_path_factory.mktemp("dns") / "data")


def parse_zone(text: str, origin: str) -> dns.zone.Zone:
    return dns.zone.from_text(
        "$TTL 300\n" + text, origin=origin, relativize=False, check_origin=False
    )


def txt_values(zone: dns.zone.Zone, name: str) -> list[str]:
    found = zone.get_rdataset(name, "TXT")
    return sorted(b"".join(r.strings).decode() for r in found) if found else []


# -- records -------------------------------------------------------------------------------------


def stored_dkim(site: Site, domain: str) -> list[tuple[str, str]]:
    async def read():
        from mailstead.store import open_sqlite

        store = open_sqlite(load_config(site.config).storage.path)
        await store.open()
        try:
            return [(r.name, r.value) for r in await dkim_dns_records(store, domain)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_records_are_a_zone_file(site):
    out = site("dns", "records", "good.test", "--ip", "192.0.2.25", "--ip", "2001:db8::25")
    zone = parse_zone(out, ".")  # the root: the MX host is outside good.test
    (mx,) = zone.get_rdataset("good.test.", "MX")
    assert (mx.preference, mx.exchange.to_text()) == (10, f"{HOST}.")
    assert txt_values(zone, "good.test.") == ["v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 mx -all"]
    dkim = stored_dkim(site, "good.test")
    assert len(dkim) == 2  # the RSA and the Ed25519 key
    for name, value in dkim:
        assert txt_values(zone, name) == [value]
    assert txt_values(zone, "_dmarc.good.test.") == [
        "v=DMARC1; p=quarantine; rua=mailto:postmaster@good.test"
    ]
    assert txt_values(zone, "_smtp._tls.good.test.") == [
        "v=TLSRPTv1; rua=mailto:postmaster@good.test"
    ]
    # the MTA-STS id is derived from the policy text printed with the records
    policy_lines = re.findall(r"^;   (.*)$", out, re.MULTILINE)
    assert policy_lines[:4] == ["version: STSv1", "mode: testing", f"mx: {HOST}", "max_age: 604800"]
    policy = "\r\n".join(policy_lines[:4]) + "\r\n"
    (sts,) = txt_values(zone, "_mta-sts.good.test.")
    assert sts == f"v=STSv1; id={hashlib.sha256(policy.encode()).hexdigest()[:20]}"
    assert "https://mta-sts.good.test/.well-known/mta-sts.txt" in out
    assert "mta-sts.good.test needs A/AAAA records" in out
    srv = {
        name.to_text(): rdata.to_text()
        for name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.SRV)
    }
    assert srv == {
        "_submissions._tcp.good.test.": f"0 1 10465 {HOST}.",  # ports of the --dev listeners
        "_submission._tcp.good.test.": f"0 1 10587 {HOST}.",
        "_imaps._tcp.good.test.": f"0 1 10993 {HOST}.",
        "_imap._tcp.good.test.": f"0 1 10143 {HOST}.",
        "_pop3s._tcp.good.test.": f"0 1 10995 {HOST}.",
        "_pop3._tcp.good.test.": "0 0 0 .",  # not offered
    }
    assert [r.to_text() for r in zone.get_rdataset(f"{HOST}.", "A")] == ["192.0.2.25"]
    assert [r.to_text() for r in zone.get_rdataset(f"{HOST}.", "AAAA")] == ["2001:db8::25"]
    # every record line has an absolute name, a TTL and a class; strings fit in 255 octets
    for line in out.splitlines():
        if line and not line.startswith((";", "\t")):
            assert re.match(r"^\S+\.\t3600\tIN\t[A-Z]+\t", line), line
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', out))


def test_records_json_and_options(site):
    plain = json.loads(site("dns", "records", "good.test", "--json"))
    changed = json.loads(
        site(
            "dns", "records", "good.test", "--json", "--mta-sts-mode", "enforce",
            "--dmarc-policy", "reject", "--rua", "reports@dmarc.example.net", "--ttl", "600",
        )
    )  # fmt: skip
    by_kind = {r["kind"]: r for r in changed["records"] if r["kind"] != "SRV"}
    assert by_kind["DMARC"]["value"] == "v=DMARC1; p=reject; rua=mailto:reports@dmarc.example.net"
    assert by_kind["TLS-RPT"]["value"] == "v=TLSRPTv1; rua=mailto:reports@dmarc.example.net"
    assert by_kind["DMARC"]["ttl"] == 600 and by_kind["DMARC"]["required"] is True
    assert by_kind["MTA-STS"]["required"] is False
    assert "mode: enforce\r\n" in changed["mta_sts_policy"]["text"]
    ids = [
        next(r["value"] for r in doc["records"] if r["kind"] == "MTA-STS")
        for doc in (plain, changed)
    ]
    assert ids[0] != ids[1]  # the id follows the policy
    # RFC 7489 §7.1: reports for another domain need that domain's consent
    assert any("good.test._report._dmarc.dmarc.example.net" in n for n in changed["notes"])
    dkim = [r for r in plain["records"] if r["kind"] == "DKIM"]
    assert [(r["name"], r["value"]) for r in dkim] == stored_dkim(site, "good.test")
    assert all(len(s) <= 255 for r in dkim for s in r["strings"])
    assert "".join(dkim[0]["strings"]) == dkim[0]["value"]


def test_records_refuses_unknown_domains_and_bad_addresses(site):
    status, out, err = site.status("dns", "records", "stranger.test")
    assert status == 1 and out == ""
    assert "stranger.test is not one of this server's domains" in err
    status, _out, err = site.status("dns", "check", "stranger.test")
    assert status == 1 and "not one of this server's domains" in err
    status, _out, err = site.status("dns", "records", "good.test", "--ip", "192.0.2.300")
    assert status == 1 and "not an IP address" in err


# -- check against a real NSD --------------------------------------------------------------------

SOA = (
    "@ IN SOA ns1.example.org. hostmaster.example.org. ( 1 3600 600 86400 60 )\n"
    "@ IN NS ns1.example.org.\n"
)


def split_records(text: str) -> list[str]:
    """The records of zone text, one entry each (a TXT record's continuation lines included)."""
    records: list[str] = []
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        if line.startswith("\t"):
            records[-1] += "\n" + line
        else:
            records.append(line)
    return records


def zone_of(record: str, zones: list[str]) -> str:
    name = record.split("\t", 1)[0].rstrip(".")
    return next(z for z in zones if name == z or name.endswith("." + z))


@pytest.fixture(scope="module")
def nsd(site, tmp_path_factory):
    if reason := nsd_missing():
        pytest.skip(reason)
    served = ["example.org", *DOMAINS]
    bodies: dict[str, list[str]] = {zone: [] for zone in served}
    for domain in DOMAINS:
        for record in split_records(site("dns", "records", domain, "--ip", "127.0.0.1")):
            zone = zone_of(record, served)
            if domain == "nodkim.test" and "._domainkey." in record:
                continue
            if domain == "nodmarc.test" and record.startswith("_dmarc."):
                continue
            if domain == "badspf.test" and "v=spf1" in record:
                record = 'badspf.test.\t3600\tIN\tTXT\t"v=spf1 ip4:192.0.2.99 -all"'
            if record not in bodies[zone]:
                bodies[zone].append(record)
    bodies["example.org"].append("ns1.example.org.\t3600\tIN\tA\t127.0.0.1")
    zones: dict[str, str | None] = {z: SOA + "\n".join(bodies[z]) + "\n" for z in served}
    zones["broken.test"] = None  # declared without a file: NSD answers SERVFAIL
    with nsd_server(zones, tmp_path_factory.mktemp("nsd")) as server:
        yield server


@pytest.fixture(scope="module")
def checked(site, nsd):
    config = site.with_nameserver("mailstead-nsd.toml", nsd.nameserver)

    def check(*args):
        return site.status("dns", "check", *args, config=config)

    check.site = site
    check.nameserver = nsd.nameserver
    return check


def stored_dkim_of(checked):
    return stored_dkim(checked.site, "good.test")


STATUS_LINE = re.compile(
    r"^(ok|MISSING|DIFFERENT|DNS ERROR|warning: [a-z ]+?) +(\S+(?: \S+)?) +[A-Z/]+ +\S+$"
)


def lines_of(out: str) -> dict[str, str]:
    """The status of each record ("MX", "DKIM ms…", "SRV _pop3"…) in a check's output."""
    found = {}
    for line in out.splitlines():
        if m := STATUS_LINE.match(line):
            assert m.group(2) not in found, line
            found[m.group(2)] = m.group(1)
    return found


def test_check_round_trip_everything_right(checked):
    status, out, err = checked("good.test")
    assert status == EXIT_OK, out + err
    found = lines_of(out)
    assert len(found) == 14, out  # MX SPF 2×DKIM DMARC MTA-STS TLS-RPT 6×SRV MTA-STS host
    assert [k for k in found if k.startswith("DKIM ")] == [
        f"DKIM {name.split('.')[0]}" for name, _value in stored_dkim_of(checked)
    ]
    # everything is right but the MTA-STS web host, which only the user can set up: a warning
    assert {k for k, v in found.items() if v != "ok"} == {"MTA-STS host"}
    assert found["MTA-STS host"] == "warning: missing"
    assert f"{HOST} has 127.0.0.1" in out
    assert f"the addresses of {HOST} pass: 127.0.0.1" in out
    assert "5 of 5 required records right; 1 warning about optional records" in out


def test_check_reports_a_missing_dkim_key(checked):
    status, out, _err = checked("nodkim.test")
    assert status == EXIT_WRONG
    found = lines_of(out)
    (label,) = [k for k in found if k.startswith("DKIM")]
    assert found[label] == "MISSING"
    assert {found[k] for k in ("MX", "SPF", "DMARC")} == {"ok"}
    assert "expected:  v=DKIM1; k=rsa; p=MIIB" in out
    assert f"3 of 4 required records right ({label}: missing)" in out


def test_check_reports_a_wrong_spf_record(checked):
    status, out, _err = checked("badspf.test")
    assert status == EXIT_WRONG
    assert lines_of(out)["SPF"] == "DIFFERENT"
    assert "published: v=spf1 ip4:192.0.2.99 -all" in out
    assert "expected:  v=spf1 mx -all" in out
    assert "127.0.0.1 gets fail" in out
    assert "(SPF: different)" in out


def test_check_reports_a_missing_dmarc_record(checked):
    status, out, _err = checked("nodmarc.test", "--json")
    assert status == EXIT_WRONG
    report = json.loads(out)
    assert report["status"] == EXIT_WRONG
    by_kind = {r["kind"]: r for r in report["records"] if r["required"]}
    assert by_kind["DMARC"]["status"] == "missing"
    assert (
        by_kind["DMARC"]["expected"] == "v=DMARC1; p=quarantine; rua=mailto:postmaster@nodmarc.test"
    )
    assert {by_kind[k]["status"] for k in ("MX", "SPF", "DKIM")} == {"ok"}


def test_check_with_ip_tests_spf_for_it(checked):
    status, out, _err = checked("good.test", "--ip", "127.0.0.1")
    assert status == EXIT_OK, out
    assert "the given addresses pass: 127.0.0.1" in out
    status, out, _err = checked("badspf.test", "--ip", "192.0.2.99")
    assert status == EXIT_OK, out  # the published record does allow that address
    assert lines_of(out)["SPF"] == "ok"


def test_check_asks_the_nameserver_given(site, nsd):
    # the configuration asks the system's resolvers; --nameserver asks NSD instead
    status, out, _err = site.status("dns", "check", "good.test", "--nameserver", nsd.nameserver)
    assert status == EXIT_OK, out
    assert f"as {nsd.nameserver} answers" in out
    status, _out, err = site.status("dns", "check", "good.test", "--nameserver", "nowhere")
    assert status == 1 and "--nameserver: 'nowhere' is not an IP address" in err


def test_check_servfail_is_a_dns_error_not_missing(checked):
    status, out, _err = checked("broken.test")
    assert status == EXIT_DNS, out
    found = lines_of(out)
    required = [k for k in found if k.split()[0] in ("MX", "SPF", "DKIM", "DMARC")]
    assert len(required) == 4 and {found[k] for k in required} == {"DNS ERROR"}
    assert {v for k, v in found.items() if k not in required} == {"warning: dns error"}
    assert "SERVFAIL from " + checked.nameserver in out
    assert "try again later" in out


def test_check_timeout_is_a_dns_error(site):
    # a nameserver that never answers: every lookup times out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        config = site.with_nameserver("mailstead-silent.toml", f"127.0.0.1:{port}", "300ms")
        status, out, _err = site.status("dns", "check", "good.test", config=config)
    assert status == EXIT_DNS, out
    assert "MX good.test: timed out after 0.3 s" in out
    assert set(lines_of(out).values()) == {"DNS ERROR", "warning: dns error"}


# -- check against FakeResolver: the other ways a record can be wrong ----------------------------


def fake_findings(site, records):
    """check_plan's findings for fake.test (one DKIM key) against a FakeResolver."""
    dkim = [("sel", "sel._domainkey.fake.test.", "v=DKIM1; k=rsa; p=AAAA")]
    plan = build_plan(load_config(site.config), "fake.test", dkim)
    findings = asyncio.run(check_plan(FakeResolver(records), plan, []))
    return {f.record.title: f for f in findings}


def test_check_other_differences(site):
    found = fake_findings(
        site,
        {
            "fake.test": {
                "MX": [(10, "mx.elsewhere.test")],
                "TXT": ["v=spf1 -all", "v=spf1 mx -all"],
            },
            "sel._domainkey.fake.test": {"TXT": ["v=DKIM1; k=rsa; p=BBBB"]},
            "_dmarc.fake.test": {"TXT": ["v=DMARC1; p=whatever"]},
            "_mta-sts.fake.test": {"TXT": ["v=STSv1; id=old"]},
            "_imaps._tcp.fake.test": {"SRV": ["0 1 993 other.test"]},
        },
    )
    mx = found["MX"]
    assert (mx.status, mx.published) == ("different", ("10 mx.elsewhere.test.",))
    spf = found["SPF"]
    assert spf.status == "different" and "2 SPF records" in spf.detail
    dkim = found["DKIM sel"]
    assert (dkim.status, dkim.detail) == ("different", "p= is not the stored key")
    dmarc = found["DMARC"]
    assert dmarc.status == "different" and "invalid" in dmarc.detail
    sts = found["MTA-STS"]
    assert sts.status == "different" and "new id" in sts.detail
    assert found["SRV _imaps"].status == "different"
    assert found["SRV _imap"].status == "missing"


def test_check_dkim_record_with_folded_key_is_right(site):
    found = fake_findings(
        site, {"sel._domainkey.fake.test": {"TXT": ["v=DKIM1; k=rsa;\r\n p=AA AA"]}}
    )
    assert found["DKIM sel"].status == "ok"
    found = fake_findings(
        site, {"sel._domainkey.fake.test": {"TXT": ["v=DKIM1; k=ed25519; p=AAAA"]}}
    )
    assert found["DKIM sel"].detail == "k=ed25519, not rsa"
