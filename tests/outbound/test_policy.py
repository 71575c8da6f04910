"""The TLS plan of a route: MTA-STS enforce keeps only the MX hosts of the policy, each with
verified TLS; testing and no policy leave the route alone; relays and literals get no policy."""

from __future__ import annotations

import asyncio
import ssl
import time

from mailstead.outbound.mta_sts import MtaSts, PolicyCache, parse_policy
from mailstead.outbound.policy import OutboundTls, TlsPlan
from mailstead.outbound.routing import Failover, RouteFailure, Smarthost, route
from mailstead.outbound.sender import TlsMode
from mailstead.testing.dns import FakeResolver


def world(tmp_path, policy_text: str | None) -> tuple[FakeResolver, OutboundTls]:
    resolver = FakeResolver(
        {
            "example.test": {"MX": [(10, "mx1.example.test"), (20, "mx2.other.test")]},
            "mx1.example.test": {"A": "127.0.0.11"},
            "mx2.other.test": {"A": "127.0.0.12"},
        }
    )
    cache = PolicyCache(tmp_path / "cache")
    if policy_text is not None:  # cached under the TXT's id: no fetch is made
        resolver.add("_mta-sts.example.test", "TXT", "v=STSv1; id=cached")
        cache.store("example.test", parse_policy(policy_text, policy_id="cached",
                                                 fetched=time.time()))  # fmt: skip

    async def context() -> ssl.SSLContext:
        raise AssertionError("nothing is fetched")

    planner = OutboundTls(verify_context=ssl.create_default_context)
    planner.mta_sts = MtaSts(resolver, cache, context)
    return resolver, planner


def plan(resolver, planner, domain="example.test", **kw) -> TlsPlan | RouteFailure:
    async def main():
        found = await route(domain, resolver, **kw)
        return await planner.plan(found)

    return asyncio.run(main())


def test_enforce_keeps_the_policys_mx_hosts_with_verified_tls(tmp_path):
    resolver, planner = world(
        tmp_path, "version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 600\n"
    )
    result = plan(resolver, planner)
    assert isinstance(result, TlsPlan)
    assert [hop.host for hop in result.route.hops] == ["mx1.example.test"]
    assert any("mx2.other.test is not in the MTA-STS policy" in n for n in result.route.notes)
    [target] = list(Failover(result.route))
    connection = result.connection(target)
    assert (connection.tls.mode, connection.tls.hostname) == (TlsMode.REQUIRED, "mx1.example.test")
    assert connection.source == "mta-sts"
    assert connection.context is not None and connection.context.check_hostname


def test_enforce_without_an_allowed_mx_is_a_temporary_failure(tmp_path):
    resolver, planner = world(
        tmp_path, "version: STSv1\nmode: enforce\nmx: mail.example.test\nmax_age: 600\n"
    )
    failure = plan(resolver, planner)
    assert isinstance(failure, RouteFailure)
    assert (failure.code, failure.status, failure.permanent) == (451, "4.7.5", False)
    assert "MTA-STS" in failure.message


def test_testing_and_no_policy_leave_the_route_opportunistic(tmp_path):
    for text in ("version: STSv1\nmode: testing\nmx: mail.example.test\nmax_age: 600\n", None):
        resolver, planner = world(tmp_path / str(text is None), text)
        result = plan(resolver, planner)
        assert isinstance(result, TlsPlan)
        assert len(result.route.hops) == 2
        for target in Failover(result.route):
            assert result.connection(target).tls.mode is TlsMode.OPPORTUNISTIC


def test_relays_and_literals_are_not_mta_sts_routes(tmp_path):
    resolver, planner = world(
        tmp_path, "version: STSv1\nmode: enforce\nmx: mail.example.test\nmax_age: 600\n"
    )
    relayed = plan(resolver, planner, smarthost=Smarthost("127.0.0.9", 587))
    assert isinstance(relayed, TlsPlan) and relayed.connections == {}
    literal = plan(resolver, planner, domain="[127.0.0.9]")
    assert isinstance(literal, TlsPlan) and literal.connections == {}
    assert not any(q.startswith("TXT") for q in resolver.queries)


def test_dane_wins_over_mta_sts(tmp_path):
    resolver, planner = world(
        tmp_path, "version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 600\n"
    )
    resolver.authentic = True  # a validating resolver vouches for every answer
    resolver.add("_25._tcp.mx2.other.test", "TLSA", [(3, 1, 1, "ab" * 32)])
    planner.dane_resolver = resolver
    result = plan(resolver, planner)
    assert isinstance(result, TlsPlan)
    sources = {t.host: result.connection(t).source for t in Failover(result.route)}
    # mx2 is outside the MTA-STS policy, but its TLSA records decide (RFC 8461 §2)
    assert sources == {"mx1.example.test": "mta-sts", "mx2.other.test": "dane"}
