"""The command parser: raw line → typed command, or the exact error text."""

from __future__ import annotations

import pytest

from mailstead.protocols.pop3 import ParseError, parse_command
from mailstead.protocols.pop3.commands import (
    Auth,
    Capa,
    Dele,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    split_keyword,
)

VALID = [
    (b"USER alice@example.org", User("alice@example.org")),
    (b"user alice", User("alice")),
    (b"USER j\xc3\xbcrgen@b\xc3\xbccher.example", User("jürgen@bücher.example")),
    (b"PASS secret", Pass("secret")),
    (b"PASS with two  spaces ", Pass("with two  spaces ")),  # RFC 1939 §7: spaces are kept
    (b"AUTH", Auth(None)),
    (b"AUTH plain", Auth("PLAIN")),
    (b"AUTH PLAIN AGFsaWNlAHB3", Auth("PLAIN", b"AGFsaWNlAHB3")),
    (b"AUTH PLAIN =", Auth("PLAIN", b"=")),
    (b"CAPA", Capa()),
    (b"STLS", Stls()),
    (b"STAT", Stat()),
    (b"LIST", List()),
    (b"LIST 3", List(3)),
    (b"list  12", List(12)),
    (b"RETR 1", Retr(1)),
    (b"DELE 2", Dele(2)),
    (b"NOOP", Noop()),
    (b"RSET", Rset()),
    (b"QUIT", Quit()),
    (b"QUIT ", Quit()),
    (b"TOP 1 0", Top(1, 0)),
    (b"TOP 10 25", Top(10, 25)),
    (b"TOP 1 9999999999", Top(1, 9999999999)),  # "the whole message" (fetchmail)
    (b"UIDL", Uidl()),
    (b"UIDL 7", Uidl(7)),
    (b"RETR 0", Retr(0)),  # out of range, which is the session's business
]


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_valid(line, expected):
    assert parse_command(line) == expected


INVALID = [
    (b"USER", "Missing user name"),
    (b"USER ", "Missing user name"),
    (b"PASS", "Missing password"),
    (b"PASS \xff", "Invalid UTF-8 in password"),
    (b"AUTH PLAIN a b", "Too many arguments"),
    (b"STAT 1", "Too many arguments"),
    (b"LIST 1 2", "Too many arguments"),
    (b"LIST x", "Invalid message number"),
    (b"LIST -1", "Invalid message number"),
    (b"LIST +1", "Invalid message number"),
    (b"RETR", "Missing message number"),
    (b"RETR 123456789012345678901", "Invalid message number"),
    (b"DELE one", "Invalid message number"),
    (b"TOP 1", "TOP needs a message number and a line count"),
    (b"TOP 1 2 3", "TOP needs a message number and a line count"),
    (b"TOP 1 x", "Invalid line count"),
    (b"APOP alice 0123456789abcdef", "Unknown command"),
    (b"", "Unknown command"),
]


@pytest.mark.parametrize(("line", "text"), INVALID)
def test_invalid(line, text):
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.text == text


def test_keyword_split():
    assert split_keyword(b"retr 1") == ("RETR", b"1")
    assert split_keyword(b"\x00bad x") == ("", b"x")
    assert split_keyword(b"X" * 17) == ("", b"")


def test_credentials_are_not_in_reprs():
    assert "secret" not in repr(Pass("secret"))
    assert "AGFs" not in repr(Auth("PLAIN", b"AGFsaWNlAHB3"))
