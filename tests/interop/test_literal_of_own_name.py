"""An address literal of this server's public address (issue 11): with a wildcard listener the
listening addresses say nothing, so the addresses of ``server.hostname`` count as this host's
too. A private NSD publishes a global address for the server's name; RCPT to that literal on
submission is refused with 550 5.1.2, another global literal is not."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.testing.nsd import nsd_missing, nsd_server
from mailstead.testing.server import Account, RunningServer, populate, start_server, write_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(nsd_missing() is not None, reason=str(nsd_missing())),
]

ZONE = """$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns.test.
ns IN A 127.0.0.1
mx.own IN A 1.2.3.4
mx.own IN AAAA 2a00:1450:4001:80b::2005
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with nsd_server({"test": ZONE}, tmp_path / "nsd") as ns:
        config = write_config(
            tmp_path / "server",
            hostname="mx.own.test",
            overrides={"dns": {"nameservers": [ns.nameserver], "timeout": "2s"}},
        )
        populate(config, ["example.org"], [Account("alice@example.org", "alice-pw")])
        running = start_server(config)
        try:
            yield running
        finally:
            running.stop()


def rcpt(server: RunningServer, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.login("alice@example.org", "alice-pw")
        client.mail("alice@example.org")
        reply = client.rcpt(address)
        client.rset()
    return reply


def test_literal_of_the_host_names_address_is_refused(server):
    for address in ("x@[1.2.3.4]", "x@[IPv6:2a00:1450:4001:80b::2005]"):
        assert rcpt(server, address) == (
            550, f"5.1.2 <{address}>: address literal of this host or a non-global network "
            "refused".encode(),
        )  # fmt: skip
    assert rcpt(server, "x@[1.2.3.5]")[0] == 250
