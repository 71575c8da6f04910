"""StubResolver against a real NSD on loopback (started here with zones written here), and
against nameservers that never answer or refuse the connection."""

from __future__ import annotations

import asyncio
import socket
import time
from ipaddress import ip_address

import pytest

from mailstead.dns import MX, TLSA, Answer, Status, StubResolver
from mailstead.testing.nsd import NsdError, nsd_missing, nsd_server

# SOA minimum 60 and SOA TTL 300: negative answers live min(300, 60) = 60 s (RFC 2308 §5).
EXAMPLE = """$TTL 300
@        IN SOA ns1 hostmaster ( 1 3600 600 86400 60 )
@        IN NS   ns1
ns1      IN A    127.0.0.1
@        IN MX   30 mx3
@        IN MX   10 mx1a
@        IN MX   10 mx1b
@        IN MX   20 mx2
mx1a     IN A    127.0.0.11
mx1b     IN A    127.0.0.12
mx2      IN A    127.0.0.2
mx2      IN AAAA ::1
mx3      IN AAAA ::1
null     IN MX   0 .
cnamed   IN MX   10 alias
alias    IN CNAME alias2
alias2 120 IN CNAME mx2
dangling IN CNAME nothere
spf      IN TXT  "v=spf1 ip4:127.0.0.0/8 " "-all"
spf      IN TXT  "other text"
short 30 IN A    127.0.0.30
deep.sub IN A    127.0.0.40
_25._tcp.mx2 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
"""
# DKIM-sized and bigger: over the 1232-octet EDNS payload, so the answer comes over TCP.
BIG = " ".join(f'"{chr(97 + i % 26) * 250}"' for i in range(8))
EXAMPLE += f"big      IN TXT  ( {BIG} )\n"

IDN = """$TTL 300
@   IN SOA ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 60 )
@   IN NS  ns1.example.test.
@   IN MX  10 mx.xn--bcher-kva.test.
mx  IN A   127.0.0.50
"""
REVERSE4 = """$TTL 300
@        IN SOA ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 60 )
@        IN NS  ns1.example.test.
11.0.0   IN PTR mx1a.example.test.
2.0.0    IN PTR mx2.example.test.
2.0.0    IN PTR mail.example.test.
"""
REVERSE6 = """$TTL 300
@   IN SOA ns1.example.test. hostmaster.example.test. ( 1 3600 600 86400 60 )
@   IN NS  ns1.example.test.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR mx2.example.test.
"""
ZONES = {
    "example.test": EXAMPLE,
    "xn--bcher-kva.test": IDN,
    "127.in-addr.arpa": REVERSE4,
    "ip6.arpa": REVERSE6,
    "broken.test": None,  # declared without a file: NSD answers SERVFAIL
}


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    if reason := nsd_missing():
        pytest.skip(reason)
    with nsd_server(ZONES, tmp_path_factory.mktemp("nsd")) as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver_for(nsd, **kwargs) -> StubResolver:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("attempts", 1)
    return StubResolver([nsd.nameserver], **kwargs)


def ask(resolver, method, *args):
    return asyncio.run(getattr(resolver, method)(*args))


# --- answers --------------------------------------------------------------------------------


def test_mx_records_with_preferences(nsd):
    answer = ask(resolver_for(nsd), "mx", "example.test")
    assert answer.status is Status.FOUND
    assert sorted(answer.records, key=lambda r: (r.preference, r.host)) == [
        MX(10, "mx1a.example.test"),
        MX(10, "mx1b.example.test"),
        MX(20, "mx2.example.test"),
        MX(30, "mx3.example.test"),
    ]
    assert (answer.ttl, answer.cnames, answer.authentic) == (300, (), False)


def test_null_mx(nsd):
    answer = ask(resolver_for(nsd), "mx", "null.example.test")
    assert answer.records == (MX(0, "."),)
    assert answer.records[0].is_null


def test_addresses_ipv6_first(nsd):
    resolver = resolver_for(nsd)
    assert ask(resolver, "addresses", "mx2.example.test").records == (
        ip_address("::1"),
        ip_address("127.0.0.2"),
    )
    assert ask(resolver, "a", "mx2.example.test").records == (ip_address("127.0.0.2"),)
    assert ask(resolver, "aaaa", "mx2.example.test").records == (ip_address("::1"),)
    only6 = ask(resolver, "addresses", "mx3.example.test")
    assert (only6.status, only6.records, only6.detail) == (Status.FOUND, (ip_address("::1"),), "")


def test_cname_chain_is_followed_and_reported_with_the_smallest_ttl(nsd):
    answer = ask(resolver_for(nsd), "a", "alias.example.test")
    assert answer == Answer(
        Status.FOUND,
        "alias.example.test",
        (ip_address("127.0.0.2"),),
        ttl=120,
        cnames=("alias2.example.test", "mx2.example.test"),
    )
    assert answer.canonical_name == "mx2.example.test"


def test_cname_to_a_missing_name_is_nxdomain_of_the_target(nsd):
    answer = ask(resolver_for(nsd), "a", "dangling.example.test")
    assert (answer.status, answer.cnames, answer.ttl) == (
        Status.NXDOMAIN,
        ("nothere.example.test",),
        60,
    )


def test_txt_strings_are_joined(nsd):
    answer = ask(resolver_for(nsd), "txt", "spf.example.test")
    assert sorted(answer.records) == [b"other text", b"v=spf1 ip4:127.0.0.0/8 -all"]


def test_txt_larger_than_a_udp_answer(nsd):
    answer = ask(resolver_for(nsd), "txt", "big.example.test")
    assert answer.status is Status.FOUND
    assert len(answer.records[0]) == 2000
    assert answer.records[0].startswith(b"a" * 250 + b"b")


def test_tlsa(nsd):
    answer = ask(resolver_for(nsd), "tlsa", "_25._tcp.mx2.example.test")
    assert answer.records == (TLSA(3, 1, 1, bytes.fromhex("0123456789abcdef" * 4)),)


def test_ptr_ipv4_and_ipv6(nsd):
    resolver = resolver_for(nsd)
    assert ask(resolver, "ptr", "127.0.0.11").records == ("mx1a.example.test",)
    assert sorted(ask(resolver, "ptr", ip_address("127.0.0.2")).records) == [
        "mail.example.test",
        "mx2.example.test",
    ]
    six = ask(resolver, "ptr", "::1")
    assert six.name == "1." + "0." * 31 + "ip6.arpa"
    assert six.records == ("mx2.example.test",)
    assert ask(resolver, "ptr", "127.0.0.99").status is Status.NXDOMAIN
    assert ask(resolver, "ptr", "no-address").status is Status.INVALID


def test_u_label_names_are_asked_as_a_labels(nsd):
    answer = ask(resolver_for(nsd), "mx", "Bücher.test")
    assert answer.name == "xn--bcher-kva.test"
    assert answer.records == (MX(10, "mx.xn--bcher-kva.test"),)


# --- no records -----------------------------------------------------------------------------


def test_nxdomain_with_the_negative_ttl(nsd):
    answer = ask(resolver_for(nsd), "mx", "nothing.example.test")
    assert answer == Answer(Status.NXDOMAIN, "nothing.example.test", ttl=60)


def test_no_data_for_a_missing_type_and_an_empty_non_terminal(nsd):
    resolver = resolver_for(nsd)
    assert ask(resolver, "mx", "mx1a.example.test") == Answer(
        Status.NO_DATA, "mx1a.example.test", ttl=60
    )
    assert ask(resolver, "a", "sub.example.test").status is Status.NO_DATA
    assert ask(resolver, "aaaa", "mx1a.example.test").status is Status.NO_DATA
    both = ask(resolver, "addresses", "spf.example.test")
    assert (both.status, both.ttl) == (Status.NO_DATA, 60)


def test_invalid_names_are_not_asked(nsd):
    resolver = resolver_for(nsd)
    for name in ("a..example.test", "x" * 64 + ".example.test", ""):
        answer = ask(resolver, "mx", name)
        assert answer.status is Status.INVALID
        assert answer.detail


# --- temporary failures ---------------------------------------------------------------------


def test_servfail_is_temporary(nsd):
    answer = ask(resolver_for(nsd), "a", "www.broken.test")
    assert answer.status is Status.TEMPORARY
    assert answer.detail == f"A www.broken.test: SERVFAIL from {nsd.nameserver}"
    assert answer.ttl == 0


def test_refused_is_temporary(nsd):
    answer = ask(resolver_for(nsd), "mx", "example.com")
    assert answer.status is Status.TEMPORARY
    assert "REFUSED" in answer.detail


@pytest.fixture
def silent_server():
    """A nameserver that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock


def received(sock) -> int:
    count = 0
    while True:
        try:
            sock.recv(4096)
        except BlockingIOError:
            return count
        count += 1


def test_silent_nameserver_is_a_temporary_failure_within_the_timeout(silent_server):
    port = silent_server.getsockname()[1]
    resolver = StubResolver([f"127.0.0.1:{port}"], timeout=0.3, attempts=1)
    start = time.monotonic()
    answer = ask(resolver, "mx", "example.test")
    elapsed = time.monotonic() - start
    assert answer == Answer(
        Status.TEMPORARY, "example.test", detail="MX example.test: timed out after 0.3 s"
    )
    assert 0.25 <= elapsed < 1.5
    assert received(silent_server) == 1
    assert len(resolver.cache) == 0  # failures are not cached: the next lookup asks again


def test_attempts_ask_again(silent_server):
    port = silent_server.getsockname()[1]
    resolver = StubResolver([f"127.0.0.1:{port}"], timeout=0.2, attempts=3)
    start = time.monotonic()
    assert ask(resolver, "a", "example.test").status is Status.TEMPORARY
    assert 0.55 <= time.monotonic() - start < 2.0
    assert received(silent_server) >= 2  # dnspython backs off between rounds: 2 or 3 fit


def test_a_silent_nameserver_is_skipped_for_the_next(nsd, silent_server):
    port = silent_server.getsockname()[1]
    resolver = StubResolver([f"127.0.0.1:{port}", nsd.nameserver], timeout=0.3, attempts=1)
    answer = ask(resolver, "a", "mx1a.example.test")
    assert answer.records == (ip_address("127.0.0.11"),)


def test_nameserver_refusing_the_connection_is_temporary():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resolver = StubResolver([f"127.0.0.1:{port}"], timeout=0.3, attempts=1)
    start = time.monotonic()
    answer = ask(resolver, "a", "example.test")
    assert answer.status is Status.TEMPORARY
    # dnspython's UDP socket is not connected, so the ICMP error goes unnoticed: the timeout
    # ends the lookup.
    assert time.monotonic() - start < 1.5


def test_concurrent_lookups_of_one_question_share_one_query(silent_server):
    port = silent_server.getsockname()[1]
    resolver = StubResolver([f"127.0.0.1:{port}"], timeout=0.3, attempts=1)

    async def main():
        return await asyncio.gather(*(resolver.txt("example.test") for _ in range(5)))

    answers = asyncio.run(main())
    assert {answer.status for answer in answers} == {Status.TEMPORARY}
    assert received(silent_server) == 1


def test_one_waiter_giving_up_does_not_cancel_the_others(nsd):
    resolver = resolver_for(nsd)

    async def main():
        first = asyncio.ensure_future(resolver.a("mx2.example.test"))
        second = asyncio.ensure_future(resolver.a("mx2.example.test"))
        await asyncio.sleep(0)  # both are waiting on the one query
        first.cancel()
        return await second

    assert asyncio.run(main()).records == (ip_address("127.0.0.2"),)


# --- the cache ------------------------------------------------------------------------------


def test_positive_answers_are_cached_for_their_ttl(nsd):
    clock = Clock()
    resolver = resolver_for(nsd, clock=clock)
    assert ask(resolver, "a", "short.example.test").ttl == 30
    clock.now += 20
    assert ask(resolver, "a", "short.example.test").ttl == 10  # from the cache
    clock.now += 10
    assert ask(resolver, "a", "short.example.test").ttl == 30  # asked again


def test_negative_answers_are_cached_capped(nsd):
    clock = Clock()
    resolver = resolver_for(nsd, clock=clock, max_negative_ttl=15)
    first = ask(resolver, "mx", "nothing.example.test")
    assert (first.status, first.ttl) == (Status.NXDOMAIN, 15)
    clock.now += 5
    assert ask(resolver, "mx", "nothing.example.test").ttl == 10
    nodata = ask(resolver, "mx", "mx2.example.test")
    assert (nodata.status, nodata.ttl) == (Status.NO_DATA, 15)


def test_cache_is_bounded(nsd):
    resolver = resolver_for(nsd, cache_entries=2)
    for host in ("mx1a", "mx1b", "mx2"):
        ask(resolver, "a", f"{host}.example.test")
    assert len(resolver.cache) == 2


# --- IPv6 transport and the fixture itself ----------------------------------------------------


def test_nameserver_over_ipv6(tmp_path):
    if reason := nsd_missing():
        pytest.skip(reason)
    with nsd_server({"example.test": EXAMPLE}, tmp_path, host="::1") as server:
        assert server.nameserver == f"[::1]:{server.port}"
        resolver = StubResolver([server.nameserver], timeout=2, attempts=1)
        assert ask(resolver, "a", "mx1b.example.test").records == (ip_address("127.0.0.12"),)


def test_fixture_reports_a_bad_zone(tmp_path):
    if reason := nsd_missing():
        pytest.skip(reason)
    with (
        pytest.raises(NsdError, match=r"zone bad\.test is invalid"),
        nsd_server({"bad.test": "@ IN MX not-a-number\n"}, tmp_path),
    ):
        pass
