"""FakeResolver answers like the real one: statuses, CNAMEs, names, failures."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from mailstead.dns import MX, TLSA, Answer, Status
from mailstead.testing.dns import FakeResolver


def run(coro):
    return asyncio.run(coro)


RECORDS = {
    "example.org": {
        "MX": [(10, "mx1.example.org"), "20 MX2.example.org."],
        "TXT": ["v=spf1 -all", b"\xff raw"],
    },
    "mx1.example.org": {"A": ["192.0.2.1"], "AAAA": "2001:db8::1"},
    "www.example.org": {"CNAME": "alias.example.org"},
    "alias.example.org": {"CNAME": "mx1.example.org"},
    "deep.sub.example.org": {"A": "192.0.2.9"},
    "dangling.example.org": {"CNAME": "gone.example.net"},
    "_25._tcp.mx1.example.org": {"TLSA": [(3, 1, 1, "abcd"), TLSA(2, 0, 1, b"\x01")]},
    "192.0.2.1": {"PTR": ["mx1.example.org"]},
    "bücher.example": {"MX": [(0, ".")]},
}


def test_records_of_every_type():
    resolver = FakeResolver(RECORDS, ttl=120)

    async def main():
        return (
            await resolver.mx("example.org"),
            await resolver.txt("EXAMPLE.org."),
            await resolver.addresses("mx1.example.org"),
            await resolver.tlsa("_25._tcp.mx1.example.org"),
            await resolver.ptr("192.0.2.1"),
            await resolver.ptr(ip_address("192.0.2.1")),
        )

    mx, txt, addresses, tlsa, ptr, ptr_again = run(main())
    assert mx == Answer(
        Status.FOUND, "example.org", (MX(10, "mx1.example.org"), MX(20, "mx2.example.org")), 120
    )
    assert txt.records == (b"v=spf1 -all", b"\xff raw")
    assert addresses.records == (ip_address("2001:db8::1"), ip_address("192.0.2.1"))
    assert tlsa.records == (TLSA(3, 1, 1, b"\xab\xcd"), TLSA(2, 0, 1, b"\x01"))
    assert ptr == ptr_again
    assert ptr.name == "1.2.0.192.in-addr.arpa"
    assert ptr.records == ("mx1.example.org",)


def test_missing_names_types_and_empty_non_terminals():
    resolver = FakeResolver(RECORDS, negative_ttl=30)

    async def main():
        return (
            await resolver.mx("nothing.example.org"),
            await resolver.mx("mx1.example.org"),
            await resolver.a("sub.example.org"),
            await resolver.ptr("192.0.2.2"),
        )

    nx, nodata, ent, noptr = run(main())
    assert (nx.status, nx.ttl) == (Status.NXDOMAIN, 30)
    assert nodata.status is Status.NO_DATA
    assert ent.status is Status.NO_DATA  # deep.sub.example.org exists below it
    assert noptr.status is Status.NXDOMAIN


def test_cname_chains_are_followed_and_reported():
    resolver = FakeResolver(RECORDS)

    async def main():
        return await resolver.a("www.example.org"), await resolver.a("dangling.example.org")

    www, dangling = run(main())
    assert www.records == (ip_address("192.0.2.1"),)
    assert www.cnames == ("alias.example.org", "mx1.example.org")
    assert www.canonical_name == "mx1.example.org"
    assert (dangling.status, dangling.cnames) == (Status.NXDOMAIN, ("gone.example.net",))


def test_u_labels_and_a_labels_are_the_same_name():
    resolver = FakeResolver(RECORDS)
    answer = run(resolver.mx("xn--bcher-kva.example"))
    assert answer.records == (MX(0, "."),)
    assert run(resolver.mx("BÜCHER.example")) == answer


def test_temporary_failures_by_type_or_by_name():
    resolver = FakeResolver(RECORDS, temporary={"MX example.org", "mx1.example.org"})
    resolver.fail("PTR 192.0.2.1")

    async def main():
        return (
            await resolver.mx("example.org"),
            await resolver.txt("example.org"),
            await resolver.a("mx1.example.org"),
            await resolver.a("www.example.org"),  # its chain reaches mx1
            await resolver.ptr("192.0.2.1"),
        )

    mx, txt, a, www, ptr = run(main())
    assert mx.status is Status.TEMPORARY and "FakeResolver" in mx.detail
    assert txt.status is Status.FOUND
    assert a.status is Status.TEMPORARY
    assert www.status is Status.TEMPORARY
    assert ptr.status is Status.TEMPORARY


def test_invalid_names_and_addresses():
    resolver = FakeResolver(RECORDS)
    assert run(resolver.a("a..b")).status is Status.INVALID
    assert run(resolver.ptr("not-an-ip")).status is Status.INVALID


def test_questions_are_logged_in_order():
    resolver = FakeResolver(RECORDS)
    run(resolver.mx("Example.org"))
    run(resolver.addresses("mx1.example.org"))
    assert resolver.queries == ["MX Example.org", "AAAA mx1.example.org", "A mx1.example.org"]


def test_bad_records_are_refused_when_added():
    resolver = FakeResolver()
    with pytest.raises(ValueError, match="not NAPTR"):
        resolver.add("example.org", "NAPTR", [])
    with pytest.raises(ValueError, match="4 octets"):
        resolver.add("example.org", "A", "::1")
