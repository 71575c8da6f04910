"""The response writer: quoting decisions, literals, sequence sets, framing, formatted responses;
round trips through the grammar where the syntax is shared."""

from __future__ import annotations

import random

import pytest

from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import parse_command, parse_sequence_set
from mailstead.protocols.imap import response as r


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INBOX", b"INBOX"),
        ("foo]bar", b"foo]bar"),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("two words", b'"two words"'),
        ("a%b", b'"a%b"'),
        ("a*", b'"a*"'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("back\\slash", b'"back\\\\slash"'),
        ("(paren", b'"(paren"'),
        ("{brace", b'"{brace"'),
        ("line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        ("nul\x00", b"{4}\r\nnul\x00"),
        ("café", b"{5}\r\ncaf\xc3\xa9"),
        ("x" * 2000, b"x" * 2000),  # atoms have no length limit
        ("x " * 600, b"{1200}\r\n" + b"x " * 600),  # longer than MAX_QUOTED: a literal
    ],
)
def test_astring_choices(value, expected):
    assert r.astring(value) == expected


def test_utf8_allows_quoted_8bit():
    assert r.string("café", utf8=True) == b'"caf\xc3\xa9"'
    assert r.string(b"caf\xe9", utf8=True) == b"{4}\r\ncaf\xe9"  # not UTF-8: literal
    assert r.string("a\nb", utf8=True) == b"{3}\r\na\nb"


def test_strings_and_literals():
    assert r.string("abc") == b'"abc"'
    assert r.nstring(None) == b"NIL"
    assert r.nstring("") == b'""'
    assert r.literal(b"hello") == b"{5}\r\nhello"
    assert r.literal8(b"a\x00b") == b"~{3}\r\na\x00b"
    assert r.quoted("x") == b'"x"'


@pytest.mark.parametrize(
    ("name", "utf8", "expected"),
    [
        ("INBOX", False, b"INBOX"),
        ("inbox", False, b"INBOX"),
        ("Entwürfe", False, b"Entw&APw-rfe"),
        ("Entwürfe", True, b'"Entw\xc3\xbcrfe"'),
        ("Sent Items", False, b'"Sent Items"'),
        ("a&b", False, b"a&-b"),
        ("a&b", True, b"a&b"),
        ("日本語/子", False, b"&ZeVnLIqe-/&W1A-"),
    ],
)
def test_mailbox_names(name, utf8, expected):
    assert r.mailbox(name, utf8=utf8) == expected


@pytest.mark.parametrize(
    "name",
    ["INBOX", "Entwürfe", "Sent Items", "a&b", "日本語/子", 'x"y', "back\\slash", "NIL", "🎉"],
)
@pytest.mark.parametrize("utf8", [False, True])
def test_mailbox_round_trip(name, utf8):
    wire = b"a1 SELECT " + r.mailbox(name, utf8=utf8)
    assert parse_command(wire, utf8=utf8) == ("a1", c.Select(name))


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ([], b""),
        ([1], b"1"),
        ([1, 2, 3, 4, 5, 7, 9, 10, 11, 12], b"1:5,7,9:12"),
        ([12, 9, 10, 11, 7, 5, 4, 3, 2, 1, 1, 7], b"1:5,7,9:12"),
        ([3, 5, 7], b"3,5,7"),
        ([4294967295, 4294967294], b"4294967294:4294967295"),
    ],
)
def test_sequence_set_compression(numbers, expected):
    assert r.sequence_set(numbers) == expected


@pytest.mark.parametrize("seed", range(10))
def test_sequence_set_round_trip(seed):
    rnd = random.Random(seed)
    numbers = sorted(set(rnd.sample(range(1, 500), rnd.randint(1, 200))))
    wire = r.sequence_set(numbers)
    assert list(parse_sequence_set(wire).iter(500)) == numbers


def test_framing():
    assert r.untagged(3, "EXISTS") == b"* 3 EXISTS\r\n"
    assert r.untagged("OK", r.code("UIDNEXT", 4392), "Predicted next UID") == (
        b"* OK [UIDNEXT 4392] Predicted next UID\r\n"
    )
    assert r.tagged("a1", "OK", "done") == b"a1 OK done\r\n"
    assert r.tagged("a1", "NO", "", r.code("TRYCREATE")) == b"a1 NO [TRYCREATE] NO\r\n"
    assert r.tagged("a1", "BAD", "bad\r\nline") == b"a1 BAD bad  line\r\n"
    assert r.tagged("*", "BYE", "bye") == b"* BYE bye\r\n"
    assert r.continuation() == b"+ Ready for literal data\r\n"
    assert r.continuation(b"") == b"+ \r\n"
    assert r.continuation(b"dGVzdA==") == b"+ dGVzdA==\r\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("ALERT",), b"[ALERT]"),
        (("READ-WRITE",), b"[READ-WRITE]"),
        (("UIDVALIDITY", 3857529045), b"[UIDVALIDITY 3857529045]"),
        (("APPENDUID", 38505, 3955), b"[APPENDUID 38505 3955]"),
        (
            ("COPYUID", 38505, b"304,319:320", b"3956:3958"),
            b"[COPYUID 38505 304,319:320 3956:3958]",
        ),
        (
            ("PERMANENTFLAGS", r.flag_list(["\\Deleted", "\\Seen", "\\*"])),
            b"[PERMANENTFLAGS (\\Deleted \\Seen \\*)]",
        ),
        (("BADCHARSET", r.plist([b"US-ASCII", b"UTF-8"])), b"[BADCHARSET (US-ASCII UTF-8)]"),
        (("CAPABILITY", "IMAP4rev2", "IDLE"), b"[CAPABILITY IMAP4rev2 IDLE]"),
        (("HIGHESTMODSEQ", 715194045007), b"[HIGHESTMODSEQ 715194045007]"),
        (("MODIFIED", b"7,9"), b"[MODIFIED 7,9]"),
        (
            ("MAILBOXID", b"(F2212ea87-6097-4256-9d51-71338625)"),
            b"[MAILBOXID (F2212ea87-6097-4256-9d51-71338625)]",
        ),
    ],
)
def test_response_codes(args, expected):
    assert r.code(*args) == expected


def test_esearch():
    assert r.esearch("a1", False, [("MIN", 1), ("COUNT", 3), ("ALL", b"1:3")]) == (
        b'* ESEARCH (TAG "a1") MIN 1 COUNT 3 ALL 1:3\r\n'
    )
    assert r.esearch("a2", True, []) == b'* ESEARCH (TAG "a2") UID\r\n'
    assert (
        r.esearch(None, True, [("PARTIAL", b"(1:10 3,5)")])
        == b"* ESEARCH UID PARTIAL (1:10 3,5)\r\n"
    )


def test_vanished():
    assert r.vanished([41, 42, 43, 45]) == b"* VANISHED 41:43,45\r\n"
    assert r.vanished([300, 301], earlier=True) == b"* VANISHED (EARLIER) 300:301\r\n"


def test_list_and_status():
    assert (
        r.list_response(["\\HasNoChildren"], "/", "INBOX")
        == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    )
    assert r.list_response(["\\Noselect"], None, "") == b'* LIST (\\Noselect) NIL ""\r\n'
    assert r.list_response([], "/", "Entwürfe") == b'* LIST () "/" Entw&APw-rfe\r\n'
    assert (
        r.list_response(["\\Subscribed"], "/", "foo", extended={"CHILDINFO": b'("SUBSCRIBED")'})
        == b'* LIST (\\Subscribed) "/" foo (CHILDINFO ("SUBSCRIBED"))\r\n'
    )
    assert r.list_response([], ".", "x", verb="LSUB") == b'* LSUB () "." x\r\n'
    assert r.status_response("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    )


def test_section_names():
    sec = c.Section((1, 2), "HEADER.FIELDS", ("From", "To"))
    assert r.section_name(sec) == b"BODY[1.2.HEADER.FIELDS (From To)]"
    assert r.section_name(c.Section(), origin=0) == b"BODY[]<0>"
    assert r.section_name(c.Section((3,)), binary=True) == b"BINARY[3]"
    assert r.section_name(c.Section((), "TEXT")) == b"BODY[TEXT]"
    # what a client asks is what the server echoes
    _, cmd = parse_command(b"a1 FETCH 1 BODY.PEEK[1.2.HEADER.FIELDS (From To)]")
    assert isinstance(cmd, c.Fetch)
    item = cmd.items[0]
    assert isinstance(item, c.BodySection)
    assert r.section_name(item.section) == b"BODY[1.2.HEADER.FIELDS (From To)]"
