"""SRV lookups (RFC 2782, RFC 6186): the stub resolver against a real NSD, and FakeResolver."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.dns import SRV, Status, StubResolver
from mailstead.testing.dns import FakeResolver
from mailstead.testing.nsd import nsd_missing, nsd_server

ZONE = """$TTL 300
@   IN SOA ns1.srv.test. hostmaster.srv.test. ( 1 3600 600 86400 60 )
@   IN NS  ns1.srv.test.
ns1 IN A   127.0.0.1
_imaps._tcp       IN SRV 0 1 993 mail.srv.test.
_imaps._tcp       IN SRV 10 5 10993 backup.srv.test.
_pop3._tcp        IN SRV 0 0 0 .
_submission._tcp  IN CNAME _subs
_subs             IN SRV 0 1 587 Mail.Srv.Test.
mail              IN A   127.0.0.2
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    if reason := nsd_missing():
        pytest.skip(reason)
    with nsd_server({"srv.test": ZONE}, tmp_path_factory.mktemp("nsd")) as server:
        yield server


def ask(resolver, name):
    return asyncio.run(resolver.srv(name))


def test_stub_reads_srv_records(nsd):
    resolver = StubResolver([nsd.nameserver], timeout=2)
    answer = ask(resolver, "_imaps._tcp.srv.test")
    assert answer.status is Status.FOUND
    assert sorted(answer.records, key=lambda r: r.priority) == [
        SRV(0, 1, 993, "mail.srv.test"),
        SRV(10, 5, 10993, "backup.srv.test"),
    ]
    assert answer.ttl == 300


def test_stub_null_target_cname_and_absence(nsd):
    resolver = StubResolver([nsd.nameserver], timeout=2)
    (null,) = ask(resolver, "_pop3._tcp.srv.test").records
    assert null == SRV(0, 0, 0, ".") and null.is_null
    aliased = ask(resolver, "_submission._tcp.srv.test")
    assert aliased.records == (SRV(0, 1, 587, "mail.srv.test"),)
    assert aliased.cnames == ("_subs.srv.test",)
    assert ask(resolver, "mail.srv.test").status is Status.NO_DATA
    assert ask(resolver, "_imap._tcp.srv.test").status is Status.NXDOMAIN


def test_fake_resolver_srv_forms():
    resolver = FakeResolver(
        {
            "_imaps._tcp.example.org": {"SRV": ["0 1 993 Mail.Example.org.", (0, 0, 0, ".")]},
            "_pop3s._tcp.example.org": {"SRV": (5, 1, 995, "mail.example.org")},
            "_pop3._tcp.example.org": {"SRV": "0 0 0 ."},
        },
        temporary={"SRV _imap._tcp.example.org"},
    )
    assert ask(resolver, "_imaps._tcp.example.org").records == (
        SRV(0, 1, 993, "mail.example.org"),
        SRV(0, 0, 0, "."),
    )
    assert ask(resolver, "_pop3s._tcp.example.org").records == (SRV(5, 1, 995, "mail.example.org"),)
    assert ask(resolver, "_pop3._tcp.example.org").records[0].is_null
    assert ask(resolver, "_imap._tcp.example.org").status is Status.TEMPORARY
    assert resolver.queries[-1] == "SRV _imap._tcp.example.org"
