"""DMARC (RFC 7489): record parsing, the organizational domain from the Public Suffix List,
policy discovery, alignment, pct sampling and the From domain; DNS from FakeResolver."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import publicsuffixlist
import pytest

from mailstead.mailauth.dmarc import (
    DmarcRecord,
    DmarcRecordError,
    FromDomainError,
    aligned,
    author_domain,
    check_dmarc,
    check_message_dmarc,
    is_dmarc_record,
    parse_dmarc_record,
)
from mailstead.mailauth.psl import ascii_domain, organizational_domain, public_suffix
from mailstead.testing.dns import FakeResolver

# -- records ------------------------------------------------------------------------------------


def test_full_record():
    record = parse_dmarc_record(
        b"v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=s; pct=25; "
        b"rua=mailto:agg@example.org,mailto:big@example.net!10m; ruf=mailto:f@example.org; "
        b"fo=1:d; rf=afrf; ri=3600"
    )
    assert record == DmarcRecord(
        policy="reject",
        subdomain_policy="quarantine",
        nonexistent_policy="reject",
        adkim="s",
        aspf="s",
        pct=25,
        rua=("mailto:agg@example.org", "mailto:big@example.net!10m"),
        ruf=("mailto:f@example.org",),
        fo="1:d",
        rf="afrf",
        ri=3600,
    )


def test_defaults_and_tolerated_spelling():
    record = parse_dmarc_record("v=DMARC1;p=NONE;")
    assert record == DmarcRecord(policy="none")
    # tag names and policy values are case-insensitive (RFC 7489 §6.4 ABNF strings); spaces
    spaced = parse_dmarc_record("v = DMARC1 ;  P = Quarantine ; ADKIM = S ; future=thing")
    assert (spaced.policy, spaced.adkim, spaced.notes) == ("quarantine", "s", ())


@pytest.mark.parametrize(
    "text",
    [
        "p=reject; v=DMARC1",  # v= must come first
        "v=dmarc1; p=reject",  # the version is case-sensitive
        "v=DMARC2; p=reject",
        "v=DMARC1x; p=reject",
        "v=spf1 -all",
        "v=DMARC1",  # no p=
        "v=DMARC1; p=block",
        "v=DMARC1; p=reject; sp=maybe",
        "v=DMARC1; p=block; rua=not a uri",
    ],
)
def test_unusable_records(text):
    with pytest.raises(DmarcRecordError):
        parse_dmarc_record(text)


def test_bad_policy_with_reports_reads_as_none():
    # RFC 7489 §6.6.3 step 6
    record = parse_dmarc_record("v=DMARC1; p=blocky; rua=mailto:d@example.org")
    assert record.policy == "none" and record.rua == ("mailto:d@example.org",)
    assert "p=blocky" in record.notes[0]
    record = parse_dmarc_record("v=DMARC1; p=reject; sp=blocky; rua=mailto:d@example.org")
    assert (record.policy, record.subdomain_policy) == ("none", None)


def test_bad_values_take_defaults_with_notes():
    record = parse_dmarc_record(
        "v=DMARC1; p=reject; pct=150; adkim=x; aspf=; fo=9; ri=soon; np=never; rua=junk, "
        "mailto:ok@example.org; p=none; garbage"
    )
    assert (record.pct, record.adkim, record.aspf, record.fo, record.ri) == (
        100,
        "r",
        "r",
        "0",
        86400,
    )
    assert record.policy == "reject"  # the first p= counts
    assert record.nonexistent_policy is None
    assert record.rua == ("mailto:ok@example.org",)
    joined = " | ".join(record.notes)
    for fragment in (
        "pct=150",
        "adkim=x",
        "fo=9",
        "ri=soon",
        "np=never",
        "'junk'",
        "twice",
        "garbage",
    ):
        assert fragment in joined


def test_is_dmarc_record():
    assert is_dmarc_record(b"v=DMARC1; p=none") and is_dmarc_record("v=DMARC1")
    assert not is_dmarc_record(b"v=DMARC10; p=none")
    assert not is_dmarc_record(b"google-site-verification=abc")


# -- organizational domain ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("www.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own
        ("a.b.c.example.com", "example.com"),
        ("Mail.Example.COM.", "example.com"),
        ("x.y.kawasaki.jp", "x.y.kawasaki.jp"),  # wildcard *.kawasaki.jp
        ("mail.city.kawasaki.jp", "city.kawasaki.jp"),  # exception !city.kawasaki.jp
        ("alice.github.io", "alice.github.io"),  # private section
        ("www.alice.github.io", "alice.github.io"),
        ("mail.example.test", "example.test"),  # not listed: the implicit * rule
        ("www.bücher.example", "xn--bcher-kva.example"),  # IDN as A-labels
        ("a.xn--bcher-kva.xn--p1ai", "xn--bcher-kva.xn--p1ai"),
        ("a.bücher.рф", "xn--bcher-kva.xn--p1ai"),
    ],
)
def test_organizational_domain(domain, org):
    assert organizational_domain(domain) == org


def psl_test_vectors():
    """The Public Suffix List project's own test cases (test_psl.txt, shipped in the package)."""
    path = Path(publicsuffixlist.__file__).with_name("test_psl.txt")
    if not path.exists():  # pragma: no cover - an older or trimmed package
        return []
    cases = re.findall(
        r"^checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);",
        path.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    return [(a.strip("'"), None if b == "null" else b.strip("'")) for a, b in cases if a != "null"]


@pytest.mark.parametrize(("domain", "expected"), psl_test_vectors())
def test_psl_project_vectors(domain, expected):
    if domain.startswith(".") or ".." in domain:
        with pytest.raises(ValueError, match="invalid domain"):
            organizational_domain(domain)
    elif expected is None:  # the name is a public suffix: its own organizational domain
        assert organizational_domain(domain) == public_suffix(domain) == ascii_domain(domain)
    else:
        assert organizational_domain(domain) == ascii_domain(expected)


def test_the_psl_vectors_were_found():
    assert len(psl_test_vectors()) > 50


def test_public_suffix_and_bad_names():
    assert public_suffix("www.example.co.uk") == "co.uk"
    assert public_suffix("a.b.kawasaki.jp") == "b.kawasaki.jp"
    with pytest.raises(ValueError, match="invalid"):
        organizational_domain("bad..name")


def test_alignment():
    assert aligned("mail.example.org", "example.org", "r")
    assert not aligned("mail.example.org", "example.org", "s")
    assert aligned("EXAMPLE.org.", "example.org", "s")
    assert aligned("xn--bcher-kva.example", "Bücher.example", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")
    assert not aligned("alice.github.io", "bob.github.io", "r")
    assert not aligned("bad..name", "example.org", "r")


# -- evaluation ----------------------------------------------------------------------------------


def run(resolver, domain, **kwargs):
    kwargs.setdefault("spf", None)
    return asyncio.run(check_dmarc(resolver, domain, **kwargs))


REJECT = "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"


def test_relaxed_spf_alignment_passes():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": [REJECT]}})
    verdict = run(resolver, "example.org", spf=("pass", "bounces.example.org"))
    assert (verdict.result, verdict.policy, verdict.disposition) == ("pass", "reject", "none")
    assert verdict.spf_aligned and verdict.org_domain == "example.org"
    assert verdict.record_domain == "example.org"
    assert verdict.comment == "p=reject dis=none"
    assert resolver.queries == ["TXT _dmarc.example.org"]


def test_strict_spf_alignment_fails_and_rejects():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; aspf=s"]}})
    verdict = run(resolver, "example.org", spf=("pass", "bounces.example.org"))
    assert (verdict.result, verdict.policy, verdict.disposition) == ("fail", "reject", "reject")
    assert "SPF pass for bounces.example.org is not aligned" in verdict.reason
    assert verdict.comment == "p=reject dis=reject"


def test_dkim_alignment():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": ["v=DMARC1; p=quarantine; adkim=s"]}})
    verdict = run(
        resolver,
        "example.org",
        spf=("fail", "example.org"),
        dkim=[("pass", "mail.example.org"), ("fail", "example.org"), ("pass", "Example.ORG")],
    )
    assert verdict.result == "pass" and verdict.dkim_aligned == ("example.org",)
    assert not verdict.spf_aligned
    verdict = run(resolver, "example.org", dkim=[("pass", "mail.example.org"), ("pass", "x.test")])
    assert (verdict.result, verdict.disposition) == ("fail", "quarantine")
    assert "d=mail.example.org is not aligned" in verdict.reason


def test_no_record_is_none_after_asking_the_organizational_domain():
    resolver = FakeResolver({"example.org": {"TXT": ["v=spf1 -all"]}})
    verdict = run(resolver, "a.b.example.org", spf=("pass", "a.b.example.org"))
    assert (verdict.result, verdict.policy, verdict.disposition) == ("none", "none", "none")
    assert resolver.queries == ["TXT _dmarc.a.b.example.org", "TXT _dmarc.example.org"]
    assert verdict.org_domain == "example.org"


def test_subdomain_uses_sp_of_the_organizational_record():
    resolver = FakeResolver(
        {
            "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; sp=quarantine"]},
            # not DMARC records: ignored, so discovery goes on to the organizational domain
            "_dmarc.news.example.org": {"TXT": ["v=spf1 -all", "hello"]},
        }
    )
    verdict = run(resolver, "news.example.org")
    assert (verdict.result, verdict.policy, verdict.disposition) == (
        "fail",
        "quarantine",
        "quarantine",
    )
    assert verdict.record_domain == "example.org"
    assert verdict.comment == "p=reject sp=quarantine dis=quarantine"
    # without sp= the subdomain gets p=
    resolver.add("_dmarc.example.org", "TXT", "v=DMARC1; p=reject")
    assert run(resolver, "news.example.org").policy == "reject"


def test_a_record_at_the_from_domain_wins_and_stops_discovery():
    resolver = FakeResolver(
        {
            "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject"]},
            "_dmarc.news.example.org": {"TXT": ["v=DMARC1; p=none"]},
        }
    )
    verdict = run(resolver, "news.example.org")
    assert (verdict.result, verdict.policy) == ("fail", "none")
    assert resolver.queries == ["TXT _dmarc.news.example.org"]


def test_invalid_record_is_no_record_and_stops_discovery():
    resolver = FakeResolver(
        {
            "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject"]},
            "_dmarc.news.example.org": {"TXT": ["v=DMARC1; p=bogus"]},
        }
    )
    verdict = run(resolver, "news.example.org")
    assert (verdict.result, verdict.policy, verdict.disposition) == ("none", "none", "none")
    assert "invalid DMARC record at _dmarc.news.example.org" in verdict.reason
    assert resolver.queries == ["TXT _dmarc.news.example.org"]


def test_several_records_mean_no_policy():
    resolver = FakeResolver(
        {"_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}}
    )
    verdict = run(resolver, "example.org")
    assert verdict.result == "none" and "2 DMARC records" in verdict.reason


@pytest.mark.parametrize("failing", ["_dmarc.news.example.org", "_dmarc.example.org"])
def test_temporary_dns_failure_is_temperror(failing):
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": [REJECT]}}, temporary={failing})
    verdict = run(resolver, "news.example.org", spf=("fail", "news.example.org"))
    assert (verdict.result, verdict.disposition) == ("temperror", "none")
    assert failing in verdict.reason


def test_aligned_temperror_without_pass_is_temperror_not_reject():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": [REJECT]}})
    verdict = run(
        resolver, "example.org", spf=("temperror", "example.org"), dkim=[("pass", "other.test")]
    )
    assert (verdict.result, verdict.policy, verdict.disposition) == ("temperror", "reject", "none")
    verdict = run(
        resolver, "example.org", dkim=[("temperror", "example.org"), ("pass", "example.org")]
    )
    assert verdict.result == "pass"
    # a temporary error of an identifier that could not align anyway changes nothing
    verdict = run(resolver, "example.org", dkim=[("temperror", "other.test")])
    assert (verdict.result, verdict.disposition) == ("fail", "reject")


class Draws:
    def __init__(self, *values):
        self.values = list(values)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.values.pop(0)


def test_pct_sampling():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; pct=30"]}})
    draws = Draws(0.29, 0.30, 0.99)
    verdicts = [run(resolver, "example.org", random=draws) for _ in range(3)]
    assert [(v.disposition, v.sampled) for v in verdicts] == [
        ("reject", True),
        ("quarantine", False),
        ("quarantine", False),
    ]
    assert all(v.policy == "reject" for v in verdicts)
    assert "pct=30" in verdicts[1].reason
    resolver.add("_dmarc.example.org", "TXT", "v=DMARC1; p=quarantine; pct=0")
    assert run(resolver, "example.org", random=Draws(0.0)).disposition == "none"
    # pct=100 (the default) and a pass draw nothing
    resolver.add("_dmarc.example.org", "TXT", "v=DMARC1; p=quarantine")
    unused = Draws()
    assert run(resolver, "example.org", random=unused).disposition == "quarantine"
    assert (
        run(resolver, "example.org", dkim=[("pass", "example.org")], random=unused).result == "pass"
    )
    assert unused.calls == 0


def test_np_for_a_subdomain_that_does_not_exist():
    resolver = FakeResolver(
        {
            "_dmarc.example.org": {"TXT": ["v=DMARC1; p=none; sp=quarantine; np=reject"]},
            "real.example.org": {"MX": [(10, "mx.example.org")]},
        },
        temporary={"MX flaky.example.org"},
    )
    assert run(resolver, "ghost.example.org").policy == "reject"
    assert "MX ghost.example.org" in resolver.queries
    assert run(resolver, "real.example.org").policy == "quarantine"
    flaky = run(resolver, "flaky.example.org")
    assert flaky.policy == "quarantine" and "np= not applied" in flaky.notes[-1]
    assert run(resolver, "example.org").policy == "none"  # np= is for subdomains


def test_idn_from_domain_is_compared_as_a_labels():
    resolver = FakeResolver({"_dmarc.xn--bcher-kva.example": {"TXT": [REJECT]}})
    verdict = run(resolver, "Bücher.example", dkim=[("pass", "xn--bcher-kva.example")])
    assert verdict.result == "pass"
    assert (verdict.from_domain, verdict.org_domain) == ("xn--bcher-kva.example",) * 2
    assert resolver.queries == ["TXT _dmarc.xn--bcher-kva.example"]


@pytest.mark.parametrize("domain", ["bad..name", "[192.0.2.1]", ""])
def test_unusable_from_domain_is_permerror(domain):
    resolver = FakeResolver()
    verdict = run(resolver, domain)
    assert (verdict.result, verdict.disposition) == ("permerror", "none")
    assert resolver.queries == []


# -- the From domain (RFC 7489 §6.6.1) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        (b"From: alice@Example.ORG\r\nTo: b@x.test\r\n\r\nbody", "example.org"),
        (b'From: "Alice" <alice@example.org>,\r\n Bob <bob@EXAMPLE.org>\r\n', "example.org"),
        (b"from: =?utf-8?q?B=C3=BC?= <x@b\xc3\xbccher.example>\n", "xn--bcher-kva.example"),
        (b"Subject: x\r\nFROM : Team: a@example.org, b@example.org;\r\n", "example.org"),
    ],
)
def test_author_domain(header, domain):
    assert author_domain(header) == domain


@pytest.mark.parametrize(
    ("header", "result", "words"),
    [
        (b"To: a@example.org\r\n\r\nFrom: b@example.org\r\n", "none", "no From"),
        (b"From: a@example.org\r\nFrom: a@example.org\r\n", "permerror", "2 From"),
        (b"From: a@example.org, b@example.net\r\n", "permerror", "example.net, example.org"),
        (b"From: undisclosed-recipients:;\r\n", "permerror", "no address"),
        (b"From: alice\r\n", "permerror", "invalid"),
        (b"From: alice@[192.0.2.1]\r\n", "permerror", "no domain"),
        (b"From: alice@bad..domain\r\n", "permerror", "invalid"),
        (b"From: alice@xn--zz.example\r\n", "permerror", "invalid domain"),
        (b"From: alice@b\xff.example\r\n", "permerror", "invalid"),
    ],
)
def test_author_domain_refusals(header, result, words):
    with pytest.raises(FromDomainError, match=words) as caught:
        author_domain(header)
    assert caught.value.result == result


def test_check_message_dmarc():
    resolver = FakeResolver({"_dmarc.example.org": {"TXT": [REJECT]}})
    header = b"From: Alice <alice@example.org>\r\nSubject: hi\r\n\r\n"
    verdict = asyncio.run(check_message_dmarc(resolver, header, spf=("pass", "evil.test"), dkim=[]))
    assert (verdict.result, verdict.disposition, verdict.from_domain) == (
        "fail",
        "reject",
        "example.org",
    )
    verdict = asyncio.run(
        check_message_dmarc(resolver, b"From: a@example.org, b@evil.test\r\n", spf=None)
    )
    assert (verdict.result, verdict.disposition) == ("permerror", "none")
    assert resolver.queries == ["TXT _dmarc.example.org"]
