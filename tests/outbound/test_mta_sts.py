"""MTA-STS (RFC 8461): the TXT record, the policy grammar, MX patterns, the HTTPS fetch against a
scripted HTTPS server of a test CA, and the cache's rules (§5.1)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from mailstead.outbound.mta_sts import (
    MAX_POLICY,
    MtaSts,
    Policy,
    PolicyCache,
    PolicyError,
    fetch_policy_text,
    mx_matches,
    parse_policy,
    parse_txt,
)
from mailstead.testing.dns import FakeResolver
from mailstead.testing.pki import TestCA

DOMAIN = "example.test"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n"  # noqa: E501


# --- grammar ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([b"v=STSv1; id=20240101T000000;"], "20240101T000000"),
        ([b"v=STSv1;id=abc"], "abc"),
        ([b"v=STSv1; id=abc; ext=1"], "abc"),
        ([b"v=spf1 -all", b"v=STSv1; id=abc"], "abc"),  # other records are ignored
        ([b"v=STSv1; id=abc", b"v=STSv1; id=def"], None),  # §3.1: not exactly one
        ([b"v=STSv1; id=not-alnum"], None),
        ([b"v=STSv1; id=" + b"a" * 33], None),
        ([b"v=STSv2; id=abc"], None),
        ([b"v=STSv1"], None),
        ([], None),
    ],
)
def test_txt_record(records, expected):
    assert parse_txt(records) == expected


def test_policy_fields():
    policy = parse_policy(POLICY, policy_id="abc", fetched=100.0)
    assert policy == Policy("enforce", ("mx1.example.test", "*.mx.example.test"), 86400, "abc", 100)
    assert policy.expires == 86500
    lf = parse_policy("version: STSv1\nmode: testing\nmx: A.Example.TEST.\nmax_age: 99999999\n")
    assert (lf.mode, lf.mx, lf.max_age) == ("testing", ("a.example.test",), 31_557_600)
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\nfuture: x\n").mode == "none"


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",  # enforce without mx
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
        "<html>not a policy</html>\n",
    ],
)
def test_bad_policies(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.example.com.", True),
        ("mail.example.com", "mx.example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),  # §4.1: exactly one more label
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "mx1.example.net", False),
    ],
)
def test_mx_patterns(pattern, host, matches):
    assert mx_matches(pattern, host) is matches


# --- the fetch -------------------------------------------------------------------------------
class PolicyServer:
    """HTTPS on 127.0.0.1 with a certificate of the test CA; answers every request with
    ``response`` (raw bytes) and counts requests."""

    def __init__(self, tmp_path: Path, ca: TestCA, names=("mta-sts.example.test",)) -> None:
        ca.issue(list(names), tmp_path / "https.pem", tmp_path / "https.key")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp_path / "https.pem", tmp_path / "https.key")
        self.response = ok(POLICY)
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> PolicyServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.response)
            await writer.drain()
        finally:
            writer.close()


def ok(body: str, content_type: str = "text/plain") -> bytes:
    data = body.encode()
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def client_context(ca: TestCA) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.pem.decode())


def resolver(txt: str | None = "v=STSv1; id=one") -> FakeResolver:
    records: dict = {"mta-sts.example.test": {"A": "127.0.0.1"}}
    if txt is not None:
        records["_mta-sts.example.test"] = {"TXT": txt}
    return FakeResolver(records)


def fetch(tmp_path, response: bytes, *, names=("mta-sts.example.test",)) -> str:
    ca = TestCA()

    async def main() -> str:
        async with PolicyServer(tmp_path, ca, names) as server:
            server.response = response
            text = await fetch_policy_text(
                DOMAIN, resolver(), client_context(ca), port=server.port, seconds=10
            )
            [request] = server.requests
            assert request.startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
            assert b"\r\nHost: mta-sts.example.test\r\n" in request
            return text

    return asyncio.run(main())


def test_fetch_with_content_length(tmp_path):
    assert fetch(tmp_path, ok(POLICY)) == POLICY


def test_fetch_chunked_and_until_close(tmp_path):
    body = POLICY.encode()
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
        + b"0\r\n\r\n"
    )
    assert fetch(tmp_path, chunked) == POLICY
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body
    assert fetch(tmp_path, until_close) == POLICY


@pytest.mark.parametrize(
    ("response", "why"),
    [
        (b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\nContent-Length: 0\r\n\r\n",
         "HTTP status 301"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP status 404"),
        (ok(POLICY, "text/html"), "Content-Type"),
        (ok("x" * (MAX_POLICY + 1)), "Content-Length"),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * (MAX_POLICY + 1),
         "larger than"),
    ],
)  # fmt: skip
def test_fetch_refuses(tmp_path, response, why):
    with pytest.raises(PolicyError, match=why):
        fetch(tmp_path, response)


def test_fetch_verifies_the_policy_hosts_name(tmp_path):
    with pytest.raises(PolicyError, match="certificate verification failed"):
        fetch(tmp_path, ok(POLICY), names=("www.example.test",))


# --- the policy in force ---------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run_policies(tmp_path, steps):
    """Run ``steps(server, make)`` where ``make(resolver)`` builds an MtaSts over the same cache
    directory (a restart is a new instance)."""
    ca = TestCA()
    clock = Clock()

    async def main():
        async with PolicyServer(tmp_path, ca) as server:

            async def context():
                return client_context(ca)

            def make(dns: FakeResolver) -> MtaSts:
                cache = PolicyCache(tmp_path / "cache")
                return MtaSts(dns, cache, context, port=server.port, timeout=10, clock=clock)

            await steps(server, make, clock)

    asyncio.run(main())


def test_policy_is_cached_on_disk_and_refetched_when_the_id_changes(tmp_path):
    async def steps(server, make, clock):
        first = await make(resolver()).policy(DOMAIN)
        assert first is not None and first.mode == "enforce" and first.id == "one"
        assert len(server.requests) == 1
        # a restart: the cached file answers, nothing is fetched
        again = await make(resolver()).policy(DOMAIN)
        assert again == first and len(server.requests) == 1
        # a new id: fetched anew
        server.response = ok(POLICY.replace("enforce", "testing"))
        changed = await make(resolver("v=STSv1; id=two")).policy(DOMAIN)
        assert changed is not None and (changed.mode, changed.id) == ("testing", "two")
        assert len(server.requests) == 2

    run_policies(tmp_path, steps)


def test_failed_fetch_keeps_the_cached_policy_until_it_expires(tmp_path):
    async def steps(server, make, clock):
        assert await make(resolver()).policy(DOMAIN) is not None
        server.response = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
        kept = await make(resolver("v=STSv1; id=two")).policy(DOMAIN)
        assert kept is not None and kept.id == "one"  # §5.1
        assert await make(resolver(None)).policy(DOMAIN) is not None  # TXT gone: still cached
        clock.now += 86400  # max_age over
        assert await make(resolver("v=STSv1; id=two")).policy(DOMAIN) is None
        assert await make(resolver(None)).policy(DOMAIN) is None

    run_policies(tmp_path, steps)


def test_no_record_no_policy_and_mode_none_is_none(tmp_path):
    async def steps(server, make, clock):
        assert await make(resolver(None)).policy(DOMAIN) is None
        assert server.requests == []
        server.response = ok("version: STSv1\nmode: none\nmax_age: 86400\n")
        assert await make(resolver()).policy(DOMAIN) is None
        assert len(server.requests) == 1

    run_policies(tmp_path, steps)
