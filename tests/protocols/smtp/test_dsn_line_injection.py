"""Lines injected into bounces (issue 11): ``+0D+0A`` in ENVID or ORCPT used to be xtext-decoded
into a real line break and written into the DSN that goes to the (attacker-chosen) envelope
sender. The core now refuses such values with ``501 5.5.4`` and the transaction goes on; the
DSN escapes what it writes anyway (tests/queue/test_dsn.py,
``test_injected_lines_stay_escaped``)."""

from __future__ import annotations

import pytest

from mailstead.protocols.smtp import MailFrom, RcptTo

from .transcript import run

TX = b"EHLO c.example\r\n"
ENVID_REFUSED = b"501 5.5.4 ENVID must decode to printable US-ASCII (RFC 3461 4.4)\r\n"
ORCPT_REFUSED = b"501 5.5.4 ORCPT must not decode to control characters\r\n"


@pytest.mark.parametrize(
    "envid",
    [
        b"x+0D+0AX-Injected:+20yes",
        b"x+0A",
        b"x+0D",
        b"x+00",
        b"x+7F",
        b"x+C3+A9",  # not US-ASCII
    ],
)
def test_envid_with_control_characters_is_refused(envid):
    out, events, _ = run([TX + b"MAIL FROM:<a@b.example> ENVID=" + envid + b"\r\nNOOP\r\n"])
    assert out.endswith(ENVID_REFUSED + b"250 2.0.0 Ok\r\n")
    assert not [e for e in events if isinstance(e, MailFrom)]


@pytest.mark.parametrize(
    "orcpt",
    [
        b"rfc822;a@b.example+0D+0AX-Injected:+20yes",
        b"rfc822;a+0A@b.example",
        b"rfc822;a+09@b.example",
        b"rfc822;a+00@b.example",
        b"rfc822;a+85@b.example",  # C1 NEL
    ],
)
def test_orcpt_with_control_characters_is_refused(orcpt):
    data = TX + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example> ORCPT=" + orcpt + b"\r\n"
    out, events, _ = run([data + b"RCPT TO:<e@d.example>\r\n"])
    assert out.endswith(b"250 2.1.0 Ok\r\n" + ORCPT_REFUSED + b"250 2.1.5 Ok\r\n")
    assert [e.forward_path for e in events if isinstance(e, RcptTo)] == ["e@d.example"]


def test_printable_values_still_pass():
    # RFC 3461 4.4: "graphic and white space" characters; a space is one
    data = TX + b"MAIL FROM:<a@b.example> ENVID=id+2B1+3D+20x\r\n"
    data += b'RCPT TO:<c@d.example> ORCPT=rfc822;"c+20d"+40d.example\r\n'
    out, events, _ = run([data])
    assert out.endswith(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")
    assert events[1].params.envid == "id+1= x"
    assert events[2].params.orcpt == ("rfc822", '"c d"@d.example')
