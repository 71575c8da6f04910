"""Found by fuzzing (issue 11): xtext decoding read each ``+XX`` octet as one character while
encoding writes UTF-8, so a non-ASCII ORCPT or ENVID (``+C3+A9`` for "é") came out of the queue
double-encoded (``+C3+83+C2+A9``) in the relayed RCPT and in the DSN. Octets that are UTF-8 now
decode as UTF-8, so whatever is relayed is what was received."""

from __future__ import annotations

import pytest

from mailstead.protocols.smtp import MailFrom, RcptTo
from mailstead.protocols.smtp.grammar import xtext_decode, xtext_encode

from .transcript import run


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        ("b+C3+A9@d.example", "bé@d.example"),
        ("+E2+82+AC+2B1", "€+1"),
        ("+F0+9F+93+A7", "📧"),
        ("a+2Bb+3Dc", "a+b=c"),
        ("+FF+FE", "\xff\xfe"),  # not UTF-8: one character per octet, as before
    ],
)
def test_xtext_decodes_utf8_and_reencodes_unchanged(wire, text):
    assert xtext_decode(wire) == text
    assert xtext_decode(xtext_encode(text)) == text
    if text.isascii() or wire != "+FF+FE":
        assert xtext_encode(text) == wire


def test_relayed_orcpt_and_envid_keep_their_octets():
    """A non-ASCII ORCPT relays unchanged (an ENVID must be US-ASCII, RFC 3461 §4.4: a
    non-ASCII one is refused, tests/protocols/smtp/test_dsn_line_injection.py)."""
    out, events, _ = run(
        [
            b"EHLO c.example\r\nMAIL FROM:<a@b.example> ENVID=id+2B1\r\n"
            b"RCPT TO:<c@d.example> ORCPT=rfc822;b+C3+A9@d.example\r\nQUIT\r\n"
        ]
    )
    assert b"250 2.1.5" in out
    mail = next(e for e in events if isinstance(e, MailFrom))
    rcpt = next(e for e in events if isinstance(e, RcptTo))
    assert mail.params.envid == "id+1"
    assert rcpt.params.orcpt == ("rfc822", "bé@d.example")
    # what the queue writes back when it relays the message or reports on it
    assert xtext_encode(mail.params.envid) == "id+2B1"
    assert xtext_encode(rcpt.params.orcpt[1]) == "b+C3+A9@d.example"
