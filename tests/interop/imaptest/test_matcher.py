"""ImapTest's matching rules, on hand-written expectation/response pairs (no server)."""

from __future__ import annotations

import pytest

from mailstead.testing.imaptest import (
    Atom,
    ImapList,
    Matcher,
    Nil,
    String,
    format_args,
    load_script,
    parse_args,
    parse_expected_untagged,
    read_mbox,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1 FETCH (UID 5)", [Atom("1"), Atom("FETCH"), ImapList([Atom("UID"), Atom("5")])]),
        ('"a \\"b\\"" NIL', [String('a "b"'), Nil("NIL")]),
        ("x {3}\r\nabc y", [Atom("x"), String("abc", literal=True), Atom("y")]),
        ("~{2}\r\n\0\n", [String("\0\n", literal=True, literal8=True)]),
        # brackets stay inside atoms; a list inside a section splits the atom
        (
            "BODY[HEADER.FIELDS (FROM)] x",
            [Atom("BODY[HEADER.FIELDS"), ImapList([Atom("FROM")]), Atom("]"), Atom("x")],
        ),
        ("OK [UIDNEXT 4] n", [Atom("OK"), Atom("[UIDNEXT"), Atom("4]"), Atom("n")]),
    ],
)
def test_parse_args(line, expected):
    assert parse_args(line) == expected


def matches(m: Matcher, expected: str, response: str) -> bool:
    return m.matches_untagged(expected, response)


def test_variables_bind_on_first_match_and_must_match_later():
    m = Matcher()
    assert matches(m, "1 fetch (uid $uid1)", "1 FETCH (UID 42)")
    assert m.variables["uid1"] == "42"
    assert not matches(m, "2 fetch (uid $uid1)", "2 FETCH (UID 43)")
    assert matches(m, "2 fetch (uid $uid1)", "2 FETCH (UID 42)")


def test_failed_match_does_not_keep_its_bindings():
    m = Matcher()
    assert not matches(m, "1 fetch (uid $u flags (\\seen))", "1 FETCH (UID 7 FLAGS ())")
    assert "u" not in m.variables


def test_variable_stops_at_next_pattern_char():
    m = Matcher()
    assert matches(m, "ok [uidvalidity $uidv]", "OK [UIDVALIDITY 1234] UIDs valid")
    assert m.variables["uidv"] == "1234"


def test_fetch_list_is_unordered_by_default():
    m = Matcher()
    assert matches(m, "1 fetch (uid 5 flags (\\seen))", "1 FETCH (FLAGS (\\Seen) UID 5)")
    # extra FETCH items are allowed
    assert matches(m, "1 fetch (uid 5)", "1 FETCH (UID 5 MODSEQ (3))")


def test_fetch_flags_are_unordered_without_extras_except_recent():
    m = Matcher()
    assert matches(m, "1 fetch (flags (\\seen \\draft))", "1 FETCH (FLAGS (\\Draft \\Seen))")
    assert matches(m, "1 fetch (flags (\\seen))", "1 FETCH (FLAGS (\\Seen \\Recent))")
    assert not matches(m, "1 fetch (flags (\\seen))", "1 FETCH (FLAGS (\\Seen \\Flagged))")
    assert not matches(m, "1 fetch (flags (\\seen \\draft))", "1 FETCH (FLAGS (\\Seen))")


def test_explicit_directives():
    m = Matcher()
    assert not matches(m, "x ($!ordered a b)", "X (b a)")
    assert matches(m, "x ($!unordered a b)", "X (b c a)")
    assert not matches(m, "x ($!unordered $!noextra a b)", "X (b c a)")
    assert matches(m, "x ($!unordered $!noextra $!ignore=c a b)", "X (b c a)")
    assert not matches(m, "x ($!unordered $!ban=c a b)", "X (b c a)")
    assert matches(m, "x ($!unordered=2 k1 v1 k2 v2)", "X (k2 v2 k1 v1)")
    assert not matches(m, "x ($!unordered=2 k1 v1 k2 v2)", "X (k2 v1 k1 v2)")


def test_default_directives_are_inserted_where_imaptest_puts_them():
    args = parse_expected_untagged("status box (messages 1)")
    assert format_args(args) == "status box ($!unordered=2 messages 1)"
    args = parse_expected_untagged("list (\\noselect) / x")
    assert format_args(args) == "list ($!unordered \\noselect) / x"
    # explicit directives replace the defaults of their own list only
    args = parse_expected_untagged("1 fetch (flags ($!extra))")
    assert format_args(args) == "1 fetch ($!unordered=2 flags ($!extra))"


def test_wildcards():
    m = Matcher()
    assert matches(m, "1 fetch (uid $ flags $)", "1 FETCH (UID 9 FLAGS (\\Seen))")
    assert matches(m, "ok [capability $] x", "OK [CAPABILITY IMAP4rev1 IDLE] x")
    assert matches(m, "ok [capability $]", "OK [CAPABILITY IMAP4rev1 IDLE] logged in")
    assert not matches(m, "1 fetch (body $)", "1 FETCH (BODY NIL)")  # $ is no NIL


def test_status_replies_match_by_prefix():
    m = Matcher()
    assert matches(m, "ok [read-write]", "OK [READ-WRITE] Select completed.")
    assert matches(m, "no", "NO [TRYCREATE] no such mailbox")
    assert not matches(m, "3 exists", "3 EXISTS extra")


def test_case_insensitive_unless_asked():
    m = Matcher({"mailbox": "Box"})
    assert matches(m, "list () / inbox", 'LIST () "/" INBOX')
    assert matches(m, "list () / ${case:INBOX}", 'LIST () "/" INBOX')
    assert not matches(m, "list () / ${case:INBOX}", 'LIST () "/" Inbox')
    assert matches(m, "status $mailbox (messages 0)", "STATUS Box (MESSAGES 0)")
    # a bound value compares exactly
    assert not matches(m, "status $mailbox (messages 0)", "STATUS BOX (MESSAGES 0)")


def test_relative_sequences_follow_expunges():
    m = Matcher()
    m.start_group(5)
    assert matches(m, "$2 expunge", "2 EXPUNGE")
    m.expunged(2)
    assert matches(m, "$3 fetch (flags ())", "2 FETCH (FLAGS ())")
    assert m.expand("fetch $2,$5") == "fetch <expunged>,4"


def test_modseqs_must_increase_by_their_index_gap():
    m = Matcher()
    assert matches(m, "1 fetch (modseq ($modseq2))", "1 FETCH (MODSEQ (10))")
    assert not matches(m, "1 fetch (modseq ($modseq5))", "1 FETCH (MODSEQ (12))")
    m = Matcher()
    assert matches(m, "1 fetch (modseq ($modseq2))", "1 FETCH (MODSEQ (10))")
    assert matches(m, "1 fetch (modseq ($modseq5))", "1 FETCH (MODSEQ (13))")


def test_expand_commands():
    m = Matcher({"mailbox": "box", "uid1": "4"})
    assert m.expand("uid fetch $uid1 (flags $$kw) ${mailbox}2") == "uid fetch 4 (flags $kw) box2"
    assert m.expand("select $nope") == "select "
    assert m.errors == ["Uninitialized variable: nope"]


def test_multiline_literals_and_replies(tmp_path):
    (tmp_path / "default.mbox").write_bytes(b"From a@b  Fri Feb 22 17:06:23 2008\nX: 1\n\nb\n")
    (tmp_path / "t").write_text(
        "state: created\n\n"
        "ok append $mailbox {{{\nSubject: x\n\nbody\n}}}\n"
        "tag1 noop\ntag2 noop\n* 1 fetch (body[] {{{\nab\n}}})\ntag1 ok\ntag2 ok\n"
    )
    script = load_script(tmp_path / "t")
    first, second, logout = script.groups
    assert first.commands[0].text == "append $mailbox {18}\r\nSubject: x\r\n\r\nbody"
    assert [c.tag for c in second.commands] == [1, 2]
    assert second.untagged[0].args[2] == ImapList(
        [Atom("$!unordered=2"), Atom("body[]"), String("ab", literal=True)]
    )
    assert logout.commands[0].text == "logout"


def test_mbox_split_and_crlf(tmp_path):
    path = tmp_path / "m.mbox"
    path.write_bytes(
        b"From x@y  Fri Feb 22 17:06:23 2008 +0200\nA: 1\n\nbody\nFrom the start\n\n"
        b"From x@y  Sat Feb 23 01:02:03 2008\nB: 2\r\n\r\nz\n"
    )
    first, second = read_mbox(path)
    assert first.data == b"A: 1\r\n\r\nbody\r\nFrom the start\r\n\r\n"
    assert first.internaldate == "22-Feb-2008 17:06:23 +0200"
    assert second.data == b"B: 2\r\n\r\nz\r\n"
