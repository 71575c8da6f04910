"""Exim 4 (Debian's, unpacked privately) delivers to Mailstead: each message arrives once.

In cleartext Exim pipelines the end of a message (BDAT LAST, or the final dot) with QUIT and
shuts down its sending side before it has read the 250. A server that drops its replies at the
client's EOF makes Exim log "Remote host closed connection in response to pipelined end of
data", defer the message it already delivered, and send it again at the next queue run: every
message twice. Over STARTTLS, Exim 4.96 (Debian 12) reads the 250 and 221 before it sends its
close_notify, so that case passed before the fix too; the TLS half-close itself is covered
byte by byte in tests/servers/test_half_close.py.

Skipped with the reason when Exim cannot be downloaded (no apt-get, no network); with
``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import os

import pytest

from mailstead.testing.exim import EximUnavailable, exim_peer, install_exim

pytestmark = pytest.mark.interop

MESSAGES = 3


@pytest.fixture(scope="module")
def exim_install():
    try:
        return install_exim()
    except EximUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Exim is required in CI: {exc}")
        pytest.skip(f"Debian's Exim cannot be obtained: {exc}")


def _message(n: int, tag: str) -> bytes:
    return (
        f"From: sender@exim.test\nTo: alice@example.org\nSubject: from Exim {n}\n"
        f"Message-ID: <{tag}-{n}@exim.test>\n\nmessage {n} of {MESSAGES}\n"
    ).encode()


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "starttls"])
def test_each_message_from_exim_arrives_exactly_once(mail_server, exim_install, tls):
    server = mail_server()
    host, port = server.smtp_address
    tag = "tls" if tls else "plain"
    with exim_peer(exim_install, port=port, tls=tls, host=host) as exim:
        for n in range(MESSAGES):
            exim.submit("sender@exim.test", ["alice@example.org"], _message(n, tag))
        # a deferred message would be sent again here: the duplicate the bug produced
        exim.queue_run()
        log = exim.mainlog()
        assert "Remote host closed connection" not in log, log
        assert " == " not in log and "defer" not in log, log
        delivered = [line for line in log.splitlines() if " => alice@example.org" in line]
        assert len(delivered) == MESSAGES, log
        if tls:
            assert all(" X=TLS" in line for line in delivered), log
        assert exim.queue_size() == 0, log
    stored = server.messages("alice@example.org")
    for n in range(MESSAGES):
        needle = f"<{tag}-{n}@exim.test>".encode()
        assert sum(needle in m for m in stored) == 1, (n, log)
    assert len(stored) == MESSAGES
