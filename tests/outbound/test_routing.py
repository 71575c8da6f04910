"""MX routing (RFC 5321 §5.1, RFC 7505): every rule against a FakeResolver, then the same
resolution against a real NSD on loopback."""

from __future__ import annotations

import asyncio
import random
from ipaddress import ip_address

import pytest

from mailstead.dns import StubResolver
from mailstead.outbound.routing import (
    MAX_MX_HOSTS,
    Failover,
    Hop,
    Route,
    RouteFailure,
    Smarthost,
    Target,
    parse_smarthost,
    route,
)
from mailstead.testing.dns import FakeResolver
from mailstead.testing.nsd import nsd_missing, nsd_server


def run(coro):
    return asyncio.run(coro)


def ips(*texts):
    return tuple(ip_address(t) for t in texts)


def routed(domain, resolver, **kwargs) -> Route:
    result = run(route(domain, resolver, **kwargs))
    assert isinstance(result, Route), result
    return result


def failed(domain, resolver, **kwargs) -> RouteFailure:
    result = run(route(domain, resolver, **kwargs))
    assert isinstance(result, RouteFailure), result
    return result


def hosts(result: Route) -> list[str]:
    return [hop.host for hop in result.hops]


def four_mx() -> FakeResolver:
    return FakeResolver(
        {
            "example.org": {
                "MX": [(30, "mx3.example.org"), (10, "mx1.example.org"), (20, "mx2.example.org")]
            },
            "mx1.example.org": {"A": "127.0.0.11"},
            "mx2.example.org": {"A": "127.0.0.12"},
            "mx3.example.org": {"A": "127.0.0.13"},
        }
    )


# --- MX order -------------------------------------------------------------------------------


def test_mx_hosts_in_preference_order():
    result = routed("example.org", four_mx())
    assert result.kind == "mx"
    assert hosts(result) == ["mx1.example.org", "mx2.example.org", "mx3.example.org"]
    assert [hop.preference for hop in result.hops] == [10, 20, 30]
    assert result.hops[0] == Hop("mx1.example.org", 10, ips("127.0.0.11"), 25)


def equal_preferences() -> FakeResolver:
    names = ["a", "b", "c", "d"]
    records = {f"{n}.example.org": {"A": f"127.0.0.{i + 1}"} for i, n in enumerate(names)}
    records["backup.example.org"] = {"A": "127.0.0.9"}
    mx = [(10, f"{n}.example.org") for n in names] + [(5, "backup.example.org")]
    records["example.org"] = {"MX": [(50, "backup.example.org"), *mx[:4]]}
    return FakeResolver(records)


def test_equal_preferences_shuffled_but_never_across_preferences():
    orders = set()
    for seed in range(40):
        result = routed("example.org", equal_preferences(), rng=random.Random(seed))
        assert hosts(result)[-1] == "backup.example.org"
        assert sorted(hosts(result)[:4]) == [f"{n}.example.org" for n in "abcd"]
        orders.add(tuple(hosts(result)))
    assert len(orders) > 5  # 24 possible orders


def test_shuffle_is_repeatable_with_the_same_rng():
    first = routed("example.org", equal_preferences(), rng=random.Random(7))
    again = routed("example.org", equal_preferences(), rng=random.Random(7))
    assert first == again


def test_default_randomness_spreads_the_first_host():
    firsts = {hosts(routed("example.org", equal_preferences()))[0] for _ in range(60)}
    assert len(firsts) > 1


def test_host_listed_twice_is_tried_once_at_its_best_preference():
    resolver = four_mx()
    resolver.add(
        "example.org",
        "MX",
        [(10, "mx1.example.org"), (20, "mx2.example.org"), (30, "MX1.example.org.")],
    )
    assert hosts(routed("example.org", resolver)) == ["mx1.example.org", "mx2.example.org"]


def test_at_most_max_mx_hosts_are_looked_up():
    resolver = FakeResolver()
    many = [(i, f"mx{i}.example.org") for i in range(MAX_MX_HOSTS + 5)]
    resolver.add("example.org", "MX", many)
    for _, host in many:
        resolver.add(host, "A", "127.0.0.1")
    result = routed("example.org", resolver)
    assert len(result.hops) == MAX_MX_HOSTS
    assert any("5 MX hosts beyond" in note for note in result.notes)
    assert sum(q.startswith("A ") for q in resolver.queries) == MAX_MX_HOSTS


# --- addresses ------------------------------------------------------------------------------


def test_ipv6_first_then_ipv4_each_in_dns_order():
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "mx.example.org")]},
            "mx.example.org": {"A": ["127.0.0.2", "127.0.0.1"], "AAAA": ["::1", "fd00::2"]},
        }
    )
    result = routed("example.org", resolver)
    assert result.hops[0].addresses == ips("::1", "fd00::2", "127.0.0.2", "127.0.0.1")


def test_ipv4_only_and_ipv6_only_hosts():
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "v6.example.org"), (20, "v4.example.org")]},
            "v6.example.org": {"AAAA": "::1"},
            "v4.example.org": {"A": "127.0.0.4"},
        }
    )
    result = routed("example.org", resolver)
    assert [hop.addresses for hop in result.hops] == [ips("::1"), ips("127.0.0.4")]


def test_unspecified_and_multicast_addresses_are_dropped():
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "zero.example.org"), (20, "mx.example.org")]},
            "zero.example.org": {"A": ["0.0.0.0", "224.0.0.1"], "AAAA": "::"},
            "mx.example.org": {"A": ["0.0.0.0", "127.0.0.5"]},
        }
    )
    result = routed("example.org", resolver)
    assert result.hops == (Hop("mx.example.org", 20, ips("127.0.0.5")),)
    assert any("zero.example.org skipped" in note and "0.0.0.0" in note for note in result.notes)


def test_private_and_loopback_addresses_are_allowed():
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "mx.example.org")]},
            "mx.example.org": {"A": ["10.1.2.3", "192.168.1.1", "127.0.0.1"], "AAAA": "::1"},
        }
    )
    assert len(routed("example.org", resolver).hops[0].addresses) == 4


# --- no MX, null MX, no domain ----------------------------------------------------------------


def test_no_mx_means_the_domain_itself_as_implicit_mx():
    resolver = FakeResolver({"example.org": {"A": "127.0.0.7", "AAAA": "::1", "TXT": "x"}})
    result = routed("example.org", resolver)
    assert result.kind == "implicit"
    assert result.hops == (Hop("example.org", 0, ips("::1", "127.0.0.7")),)
    assert resolver.queries == ["MX example.org", "AAAA example.org", "A example.org"]


def test_no_mx_and_no_address_bounces():
    resolver = FakeResolver({"example.org": {"TXT": "v=spf1 -all"}})
    failure = failed("example.org", resolver)
    assert (failure.code, failure.status, failure.permanent) == (550, "5.1.2", True)
    assert "no MX and no address" in failure.message


def test_empty_non_terminal_has_no_mx_and_no_address():
    resolver = FakeResolver({"mx.sub.example.org": {"A": "127.0.0.1"}})
    assert failed("sub.example.org", resolver).status == "5.1.2"


def test_nxdomain_bounces_without_further_questions():
    resolver = FakeResolver({"example.org": {"A": "127.0.0.1"}})
    failure = failed("nowhere.example.org", resolver)
    assert failure.reply == "550 5.1.2 domain nowhere.example.org does not exist"
    assert failure.permanent
    assert resolver.queries == ["MX nowhere.example.org"]


def test_null_mx_bounces_at_once():
    resolver = FakeResolver({"example.org": {"MX": [(0, ".")], "A": "127.0.0.1"}})
    failure = failed("example.org", resolver)
    assert failure.reply == "556 5.1.10 Recipient address has null MX"
    assert failure.permanent
    assert resolver.queries == ["MX example.org"]  # RFC 7505 §4.1: no fallback to A/AAAA


def test_null_mx_among_other_mx_records_is_ignored():
    resolver = four_mx()
    resolver.add("example.org", "MX", [(0, "."), (10, "mx1.example.org")])
    result = routed("example.org", resolver)
    assert hosts(result) == ["mx1.example.org"]
    assert any("RFC 7505" in note for note in result.notes)


def test_invalid_domain_is_refused_without_asking():
    resolver = FakeResolver()
    for domain in ("a..example.org", "x" * 64 + ".example.org", ""):
        failure = failed(domain, resolver)
        assert (failure.status, failure.permanent) == ("5.1.3", True)
    assert resolver.queries == []


# --- temporary failures never bounce ----------------------------------------------------------


def test_temporary_mx_failure_defers():
    resolver = four_mx()
    resolver.fail("MX example.org")
    failure = failed("example.org", resolver)
    assert (failure.code, failure.status, failure.permanent) == (451, "4.4.3", False)
    assert "temporary failure" in failure.message


def test_temporary_address_failure_for_implicit_mx_defers():
    resolver = FakeResolver({"example.org": {"TXT": "x"}}, temporary={"A example.org"})
    assert failed("example.org", resolver).status == "4.4.3"


def test_implicit_mx_with_one_family_failing_uses_the_other():
    resolver = FakeResolver({"example.org": {"A": "127.0.0.1"}}, temporary={"AAAA example.org"})
    result = routed("example.org", resolver)
    assert result.hops[0].addresses == ips("127.0.0.1")


def test_mx_target_without_address_is_skipped():
    resolver = four_mx()
    resolver.records.pop("mx1.example.org")
    resolver.records.pop("mx2.example.org")
    resolver.add("mx2.example.org", "TXT", "no address here")
    result = routed("example.org", resolver)
    assert hosts(result) == ["mx3.example.org"]
    assert "MX host mx1.example.org skipped: no such name" in result.notes
    assert "MX host mx2.example.org skipped: no address records" in result.notes


def test_no_mx_target_with_address_bounces_when_all_answers_are_final():
    resolver = FakeResolver(
        {"example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]}}
    )
    failure = failed("example.org", resolver)
    assert (failure.code, failure.status) == (550, "5.4.4")


def test_no_mx_target_with_address_defers_when_one_lookup_was_temporary():
    resolver = FakeResolver(
        {"example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]}},
        temporary={"mx2.example.org"},
    )
    failure = failed("example.org", resolver)
    assert (failure.code, failure.status) == (451, "4.4.3")
    assert "mx2.example.org" in failure.message


def test_temporary_failure_of_the_best_mx_falls_back_to_the_next():
    resolver = four_mx()
    resolver.fail("mx1.example.org")
    assert hosts(routed("example.org", resolver)) == ["mx2.example.org", "mx3.example.org"]


# --- aliases (CNAME) ------------------------------------------------------------------------


def test_mx_target_that_is_an_alias_is_followed_and_noted():
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "mail.example.org")]},
            "mail.example.org": {"CNAME": "real.example.net"},
            "real.example.net": {"A": "127.0.0.8"},
        }
    )
    result = routed("example.org", resolver)
    assert result.hops == (Hop("mail.example.org", 10, ips("127.0.0.8"), 25, "real.example.net"),)
    assert "MX host mail.example.org is an alias of real.example.net (RFC 5321 §5.1)" in (
        result.notes
    )


def test_domain_that_is_an_alias_uses_the_target_mx():
    resolver = four_mx()
    resolver.add("alias.example", "CNAME", "example.org")
    result = routed("alias.example", resolver)
    assert result.domain == "alias.example"
    assert hosts(result)[0] == "mx1.example.org"
    assert "alias.example is an alias of example.org" in result.notes


def test_alias_loop_is_temporary():
    resolver = FakeResolver(
        {"a.example": {"CNAME": "b.example"}, "b.example": {"CNAME": "a.example"}}
    )
    assert failed("a.example", resolver).status == "4.4.3"


# --- internationalised domains --------------------------------------------------------------


def test_u_label_domain_is_asked_as_a_label():
    resolver = FakeResolver(
        {
            "xn--bcher-kva.example": {"MX": [(10, "mx.bücher.example")]},
            "mx.xn--bcher-kva.example": {"A": "127.0.0.3"},
        }
    )
    result = routed("Bücher.example", resolver)
    assert result.domain == "xn--bcher-kva.example"
    assert hosts(result) == ["mx.xn--bcher-kva.example"]
    assert resolver.queries[0] == "MX xn--bcher-kva.example"


# --- ourselves in the MX list ---------------------------------------------------------------


def test_our_own_mx_entry_and_worse_ones_are_dropped():
    result = routed("example.org", four_mx(), local_names=["MX2.example.org"])
    assert hosts(result) == ["mx1.example.org"]


def test_mail_looping_back_to_us_bounces():
    failure = failed("example.org", four_mx(), local_names=["mx1.example.org"])
    assert (failure.status, failure.permanent) == ("5.4.6", True)


# --- address literals and smarthosts --------------------------------------------------------


def test_address_literals_route_to_the_address():
    resolver = FakeResolver()
    assert routed("[127.0.0.9]", resolver).hops == (Hop("127.0.0.9", None, ips("127.0.0.9")),)
    assert routed("[IPv6:::1]", resolver).hops == (Hop("::1", None, ips("::1")),)
    assert failed("[300.1.1.1]", resolver).status == "5.1.3"
    assert failed("[0.0.0.0]", resolver).status == "5.1.2"
    assert resolver.queries == []


def test_smarthost_by_address_needs_no_dns():
    resolver = four_mx()
    result = routed("example.org", resolver, smarthost=Smarthost("127.0.0.20", 2525))
    assert result.kind == "smarthost"
    assert result.hops == (Hop("127.0.0.20", None, ips("127.0.0.20"), 2525),)
    assert resolver.queries == []


def test_smarthost_by_name_skips_mx():
    resolver = four_mx()
    resolver.add("relay.example.net", "AAAA", "::1")
    resolver.add("relay.example.net", "A", "127.0.0.21")
    result = routed("example.org", resolver, smarthost=parse_smarthost("[relay.example.net]:587"))
    assert result.hops == (Hop("relay.example.net", None, ips("::1", "127.0.0.21"), 587),)
    assert not any(q.startswith("MX") for q in resolver.queries)


def test_smarthost_that_does_not_resolve_defers():
    for resolver in (four_mx(), FakeResolver(temporary={"relay.example.net"})):
        failure = failed("example.org", resolver, smarthost=Smarthost("relay.example.net", 25))
        assert (failure.code, failure.status, failure.permanent) == (451, "4.4.3", False)
        assert "smarthost [relay.example.net]:25" in failure.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("relay.example.net", Smarthost("relay.example.net", 25, mx=True)),
        ("Relay.Example.NET:587", Smarthost("relay.example.net", 587, mx=True)),
        ("[relay.example.net]:587", Smarthost("relay.example.net", 587)),
        ("127.0.0.1:2525", Smarthost("127.0.0.1", 2525)),
        ("[127.0.0.1]:25", Smarthost("127.0.0.1", 25)),
        ("[::1]:465", Smarthost("::1", 465)),
        ("[2001:DB8::1]", Smarthost("2001:db8::1", 25)),
        ("[IPv6:2001:db8::1]:587", Smarthost("2001:db8::1", 587)),
        ("relais.bücher.example:25", Smarthost("relais.xn--bcher-kva.example", 25, mx=True)),
    ],
)
def test_parse_smarthost(text, expected):
    assert parse_smarthost(text) == expected


@pytest.mark.parametrize(
    "text", ["", "host:", "host:0", "host:70000", "::1:25", "[]:25", "a..b:25", "[a..b]"]
)
def test_parse_smarthost_refuses(text):
    with pytest.raises(ValueError, match=r"."):
        parse_smarthost(text)


def test_smarthost_renders_as_postfix_writes_it():
    for text in ("[::1]:25", "[relay.example.net]:587", "relay.example.net:25", "[127.0.0.1]:25"):
        assert str(parse_smarthost(text)) == text


def test_smarthost_without_brackets_is_routed_by_its_mx():
    resolver = four_mx()
    resolver.add("relay.example.net", "MX", [(10, "mx1.example.org"), (20, "mx2.example.org")])
    relay = parse_smarthost("relay.example.net:587")
    result = routed("elsewhere.example", resolver, smarthost=relay)
    assert result.kind == "smarthost" and result.domain == "elsewhere.example"
    assert [(hop.host, hop.port) for hop in result.hops] == [
        ("mx1.example.org", 587),
        ("mx2.example.org", 587),
    ]
    assert "MX elsewhere.example" not in resolver.queries
    failure = failed("x.example", FakeResolver(), smarthost=parse_smarthost("nowhere.example"))
    assert (failure.status, failure.permanent) == ("4.4.3", False)  # NXDOMAIN, still ours to fix
    assert "smarthost nowhere.example:25" in failure.message


# --- failover within one attempt ------------------------------------------------------------


def two_hosts() -> Route:
    resolver = FakeResolver(
        {
            "example.org": {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")]},
            "mx1.example.org": {"A": ["127.0.0.1", "127.0.0.2"], "AAAA": "::1"},
            "mx2.example.org": {"A": ["127.0.0.2", "127.0.0.3"]},
        }
    )
    return routed("example.org", resolver)


def test_failover_tries_each_address_then_the_next_host_once_per_address():
    failover = Failover(two_hosts())
    tried = []
    for target in failover:
        tried.append((target.host, str(target.address)))
        failover.failed(target, "connection refused")
    assert tried == [
        ("mx1.example.org", "::1"),
        ("mx1.example.org", "127.0.0.1"),
        ("mx1.example.org", "127.0.0.2"),
        ("mx2.example.org", "127.0.0.3"),  # 127.0.0.2 was tried already
    ]
    failure = failover.failure()
    assert (failure.code, failure.status, failure.permanent) == (451, "4.4.1", False)
    assert failure.message == (
        "no host accepted the connection: 1 more; "
        "mx1.example.org [127.0.0.1]:25: connection refused; "
        "mx1.example.org [127.0.0.2]:25: connection refused; "
        "mx2.example.org [127.0.0.3]:25: connection refused"
    )


def test_failover_stops_when_a_host_takes_the_message():
    failover = Failover(two_hosts())
    first = failover.next()
    assert first == Target("mx1.example.org", ip_address("::1"), 25, 10)
    failover.failed(first, "421 4.3.2 try later")
    second = failover.next()
    assert second is not None and second.address == ip_address("127.0.0.1")
    assert [reason for _, reason in failover.failures] == ["421 4.3.2 try later"]


def test_failover_is_bounded():
    failover = Failover(two_hosts(), max_addresses=2)
    assert len(list(failover)) == 2
    assert failover.next() is None


def test_failover_without_failures_says_so():
    failover = Failover(Route("example.org", "mx", ()))
    assert failover.next() is None
    assert failover.failure().status == "4.4.1"


# --- the same rules over real DNS -------------------------------------------------------------

ZONE = """$TTL 300
@       IN SOA ns1 hostmaster ( 1 3600 600 86400 60 )
@       IN NS  ns1
ns1     IN A   127.0.0.1
@       IN MX  20 mx2
@       IN MX  10 mx1a
@       IN MX  10 mx1b
@       IN MX  30 alias
mx1a    IN A   127.0.0.11
mx1b    IN A   127.0.0.12
mx1b    IN AAAA ::1
mx2     IN A   127.0.0.2
alias   IN CNAME mx2
null    IN MX  0 .
null    IN A   127.0.0.1
bare    IN A   127.0.0.30
bare    IN AAAA ::1
nothing IN TXT "no mail here"
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    if reason := nsd_missing():
        pytest.skip(reason)
    with nsd_server({"route.test": ZONE}, tmp_path_factory.mktemp("nsd")) as server:
        yield server


def test_routes_over_real_dns(nsd):
    async def main():
        resolver = StubResolver([nsd.nameserver], timeout=2, attempts=1)
        return [
            await route(domain, resolver, rng=random.Random(1))
            for domain in (
                "route.test",
                "null.route.test",
                "bare.route.test",
                "nothing.route.test",
                "missing.route.test",
            )
        ]

    mx, null, bare, nothing, missing = run(main())
    assert isinstance(mx, Route)
    assert sorted(hosts(mx)[:2]) == ["mx1a.route.test", "mx1b.route.test"]
    assert hosts(mx)[2:] == ["mx2.route.test", "alias.route.test"]
    by_host = {hop.host: hop for hop in mx.hops}
    assert by_host["mx1b.route.test"].addresses == ips("::1", "127.0.0.12")
    assert by_host["alias.route.test"] == Hop(
        "alias.route.test", 30, ips("127.0.0.2"), 25, "mx2.route.test"
    )
    assert null == RouteFailure("null.route.test", 556, "5.1.10", "Recipient address has null MX")
    assert bare == Route(
        "bare.route.test", "implicit", (Hop("bare.route.test", 0, ips("::1", "127.0.0.30")),)
    )
    assert isinstance(nothing, RouteFailure) and nothing.status == "5.1.2"
    assert isinstance(missing, RouteFailure) and missing.reply == (
        "550 5.1.2 domain missing.route.test does not exist"
    )


def test_route_over_unreachable_dns_defers(nsd):
    async def main():
        resolver = StubResolver([nsd.nameserver], timeout=2, attempts=1)
        return await route("elsewhere.test", resolver)  # REFUSED: not NSD's zone

    failure = run(main())
    assert isinstance(failure, RouteFailure)
    assert (failure.code, failure.status) == (451, "4.4.3")
    assert "REFUSED" in failure.message
