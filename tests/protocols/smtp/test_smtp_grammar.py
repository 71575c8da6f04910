"""Table tests for the command grammar: raw line -> parsed value, or the exact refusal."""

from __future__ import annotations

import pytest

from mailstead.protocols.smtp import MailParams, RcptParams, replies
from mailstead.protocols.smtp.grammar import (
    CommandLine,
    GrammarError,
    is_address_literal,
    is_domain,
    parse_bdat,
    parse_command_line,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    xtext_decode,
    xtext_encode,
)

MAIL_KEYS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID"})
RCPT_KEYS = frozenset({"NOTIFY", "ORCPT"})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"EHLO x.example", CommandLine("EHLO", "x.example")),
        (b"ehlo x.example", CommandLine("EHLO", "x.example")),
        (b"mAiL FROM:<a@b>", CommandLine("MAIL", "FROM:<a@b>")),
        (b"NOOP", CommandLine("NOOP", "")),
        (b"NOOP   ", CommandLine("NOOP", "")),
        (b"RCPT  TO:<a@b>  ", CommandLine("RCPT", "TO:<a@b>")),
        (b"XYZZY", CommandLine("XYZZY", "")),
    ],
)
def test_command_line(line, expected):
    assert parse_command_line(line) == expected


@pytest.mark.parametrize(
    "line", [b"", b" NOOP", b"NO\x00OP", b"\xff\xfe", b"12345", b"M\xc3\xa4IL"]
)
def test_command_line_refused(line):
    with pytest.raises(GrammarError) as e:
        parse_command_line(line)
    assert e.value.reply == replies.UNKNOWN_COMMAND


@pytest.mark.parametrize(
    ("arg", "path", "params"),
    [
        ("FROM:<a@b.example>", "a@b.example", MailParams()),
        ("from:<a@b.example>", "a@b.example", MailParams()),
        ("FROM:<>", "", MailParams()),
        ("FROM: <a@b.example>", "a@b.example", MailParams()),  # space after colon tolerated
        ("FROM:<@relay.example,@r2.example:a@b.example>", "a@b.example", MailParams()),
        ('FROM:<"john doe"@b.example>', '"john doe"@b.example', MailParams()),
        ('FROM:<"a\\"b"@b.example>', '"a\\"b"@b.example', MailParams()),
        ("FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]", MailParams()),
        ("FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", MailParams()),
        ("FROM:<a.b+tag@sub.b.example>", "a.b+tag@sub.b.example", MailParams()),
        ("FROM:<ü@bé.example>", "ü@bé.example", MailParams()),  # caller checks SMTPUTF8
        (
            "FROM:<a@b.example> SIZE=1000 BODY=8bitmime",
            "a@b.example",
            MailParams(size=1000, body="8BITMIME", raw=(("SIZE", "1000"), ("BODY", "8bitmime"))),
        ),
        (
            "FROM:<a@b.example> BODY=7BIT SMTPUTF8",
            "a@b.example",
            MailParams(body="7BIT", smtputf8=True, raw=(("BODY", "7BIT"), ("SMTPUTF8", None))),
        ),
        (
            "FROM:<> RET=hdrs ENVID=QQ+2B+3Dx",
            "",
            MailParams(ret="HDRS", envid="QQ+=x", raw=(("RET", "hdrs"), ("ENVID", "QQ+2B+3Dx"))),
        ),
        (
            "FROM:<a@b.example>  SIZE=0",
            "a@b.example",
            MailParams(size=0, raw=(("SIZE", "0"),)),
        ),
    ],
)
def test_mail_from(arg, path, params):
    assert parse_mail_from(arg, MAIL_KEYS) == (path, params)


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        ("FROM:a@b.example", replies.BAD_SENDER_SYNTAX),  # brackets required
        ("TO:<a@b.example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@b.example", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<@b.example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a..b@b.example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@b..example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@-b.example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@b.example.>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a b@b.example>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@[300.0.0.1]>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@[IPv6:zz::1]>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a@[tag:foo]>", replies.BAD_SENDER_SYNTAX),
        ("FROM:<a\udcff@b.example>", replies.BAD_SENDER_SYNTAX),  # invalid UTF-8 byte
        ("FROM:<" + "a" * 250 + "@b.example>", replies.BAD_SENDER_SYNTAX),  # > 256 octets
        ("FROM:<a@" + "b" * 64 + ".example>", replies.BAD_SENDER_SYNTAX),  # label > 63
        ("FROM:<a@b.example>SIZE=1", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> SIZE", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> SIZE=abc", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> SIZE=123456789012345678901", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> SIZE=1 SIZE=2", replies.DUPLICATE_PARAMETER),
        ("FROM:<a@b.example> BODY=BINARYMIME", replies.UNKNOWN_PARAMETER),
        ("FROM:<a@b.example> BODY=9BIT", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> SMTPUTF8=yes", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> RET=ALL", replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> ENVID=a+2b", replies.SYNTAX_ERROR),  # xtext hex is upper case
        ("FROM:<a@b.example> ENVID=" + "x" * 101, replies.SYNTAX_ERROR),
        ("FROM:<a@b.example> AUTH=<>", replies.UNKNOWN_PARAMETER),
        ("FROM:<a@b.example> X-FOO", replies.UNKNOWN_PARAMETER),
        ("FROM:<a@b.example> =x", replies.SYNTAX_ERROR),
    ],
)
def test_mail_from_refused(arg, reply):
    with pytest.raises(GrammarError) as e:
        parse_mail_from(arg, MAIL_KEYS)
    assert e.value.reply == reply


def test_mail_parameters_not_offered():
    with pytest.raises(GrammarError) as e:
        parse_mail_from("FROM:<a@b.example> RET=FULL", frozenset({"SIZE"}))
    assert e.value.reply == replies.UNKNOWN_PARAMETER


@pytest.mark.parametrize(
    ("arg", "path", "params"),
    [
        ("TO:<a@b.example>", "a@b.example", RcptParams()),
        ("to: <a@b.example>", "a@b.example", RcptParams()),
        ("TO:<postmaster>", "postmaster", RcptParams()),
        ("TO:<PostMaster>", "postmaster", RcptParams()),
        ("TO:<@x.example:a@b.example>", "a@b.example", RcptParams()),
        (
            "TO:<a@b.example> NOTIFY=NEVER",
            "a@b.example",
            RcptParams(notify=("NEVER",), raw=(("NOTIFY", "NEVER"),)),
        ),
        (
            "TO:<a@b.example> NOTIFY=success,Failure,DELAY ORCPT=rfc822;a+40b.example",
            "a@b.example",
            RcptParams(
                notify=("SUCCESS", "FAILURE", "DELAY"),
                orcpt=("rfc822", "a@b.example"),
                raw=(("NOTIFY", "success,Failure,DELAY"), ("ORCPT", "rfc822;a+40b.example")),
            ),
        ),
    ],
)
def test_rcpt_to(arg, path, params):
    assert parse_rcpt_to(arg, RCPT_KEYS) == (path, params)


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        ("TO:<>", replies.BAD_RECIPIENT_SYNTAX),
        ("TO:<abuse>", replies.BAD_RECIPIENT_SYNTAX),  # only postmaster may lack a domain
        ("TO:a@b.example", replies.BAD_RECIPIENT_SYNTAX),
        ("FROM:<a@b.example>", replies.BAD_RECIPIENT_SYNTAX),
        ("TO:<a@[1.2.3]>", replies.BAD_RECIPIENT_SYNTAX),
        ("TO:<a@b.example> NOTIFY=NEVER,SUCCESS", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> NOTIFY=SUCCESS,SUCCESS", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> NOTIFY=SOMETIMES", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> NOTIFY", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> ORCPT=rfc822", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> ORCPT=rfc822;a+zz", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> ORCPT=;a", replies.SYNTAX_ERROR),
        ("TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER", replies.DUPLICATE_PARAMETER),
        ("TO:<a@b.example> SIZE=10", replies.UNKNOWN_PARAMETER),
    ],
)
def test_rcpt_to_refused(arg, reply):
    with pytest.raises(GrammarError) as e:
        parse_rcpt_to(arg, RCPT_KEYS)
    assert e.value.reply == reply


@pytest.mark.parametrize(
    ("arg", "domain"),
    [
        ("client.example", "client.example"),
        ("localhost", "localhost"),
        ("my_pc.lan", "my_pc.lan"),  # underscore tolerated
        ("client.example. extra words", "client.example."),
        ("[192.0.2.7]", "[192.0.2.7]"),
        ("[IPv6:::1]", "[IPv6:::1]"),
        ("bücher.example", "bücher.example"),
    ],
)
def test_helo(arg, domain):
    assert parse_helo(arg) == domain


@pytest.mark.parametrize(
    "arg", ["", "-bad.example", "a..b", "[1.2.3.4", "[999.1.1.1]", "[foo]", "a@b", "x" * 64 + ".ex"]
)
def test_helo_refused(arg):
    with pytest.raises(GrammarError) as e:
        parse_helo(arg)
    assert e.value.reply == replies.BAD_HELO_SYNTAX


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("0", (0, False)), ("0 LAST", (0, True)), ("1024 last", (1024, True)), ("77", (77, False))],
)
def test_bdat(arg, expected):
    assert parse_bdat(arg) == expected


@pytest.mark.parametrize("arg", ["", "x", "-1", "10 LAS", "10 LAST X", "1e3", "1" * 19])
def test_bdat_refused(arg):
    with pytest.raises(GrammarError) as e:
        parse_bdat(arg)
    assert e.value.reply == replies.BAD_BDAT_SIZE


@pytest.mark.parametrize(
    ("text", "encoded"),
    [("plain", "plain"), ("a+b=c", "a+2Bb+3Dc"), ("sp ace", "sp+20ace"), ("é", "+C3+A9")],
)
def test_xtext_roundtrip(text, encoded):
    assert xtext_encode(text) == encoded
    assert xtext_decode(encoded) == text


def test_literals_and_domains():
    assert is_address_literal("[10.0.0.1]")
    assert is_address_literal("[ipv6:fe80::1]")
    assert not is_address_literal("[10.0.0]")
    assert not is_address_literal("10.0.0.1")
    assert is_domain("a-b.example")
    assert not is_domain("a_b.example")
