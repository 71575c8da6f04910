"""The pure parts of mailstead.dns: names, nameserver strings, combined answers, the cache."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from mailstead.dns import (
    MX,
    Answer,
    AnswerCache,
    InvalidName,
    Status,
    combine_addresses,
    normalize_name,
    parse_nameserver,
)


@pytest.mark.parametrize(
    ("name", "asked"),
    [
        ("example.org", "example.org"),
        ("Example.ORG.", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),  # UTS 46 maps case first
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("_dmarc.bücher.example", "_dmarc.xn--bcher-kva.example"),
        ("_25._tcp.mx.example.org", "_25._tcp.mx.example.org"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_names_are_asked_as_lower_case_a_labels(name, asked):
    assert normalize_name(name) == asked


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty name"),
        (".", "empty name"),
        ("a..example", "empty label"),
        ("a" * 64 + ".example", "over 63 octets"),
        (".".join(["a" * 60] * 5), "over 255 octets"),
        ("\u0301a.example", "internationalised"),  # a label may not begin with a combining mark
        ("bad\u200d.example", "internationalised"),  # ZWJ is CONTEXTJ, invalid here
    ],
)
def test_names_that_cannot_be_asked(name, why):
    with pytest.raises(InvalidName, match=why):
        normalize_name(name)


def test_backslash_is_a_plain_character_not_an_escape():
    assert normalize_name("a\\.b.example") == "a\\\\.b.example"  # one label "a\.b", escaped


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("2001:DB8::53", ("2001:db8::53", 53)),
    ],
)
def test_parse_nameserver(text, server):
    assert parse_nameserver(text) == server


@pytest.mark.parametrize(
    "text", ["", "localhost", "dns.example:53", "127.0.0.1:0", "127.0.0.1:65536", "[127.0.0.1]:53",
             "1.2.3:53", "::1:53x"],
)  # fmt: skip
def test_parse_nameserver_refuses(text):
    with pytest.raises(ValueError, match=r"."):
        parse_nameserver(text)


def test_mx_null_is_the_root():
    assert MX(0, ".").is_null
    assert not MX(0, "mx.example").is_null


# --- combined address answers ---------------------------------------------------------------

V6 = IPv6Address("::1")
V4 = IPv4Address("127.0.0.1")


def six(status=Status.FOUND, ttl=300, **kw):
    return Answer(status, "h.example", (V6,) if status is Status.FOUND else (), ttl, **kw)


def four(status=Status.FOUND, ttl=300, **kw):
    return Answer(status, "h.example", (V4,) if status is Status.FOUND else (), ttl, **kw)


def test_both_families_found_ipv6_first_with_the_smaller_ttl():
    both = combine_addresses("h.example", six(ttl=100), four(ttl=50, cnames=("x.example",)))
    assert both == Answer(Status.FOUND, "h.example", (V6, V4), 50, ("x.example",))


def test_one_family_is_enough_and_the_other_trouble_is_kept():
    result = combine_addresses(
        "h.example", six(Status.TEMPORARY, ttl=0, detail="AAAA timed out"), four()
    )
    assert (result.status, result.records, result.ttl) == (Status.FOUND, (V4,), 300)
    assert result.detail == "AAAA: AAAA timed out"


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        (Status.NXDOMAIN, Status.NXDOMAIN, Status.NXDOMAIN),
        (Status.NO_DATA, Status.NO_DATA, Status.NO_DATA),
        (Status.NO_DATA, Status.NXDOMAIN, Status.NO_DATA),
        (Status.TEMPORARY, Status.NO_DATA, Status.TEMPORARY),
        (Status.NXDOMAIN, Status.TEMPORARY, Status.TEMPORARY),
        (Status.INVALID, Status.INVALID, Status.INVALID),
    ],
)
def test_no_address_outcomes(first, second, status):
    result = combine_addresses("h.example", six(first, ttl=60), four(second, ttl=30))
    assert result.status is status
    assert result.records == ()
    assert result.ttl == (30 if status in (Status.NXDOMAIN, Status.NO_DATA) else 0)


# --- the cache ------------------------------------------------------------------------------


def found(name="a.example", ttl=300):
    return Answer(Status.FOUND, name, (V4,), ttl)


def test_cache_serves_until_the_ttl_runs_out_with_the_remaining_ttl():
    cache = AnswerCache(10, max_ttl=86400, max_negative_ttl=3600)
    assert cache.put(("a.example", 1), found(ttl=300), now=1000.0) == found(ttl=300)
    assert cache.get(("a.example", 1), 1000.0) == found(ttl=300)
    assert cache.get(("a.example", 1), 1199.5) == found(ttl=101)
    assert cache.get(("a.example", 1), 1300.0) is None
    assert len(cache) == 0


def test_cache_caps_ttls_and_negative_ttls():
    cache = AnswerCache(10, max_ttl=600, max_negative_ttl=30)
    assert cache.put(("a", 1), found(ttl=10**6), 0.0).ttl == 600
    nx = Answer(Status.NXDOMAIN, "b", ttl=3600)
    nodata = Answer(Status.NO_DATA, "c", ttl=20)
    assert cache.put(("b", 1), nx, 0.0).ttl == 30
    assert cache.put(("c", 1), nodata, 0.0).ttl == 20
    assert cache.get(("b", 1), 29.0) is not None
    assert cache.get(("b", 1), 30.0) is None


def test_cache_keeps_no_failures_and_no_zero_ttl():
    cache = AnswerCache(10, max_ttl=600, max_negative_ttl=30)
    cache.put(("t", 1), Answer(Status.TEMPORARY, "t", detail="SERVFAIL"), 0.0)
    cache.put(("i", 1), Answer(Status.INVALID, "i"), 0.0)
    cache.put(("z", 1), found("z", ttl=0), 0.0)
    assert len(cache) == 0


def test_cache_is_bounded_least_recently_used_first():
    cache = AnswerCache(2, max_ttl=600, max_negative_ttl=30)
    cache.put(("a", 1), found("a"), 0.0)
    cache.put(("b", 1), found("b"), 0.0)
    assert cache.get(("a", 1), 1.0) is not None  # a is now the most recently used
    cache.put(("c", 1), found("c"), 1.0)
    assert len(cache) == 2
    assert cache.get(("b", 1), 1.0) is None
    assert cache.get(("a", 1), 1.0) is not None
    assert cache.get(("c", 1), 1.0) is not None
