"""Sending to this server through an address literal (issue 11): an authenticated user could
queue mail for ``x@[127.0.0.1]`` or ``x@[IPv6:::1]``, and the queue would connect to the
server's own port 25. Address literals of loopback, unspecified, link-local, private, reserved
and multicast networks (and IPv4-mapped forms), and of the server's own listening addresses,
are refused at RCPT with 550 5.1.2; the message is never queued."""

from __future__ import annotations

import smtplib

import pytest

from mailstead.testing.server import (
    Account,
    RunningServer,
    populate,
    start_server,
    write_config,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # nobody answers DNS: the host name has no addresses (tests/interop/test_literal_of_own_name.py
    # has one that does)
    dns = {"nameservers": ["127.0.0.1:9"], "timeout": "1s", "attempts": 1}
    config = write_config(tmp_path_factory.mktemp("literals"), overrides={"dns": dns})
    populate(config, ["example.org"], [Account("alice@example.org", "alice-pw")])
    running = start_server(config)
    yield running
    running.stop()


def rcpt(server: RunningServer, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.login("alice@example.org", "alice-pw")
        client.mail("alice@example.org")
        code, text = client.rcpt(address)
        client.rset()
    return code, text


@pytest.mark.parametrize(
    "address",
    [
        "x@[127.0.0.1]",
        "x@[127.9.9.9]",
        "x@[IPv6:::1]",
        "x@[ipv6:::ffff:127.0.0.1]",
        "x@[0.0.0.0]",
        "x@[IPv6:::]",
        "x@[169.254.169.254]",
        "x@[IPv6:fe80::1]",
        "x@[10.1.2.3]",
        "x@[192.168.1.1]",
        "x@[IPv6:fd00::1]",
        "x@[224.0.0.1]",
        "x@[255.255.255.255]",
        "x@[192.0.2.1]",  # documentation range: not global either
    ],
)
def test_literal_of_this_host_or_a_non_global_network_is_refused(server, address):
    assert rcpt(server, address) == (
        550, f"5.1.2 <{address}>: address literal of this host or a non-global network refused"
        .encode(),
    )  # fmt: skip


def test_the_listening_address_itself_is_refused(server):
    host, _ = server.smtp_address
    code, _ = rcpt(server, f"x@[{host}]")
    assert code == 550


def test_a_global_literal_and_names_still_go_to_the_queue(server):
    assert rcpt(server, "x@[198.41.0.4]")[0] == 250
    assert rcpt(server, "x@elsewhere.test")[0] == 250


def test_the_whole_transaction_with_a_loopback_literal_sends_nothing(mail_server):
    server = mail_server()
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.login("alice@example.org", "alice-pw")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("alice@example.org", ["x@[127.0.0.1]"], b"Subject: x\r\n\r\nx\r\n")
    server.stop()
    assert not [e for e in server.log_lines() if e.get("msg") == "queue.attempt"]
    refused = [e for e in server.log_lines() if e.get("msg") == "smtp.literal_refused"]
    assert refused and refused[-1]["rcpt"] == "x@[127.0.0.1]"
