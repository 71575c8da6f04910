"""SPF unit tests: macros (RFC 7208 §7.4 examples), the processing limits (§4.6.4), DNS
trouble, the verdict of check_sender, Received-SPF; and one run over real DNS (NSD)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailstead.dns import Answer, StubResolver
from mailstead.mailauth.spf import (
    SpfCheck,
    SpfResult,
    SpfSyntaxError,
    SpfVerdict,
    check_host,
    check_sender,
    is_host_name,
    parse_record,
    received_spf,
)
from mailstead.testing.dns import FakeResolver
from mailstead.testing.nsd import nsd_missing, nsd_server

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def check(
    records: dict[str, dict[str, Any]],
    ip: str = "192.0.2.1",
    domain: str = "example.org",
    sender: str | None = None,
    *,
    resolver: FakeResolver | None = None,
    **options: Any,
) -> SpfCheck:
    resolver = resolver or FakeResolver(records)
    options.setdefault("helo", "mail.example.net")
    return run(check_host(resolver, ip, domain, sender or f"alice@{domain}", **options))


def spf(record: str, **more: Any) -> dict[str, Any]:
    return {"TXT": [record], **more}


# --- record syntax ----------------------------------------------------------------------------


def test_parse_record_reads_every_part() -> None:
    record = parse_record(
        "v=spf1 a/24//64 -mx:mx.example.org/28 ~ip6:2001:db8::/32 ?ptr"
        " exists:%{ir}.%{v}.bl.example.org redirect=_spf.example.org exp=why.%{d}"
        " future-thing=%{l}"
    )
    kinds = [(m.qualifier, m.kind) for m in record.mechanisms]
    assert kinds == [("+", "a"), ("-", "mx"), ("~", "ip6"), ("?", "ptr"), ("+", "exists")]
    a, mx, ip6 = record.mechanisms[:3]
    assert (a.target, a.cidr4, a.cidr6) == (None, 24, 64)
    assert mx.target is not None and mx.target.text == "mx.example.org"
    assert (mx.cidr4, mx.cidr6) == (28, 128)
    assert str(ip6.network) == "2001:db8::/32"
    assert record.redirect is not None and record.redirect.text == "_spf.example.org"
    assert record.explanation is not None and record.explanation.has_macros


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:%{d0}.example.org",  # §7.1: a digit transformer is nonzero
        "v=spf1 ip6:fe80::1%eth0",  # no zone ids
        "v=spf1 ip4:192.0.2.01",  # no leading zeros
        "v=spf1 a:example.org//064",
        "v=spf1 mx:%{c}.example.org",  # c, r, t only in explanations
        "v=spf1 include:example.org:25",
        "v=spf1 -all exp=a.example.org exp=b.example.org",
        "v=spf1 a\tmx",  # terms are separated by spaces only
        "v=spf1 exists:%{l",
    ],
)
def test_syntax_errors(record: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_record(record)


def test_a_domain_spec_may_end_in_a_macro() -> None:
    record = parse_record("v=spf1 exists:%{l}._spf.%{d} include:%{d2} a:%{h}")
    assert [m.target.text for m in record.mechanisms if m.target] == [
        "%{l}._spf.%{d}",
        "%{d2}",
        "%{h}",
    ]


# --- macros -----------------------------------------------------------------------------------

# RFC 7208 §7.4: sender strong-bad@email.example.com, client 192.0.2.3.
RFC_EXAMPLES = [
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
    # the explanation-only letters, and the escapes
    ("%{c} %{h} %{r} %{t}", "192.0.2.3 helo.example.net receiver.example.org 1700000000"),
    ("100%% %_%-", "100%  %20"),
]


def explain(text: str, ip: str = "192.0.2.3", **options: Any) -> str | None:
    """The explanation ``text`` expands to, through a fail with exp=."""
    records = {
        "email.example.com": spf("v=spf1 -all exp=why.example.com"),
        "why.example.com": {"TXT": [text]},
    }
    options.setdefault("now", 1_700_000_000.7)
    options.setdefault("receiver", "receiver.example.org")
    result = check(
        records,
        ip,
        "email.example.com",
        "strong-bad@email.example.com",
        helo="helo.example.net",
        **options,
    )
    assert result.result is SpfResult.FAIL
    return result.explanation


@pytest.mark.parametrize(("text", "expansion"), RFC_EXAMPLES, ids=[t for t, _ in RFC_EXAMPLES])
def test_macro_expansion_rfc_examples(text: str, expansion: str) -> None:
    assert explain(text) == expansion


def test_ipv6_macros() -> None:
    # §7.4 shows the nibbles in lower case; ours are upper case (the openspf suite's choice),
    # which DNS does not tell apart.
    text = explain("%{ir}.%{v}._spf.%{d2} from %{c}", ip="2001:db8::cb01")
    assert text is not None
    name, _, client = text.partition(" from ")
    assert name.lower() == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )
    assert client == "2001:db8::cb01"


def test_ipv6_macro_in_a_query() -> None:
    records = {
        "example.org": spf("v=spf1 exists:%{ir}.%{v}.allow.example.org -all"),
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.allow.example.org": {
            "A": ["127.0.0.2"]
        },
    }
    assert check(records, "2001:db8::cb01").result is SpfResult.PASS
    assert check(records, "2001:db8::cb02").result is SpfResult.FAIL


def test_upper_case_macros_are_url_escaped() -> None:
    records = {
        "example.org": spf("v=spf1 -all exp=why.example.org"),
        "why.example.org": {"TXT": ["%{L} / %{S} / %{l}"]},
    }
    result = check(records, sender="jack&jill=up~x@example.org")
    assert result.explanation == (
        "jack%26jill%3Dup~x / jack%26jill%3Dup~x%40example.org / jack&jill=up~x"
    )


def test_time_macro_needs_a_time() -> None:
    assert explain("at %{t}", now=None) is None
    assert explain("at %{t}", now=86400.0) == "at 86400"


def test_receiver_defaults_to_unknown() -> None:
    assert explain("%{r}", receiver="") == "unknown"


def test_p_macro_is_unknown_without_a_validated_name() -> None:
    assert explain("%{p}") == "unknown"


def test_long_names_are_cut_from_the_left() -> None:
    # §7.3: over 253 characters, whole labels go from the left (318 -> 257 -> 196)
    label = "a" * 60
    records = {
        "example.org": spf("v=spf1 exists:%{l}.%{l}.%{l}.%{l}.%{l}.x.example.org -all"),
        f"{label}.{label}.{label}.x.example.org": {"A": ["127.0.0.2"]},
    }
    assert check(records, sender=f"{label}@example.org").result is SpfResult.PASS


# --- mechanisms and DNS -------------------------------------------------------------------------


def test_a_asks_the_connections_family_only() -> None:
    resolver = FakeResolver(
        {"example.org": spf("v=spf1 a -all", A=["192.0.2.1"], AAAA=["2001:db8::1"])}
    )
    assert check({}, "192.0.2.1", resolver=resolver).mechanism == "a"
    assert "AAAA example.org" not in resolver.queries
    resolver.queries.clear()
    assert check({}, "2001:db8::1", resolver=resolver).mechanism == "a"
    assert "A example.org" not in resolver.queries


def test_ipv4_mapped_client_is_ipv4() -> None:
    records = {"example.org": spf("v=spf1 ip6:::ffff:0:0/96 ip4:192.0.2.0/24 -all")}
    assert check(records, "::ffff:192.0.2.1").mechanism == "ip4:192.0.2.0/24"


def test_null_mx_matches_nothing_and_is_not_looked_up() -> None:
    resolver = FakeResolver({"example.org": spf("v=spf1 mx -all", MX=[(0, ".")])})
    assert check({}, resolver=resolver).result is SpfResult.FAIL
    assert resolver.queries == ["TXT example.org", "MX example.org"]


def test_temporary_failure_of_an_mx_host_is_temperror() -> None:
    records = {
        "example.org": spf("v=spf1 mx -all", MX=[(10, "mx1.example.org"), (20, "mx2.example.org")]),
        "mx2.example.org": {"A": ["192.0.2.1"]},
    }
    resolver = FakeResolver(records, temporary={"A mx1.example.org"})
    result = check({}, resolver=resolver)
    assert result.result is SpfResult.TEMPERROR
    assert result.problem is not None and "mx1.example.org" in result.problem


def test_ptr_lookup_failure_is_no_match() -> None:
    # §5.5: a DNS error on the PTR lookup makes "ptr" not match; it is not a temperror
    resolver = FakeResolver({"example.org": spf("v=spf1 ptr ~all")}, temporary={"192.0.2.1"})
    assert check({}, resolver=resolver).result is SpfResult.SOFTFAIL


def test_exists_asks_a_even_for_ipv6() -> None:
    resolver = FakeResolver(
        {
            "example.org": spf("v=spf1 exists:ok.example.org -all"),
            "ok.example.org": {"A": "127.0.0.1"},
        }
    )
    assert check({}, "2001:db8::1", resolver=resolver).result is SpfResult.PASS
    assert "A ok.example.org" in resolver.queries


def test_include_none_and_redirect_none_are_permerrors() -> None:
    records = {
        "example.org": spf("v=spf1 include:nothing.example.org -all"),
        "example.net": spf("v=spf1 redirect=nothing.example.org"),
    }
    assert check(records).result is SpfResult.PERMERROR
    assert check(records, domain="example.net").result is SpfResult.PERMERROR


def test_explanation_only_for_fail() -> None:
    records = {
        "example.org": spf("v=spf1 ~ip4:192.0.2.1 -all exp=why.example.org"),
        "why.example.org": {"TXT": ["no, %{i}"]},
    }
    soft = check(records)
    assert (soft.result, soft.explanation) == (SpfResult.SOFTFAIL, None)
    hard = check(records, "192.0.2.2")
    assert (hard.result, hard.explanation, hard.mechanism) == (
        SpfResult.FAIL,
        "no, 192.0.2.2",
        "-all",
    )


def test_no_record_and_bad_domains_are_none() -> None:
    records = {"example.org": {"TXT": ["google-site-verification=abc"]}}
    assert check(records).result is SpfResult.NONE
    resolver = FakeResolver(records)
    for domain in ("localhost", "[192.0.2.1]", "a..example.org", "x" * 64 + ".example.org"):
        assert check({}, domain=domain, resolver=resolver).result is SpfResult.NONE
    assert resolver.queries == []


def test_result_names_the_domain_in_lower_case() -> None:
    records = {"example.org": spf("v=spf1 +all")}
    assert check(records, domain="Example.ORG.").domain == "example.org"


# --- limits (§4.6.4) ----------------------------------------------------------------------------


def _a_terms(count: int) -> str:
    return " ".join(f"a:h{n}.example.org" for n in range(count))


def _hosts(count: int) -> dict[str, dict[str, Any]]:
    return {f"h{n}.example.org": {"A": ["198.51.100.1"]} for n in range(count)}


def test_ten_lookup_terms_are_allowed_the_eleventh_is_permerror() -> None:
    ten = {"example.org": spf(f"v=spf1 {_a_terms(10)} ip4:192.0.2.1 -all"), **_hosts(11)}
    assert check(ten).result is SpfResult.PASS
    eleven = {"example.org": spf(f"v=spf1 {_a_terms(11)} ip4:192.0.2.1 -all"), **_hosts(11)}
    result = check(eleven)
    assert result.result is SpfResult.PERMERROR
    assert result.problem is not None and "a:h10.example.org" in result.problem


def test_terms_without_dns_do_not_count() -> None:
    many = " ".join(f"ip4:198.51.100.{n}" for n in range(40))
    records = {"example.org": spf(f"v=spf1 {_a_terms(10)} {many} all"), **_hosts(10)}
    assert check(records).result is SpfResult.PASS


def test_lookup_limit_counts_over_includes_and_is_configurable() -> None:
    records = {
        "example.org": spf("v=spf1 include:one.example.org -all"),
        "one.example.org": spf("v=spf1 include:two.example.org -all"),
        "two.example.org": spf("v=spf1 mx -all", MX=[(10, "mx.example.org")]),
        "mx.example.org": {"A": ["192.0.2.1"]},
    }
    assert check(records, lookup_limit=3).result is SpfResult.PASS
    assert check(records, lookup_limit=2).result is SpfResult.PERMERROR


def test_include_loop_ends_even_with_a_large_lookup_limit() -> None:
    records = {
        "example.org": spf("v=spf1 include:loop.example.org -all"),
        "loop.example.org": spf("v=spf1 include:example.org -all"),
    }
    result = check(records, lookup_limit=10_000)
    assert result.result is SpfResult.PERMERROR
    assert result.problem is not None and "nested too deep" in result.problem


def test_void_lookups() -> None:
    records = {"example.org": spf("v=spf1 a:gone1.example.org a:gone2.example.org mx ?all")}
    # NXDOMAIN, NXDOMAIN, then the MX lookup answers with no records: a third void lookup
    records["example.org"]["A"] = ["198.51.100.1"]
    assert check(records).result is SpfResult.PERMERROR
    assert check(records, void_limit=3).result is SpfResult.NEUTRAL


def test_mx_records_beyond_ten_are_permerror() -> None:
    mxs = [(n, f"mx{n}.example.org") for n in range(10)]
    records = {
        "example.org": spf("v=spf1 mx -all", MX=mxs),
        "mx9.example.org": {"A": ["192.0.2.1"]},
    }
    assert check(records).result is SpfResult.PASS
    records["example.org"]["MX"] = [*mxs, (99, "mx10.example.org")]
    assert check(records).result is SpfResult.PERMERROR


def test_only_the_first_ten_ptr_names_count() -> None:
    names = [f"h{n}.example.org" for n in range(11)]
    records: dict[str, dict[str, Any]] = {
        "example.org": spf("v=spf1 ptr:h9.example.org ptr:h10.example.org -all"),
        "192.0.2.1": {"PTR": names},
        **{name: {"A": ["192.0.2.1"]} for name in names},
    }
    assert check(records).mechanism == "ptr:h9.example.org"
    records["example.org"] = spf("v=spf1 ptr:h10.example.org -all")
    assert check(records).result is SpfResult.FAIL


class HangingResolver(FakeResolver):
    """Never answers TXT questions."""

    async def txt(self, name: str) -> Answer[bytes]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_time_limit_gives_temperror() -> None:
    result = run(
        check_host(
            HangingResolver(),
            "192.0.2.1",
            "example.org",
            "a@example.org",
            helo="h.example",
            time_limit=0.05,
        )
    )
    assert result.result is SpfResult.TEMPERROR
    assert result.problem is not None and "0.05 s" in result.problem


# --- check_sender -------------------------------------------------------------------------------

SENDER_ZONE = {
    "example.org": spf("v=spf1 ip4:192.0.2.0/24 -all"),
    "mail.example.net": spf("v=spf1 -all exp=why.example.net"),
    "why.example.net": {"TXT": ["%{l} at %{d} may not"]},
}


def sender_verdict(helo: str, mail_from: str, resolver: FakeResolver | None = None) -> SpfVerdict:
    resolver = resolver or FakeResolver(SENDER_ZONE)
    return run(check_sender(resolver, "192.0.2.1", helo=helo, mail_from=mail_from))


def test_mail_from_decides_and_helo_is_checked_too() -> None:
    verdict = sender_verdict("mail.example.net", "alice@example.org")
    assert verdict.decided_by == "mailfrom"
    assert verdict.result is SpfResult.PASS
    assert verdict.check is verdict.mailfrom
    assert verdict.helo is not None and verdict.helo.result is SpfResult.FAIL
    assert verdict.helo.explanation == "postmaster at mail.example.net may not"
    assert (verdict.smtp_mailfrom, verdict.smtp_helo, verdict.sender) == (
        "example.org",
        "mail.example.net",
        "alice@example.org",
    )


def test_null_sender_is_postmaster_at_helo_checked_once() -> None:
    resolver = FakeResolver(SENDER_ZONE)
    verdict = sender_verdict("mail.example.net.", "", resolver)
    assert verdict.decided_by == "helo"
    assert verdict.result is SpfResult.FAIL
    assert verdict.mailfrom is verdict.helo
    assert verdict.sender == "postmaster@mail.example.net"
    assert verdict.smtp_mailfrom == "mail.example.net"
    assert resolver.queries.count("TXT mail.example.net") == 1


@pytest.mark.parametrize("helo", ["[192.0.2.1]", "localhost", "192.0.2.1", "bad_-.x y"])
def test_helo_that_is_not_a_domain_name_is_not_checked(helo: str) -> None:
    resolver = FakeResolver(SENDER_ZONE)
    verdict = sender_verdict(helo, "alice@example.org", resolver)
    assert verdict.helo is None
    assert verdict.result is SpfResult.PASS
    assert resolver.queries == ["TXT example.org"]
    null = sender_verdict(helo, "")
    assert (null.decided_by, null.result, null.helo) == ("helo", SpfResult.NONE, None)


def test_sender_without_local_part_is_postmaster() -> None:
    records = {
        "example.org": spf("v=spf1 -all exp=why.example.org"),
        "why.example.org": {"TXT": ["%{s}"]},
    }
    verdict = sender_verdict("mail.example.net", "@example.org", FakeResolver(records))
    assert verdict.sender == "postmaster@example.org"
    assert verdict.check.explanation == "postmaster@example.org"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mail.example.org", True),
        ("mail.example.org.", True),
        ("_dmarc-ish.example.org", True),
        ("bücher.example", True),
        ("localhost", False),
        ("[192.0.2.1]", False),
        ("[IPv6:2001:db8::1]", False),
        ("192.0.2.1", False),
        ("-bad.example.org", False),
        ("a..example.org", False),
        ("x" * 64 + ".example.org", False),
        ("JUMPIN' JUPITER", False),
    ],
)
def test_is_host_name(name: str, expected: bool) -> None:
    assert is_host_name(name) is expected


# --- Received-SPF (§9.1) ------------------------------------------------------------------------


def test_received_spf_for_a_pass() -> None:
    verdict = sender_verdict("mail.example.net", "alice@example.org")
    field = received_spf(verdict, "192.0.2.1", "mx.example.com")
    assert field == (
        b"Received-SPF: pass (mx.example.com: domain of alice@example.org designates\r\n"
        b"\t192.0.2.1 as permitted sender) client-ip=192.0.2.1;\r\n"
        b'\tenvelope-from="alice@example.org"; helo=mail.example.net;\r\n'
        b'\treceiver=mx.example.com; identity=mailfrom; mechanism="ip4:192.0.2.0/24";\r\n'
    )


def test_received_spf_for_the_null_sender_and_a_problem() -> None:
    records = {"mail.example.net": spf("v=spf1 a:bad..name; -all")}
    verdict = sender_verdict("mail.example.net", "", FakeResolver(records))
    assert verdict.result is SpfResult.PERMERROR
    field = received_spf(verdict, IPv4Address("192.0.2.1"), "")
    assert field.startswith(b"Received-SPF: permerror (permanent error in processing domain")
    assert b"identity=helo;" in field and b"envelope-from" not in field
    assert b'problem="mail.example.net: ' in field
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    assert field.endswith(b";\r\n")


# --- over real DNS --------------------------------------------------------------------------------

ZONE = """$TTL 300
@        IN SOA ns1 hostmaster ( 1 3600 600 86400 60 )
@        IN NS  ns1
ns1      IN A   127.0.0.1
@        IN TXT "v=spf1 ip4:192.0.2.0/28 " "-all"
@        IN TXT "unrelated text"
strict   IN TXT "v=spf1 a:mail.spf.test -all exp=why.spf.test"
why      IN TXT "%{i} is not a sender of %{d} (asked by %{r})"
mail     IN A   192.0.2.25
chain    IN TXT "v=spf1 include:one.spf.test -all"
one      IN TXT "v=spf1 ip4:198.51.100.7 include:two.spf.test ~all"
two      IN TXT "v=spf1 mx -all"
two      IN MX  10 mail
"""


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if reason := nsd_missing():
        pytest.skip(reason)
    with nsd_server({"spf.test": ZONE}, Path(tmp_path_factory.mktemp("nsd"))) as server:
        yield server.nameserver


def test_over_real_dns(nameserver: str) -> None:
    async def main() -> list[SpfCheck]:
        resolver = StubResolver([nameserver], timeout=2.0, attempts=1)

        async def ask(ip: str, domain: str) -> SpfCheck:
            return await check_host(
                resolver, ip, domain, f"bob@{domain}", helo="client.example", receiver="mx.test"
            )

        return [
            await ask("192.0.2.9", "spf.test"),
            await ask("192.0.2.99", "strict.spf.test"),
            await ask("192.0.2.25", "chain.spf.test"),
            await ask("192.0.2.26", "chain.spf.test"),
        ]

    passed, failed, chained, not_chained = run(main())
    assert (passed.result, passed.mechanism) == (SpfResult.PASS, "ip4:192.0.2.0/28")
    assert (failed.result, failed.mechanism) == (SpfResult.FAIL, "-all")
    assert failed.explanation == "192.0.2.99 is not a sender of strict.spf.test (asked by mx.test)"
    assert (chained.result, chained.mechanism) == (SpfResult.PASS, "include:one.spf.test")
    assert (not_chained.result, not_chained.explanation) == (SpfResult.FAIL, None)
