"""The DMARC p=reject bypass with a malformed From (issue 11): two From fields, addresses of
several domains in one From, an address that cannot be read beside a valid one, or text a
mail client reads as another address. Each used to give ``dmarc=permerror`` and an ACCEPT;
now a From that cannot be read is refused, and several domains each get their policy with
the strictest outcome applied. The same attack against a real server and NSD is in
tests/interop/test_mailauth_inbound.py (``test_malformed_from_does_not_bypass_dmarc_reject``).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstead.mailauth.author import AuthorError, parse_mailbox_list
from mailstead.mailauth.dmarc import FromDomainError, author_domains
from mailstead.mailauth.inbound import MAX_AUTHOR_DOMAINS, Action, InboundPolicy, check_message
from mailstead.testing.dns import FakeResolver

POLICY = InboundPolicy("mx.example.org")
RECORDS = {
    "_dmarc.strict.test": {"TXT": ["v=DMARC1; p=reject"]},
    "_dmarc.quar.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    "_dmarc.monitor.test": {"TXT": ["v=DMARC1; p=none"]},
}


def check(head: bytes) -> tuple[Action, str, str]:
    raw = head + b"Subject: hi\r\n\r\nbody\r\n"
    verdict = asyncio.run(check_message(FakeResolver(RECORDS), raw, spf=None, policy=POLICY))
    return verdict.action, verdict.malformed_from, verdict.from_domain


SPOOFS = [
    # two From fields: one for DMARC, the other for the reader
    b"From: <ceo@monitor.test>\r\nFrom: <ceo@strict.test>\r\n",
    b"From: <ceo@strict.test>\r\nFrom: <ceo@strict.test>\r\n",
    # an address that cannot be read beside a valid one
    b"From: <ceo@strict.test>, nobody\r\n",
    b"From: <ceo@strict.test>, <@>\r\n",
    # what a lenient parser reads as the first address, a client as the second
    b"From: someone@monitor.test <ceo@strict.test>\r\n",
    b"From: someone@monitor.test; ceo@strict.test\r\n",
    b"From: <ceo@strict.test\r\n",
    b"From: ceo@strict.test (unclosed\r\n",
    b'From: "unclosed <ceo@strict.test>\r\n',
    # no From, or one without an address
    b"Sender: <ceo@strict.test>\r\n",
    b"From: undisclosed:;\r\n",
    b"From: ceo@[127.0.0.1]\r\n",
]


@pytest.mark.parametrize("head", SPOOFS)
def test_malformed_from_is_refused(head):
    action, malformed, _ = check(head)
    assert action is Action.REJECT
    assert malformed


@pytest.mark.parametrize(
    ("author", "expected", "domain"),
    [
        # several domains: each one's policy, and the strictest outcome
        (b"<a@monitor.test>, <ceo@strict.test>", Action.REJECT, "strict.test"),
        (b"<ceo@strict.test>, <a@monitor.test>", Action.REJECT, "strict.test"),
        (b"<a@monitor.test>, Team: <b@quar.test>;", Action.JUNK, "quar.test"),
        (b"<a@monitor.test>, <b@nodmarc.test>", Action.ACCEPT, "monitor.test"),
        # one domain, written in two ways
        (b"A <a@Strict.TEST>, (x) b @ strict . test", Action.REJECT, "strict.test"),
    ],
)
def test_several_author_domains_take_the_strictest_policy(author, expected, domain):
    action, malformed, from_domain = check(b"From: " + author + b"\r\n")
    assert (action, malformed, from_domain) == (expected, "", domain)


def test_a_plain_from_is_still_evaluated_normally():
    assert check(b"From: Monitor <a@monitor.test>\r\n") == (Action.ACCEPT, "", "monitor.test")
    assert check(b'From: "Ceo, Inc." <ceo@strict.test>\r\n')[0] is Action.REJECT


def test_author_domains_keeps_each_domain_once_in_order():
    head = b"From: a@b.test, c@B.Test, d@e.test\r\n"
    assert author_domains(head) == ("b.test", "e.test")
    with pytest.raises(FromDomainError, match="is invalid") as caught:
        author_domains(b"From: a@b.test <c@d.test>\r\n")
    assert caught.value.result == "permerror"


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        (b"a@b.test", ["a@b.test"]),
        (b'"A, B" <a@b.test>, c@d.test', ["a@b.test", "c@d.test"]),
        (b"A B. C <a@b.test>", ["a@b.test"]),  # obs-phrase
        (b"=?utf-8?q?B=C3=BC?= <x@b\xc3\xbccher.example>", ["x@bücher.example"]),
        (b'"a b"@c.test', ["a b@c.test"]),
        (b"G: a@b.test, c@d.test;, e@f.test", ["a@b.test", "c@d.test", "e@f.test"]),
        (b"G:;", []),
        (b"a@B.test <a@b.TEST>", ["a@b.TEST"]),  # an address as its own display name
        (b"", []),
    ],
)
def test_strict_parser_reads_valid_lists(value, addresses):
    assert [m.addr_spec for m in parse_mailbox_list(value)] == addresses


@pytest.mark.parametrize(
    "value",
    [
        b"a@b.test <c@d.test>",
        b"a@b.test; c@d.test",
        b"a@b.test c@d.test",
        b"<a@b.test>>",
        b"Smith, John <j@x.test>",
        b"<@route.test:a@b.test>",
        b"a@b.test,",
        b",a@b.test",
        b"a@@b.test",
        b"a@bad..test",
        b"=?utf-8?q?a@b.test?= <c@d.test>",
        b"a@b.test\x00",
        b"a@b\xff.test",
        b"(a@b.test",
        b"[a@b.test]",
        b'"a\\\r\n b"@c.test',  # a quoted pair may not escape a line break
        b'"a\\',
    ],
)
def test_strict_parser_refuses_everything_else(value):
    with pytest.raises(AuthorError):
        parse_mailbox_list(value)


def test_authors_in_too_many_domains_are_refused_without_lookups():
    authors = ", ".join(f"<a@d{i}.test>" for i in range(MAX_AUTHOR_DOMAINS + 1))
    resolver = FakeResolver(RECORDS)
    raw = f"From: {authors}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    verdict = asyncio.run(check_message(resolver, raw, spf=None, policy=POLICY))
    assert verdict.action is Action.REJECT
    assert (
        verdict.malformed_from
        == f"the From field has addresses in {MAX_AUTHOR_DOMAINS + 1} domains"
    )
    assert not [q for q in resolver.queries if "_dmarc" in q]
    fewer = ", ".join(f"<a@d{i}.test>" for i in range(MAX_AUTHOR_DOMAINS))
    assert check(f"From: {fewer}\r\n".encode())[0] is Action.ACCEPT


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet='a@b.<>,;:"()\\[] \t\r\nxyz=?', max_size=60))
def test_strict_parser_never_fails_otherwise(value):
    """Any input: a list of mailboxes or AuthorError, nothing else; and no address read from
    it holds a line break."""
    data = value.encode() if isinstance(value, str) else value
    try:
        mailboxes = parse_mailbox_list(data)
    except AuthorError:
        return
    for mailbox in mailboxes:
        assert "\r" not in mailbox.addr_spec and "\n" not in mailbox.addr_spec
        assert mailbox.domain
