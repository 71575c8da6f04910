"""Table tests for the IMAP grammar: raw command → dataclass, malformed → ParseError text."""

from __future__ import annotations

import datetime

import pytest

from mailstead.protocols.imap import ParseError, parse_command, parse_sequence_set
from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap.commands import STAR, SequenceSet
from mailstead.protocols.imap.grammar import MAX_NESTING, parse_date, parse_date_time


def S(*ranges: int | tuple[int, int]) -> SequenceSet:
    return SequenceSet(tuple(r if isinstance(r, tuple) else (r, r) for r in ranges))


F = c.FetchAtt
SEEN = c.FlagKey("\\Seen")
TZ1 = datetime.timezone(datetime.timedelta(hours=1))


def parse(line: bytes, utf8: bool = False) -> c.Command:
    tag, cmd = parse_command(line, utf8=utf8)
    assert tag == "a1"
    return cmd


def error(line: bytes, utf8: bool = False) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_command(line, utf8=utf8)
    return info.value


# --- sequence sets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", S(1)),
        ("*", S(STAR)),
        ("1:*", S((1, STAR))),
        ("*:1", S((STAR, 1))),
        ("4:2", S((4, 2))),
        ("1,3:5,7", S(1, (3, 5), 7)),
        ("4294967295", S(4294967295)),
        ("2,*:4", S(2, (STAR, 4))),
        ("$", SequenceSet((), saved=True)),
    ],
)
def test_sequence_sets(text, expected):
    assert parse_sequence_set(text) == expected


@pytest.mark.parametrize(
    "text", ["0", "1:0", "4294967296", "1,", ",1", "1::2", "a", "", "1 2", "$1"]
)
def test_bad_sequence_sets(text):
    with pytest.raises(ParseError):
        parse_sequence_set(text)


def test_sequence_set_resolve_and_iter():
    s = parse_sequence_set("5:*,2,9:7")
    assert s.resolve(10) == [(5, 10), (2, 2), (7, 9)]
    assert list(s.iter(10)) == [2, 5, 6, 7, 8, 9, 10]
    assert list(parse_sequence_set("1:4294967295").iter(3)) == [1, 2, 3]
    assert parse_sequence_set("*:4").resolve(2) == [(2, 4)]
    assert s.contains(6, 10) and not s.contains(3, 10)


# --- dates ----------------------------------------------------------------------------------------
def test_dates():
    assert parse_date("1-Feb-2024") == datetime.date(2024, 2, 1)
    assert parse_date('"01-feb-2024"') == datetime.date(2024, 2, 1)
    assert parse_date_time('"17-Jul-1996 02:44:25 -0700"') == datetime.datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=datetime.timezone(datetime.timedelta(hours=-7))
    )
    assert parse_date_time('" 7-Jul-1996 02:44:25 +0000"').day == 7
    for bad in ("31-Feb-2024", "1-Foo-2024", "1-Feb-24", "1 Feb 2024"):
        with pytest.raises(ParseError):
            parse_date(bad)
    for bad in ('"7-Jul-1996 02:44:25 +0000"', '"17-Jul-1996 25:44:25 +0000"', "17-Jul-1996"):
        with pytest.raises(ParseError):
            parse_date_time(bad)


# --- simple and session commands ------------------------------------------------------------------
SIMPLE = [
    (b"a1 CAPABILITY", c.Capability()),
    (b"a1 noop", c.Noop()),
    (b"a1 LOGOUT", c.Logout()),
    (b"a1 StartTLS", c.StartTLS()),
    (b"a1 NAMESPACE", c.Namespace()),
    (b"a1 IDLE", c.Idle()),
    (b"a1 CHECK", c.Check()),
    (b"a1 CLOSE", c.Close()),
    (b"a1 UNSELECT", c.Unselect()),
    (b"a1 EXPUNGE", c.Expunge()),
    (b"a1 UID EXPUNGE 3:5,9", c.UidExpunge(S((3, 5), 9))),
    (b"a1 AUTHENTICATE PLAIN", c.Authenticate("PLAIN")),
    (b"a1 authenticate plain AGZyZWQAc2VjcmV0", c.Authenticate("PLAIN", "AGZyZWQAc2VjcmV0")),
    (b"a1 AUTHENTICATE EXTERNAL =", c.Authenticate("EXTERNAL", "=")),
    (b"a1 AUTHENTICATE XOAUTH2 dXNlcj0=", c.Authenticate("XOAUTH2", "dXNlcj0=")),
    (b"a1 LOGIN fred secret", c.Login("fred", "secret")),
    (b'a1 LOGIN "fr\\"ed" "p a\\\\ss"', c.Login('fr"ed', "p a\\ss")),
    (b"a1 LOGIN {4}\r\nfred {6+}\r\nsecret", c.Login("fred", "secret")),
    (b'a1 LOGIN "j\xc3\xb6rg" "p\xc3\xa4ss"', c.Login("jörg", "päss")),
    (b"a1 LOGIN fred {2}\r\n\xe9t", c.Login("fred", "\ufffdt")),
    (b"a1 ENABLE CONDSTORE qresync", c.Enable(("CONDSTORE", "QRESYNC"))),
    (b"a1 ENABLE UTF8=ACCEPT IMAP4rev2", c.Enable(("UTF8=ACCEPT", "IMAP4REV2"))),
    (b"a1 ID NIL", c.Id(None)),
    (b"a1 ID ()", c.Id(())),
    (
        b'a1 ID ("name" "Thunderbird" "version" NIL)',
        c.Id((("name", "Thunderbird"), ("version", None))),
    ),
    (b"a1 COMPRESS DEFLATE", c.Compress("DEFLATE")),
    (b'a1 GETQUOTA ""', c.GetQuota("")),
    (b"a1 GETQUOTAROOT INBOX", c.GetQuotaRoot("INBOX")),
    (
        b'a1 SETQUOTA "" (STORAGE 512 message 1000)',
        c.SetQuota("", (("STORAGE", 512), ("MESSAGE", 1000))),
    ),
    (b"a1 SETQUOTA root ()", c.SetQuota("root", ())),
]


@pytest.mark.parametrize(("line", "expected"), SIMPLE)
def test_simple_commands(line, expected):
    assert parse(line) == expected


# --- mailbox commands -----------------------------------------------------------------------------
MAILBOX = [
    (b"a1 SELECT INBOX", c.Select("INBOX")),
    (b"a1 SELECT inBox", c.Select("INBOX")),
    (b'a1 SELECT "inbox"', c.Select("INBOX")),
    (b"a1 SELECT {5}\r\nInbox", c.Select("INBOX")),
    (b"a1 SELECT INBOX/sub", c.Select("INBOX/sub")),
    (b"a1 EXAMINE Archive", c.Examine("Archive")),
    (b"a1 SELECT INBOX (CONDSTORE)", c.Select("INBOX", condstore=True)),
    (
        b"a1 SELECT INBOX (QRESYNC (67890007 90060115194045000))",
        c.Select("INBOX", qresync=c.QResync(67890007, 90060115194045000)),
    ),
    (
        b"a1 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
        c.Select("INBOX", qresync=c.QResync(67890007, 90060115194045000, S((41, 211), (214, 541)))),
    ),
    (
        b"a1 EXAMINE INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9000 15000,22500,27000)))",
        c.Examine(
            "INBOX",
            qresync=c.QResync(
                67890007,
                90060115194045000,
                S((1, 29997)),
                (S(5000, 7500, 9000), S(15000, 22500, 27000)),
            ),
        ),
    ),
    (b"a1 SELECT &ZeVnLIqe-", c.Select("日本語")),
    (b"a1 SELECT Entw&APw-rfe", c.Select("Entwürfe")),
    (b"a1 SELECT a&-b", c.Select("a&b")),
    (b"a1 SELECT ~foo]bar", c.Select("~foo]bar")),
    (b"a1 CREATE Projects/2024", c.Create("Projects/2024")),
    (b"a1 CREATE Sent (USE (\\sent))", c.Create("Sent", ("\\Sent",))),
    (b"a1 CREATE Stuff (USE (\\Archive \\X-Mine))", c.Create("Stuff", ("\\Archive", "\\X-Mine"))),
    (b"a1 CREATE foo (USE ())", c.Create("foo")),
    (b"a1 DELETE foo", c.Delete("foo")),
    (b"a1 RENAME foo bar", c.Rename("foo", "bar")),
    (b'a1 RENAME INBOX "Old Mail"', c.Rename("INBOX", "Old Mail")),
    (b"a1 SUBSCRIBE foo", c.Subscribe("foo")),
    (b"a1 UNSUBSCRIBE foo", c.Unsubscribe("foo")),
    (b"a1 STATUS INBOX (MESSAGES UNSEEN)", c.Status("INBOX", ("MESSAGES", "UNSEEN"))),
    (
        b"a1 STATUS blurdybloop (uidnext uidvalidity deleted size recent highestmodseq "
        b"appendlimit mailboxid messages messages)",
        c.Status(
            "blurdybloop",
            (
                "UIDNEXT",
                "UIDVALIDITY",
                "DELETED",
                "SIZE",
                "RECENT",
                "HIGHESTMODSEQ",
                "APPENDLIMIT",
                "MAILBOXID",
                "MESSAGES",
            ),
        ),
    ),
    (b'a1 LSUB "" *', c.Lsub("", "*")),
    (b'a1 LSUB "#news." "comp.mail.%"', c.Lsub("#news.", "comp.mail.%")),
]


@pytest.mark.parametrize(("line", "expected"), MAILBOX)
def test_mailbox_commands(line, expected):
    assert parse(line) == expected


L = c.List
LIST = [
    (b'a1 LIST "" ""', L("", ("",))),
    (b'a1 LIST "" *', L("", ("*",))),
    (b"a1 LIST ~/Mail/ %", L("~/Mail/", ("%",))),
    (b'a1 LIST "" INBOX/%/foo*', L("", ("INBOX/%/foo*",))),
    (b'a1 LIST "" "&ZeVnLIqe-/*"', L("", ("日本語/*",))),
    (b'a1 LIST "" {3}\r\nfo*', L("", ("fo*",))),
    (b'a1 LIST () "" %', L("", ("%",), extended=True)),
    (
        b'a1 LIST (SUBSCRIBED) "" "*"',
        L("", ("*",), selection=frozenset({"SUBSCRIBED"}), extended=True),
    ),
    (
        b'a1 LIST (subscribed recursivematch) "" %',
        L("", ("%",), selection=frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}), extended=True),
    ),
    (
        b'a1 LIST (REMOTE SPECIAL-USE) "" %',
        L("", ("%",), selection=frozenset({"REMOTE", "SPECIAL-USE"}), extended=True),
    ),
    (
        b'a1 LIST "" (INBOX Drafts "Sent Items")',
        L("", ("INBOX", "Drafts", "Sent Items"), extended=True),
    ),
    (
        b'a1 LIST "" % RETURN (CHILDREN SUBSCRIBED special-use)',
        L("", ("%",), returns=frozenset({"CHILDREN", "SUBSCRIBED", "SPECIAL-USE"}), extended=True),
    ),
    (b'a1 LIST "" % RETURN ()', L("", ("%",), extended=True)),
    (
        b'a1 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
        L(
            "",
            ("%",),
            returns=frozenset({"STATUS"}),
            status_items=("MESSAGES", "UNSEEN"),
            extended=True,
        ),
    ),
    (
        b'a1 LIST (SUBSCRIBED) "" (% "x/*") RETURN (CHILDREN STATUS (UIDNEXT))',
        L(
            "",
            ("%", "x/*"),
            selection=frozenset({"SUBSCRIBED"}),
            returns=frozenset({"CHILDREN", "STATUS"}),
            status_items=("UIDNEXT",),
            extended=True,
        ),
    ),
]


@pytest.mark.parametrize(("line", "expected"), LIST)
def test_list(line, expected):
    assert parse(line) == expected


# --- APPEND ---------------------------------------------------------------------------------------
M = c.AppendMessage
APPEND = [
    (b"a1 APPEND INBOX {5}\r\nHello", c.Append("INBOX", (M(b"Hello"),))),
    (b"a1 APPEND INBOX {5+}\r\nHello", c.Append("INBOX", (M(b"Hello"),))),
    (b"a1 APPEND INBOX {0}\r\n", c.Append("INBOX", (M(b""),))),
    (
        b"a1 APPEND saved-messages (\\Seen) {3}\r\nabc",
        c.Append("saved-messages", (M(b"abc", ("\\Seen",)),)),
    ),
    (
        b'a1 APPEND INBOX (\\seen $Forwarded \\Draft) "05-Feb-2024 10:11:12 +0100" {3}\r\nabc',
        c.Append(
            "INBOX",
            (
                M(
                    b"abc",
                    ("\\Seen", "$Forwarded", "\\Draft"),
                    datetime.datetime(2024, 2, 5, 10, 11, 12, tzinfo=TZ1),
                ),
            ),
        ),
    ),
    (
        b'a1 APPEND INBOX "05-Feb-2024 10:11:12 +0100" {3}\r\nabc',
        c.Append("INBOX", (M(b"abc", (), datetime.datetime(2024, 2, 5, 10, 11, 12, tzinfo=TZ1)),)),
    ),
    (b"a1 APPEND INBOX () {3}\r\nabc", c.Append("INBOX", (M(b"abc"),))),
    (b"a1 APPEND INBOX ~{4}\r\na\x00bc", c.Append("INBOX", (M(b"a\x00bc", binary=True),))),
    (b"a1 APPEND INBOX ~{4+}\r\na\x00bc", c.Append("INBOX", (M(b"a\x00bc", binary=True),))),
    (
        b"a1 APPEND INBOX UTF8 (~{3}\r\nabc)",
        c.Append("INBOX", (M(b"abc", binary=True, utf8=True),)),
    ),
    (
        b"a1 APPEND INBOX (\\Seen) {3}\r\nabc (\\Flagged) {2+}\r\nde {1}\r\nf",
        c.Append("INBOX", (M(b"abc", ("\\Seen",)), M(b"de", ("\\Flagged",)), M(b"f"))),
    ),
    (b"a1 APPEND {5}\r\nINBOX {2}\r\n\r\n", c.Append("INBOX", (M(b"\r\n"),))),
    (b"a1 APPEND INBOX {7}\r\n{5}\r\nab", c.Append("INBOX", (M(b"{5}\r\nab"),))),
]


@pytest.mark.parametrize(("line", "expected"), APPEND)
def test_append(line, expected):
    assert parse(line) == expected


# --- FETCH ----------------------------------------------------------------------------------------
def fetch(seq: SequenceSet, *items: c.FetchItem, **kw: object) -> c.Fetch:
    return c.Fetch(seq, items, **kw)  # type: ignore[arg-type]


def B(part=(), text=None, fields=(), *, peek=False, partial=None, binary=False) -> c.BodySection:
    return c.BodySection(c.Section(tuple(part), text, tuple(fields)), peek, partial, binary)


FETCH = [
    (b"a1 FETCH 1 FLAGS", fetch(S(1), F("FLAGS"))),
    (b"a1 FETCH 1:* (FLAGS)", fetch(S((1, STAR)), F("FLAGS"))),
    (b"a1 UID FETCH 1:* (FLAGS)", fetch(S((1, STAR)), F("FLAGS"), uid=True)),
    (b"a1 uid fetch 1:* flags", fetch(S((1, STAR)), F("FLAGS"), uid=True)),
    (
        b"a1 FETCH 2:4 (UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)",
        fetch(
            S((2, 4)),
            F("UID"),
            F("RFC822.SIZE"),
            F("INTERNALDATE"),
            F("ENVELOPE"),
            F("BODYSTRUCTURE"),
        ),
    ),
    (
        b"a1 FETCH 1 ALL",
        fetch(S(1), F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"), macro="ALL"),
    ),
    (
        b"a1 FETCH 1 fast",
        fetch(S(1), F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), macro="FAST"),
    ),
    (
        b"a1 FETCH 1 FULL",
        fetch(
            S(1),
            F("FLAGS"),
            F("INTERNALDATE"),
            F("RFC822.SIZE"),
            F("ENVELOPE"),
            F("BODY"),
            macro="FULL",
        ),
    ),
    (b"a1 FETCH 1 BODY", fetch(S(1), F("BODY"))),
    (b"a1 FETCH 1 BODY[]", fetch(S(1), B())),
    (b"a1 FETCH 1 BODY.PEEK[]", fetch(S(1), B(peek=True))),
    (b"a1 FETCH 1 body.peek[]<0.1024>", fetch(S(1), B(peek=True, partial=(0, 1024)))),
    (b"a1 FETCH 1 BODY[HEADER]", fetch(S(1), B(text="HEADER"))),
    (b"a1 FETCH 1 BODY[TEXT]<100.50>", fetch(S(1), B(text="TEXT", partial=(100, 50)))),
    (b"a1 FETCH 1 BODY[1]", fetch(S(1), B((1,)))),
    (b"a1 FETCH 1 BODY[1.2.3]", fetch(S(1), B((1, 2, 3)))),
    (b"a1 FETCH 1 BODY[1.2.MIME]", fetch(S(1), B((1, 2), "MIME"))),
    (b"a1 FETCH 1 BODY[2.header]", fetch(S(1), B((2,), "HEADER"))),
    (b"a1 FETCH 1 BODY[3.TEXT]", fetch(S(1), B((3,), "TEXT"))),
    (
        b"a1 FETCH 1 BODY.PEEK[HEADER.FIELDS (From To Subject)]",
        fetch(S(1), B((), "HEADER.FIELDS", ("From", "To", "Subject"), peek=True)),
    ),
    (
        b'a1 FETCH 1 BODY[header.fields.not (Received "X-Spam")]',
        fetch(S(1), B((), "HEADER.FIELDS.NOT", ("Received", "X-Spam"))),
    ),
    (
        b"a1 FETCH 1 BODY[1.HEADER.FIELDS (DATE)]<0.10>",
        fetch(S(1), B((1,), "HEADER.FIELDS", ("DATE",), partial=(0, 10))),
    ),
    (b"a1 FETCH 1 BINARY[]", fetch(S(1), B(binary=True))),
    (b"a1 FETCH 1 BINARY[1.2]", fetch(S(1), B((1, 2), binary=True))),
    (
        b"a1 FETCH 1 BINARY.PEEK[1]<0.100>",
        fetch(S(1), B((1,), peek=True, partial=(0, 100), binary=True)),
    ),
    (b"a1 FETCH 1 BINARY.SIZE[1]", fetch(S(1), c.BinarySize((1,)))),
    (b"a1 FETCH 1 BINARY.SIZE[]", fetch(S(1), c.BinarySize(()))),
    (
        b"a1 FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE)",
        fetch(S(1), F("RFC822"), F("RFC822.HEADER"), F("RFC822.TEXT"), F("RFC822.SIZE")),
    ),
    (
        b"a1 FETCH 1 (MODSEQ EMAILID THREADID SAVEDATE)",
        fetch(S(1), F("MODSEQ"), F("EMAILID"), F("THREADID"), F("SAVEDATE")),
    ),
    (b"a1 FETCH 1 (FLAGS FLAGS UID)", fetch(S(1), F("FLAGS"), F("UID"))),
    (
        b"a1 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        fetch(S((1, STAR)), F("FLAGS"), changedsince=12345),
    ),
    (
        b"a1 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        fetch(S((300, 500)), F("FLAGS"), uid=True, changedsince=12345, vanished=True),
    ),
    (b"a1 FETCH $ (FLAGS)", fetch(SequenceSet((), saved=True), F("FLAGS"))),
    (
        b"a1 FETCH 1,3:4,*:2 (UID BODY.PEEK[HEADER] BODY[1]<0.5>)",
        fetch(
            S(1, (3, 4), (STAR, 2)), F("UID"), B(text="HEADER", peek=True), B((1,), partial=(0, 5))
        ),
    ),
]


@pytest.mark.parametrize(("line", "expected"), FETCH)
def test_fetch(line, expected):
    assert parse(line) == expected


# --- STORE, COPY, MOVE ----------------------------------------------------------------------------
STORE = [
    (b"a1 STORE 1 FLAGS (\\Seen)", c.Store(S(1), "", ("\\Seen",))),
    (b"a1 STORE 1 FLAGS ()", c.Store(S(1), "", ())),
    (b"a1 STORE 2:4 +FLAGS (\\Deleted)", c.Store(S((2, 4)), "+", ("\\Deleted",))),
    (
        b"a1 STORE 2:4 -flags.silent \\seen \\flagged",
        c.Store(S((2, 4)), "-", ("\\Seen", "\\Flagged"), True),
    ),
    (b"a1 STORE 1 +FLAGS.SILENT $Label1", c.Store(S(1), "+", ("$Label1",), True)),
    (
        b"a1 UID STORE 1:* +FLAGS (\\Answered)",
        c.Store(S((1, STAR)), "+", ("\\Answered",), uid=True),
    ),
    (
        b"a1 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        c.Store(S(7, 5, 9), "+", ("\\Deleted",), True, unchangedsince=320162338),
    ),
    (b"a1 STORE 1 FLAGS (\\Seen \\seen)", c.Store(S(1), "", ("\\Seen",))),
    (b"a1 STORE 1 FLAGS (\\X-Custom)", c.Store(S(1), "", ("\\X-Custom",))),
    (b"a1 COPY 2:4 MEETING", c.Copy(S((2, 4)), "MEETING")),
    (b"a1 UID COPY 1:* Trash", c.Copy(S((1, STAR)), "Trash", uid=True)),
    (b"a1 MOVE 1 Archive", c.Move(S(1), "Archive")),
    (b'a1 UID MOVE 42 "Sent Items"', c.Move(S(42), "Sent Items", uid=True)),
    (b"a1 MOVE $ inbox", c.Move(SequenceSet((), saved=True), "INBOX")),
]


@pytest.mark.parametrize(("line", "expected"), STORE)
def test_store_copy_move(line, expected):
    assert parse(line) == expected


# --- SEARCH ---------------------------------------------------------------------------------------
def search(key: c.SearchKey, **kw: object) -> c.Search:
    return c.Search(key, **kw)  # type: ignore[arg-type]


D = datetime.date
SEARCH = [
    (b"a1 SEARCH ALL", search(c.All())),
    (b"a1 UID SEARCH ALL", search(c.All(), uid=True)),
    (b"a1 SEARCH SEEN", search(SEEN)),
    (b"a1 SEARCH unseen", search(c.FlagKey("\\Seen", False))),
    (
        b"a1 SEARCH ANSWERED DELETED DRAFT FLAGGED RECENT",
        search(
            c.And(
                tuple(
                    c.FlagKey(f)
                    for f in ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Recent")
                )
            )
        ),
    ),
    (
        b"a1 SEARCH UNANSWERED UNDELETED UNDRAFT UNFLAGGED",
        search(
            c.And(
                tuple(
                    c.FlagKey(f, False) for f in ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged")
                )
            )
        ),
    ),
    (b"a1 SEARCH NEW", search(c.And((c.FlagKey("\\Recent"), c.FlagKey("\\Seen", False))))),
    (b"a1 SEARCH OLD", search(c.Not(c.FlagKey("\\Recent")))),
    (b"a1 SEARCH KEYWORD $Junk", search(c.FlagKey("$Junk"))),
    (b"a1 SEARCH UNKEYWORD foo", search(c.FlagKey("foo", False))),
    (b"a1 SEARCH FROM Smith", search(c.HeaderKey("From", "Smith"))),
    (b'a1 SEARCH TO "John Doe"', search(c.HeaderKey("To", "John Doe"))),
    (b"a1 SEARCH CC a BCC b", search(c.And((c.HeaderKey("Cc", "a"), c.HeaderKey("Bcc", "b"))))),
    (b"a1 SEARCH SUBJECT {5}\r\nhello", search(c.HeaderKey("Subject", "hello"))),
    (b'a1 SEARCH HEADER X-Spam-Flag ""', search(c.HeaderKey("X-Spam-Flag", ""))),
    (b"a1 SEARCH BODY hello", search(c.TextKey("BODY", "hello"))),
    (b'a1 SEARCH TEXT "x y"', search(c.TextKey("TEXT", "x y"))),
    (b"a1 SEARCH BEFORE 1-Feb-1994", search(c.DateKey("INTERNALDATE", "BEFORE", D(1994, 2, 1)))),
    (b'a1 SEARCH ON "01-Feb-1994"', search(c.DateKey("INTERNALDATE", "ON", D(1994, 2, 1)))),
    (b"a1 SEARCH SINCE 1-Feb-1994", search(c.DateKey("INTERNALDATE", "SINCE", D(1994, 2, 1)))),
    (b"a1 SEARCH SENTBEFORE 1-Feb-1994", search(c.DateKey("SENTDATE", "BEFORE", D(1994, 2, 1)))),
    (b"a1 SEARCH SENTON 1-Feb-1994", search(c.DateKey("SENTDATE", "ON", D(1994, 2, 1)))),
    (b"a1 SEARCH SENTSINCE 1-Feb-1994", search(c.DateKey("SENTDATE", "SINCE", D(1994, 2, 1)))),
    (b"a1 SEARCH SAVEDSINCE 1-Feb-1994", search(c.DateKey("SAVEDATE", "SINCE", D(1994, 2, 1)))),
    (b"a1 SEARCH SAVEDATESUPPORTED", search(c.SaveDateSupported())),
    (
        b"a1 SEARCH LARGER 1000 SMALLER 5000",
        search(c.And((c.SizeKey("LARGER", 1000), c.SizeKey("SMALLER", 5000)))),
    ),
    (b"a1 SEARCH OLDER 3600", search(c.AgeKey("OLDER", 3600))),
    (b"a1 SEARCH YOUNGER 60", search(c.AgeKey("YOUNGER", 60))),
    (b"a1 SEARCH 1:5", search(c.SeqKey(S((1, 5))))),
    (
        b"a1 SEARCH 2,4:* UID 1:100",
        search(c.And((c.SeqKey(S(2, (4, STAR))), c.UidKey(S((1, 100)))))),
    ),
    (b"a1 SEARCH $", search(c.SeqKey(SequenceSet((), saved=True)))),
    (b"a1 SEARCH UID $", search(c.UidKey(SequenceSet((), saved=True)))),
    (b"a1 SEARCH NOT SEEN", search(c.Not(SEEN))),
    (b"a1 SEARCH OR SEEN FLAGGED", search(c.Or(SEEN, c.FlagKey("\\Flagged")))),
    (
        b"a1 SEARCH OR (SEEN FROM a) NOT (DELETED)",
        search(c.Or(c.And((SEEN, c.HeaderKey("From", "a"))), c.Not(c.FlagKey("\\Deleted")))),
    ),
    (
        b"a1 SEARCH OR OR SEEN DELETED DRAFT",
        search(c.Or(c.Or(SEEN, c.FlagKey("\\Deleted")), c.FlagKey("\\Draft"))),
    ),
    (b"a1 SEARCH ((SEEN))", search(SEEN)),
    (b"a1 SEARCH MODSEQ 620162338", search(c.ModSeqKey(620162338))),
    (
        b'a1 SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        search(c.ModSeqKey(620162338, "/flags/\\draft", "all")),
    ),
    (b"a1 SEARCH EMAILID M6d99ac3275bb4e", search(c.ObjectIdKey("EMAILID", "M6d99ac3275bb4e"))),
    (b"a1 SEARCH THREADID T64b478a75b7ea9", search(c.ObjectIdKey("THREADID", "T64b478a75b7ea9"))),
    (
        b'a1 SEARCH CHARSET UTF-8 SUBJECT "caf\xc3\xa9"',
        search(c.HeaderKey("Subject", "café"), charset="UTF-8"),
    ),
    (
        b"a1 SEARCH CHARSET utf-8 BODY {5}\r\ncaf\xc3\xa9",
        search(c.TextKey("BODY", "café"), charset="UTF-8"),
    ),
    (b"a1 SEARCH CHARSET US-ASCII ALL", search(c.All(), charset="US-ASCII")),
    (b"a1 SEARCH RETURN () ALL", search(c.All(), returns=c.SearchReturn(frozenset({"ALL"})))),
    (
        b"a1 SEARCH RETURN (MIN MAX COUNT) FLAGGED",
        search(c.FlagKey("\\Flagged"), returns=c.SearchReturn(frozenset({"MIN", "MAX", "COUNT"}))),
    ),
    (
        b"a1 UID SEARCH RETURN (SAVE ALL) CHARSET UTF-8 SEEN",
        search(SEEN, uid=True, charset="UTF-8", returns=c.SearchReturn(frozenset({"SAVE", "ALL"}))),
    ),
    (
        b"a1 SEARCH RETURN (PARTIAL 1:100) ALL",
        search(c.All(), returns=c.SearchReturn(frozenset(), (1, 100))),
    ),
    (
        b"a1 SEARCH RETURN (COUNT PARTIAL -1:-100) SEEN",
        search(SEEN, returns=c.SearchReturn(frozenset({"COUNT"}), (-1, -100))),
    ),
    (
        b"a1 SEARCH RETURN (PARTIAL 100:1) ALL",
        search(c.All(), returns=c.SearchReturn(frozenset(), (1, 100))),
    ),
    (
        b"a1 SEARCH RETURN (UPDATE ALL) SEEN",
        search(SEEN, returns=c.SearchReturn(frozenset({"UPDATE", "ALL"}))),
    ),
]


def test_cancelupdate():
    assert parse_command(b'a1 CANCELUPDATE "t1" "t 2"') == ("a1", c.CancelUpdate(("t1", "t 2")))


@pytest.mark.parametrize(("line", "expected"), SEARCH)
def test_search(line, expected):
    assert parse(line) == expected


# --- SORT and THREAD ------------------------------------------------------------------------------
SORT = [
    (
        b"a1 SORT (SUBJECT) UTF-8 ALL",
        c.Sort((c.SortKey("SUBJECT"),), "UTF-8", c.All()),
    ),
    (
        b"a1 UID SORT (REVERSE DATE from size) US-ASCII SINCE 1-Feb-1994 UNSEEN",
        c.Sort(
            (c.SortKey("DATE", True), c.SortKey("FROM"), c.SortKey("SIZE")),
            "US-ASCII",
            c.And((c.DateKey("INTERNALDATE", "SINCE", D(1994, 2, 1)), c.FlagKey("\\Seen", False))),
            uid=True,
        ),
    ),
    (
        b"a1 SORT (ARRIVAL CC TO DISPLAYFROM REVERSE DISPLAYTO) UTF-8 ALL",
        c.Sort(
            (
                c.SortKey("ARRIVAL"),
                c.SortKey("CC"),
                c.SortKey("TO"),
                c.SortKey("DISPLAYFROM"),
                c.SortKey("DISPLAYTO", True),
            ),
            "UTF-8",
            c.All(),
        ),
    ),
    (
        b"a1 SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL",
        c.Sort((c.SortKey("DATE"),), "UTF-8", c.All(), c.SearchReturn(frozenset({"MIN", "COUNT"}))),
    ),
    (
        b"a1 SORT RETURN (PARTIAL 1:10) (DATE) UTF-8 ALL",
        c.Sort((c.SortKey("DATE"),), "UTF-8", c.All(), c.SearchReturn(frozenset(), (1, 10))),
    ),
    (b"a1 THREAD ORDEREDSUBJECT UTF-8 ALL", c.Thread("ORDEREDSUBJECT", "UTF-8", c.All())),
    (b"a1 UID THREAD references US-ASCII SEEN", c.Thread("REFERENCES", "US-ASCII", SEEN, uid=True)),
]


@pytest.mark.parametrize(("line", "expected"), SORT)
def test_sort_thread(line, expected):
    assert parse(line) == expected


# --- UTF8=ACCEPT ----------------------------------------------------------------------------------
def test_utf8_mailbox_names():
    assert parse(b'a1 SELECT "Entw\xc3\xbcrfe"', utf8=True) == c.Select("Entwürfe")
    assert parse(b"a1 SELECT {9}\r\nEntw\xc3\xbcrfe", utf8=True) == c.Select("Entwürfe")
    assert parse(b"a1 SELECT a&b", utf8=True) == c.Select("a&b")  # no mUTF-7 decoding
    assert parse(b'a1 LIST "" "\xe6\x97\xa5*"', utf8=True) == c.List("", ("日*",))
    e = error(b'a1 SELECT "Entw\xc3\xbcrfe"')
    assert e.status == "NO" and "8-bit" in e.text
    assert error(b'a1 SELECT "\xff"', utf8=True).text == "SELECT: Invalid UTF-8 in quoted string"


# --- errors ---------------------------------------------------------------------------------------
ERRORS = [
    (b"", None, "Empty command"),
    (b"a1", None, "Invalid tag"),
    (b"+ NOOP", None, "Invalid tag"),
    (b"a{1 NOOP", None, "Invalid tag"),
    (b"a1 ", "a1", "Missing command name"),
    (b"a1 FOO", "a1", "Unknown command FOO"),
    (b"a1 NOOPX", "a1", "Unknown command NOOPX"),
    (b"a1 NOOP now", "a1", "NOOP takes no arguments"),
    (b"a1 LOGIN fred", "a1", "LOGIN: Missing arguments"),
    (b"a1 LOGIN fred secret extra", "a1", "LOGIN: Unexpected extra arguments at 'extra'"),
    (b"a1 LOGIN  fred secret", "a1", "LOGIN: Expected user name at ' fred secret'"),
    (b'a1 LOGIN "fred secret', "a1", "LOGIN: Invalid quoted string"),
    (b"a1 LOGIN {10}\r\nfred", "a1", "LOGIN: Literal is shorter than announced"),
    (b"a1 LOGIN {3}\r\na\x00b x", "a1", "LOGIN: NUL in literal (use literal8 with BINARY)"),
    (b"a1 SELECT", "a1", "SELECT: Missing arguments"),
    (b"a1 SELECT INBOX (FOO)", "a1", "SELECT: Unknown SELECT parameter FOO"),
    (b"a1 SELECT INBOX (QRESYNC (1 2 1:*))", "a1", "SELECT: '*' is not allowed in known UIDs"),
    (b"a1 CREATE foo (USE (Sent))", "a1", "CREATE: Expected special-use attribute at 'Sent))'"),
    (b"a1 STATUS INBOX ()", "a1", "STATUS: Expected status item at ')'"),
    (b"a1 STATUS INBOX (FOO)", "a1", "STATUS: Unknown status item FOO"),
    (b"a1 STATUS INBOX MESSAGES", "a1", "STATUS: Expected '(' (status items) at 'MESSAGES'"),
    (b'a1 LIST (FOO) "" %', "a1", "LIST: Unknown LIST selection option FOO"),
    (b'a1 LIST (RECURSIVEMATCH) "" %', "a1", "LIST: RECURSIVEMATCH needs another selection option"),
    (b'a1 LIST "" % RETURN (FOO)', "a1", "LIST: Unknown LIST return option FOO"),
    (b'a1 LIST "" % FOO ()', "a1", "LIST: Expected RETURN"),
    (b"a1 APPEND INBOX", "a1", "APPEND: Missing message literal"),
    (b'a1 APPEND INBOX "hello"', "a1", "APPEND: Invalid date-time at '\"hello\"'"),
    (b"a1 APPEND INBOX (\\Recent) {1}\r\na", "a1", "APPEND: \\Recent cannot be set by a client"),
    (b"a1 APPEND INBOX (\\*) {1}\r\na", "a1", "APPEND: \\* is only valid in PERMANENTFLAGS"),
    (b"a1 APPEND INBOX CATENATE (TEXT {1}\r\na)", "a1", "APPEND: CATENATE is not supported"),
    (b"a1 FETCH 1", "a1", "FETCH: Missing arguments"),
    (b"a1 FETCH 1 FOO", "a1", "FETCH: Unknown fetch item FOO"),
    (b"a1 FETCH 1 (FLAGS", "a1", "FETCH: Expected ')' after fetch items at end of command"),
    (b"a1 FETCH 1 BODY.PEEK", "a1", "FETCH: BODY.PEEK needs a section"),
    (b"a1 FETCH 1 BODY[MIME]", "a1", "FETCH: MIME section needs a part number"),
    (b"a1 FETCH 1 BODY[0]", "a1", "FETCH: Section part must not be 0"),
    (b"a1 FETCH 1 BODY[1.FOO]", "a1", "FETCH: Invalid section at 'FOO]'"),
    (b"a1 FETCH 1 BODY[HEADER.FIELDS]", "a1", "FETCH: Expected a space at ']'"),
    (b"a1 FETCH 1 BODY[]<0>", "a1", "FETCH: Expected '.' in partial at '>'"),
    (b"a1 FETCH 1 BODY[]<0.0>", "a1", "FETCH: Partial length must not be 0"),
    (b"a1 FETCH 1 BINARY[HEADER]", "a1", "FETCH: Expected ']' after binary section at 'HEADER]'"),
    (b"a1 FETCH 1 (FLAGS) (VANISHED)", "a1", "FETCH: VANISHED needs UID FETCH and CHANGEDSINCE"),
    (b"a1 FETCH 1 (FLAGS) (CHANGEDSINCE x)", "a1", "FETCH: Expected mod-sequence at 'x)'"),
    (b"a1 FETCH 0 FLAGS", "a1", "FETCH: Invalid number in sequence set (1..4294967295)"),
    (b"a1 FETCH 1 FLAGS ", "a1", "FETCH: Expected '(' (fetch modifiers) at end of command"),
    (
        b"a1 STORE 1 FLAGZ (\\Seen)",
        "a1",
        "STORE: Expected FLAGS, +FLAGS or -FLAGS at 'FLAGZ (\\\\Seen)'",
    ),
    (b"a1 STORE 1 +FLAGS (\\Seen", "a1", "STORE: Expected ')' after flags at end of command"),
    (b"a1 COPY 1", "a1", "COPY: Missing arguments"),
    (b"a1 UID FOO 1", "a1", "Unknown UID command FOO"),
    (b"a1 UID", "a1", "Missing arguments"),
    (b"a1 SEARCH", "a1", "SEARCH: Missing arguments"),
    (b"a1 SEARCH FOO", "a1", "SEARCH: Unknown search key FOO"),
    (b"a1 SEARCH FROM", "a1", "SEARCH: Missing arguments"),
    (b"a1 SEARCH (SEEN", "a1", "SEARCH: Expected ')' after search keys at end of command"),
    (b"a1 SEARCH OR SEEN", "a1", "SEARCH: Missing arguments"),
    (b"a1 SEARCH SINCE yesterday", "a1", "SEARCH: Invalid date at 'yesterday'"),
    (
        b'a1 SEARCH MODSEQ "/flags/x" any 1',
        "a1",
        "SEARCH: Invalid MODSEQ entry type (priv, shared or all)",
    ),
    (b"a1 SEARCH RETURN (FOO) ALL", "a1", "SEARCH: Unknown SEARCH return option FOO"),
    (b"a1 SEARCH RETURN (PARTIAL 1:-5) ALL", "a1", "SEARCH: Invalid PARTIAL range"),
    (b"a1 SEARCH RETURN (PARTIAL 0:5) ALL", "a1", "SEARCH: Invalid PARTIAL range"),
    (b"a1 SEARCH RETURN (ALL PARTIAL 1:5) ALL", "a1", "SEARCH: PARTIAL and ALL cannot be combined"),
    (
        b"a1 SEARCH RETURN (UPDATE PARTIAL 1:5) ALL",
        "a1",
        "SEARCH: PARTIAL and UPDATE cannot be combined",
    ),
    (b"a1 CANCELUPDATE", "a1", "CANCELUPDATE: Missing arguments"),
    (b"a1 CANCELUPDATE a2", "a1", "CANCELUPDATE: Expected a string at 'a2'"),
    (b'a1 SEARCH CHARSET UTF-8 FROM "\xff"', "a1", "SEARCH: Invalid UTF-8 in quoted string"),
    (
        b"a1 SEARCH CHARSET US-ASCII FROM {1}\r\n\xe9",
        "a1",
        "SEARCH: Search string is not valid ascii",
    ),
    (b"a1 SORT (FOO) UTF-8 ALL", "a1", "SORT: Unknown sort key FOO"),
    (b"a1 SORT (DATE)", "a1", "SORT: Missing arguments"),
    (b"a1 SORT DATE UTF-8 ALL", "a1", "SORT: Expected '(' (sort criteria) at 'DATE UTF-8 ALL'"),
    (b"a1 THREAD REFERENCES UTF-8", "a1", "THREAD: Missing arguments"),
    (b"a1 ENABLE", "a1", "ENABLE: Missing arguments"),
    (b"a1 AUTHENTICATE PLAIN ab!c", "a1", "AUTHENTICATE: Invalid base64 initial response"),
    (b'a1 ID ("name")', "a1", "ID: Expected a space at ')'"),
    (b"a1 SETQUOTA root (STORAGE)", "a1", "SETQUOTA: Expected a space at ')'"),
    (b'a1 LOGIN "a\rb" c', "a1", "LOGIN: Invalid quoted string"),
]


@pytest.mark.parametrize(("line", "tag", "text"), ERRORS)
def test_errors(line, tag, text):
    e = error(line)
    assert (e.tag, e.text, e.status) == (tag, text, "BAD")


def test_bad_mailbox_name_is_a_no():
    e = error(b"a1 SELECT &Jjo")
    assert (e.tag, e.status, e.code) == ("a1", "NO", b"[CANNOT]")
    assert (
        e.text
        == "SELECT: Mailbox name is not valid modified UTF-7: unterminated modified BASE64 shift"
    )
    assert error(b"a1 CREATE &AGE-").status == "NO"  # printable ASCII in BASE64: not canonical
    assert parse(b'a1 LIST "" &Jjo*') == c.List("", ("&Jjo*",))  # a pattern matching nothing


def test_badcharset_is_a_no():
    e = error(b"a1 SEARCH CHARSET KOI8-R FROM x")
    assert (e.tag, e.status, e.code) == ("a1", "NO", b"[BADCHARSET (US-ASCII UTF-8)]")
    assert error(b"a1 SORT (DATE) ISO-8859-1 ALL").status == "NO"


def test_search_nesting_is_bounded():
    deep = b"a1 SEARCH " + b"(" * (MAX_NESTING + 1) + b"SEEN" + b")" * (MAX_NESTING + 1)
    assert error(deep).text == "SEARCH: Search keys nested too deeply"
    assert (
        error(b"a1 SEARCH " + b"NOT " * 10000 + b"SEEN").text
        == "SEARCH: Search keys nested too deeply"
    )
    assert (
        error(b"a1 SEARCH " + b"OR " * 10000 + b"SEEN").text
        == "SEARCH: Search keys nested too deeply"
    )
    ok = b"a1 SEARCH " + b"(" * MAX_NESTING + b"SEEN" + b")" * MAX_NESTING
    assert parse(ok) == search(SEEN)


def test_numbers_are_bounded():
    assert error(b"a1 FETCH 4294967296 FLAGS").text.startswith("FETCH: Invalid number")
    assert error(b"a1 SEARCH LARGER 99999999999999999999").text == "SEARCH: Size too large"
    assert parse(b"a1 SEARCH LARGER 9223372036854775807") == search(c.SizeKey("LARGER", 2**63 - 1))


def test_login_repr_hides_password():
    assert "secret" not in repr(parse(b"a1 LOGIN fred secret"))
