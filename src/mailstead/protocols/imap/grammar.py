"""The IMAP command grammar: one complete command (wire form) → a typed `commands.Command`.

Follows the ABNF of RFC 9051 §9 (IMAP4rev2), accepting what RFC 3501 (IMAP4rev1) clients send where
the two differ, plus the extensions in `commands`. Input is the command as the receiver assembled
it: ``tag SP name [SP args]`` without the final CRLF, literals as ``{n}\\r\\n`` (or ``{n+}``,
``~{n}``) followed by their n octets, or, when the receiver kept them apart, by nothing: their
octets are then ``literals[offset after the CRLF]``, used as they are (no copy). A malformed
command raises `ParseError`, whose ``text`` the core sends as ``tag BAD text`` (``* BAD`` when no
valid tag was found).

Strictness: one SP between tokens and nothing after the last argument, as the ABNF says; keywords,
command names and item names are case-insensitive; 8-bit octets in quoted strings must be UTF-8
(RFC 9051 §4.3); mailbox names must be canonical modified UTF-7 (RFC 3501 §5.1.3) unless UTF-8
names are enabled (RFC 6855 §3). Nesting (SEARCH parentheses, NOT, OR) is bounded by
`MAX_NESTING` so no input can exhaust the stack.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Final, Literal, NoReturn, cast, get_args

from . import commands as c
from . import mutf7
from .commands import STAR, SequenceSet

__all__ = [
    "COMMAND_NAMES",
    "MAX_NESTING",
    "ParseError",
    "parse_command",
    "parse_date",
    "parse_date_time",
    "parse_sequence_set",
    "split_tag",
]

MAX_NESTING: Final = 64  # SEARCH parentheses/NOT/OR depth; deeper is refused, not recursed into
_MAX_NUMBER: Final = 0xFFFFFFFF  # RFC 9051 §9: number is 32-bit unsigned
_MAX_NUMBER64: Final = 0x7FFFFFFFFFFFFFFF  # number64 (modseq, sizes): 63-bit


class ParseError(ValueError):
    """A malformed command. ``status`` is BAD, or NO for a valid but refused request
    (``[BADCHARSET]``); ``code`` is a formatted response code or None."""

    def __init__(
        self,
        text: str,
        *,
        tag: str | None = None,
        status: Literal["BAD", "NO"] = "BAD",
        code: bytes | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.tag = tag
        self.status = status
        self.code = code


# --- lexical classes ------------------------------------------------------------------------------
# ATOM-CHAR = any CHAR except atom-specials: ( ) { SP CTL % * DQUOTE \ ]
_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\]\x80-\xff]+")
_ASTRING_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\x80-\xff]+")  # + resp-specials "]"
_LIST_ATOM: Final = re.compile(rb"[^\x00-\x20\x7f(){\"\\\x80-\xff]+")  # + list-wildcards % *
_TAG: Final = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\+\x80-\xff]+")
_QUOTED: Final = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_LITERAL: Final = re.compile(rb"\{([0-9]{1,20})(\+?)\}\r\n")
_LITERAL8: Final = re.compile(rb"~\{([0-9]{1,20})(\+?)\}\r\n")
_NUMBER: Final = re.compile(rb"[0-9]+")
_SEQ_SET: Final = re.compile(
    rb"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*"
)
_FETCH_NAME: Final = re.compile(rb"[A-Za-z0-9.\-]+")
_BASE64: Final = re.compile(rb"=|(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SECTION_TEXT: Final = re.compile(rb"(?i)HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME")
_DATE: Final = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME: Final = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS: Final = {
    m.encode(): i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_SYSTEM_FLAGS: Final = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
_SPECIAL_USE: Final = {
    f.upper(): f
    for f in [
        r"\All",
        r"\Archive",
        r"\Drafts",
        r"\Flagged",
        r"\Junk",
        r"\Sent",
        r"\Trash",
        r"\Important",
    ]
}
_STATUS_ITEMS: Final = frozenset(
    {
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID",
    }
)  # fmt: skip
_CHARSETS: Final = {"UTF-8": "utf-8", "US-ASCII": "ascii", "UTF8": "utf-8"}
_BADCHARSET: Final = b"[BADCHARSET (US-ASCII UTF-8)]"


def _err(text: str) -> NoReturn:
    raise ParseError(text)


def split_tag(data: bytes) -> tuple[str | None, str | None]:
    """The tag and the upper-cased command name at the start of ``data`` (None where invalid).

    Used by the receiver to answer a literal before the command is complete.
    """
    m = _TAG.match(data)
    if m is None or data[m.end() : m.end() + 1] != b" ":
        return None, None
    tag = m.group().decode("ascii")
    n = _ATOM.match(data, m.end() + 1)
    if n is None:
        return tag, None
    name = n.group().decode("ascii").upper()
    if name == "UID":
        u = _ATOM.match(data, n.end() + 1) if data[n.end() : n.end() + 1] == b" " else None
        if u is not None:
            name = "UID " + u.group().decode("ascii").upper()
    return tag, name


# --- the parser -----------------------------------------------------------------------------------
class _Parser:
    __slots__ = ("data", "depth", "end", "literals", "pos", "utf8")

    def __init__(
        self, data: bytes, pos: int, utf8: bool, literals: Mapping[int, bytes] | None = None
    ) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.utf8 = utf8
        self.depth = 0
        self.literals = literals or {}

    # basic tokens ---------------------------------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= self.end

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < self.end else -1

    def sp(self) -> None:
        if self.pos < self.end and self.data[self.pos] == 0x20:
            self.pos += 1
            return
        if self.pos >= self.end:
            _err("Missing arguments")
        _err(f"Expected a space at {self._where()}")

    def maybe_sp(self) -> bool:
        if self.pos < self.end and self.data[self.pos] == 0x20:
            self.pos += 1
            return True
        return False

    def char(self, ch: int, what: str) -> None:
        if self.pos < self.end and self.data[self.pos] == ch:
            self.pos += 1
            return
        _err(f"Expected {what} at {self._where()}")

    def done(self) -> None:
        if self.pos < self.end:
            if self.data[self.pos] == 0x20 and self.pos + 1 < self.end:
                self.pos += 1
            _err(f"Unexpected extra arguments at {self._where()}")

    def _where(self) -> str:
        if self.pos >= self.end:
            return "end of command"
        snippet = self.data[self.pos : self.pos + 20].split(b"\r", 1)[0]
        return repr(snippet.decode("ascii", "replace"))[1:-1].join("''") if snippet else "''"

    def atom(self, what: str = "atom") -> str:
        m = _ATOM.match(self.data, self.pos)
        if m is None:
            _err(f"Expected {what} at {self._where()}")
        self.pos = m.end()
        return m.group().decode("ascii")

    def keyword(self, what: str) -> str:
        return self.atom(what).upper()

    def number(self, what: str = "number", *, nz: bool = False, big: bool = False) -> int:
        m = _NUMBER.match(self.data, self.pos)
        if m is None:
            _err(f"Expected {what} at {self._where()}")
        self.pos = m.end()
        n = int(m.group())
        if n > (_MAX_NUMBER64 if big else _MAX_NUMBER):
            _err(f"{what.capitalize()} too large")
        if nz and n == 0:
            _err(f"{what.capitalize()} must not be 0")
        return n

    def quoted(self) -> bytes:
        m = _QUOTED.match(self.data, self.pos)
        if m is None:
            _err("Invalid quoted string")
        self.pos = m.end()
        raw = m.group(1)
        if b"\\" in raw:
            raw = re.sub(rb"\\(.)", rb"\1", raw)
        if not raw.isascii():
            try:  # RFC 9051 §4.3: 8-bit quoted text is UTF-8
                raw.decode("utf-8")
            except UnicodeDecodeError:
                _err("Invalid UTF-8 in quoted string")
        return raw

    def literal(self, binary: bool = False) -> bytes:
        m = (_LITERAL8 if binary else _LITERAL).match(self.data, self.pos)
        if m is None:
            _err(f"Invalid literal at {self._where()}")
        n = int(m.group(1))
        start = m.end()
        kept = self.literals.get(start)
        if kept is not None:  # its octets are not in data
            if len(kept) != n:
                _err("Literal is shorter than announced")
            self.pos = start
            raw = kept
        else:
            if start + n > self.end:
                _err("Literal is shorter than announced")
            self.pos = start + n
            raw = self.data[start : self.pos]
        if not binary and b"\x00" in raw:
            _err("NUL in literal (use literal8 with BINARY)")  # RFC 9051 §4.3
        return raw

    def string(self) -> bytes:
        ch = self.peek()
        if ch == 0x22:
            return self.quoted()
        if ch == 0x7B:
            return self.literal()
        _err(f"Expected a string at {self._where()}")

    def astring(self, what: str = "string") -> bytes:
        ch = self.peek()
        if ch == 0x22:
            return self.quoted()
        if ch == 0x7B:
            return self.literal()
        m = _ASTRING_ATOM.match(self.data, self.pos)
        if m is None:
            _err(f"Expected {what} at {self._where()}")
        self.pos = m.end()
        return m.group()

    def nstring(self) -> bytes | None:
        if self.data[self.pos : self.pos + 3].upper() == b"NIL" and not _is_atom_char(
            self.data, self.pos + 3
        ):
            self.pos += 3
            return None
        return self.string()

    def text(self, raw: bytes) -> str:
        return raw.decode("utf-8", "surrogateescape")

    # mailbox names --------------------------------------------------------------------------------
    def _name(self, raw: bytes, *, pattern: bool = False) -> str:
        """A mailbox name (or pattern) as Unicode. A badly encoded name is a valid string naming
        no mailbox: NO, not BAD (as Dovecot). A badly encoded pattern is kept as it is (matching
        nothing a client could have created) so LIST answers OK with nothing."""
        if self.utf8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ParseError("Mailbox name is not valid UTF-8", status="NO") from None
        try:
            return mutf7.decode(raw)
        except mutf7.MUTF7Error as e:
            if not raw.isascii():
                text = "Mailbox name has 8-bit characters (use modified UTF-7 or UTF8=ACCEPT)"
            elif pattern:
                return raw.decode("ascii")
            else:
                text = f"Mailbox name is not valid modified UTF-7: {e}"
            raise ParseError(text, status="NO", code=b"[CANNOT]") from None

    def mailbox(self) -> str:
        raw = self.astring("mailbox name")
        if len(raw) == 5 and raw.upper() == b"INBOX":
            return "INBOX"
        name = self._name(raw)
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
            _err("Control character in mailbox name")
        return name

    def list_mailbox(self) -> str:
        ch = self.peek()
        if ch == 0x22 or ch == 0x7B:
            raw = self.string()
        else:
            m = _LIST_ATOM.match(self.data, self.pos)
            if m is None:
                _err(f"Expected a mailbox pattern at {self._where()}")
            self.pos = m.end()
            raw = m.group()
        return self._name(raw, pattern=True)

    # composite values -----------------------------------------------------------------------------
    def sequence_set(self, *, allow_saved: bool = True) -> SequenceSet:
        data = self.data
        pos = self.pos
        if pos < self.end and data[pos] == 0x24:  # "$" (RFC 5182)
            if not allow_saved:
                _err("'$' is not allowed here")
            self.pos = pos + 1
            return _SAVED
        m = _SEQ_SET.match(data, pos)
        if m is None:
            _err(f"Invalid sequence set at {self._where()}")
        self.pos = m.end()
        return _sequence_set(m.group())

    def date(self) -> datetime.date:
        quoted = self.peek() == 0x22
        if quoted:
            self.pos += 1
        m = _DATE.match(self.data, self.pos)
        if m is None:
            _err(f"Invalid date at {self._where()}")
        self.pos = m.end()
        if quoted:
            self.char(0x22, "'\"' after date")
        month = _MONTHS.get(m.group(2).upper())
        if month is None:
            _err("Invalid month in date")
        try:
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            _err("Invalid date")

    def date_time(self) -> datetime.datetime:
        m = _DATE_TIME.match(self.data, self.pos)
        if m is None:
            _err(f"Invalid date-time at {self._where()}")
        self.pos = m.end()
        return _date_time(m)

    def flag(self, *, allow_recent: bool = False) -> str:
        if self.peek() == 0x5C:  # "\"
            self.pos += 1
            if self.peek() == 0x2A:
                _err("\\* is only valid in PERMANENTFLAGS")
            name = "\\" + self.atom("flag")
            known = _SYSTEM_FLAGS.get(name.upper())
            if known == "\\Recent" and not allow_recent:
                _err("\\Recent cannot be set by a client")  # RFC 3501 §2.3.2
            return known or name
        return self.atom("flag")

    def flag_list(self) -> tuple[str, ...]:
        self.char(0x28, "'(' (flag list)")
        flags: list[str] = []
        if self.peek() != 0x29:
            flags.append(self.flag())
            while self.maybe_sp():
                flags.append(self.flag())
        self.char(0x29, "')' after flags")
        return tuple(dict.fromkeys(flags))

    def paren_list(self, item: Callable[[], object], what: str) -> None:
        """``"(" item *(SP item) ")"``, calling ``item`` for each (which records it)."""
        self.char(0x28, f"'(' ({what})")
        item()
        while self.maybe_sp():
            item()
        self.char(0x29, f"')' after {what}")


def _is_atom_char(data: bytes, pos: int) -> bool:
    return pos < len(data) and _ATOM.match(data, pos, pos + 1) is not None


_SAVED: Final = SequenceSet((), saved=True)
_SEQ_CACHE: dict[bytes, SequenceSet] = {}


def _seq_number(tok: bytes) -> int:
    if tok == b"*":
        return STAR
    n = int(tok)
    if n == 0 or n > _MAX_NUMBER:
        _err("Invalid number in sequence set (1..4294967295)")
    return n


def _sequence_set(raw: bytes) -> SequenceSet:
    cached = _SEQ_CACHE.get(raw)
    if cached is not None:
        return cached
    ranges: list[tuple[int, int]] = []
    for part in raw.split(b","):
        a, colon, b = part.partition(b":")
        first = _seq_number(a)
        ranges.append((first, _seq_number(b) if colon else first))
    result = SequenceSet(tuple(ranges))
    if len(raw) <= 16:
        if len(_SEQ_CACHE) > 4096:
            _SEQ_CACHE.clear()
        _SEQ_CACHE[raw] = result
    return result


def _date_time(m: re.Match[bytes]) -> datetime.datetime:
    month = _MONTHS.get(m.group(2).upper())
    if month is None:
        _err("Invalid month in date-time")
    hh, mm = int(m.group(8)), int(m.group(9))
    if mm > 59:
        _err("Invalid time zone in date-time")
    offset = datetime.timedelta(hours=hh, minutes=mm)
    if m.group(7) == b"-":
        offset = -offset
    try:
        tz = datetime.timezone(offset)
        return datetime.datetime(
            int(m.group(3)), month, int(m.group(1).strip()),
            int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        _err("Invalid date-time")


def parse_sequence_set(text: str | bytes) -> SequenceSet:
    """Parse a whole sequence set (``1:5,7,*``, or ``$``); raises `ParseError`."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    p = _Parser(raw, 0, False)
    result = p.sequence_set()
    p.done()
    return result


def parse_date(text: str | bytes) -> datetime.date:
    """Parse an IMAP ``date`` (``1-Feb-2024``, optionally quoted)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    p = _Parser(raw, 0, False)
    result = p.date()
    p.done()
    return result


def parse_date_time(text: str | bytes) -> datetime.datetime:
    """Parse an IMAP ``date-time`` (``"01-Feb-2024 10:00:00 +0100"``, with the quotes)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    p = _Parser(raw, 0, False)
    result = p.date_time()
    p.done()
    return result


# --- commands without arguments -------------------------------------------------------------------
_NO_ARGS: Final[dict[str, c.Command]] = {
    "CAPABILITY": c.Capability(),
    "NOOP": c.Noop(),
    "LOGOUT": c.Logout(),
    "STARTTLS": c.StartTLS(),
    "NAMESPACE": c.Namespace(),
    "IDLE": c.Idle(),
    "CHECK": c.Check(),
    "CLOSE": c.Close(),
    "UNSELECT": c.Unselect(),
    "EXPUNGE": c.Expunge(),
}


# --- authentication and session -------------------------------------------------------------------
def _authenticate(p: _Parser) -> c.Command:
    p.sp()
    mech = p.keyword("SASL mechanism")
    initial: str | None = None
    if p.maybe_sp():  # RFC 4959 SASL-IR
        m = _BASE64.match(p.data, p.pos)
        if m is None or not m.group():
            _err("Invalid base64 initial response")
        p.pos = m.end()
        initial = m.group().decode("ascii")
    p.done()
    return c.Authenticate(mech, initial)


def _login(p: _Parser) -> c.Command:
    p.sp()
    # octets that are not UTF-8 become U+FFFD: the login then fails like any other
    user = p.astring("user name").decode("utf-8", "replace")
    p.sp()
    password = p.astring("password").decode("utf-8", "replace")
    p.done()
    return c.Login(user, password)


def _enable(p: _Parser) -> c.Command:
    caps: list[str] = []
    p.sp()
    caps.append(p.keyword("capability"))
    while p.maybe_sp():
        caps.append(p.keyword("capability"))
    p.done()
    return c.Enable(tuple(dict.fromkeys(caps)))


def _id(p: _Parser) -> c.Command:
    p.sp()
    if p.peek() != 0x28:
        if p.atom("ID parameter list or NIL").upper() != "NIL":
            _err("Expected ID parameter list or NIL")
        p.done()
        return c.Id(None)
    p.pos += 1
    fields: list[tuple[str, str | None]] = []
    if p.peek() != 0x29:
        while True:
            key = p.text(p.string())
            p.sp()
            value = p.nstring()
            fields.append((key, None if value is None else p.text(value)))
            if not p.maybe_sp():
                break
    p.char(0x29, "')' after ID parameters")
    p.done()
    return c.Id(tuple(fields))


def _compress(p: _Parser) -> c.Command:
    p.sp()
    mech = p.keyword("compression mechanism")
    p.done()
    return c.Compress(mech)


# --- mailboxes ------------------------------------------------------------------------------------
def _select_params(p: _Parser) -> tuple[bool, c.QResync | None]:
    condstore = False
    qresync: c.QResync | None = None

    def param() -> None:
        nonlocal condstore, qresync
        name = p.keyword("select parameter")
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            p.sp()
            p.char(0x28, "'(' after QRESYNC")
            uidvalidity = p.number("UIDVALIDITY", nz=True)
            p.sp()
            modseq = p.number("mod-sequence", nz=True, big=True)
            known: SequenceSet | None = None
            match: tuple[SequenceSet, SequenceSet] | None = None
            if p.maybe_sp():
                if p.peek() != 0x28:
                    known = _no_star(p.sequence_set(allow_saved=False), "known UIDs")
                    p.maybe_sp()
                if p.peek() == 0x28:
                    p.pos += 1
                    seqs = p.sequence_set(allow_saved=False)
                    p.sp()
                    uids = p.sequence_set(allow_saved=False)
                    p.char(0x29, "')' after sequence match data")
                    match = (_no_star(seqs, "sequence match"), _no_star(uids, "sequence match"))
            p.char(0x29, "')' after QRESYNC parameters")
            qresync = c.QResync(uidvalidity, modseq, known, match)
        else:
            _err(f"Unknown SELECT parameter {name}")

    p.paren_list(param, "select parameters")
    return condstore, qresync


def _no_star(seq: SequenceSet, what: str) -> SequenceSet:
    if any(STAR in r for r in seq.ranges):
        _err(f"'*' is not allowed in {what}")  # RFC 7162 §3.2.5
    return seq


def _select(p: _Parser, examine: bool) -> c.Command:
    p.sp()
    name = p.mailbox()
    condstore, qresync = False, None
    if p.maybe_sp():
        condstore, qresync = _select_params(p)
    p.done()
    if examine:
        return c.Examine(name, condstore, qresync)
    return c.Select(name, condstore, qresync)


def _create(p: _Parser) -> c.Command:
    p.sp()
    name = p.mailbox()
    uses: list[str] = []
    if p.maybe_sp():

        def param() -> None:
            if p.keyword("CREATE parameter") != "USE":
                _err("Unknown CREATE parameter")
            p.sp()
            p.char(0x28, "'(' after USE")
            if p.peek() != 0x29:
                while True:
                    p.char(0x5C, "special-use attribute")
                    attr = "\\" + p.atom("special-use attribute")
                    uses.append(_SPECIAL_USE.get(attr.upper(), attr))
                    if not p.maybe_sp():
                        break
            p.char(0x29, "')' after USE attributes")

        p.paren_list(param, "CREATE parameters")
    p.done()
    return c.Create(name, tuple(dict.fromkeys(uses)))


def _one_mailbox(cls: Callable[[str], c.Command]) -> Callable[[_Parser], c.Command]:
    def parse(p: _Parser) -> c.Command:
        p.sp()
        name = p.mailbox()
        p.done()
        return cls(name)

    return parse


def _rename(p: _Parser) -> c.Command:
    p.sp()
    old = p.mailbox()
    p.sp()
    new = p.mailbox()
    p.done()
    return c.Rename(old, new)


_LIST_SELECT: Final = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_LIST_RETURN: Final = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS"})


def _status_items(p: _Parser) -> tuple[str, ...]:
    items: list[str] = []

    def item() -> None:
        name = p.keyword("status item")
        if name not in _STATUS_ITEMS:
            _err(f"Unknown status item {name}")
        items.append(name)

    p.paren_list(item, "status items")
    return tuple(dict.fromkeys(items))


def _list(p: _Parser) -> c.Command:
    p.sp()
    selection: set[str] = set()
    extended = False
    if p.peek() == 0x28:  # list-select-opts (RFC 5258 §3)
        extended = True
        p.pos += 1
        if p.peek() != 0x29:
            while True:
                opt = p.keyword("selection option")
                if opt not in _LIST_SELECT:
                    _err(f"Unknown LIST selection option {opt}")  # RFC 5258 §3.1: BAD
                selection.add(opt)
                if not p.maybe_sp():
                    break
        p.char(0x29, "')' after selection options")
        p.sp()
    if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
        _err("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
    reference = p.list_mailbox()
    p.sp()
    patterns: list[str] = []
    if p.peek() == 0x28:
        extended = True
        p.paren_list(lambda: patterns.append(p.list_mailbox()), "mailbox patterns")
    else:
        patterns.append(p.list_mailbox())
    returns: set[str] = set()
    status_items: tuple[str, ...] | None = None
    if p.maybe_sp():
        if p.keyword("RETURN") != "RETURN":
            _err("Expected RETURN")
        extended = True
        p.sp()
        p.char(0x28, "'(' after RETURN")
        if p.peek() != 0x29:
            while True:
                opt = p.keyword("return option")
                if opt not in _LIST_RETURN:
                    _err(f"Unknown LIST return option {opt}")
                returns.add(opt)
                if opt == "STATUS":  # RFC 5819
                    p.sp()
                    status_items = _status_items(p)
                if not p.maybe_sp():
                    break
        p.char(0x29, "')' after return options")
    p.done()
    return c.List(
        reference, tuple(patterns), frozenset(selection), frozenset(returns), status_items, extended
    )


def _lsub(p: _Parser) -> c.Command:
    p.sp()
    reference = p.list_mailbox()
    p.sp()
    pattern = p.list_mailbox()
    p.done()
    return c.Lsub(reference, pattern)


def _status(p: _Parser) -> c.Command:
    p.sp()
    name = p.mailbox()
    p.sp()
    items = _status_items(p)
    p.done()
    return c.Status(name, items)


def _append(p: _Parser) -> c.Command:
    p.sp()
    name = p.mailbox()
    messages: list[c.AppendMessage] = []
    while p.maybe_sp():
        flags: tuple[str, ...] = ()
        when: datetime.datetime | None = None
        if p.peek() == 0x28:
            flags = p.flag_list()
            p.sp()
        if p.peek() == 0x22:
            when = p.date_time()
            p.sp()
        ch = p.peek()
        if ch == 0x7B:
            messages.append(c.AppendMessage(p.literal(), flags, when))
        elif ch == 0x7E:
            messages.append(c.AppendMessage(p.literal(binary=True), flags, when, binary=True))
        else:
            word = p.keyword("message literal")
            if word == "UTF8":  # RFC 6855 §4: UTF8 (literal8)
                p.sp()
                p.char(0x28, "'(' after UTF8")
                data = p.literal(binary=True)
                p.char(0x29, "')' after UTF8 literal")
                messages.append(c.AppendMessage(data, flags, when, binary=True, utf8=True))
            elif word == "CATENATE":
                _err("CATENATE is not supported")
            else:
                _err(f"Expected a message literal, not {word}")
    if not messages:
        _err("Missing message literal")
    p.done()
    return c.Append(name, tuple(messages))


# --- selected state -------------------------------------------------------------------------------
_FETCH_SIMPLE: Final[dict[bytes, c.FetchAtt]] = {
    name.encode(): c.FetchAtt(name) for name in get_args(c.FetchAttName)
}
_F = _FETCH_SIMPLE
_MACROS: Final[dict[bytes, tuple[c.FetchItem, ...]]] = {
    b"ALL": (_F[b"FLAGS"], _F[b"INTERNALDATE"], _F[b"RFC822.SIZE"], _F[b"ENVELOPE"]),
    b"FAST": (_F[b"FLAGS"], _F[b"INTERNALDATE"], _F[b"RFC822.SIZE"]),
    b"FULL": (_F[b"FLAGS"], _F[b"INTERNALDATE"], _F[b"RFC822.SIZE"], _F[b"ENVELOPE"], _F[b"BODY"]),
}
_SECTION_KINDS: Final[dict[bytes, tuple[bool, bool]]] = {  # name → (peek, binary)
    b"BODY": (False, False),
    b"BODY.PEEK": (True, False),
    b"BINARY": (False, True),
    b"BINARY.PEEK": (True, True),
}


def _section_part(p: _Parser) -> tuple[int, ...]:
    parts: list[int] = []
    while 0x30 <= p.peek() <= 0x39:
        parts.append(p.number("section part", nz=True))
        if p.peek() != 0x2E:
            break
        nxt = p.data[p.pos + 1 : p.pos + 2]
        if not nxt.isdigit():
            break  # "." before HEADER/TEXT/MIME; the caller consumes it
        p.pos += 1
    return tuple(parts)


def _section(p: _Parser) -> c.Section:
    p.char(0x5B, "'['")
    part = _section_part(p)
    text: c.SectionText | None = None
    fields: tuple[str, ...] = ()
    quoted: list[bool] = []
    if p.peek() != 0x5D:
        if part:
            p.char(0x2E, "'.' after section part")
        m = _SECTION_TEXT.match(p.data, p.pos)
        if m is None:
            _err(f"Invalid section at {p._where()}")
        p.pos = m.end()
        text = cast(c.SectionText, m.group().decode("ascii").upper())
        if text == "MIME" and not part:
            _err("MIME section needs a part number")  # RFC 9051 §6.4.5
        if text.startswith("HEADER.FIELDS"):
            p.sp()
            names: list[str] = []

            def field_name() -> None:
                quoted.append(p.peek() in (0x22, 0x7B))  # echoed back as the client wrote it
                names.append(p.text(p.astring("field name")))

            p.paren_list(field_name, "header list")
            fields = tuple(names)
    p.char(0x5D, "']' after section")
    return c.Section(part, text, fields, tuple(quoted))


def _partial(p: _Parser) -> tuple[int, int] | None:
    if p.peek() != 0x3C:
        return None
    p.pos += 1
    origin = p.number("partial origin")
    p.char(0x2E, "'.' in partial")
    count = p.number("partial length", nz=True)
    p.char(0x3E, "'>' after partial")
    return origin, count


def _fetch_att(p: _Parser) -> c.FetchItem:
    m = _FETCH_NAME.match(p.data, p.pos)
    if m is None:
        _err(f"Expected a fetch item at {p._where()}")
    p.pos = m.end()
    name = m.group().upper()
    bracket = p.peek() == 0x5B
    if not bracket:
        simple = _FETCH_SIMPLE.get(name)
        if simple is not None:
            return simple
    kind = _SECTION_KINDS.get(name)
    if kind is not None:
        if not bracket:
            _err(f"{name.decode()} needs a section")
        peek, binary = kind
        if binary:
            p.pos += 1
            section = c.Section(_section_part(p))
            p.char(0x5D, "']' after binary section")
        else:
            section = _section(p)
        return c.BodySection(section, peek, _partial(p), binary)
    if name == b"BINARY.SIZE" and bracket:
        p.pos += 1
        part = _section_part(p)
        p.char(0x5D, "']' after binary section")
        return c.BinarySize(part)
    _err(f"Unknown fetch item {name.decode('ascii', 'replace')}")


def _fetch(p: _Parser, uid: bool) -> c.Command:
    p.sp()
    seq = p.sequence_set()
    p.sp()
    items: list[c.FetchItem] = []
    macro: Literal["ALL", "FAST", "FULL"] | None = None
    if p.peek() == 0x28:
        p.pos += 1
        items.append(_fetch_att(p))
        while p.maybe_sp():
            items.append(_fetch_att(p))
        p.char(0x29, "')' after fetch items")
    else:
        start = p.pos
        m = _FETCH_NAME.match(p.data, p.pos)
        expanded = _MACROS.get(m.group().upper()) if m is not None else None
        if m is not None and expanded is not None and not _is_bracket(p.data, m.end()):
            p.pos = m.end()
            items.extend(expanded)
            macro = cast(Literal["ALL", "FAST", "FULL"], m.group().upper().decode())
        else:
            p.pos = start
            items.append(_fetch_att(p))
    changedsince: int | None = None
    vanished = False
    if p.maybe_sp():  # fetch-modifiers (RFC 7162 §3.1.4.1, §3.2.6)

        def modifier() -> None:
            nonlocal changedsince, vanished
            name = p.keyword("fetch modifier")
            if name == "CHANGEDSINCE":
                p.sp()
                changedsince = p.number("mod-sequence", big=True)
            elif name == "VANISHED":
                vanished = True
            else:
                _err(f"Unknown FETCH modifier {name}")

        p.paren_list(modifier, "fetch modifiers")
        if vanished and (not uid or changedsince is None):
            _err("VANISHED needs UID FETCH and CHANGEDSINCE")  # RFC 7162 §3.2.6
    p.done()
    return c.Fetch(seq, tuple(dict.fromkeys(items)), uid, changedsince, vanished, macro)


def _is_bracket(data: bytes, pos: int) -> bool:
    return data[pos : pos + 1] == b"["


_STORE_ACTIONS: Final[dict[str, tuple[Literal["", "+", "-"], bool]]] = {
    "FLAGS": ("", False),
    "+FLAGS": ("+", False),
    "-FLAGS": ("-", False),
    "FLAGS.SILENT": ("", True),
    "+FLAGS.SILENT": ("+", True),
    "-FLAGS.SILENT": ("-", True),
}
_STORE_ITEM: Final = re.compile(rb"[+-]?[A-Za-z.]+")


def _store(p: _Parser, uid: bool) -> c.Command:
    p.sp()
    seq = p.sequence_set()
    p.sp()
    unchangedsince: int | None = None
    if p.peek() == 0x28:  # store-modifiers (RFC 7162 §3.1.3)

        def modifier() -> None:
            nonlocal unchangedsince
            if p.keyword("store modifier") != "UNCHANGEDSINCE":
                _err("Unknown STORE modifier")
            p.sp()
            unchangedsince = p.number("mod-sequence", big=True)

        p.paren_list(modifier, "store modifiers")
        p.sp()
    m = _STORE_ITEM.match(p.data, p.pos)
    action = _STORE_ACTIONS.get(m.group().decode().upper()) if m is not None else None
    if m is None or action is None:
        _err(f"Expected FLAGS, +FLAGS or -FLAGS at {p._where()}")
    p.pos = m.end()
    p.sp()
    if p.peek() == 0x28:
        flags = p.flag_list()
    else:
        found = [p.flag()]
        while p.maybe_sp():
            found.append(p.flag())
        flags = tuple(dict.fromkeys(found))
    p.done()
    return c.Store(seq, action[0], flags, action[1], uid, unchangedsince)


def _copy_move(p: _Parser, uid: bool, move: bool) -> c.Command:
    p.sp()
    seq = p.sequence_set()
    p.sp()
    name = p.mailbox()
    p.done()
    return c.Move(seq, name, uid) if move else c.Copy(seq, name, uid)


def _uid_expunge(p: _Parser) -> c.Command:
    p.sp()
    seq = p.sequence_set()
    p.done()
    return c.UidExpunge(seq)


# --- SEARCH ---------------------------------------------------------------------------------------
_FLAG_KEYS: Final[dict[str, c.FlagKey]] = {
    "ANSWERED": c.FlagKey("\\Answered"),
    "DELETED": c.FlagKey("\\Deleted"),
    "DRAFT": c.FlagKey("\\Draft"),
    "FLAGGED": c.FlagKey("\\Flagged"),
    "SEEN": c.FlagKey("\\Seen"),
    "RECENT": c.FlagKey("\\Recent"),
    "UNANSWERED": c.FlagKey("\\Answered", False),
    "UNDELETED": c.FlagKey("\\Deleted", False),
    "UNDRAFT": c.FlagKey("\\Draft", False),
    "UNFLAGGED": c.FlagKey("\\Flagged", False),
    "UNSEEN": c.FlagKey("\\Seen", False),
}
_CONSTANT_KEYS: Final[dict[str, c.SearchKey]] = {
    "ALL": c.All(),
    "NEW": c.And((c.FlagKey("\\Recent"), c.FlagKey("\\Seen", False))),
    "OLD": c.Not(c.FlagKey("\\Recent")),
    "SAVEDATESUPPORTED": c.SaveDateSupported(),
    **_FLAG_KEYS,
}
_HEADER_KEYS: Final = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject"}
_DateField = Literal["INTERNALDATE", "SENTDATE", "SAVEDATE"]
_DateRelation = Literal["BEFORE", "ON", "SINCE"]
_DATE_KEYS: Final[dict[str, tuple[_DateField, _DateRelation]]] = {
    "BEFORE": ("INTERNALDATE", "BEFORE"),
    "ON": ("INTERNALDATE", "ON"),
    "SINCE": ("INTERNALDATE", "SINCE"),
    "SENTBEFORE": ("SENTDATE", "BEFORE"),
    "SENTON": ("SENTDATE", "ON"),
    "SENTSINCE": ("SENTDATE", "SINCE"),
    "SAVEDBEFORE": ("SAVEDATE", "BEFORE"),
    "SAVEDON": ("SAVEDATE", "ON"),
    "SAVEDSINCE": ("SAVEDATE", "SINCE"),
}  # fmt: skip
_ENTRY_TYPES: Final = {"priv", "shared", "all"}
_ARG_KEYS: Final = frozenset(
    {"HEADER", "BODY", "TEXT", "KEYWORD", "UNKEYWORD", "LARGER", "SMALLER", "UID", "NOT", "OR"}
    | {"MODSEQ", "OLDER", "YOUNGER", "EMAILID", "THREADID"}
    | set(_HEADER_KEYS)
    | set(_DATE_KEYS)
)


class _Search:
    """Search-key parsing with the charset that decodes its strings."""

    __slots__ = ("charset", "p")

    def __init__(self, p: _Parser, charset: str) -> None:
        self.p = p
        self.charset = charset

    def string(self) -> str:
        raw = self.p.astring("search string")
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            _err(f"Search string is not valid {self.charset}")

    def program(self) -> c.SearchKey:
        """search-key *(SP search-key), to the end of the command."""
        p = self.p
        keys = [self.key()]
        while p.maybe_sp():
            keys.append(self.key())
        p.done()
        return keys[0] if len(keys) == 1 else c.And(tuple(keys))

    def key(self) -> c.SearchKey:
        p = self.p
        ch = p.peek()
        if ch == 0x28:
            p.depth += 1
            if p.depth > MAX_NESTING:
                _err("Search keys nested too deeply")
            p.pos += 1
            keys = [self.key()]
            while p.maybe_sp():
                keys.append(self.key())
            p.char(0x29, "')' after search keys")
            p.depth -= 1
            return keys[0] if len(keys) == 1 else c.And(tuple(keys))
        if 0x30 <= ch <= 0x39 or ch == 0x2A or ch == 0x24:
            return c.SeqKey(p.sequence_set())
        name = p.keyword("search key")
        const = _CONSTANT_KEYS.get(name)
        if const is not None:
            return const
        if name not in _ARG_KEYS:
            _err(f"Unknown search key {name}")
        p.sp()
        if name in _HEADER_KEYS:
            return c.HeaderKey(_HEADER_KEYS[name], self.string())
        if name in _DATE_KEYS:
            field, relation = _DATE_KEYS[name]
            return c.DateKey(field, relation, p.date())
        if name == "HEADER":
            field_name = p.astring("header field name").decode("ascii", "replace")
            p.sp()
            return c.HeaderKey(field_name, self.string())
        if name == "BODY" or name == "TEXT":
            return c.TextKey(cast(Literal["BODY", "TEXT"], name), self.string())
        if name == "KEYWORD" or name == "UNKEYWORD":
            flag = p.flag(allow_recent=True)
            return c.FlagKey(flag, name == "KEYWORD")
        if name == "LARGER" or name == "SMALLER":
            return c.SizeKey(cast(Literal["LARGER", "SMALLER"], name), p.number("size", big=True))
        if name == "UID":
            return c.UidKey(p.sequence_set())
        if name == "NOT" or name == "OR":
            p.depth += 1
            if p.depth > MAX_NESTING:
                _err("Search keys nested too deeply")
            first = self.key()
            if name == "NOT":
                p.depth -= 1
                return c.Not(first)
            p.sp()
            second = self.key()
            p.depth -= 1
            return c.Or(first, second)
        if name == "MODSEQ":  # RFC 7162 §3.1.5
            entry: str | None = None
            entry_type: Literal["priv", "shared", "all"] | None = None
            if p.peek() == 0x22:
                entry = p.quoted().decode("ascii", "replace")
                p.sp()
                kind = p.atom("entry type").lower()
                if kind not in _ENTRY_TYPES:
                    _err("Invalid MODSEQ entry type (priv, shared or all)")
                entry_type = cast(Literal["priv", "shared", "all"], kind)
                p.sp()
            return c.ModSeqKey(p.number("mod-sequence", big=True), entry, entry_type)
        if name == "OLDER" or name == "YOUNGER":  # RFC 5032
            secs = p.number("interval", nz=True)
            return c.AgeKey(cast(Literal["OLDER", "YOUNGER"], name), secs)
        if name == "EMAILID" or name == "THREADID":  # RFC 8474 §5
            objectid = p.atom("object id")
            return c.ObjectIdKey(cast(Literal["EMAILID", "THREADID"], name), objectid)
        _err(f"Unknown search key {name}")


def _charset(p: _Parser) -> tuple[str, str]:
    raw = p.quoted() if p.peek() == 0x22 else p.atom("charset").encode()
    name = raw.decode("ascii", "replace").upper()
    codec = _CHARSETS.get(name)
    if codec is None:  # RFC 9051 §6.4.4: NO [BADCHARSET]
        raise ParseError(f"Unsupported charset {name}", status="NO", code=_BADCHARSET)
    return name, codec


_SEARCH_RETURN: Final = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE"})
_PARTIAL_RANGE: Final = re.compile(rb"(-?)([0-9]+):(-?)([0-9]+)")


def _search_return(p: _Parser, *, sort: bool = False) -> c.SearchReturn:
    p.char(0x28, "'(' after RETURN")
    opts: set[str] = set()
    partial: tuple[int, int] | None = None
    if p.peek() != 0x29:
        while True:
            opt = p.keyword("return option")
            if opt == "PARTIAL":  # RFC 9394 §3
                p.sp()
                m = _PARTIAL_RANGE.match(p.data, p.pos)
                if m is None or m.group(1) != m.group(3):
                    _err("Invalid PARTIAL range")
                lo, hi = int(m.group(2)), int(m.group(4))
                if not (0 < lo <= _MAX_NUMBER and 0 < hi <= _MAX_NUMBER):
                    _err("Invalid PARTIAL range")
                p.pos = m.end()
                lo, hi = min(lo, hi), max(lo, hi)
                partial = (-lo, -hi) if m.group(1) else (lo, hi)
            elif opt in _SEARCH_RETURN:
                opts.add(opt)
            else:
                _err(f"Unknown {'SORT' if sort else 'SEARCH'} return option {opt}")
            if not p.maybe_sp():
                break
    p.char(0x29, "')' after return options")
    if partial is not None and "ALL" in opts:
        _err("PARTIAL and ALL cannot be combined")  # RFC 9394 §3.1
    if partial is not None and "UPDATE" in opts:
        _err("PARTIAL and UPDATE cannot be combined")  # windows that slide are not offered
    if not opts and partial is None:
        opts.add("ALL")  # RFC 4731 §3.1: RETURN () means RETURN (ALL)
    return c.SearchReturn(frozenset(opts), partial)


def _search(p: _Parser, uid: bool) -> c.Command:
    p.sp()
    returns: c.SearchReturn | None = None
    if p.data[p.pos : p.pos + 7].upper() == b"RETURN " and p.data[p.pos + 7 : p.pos + 8] == b"(":
        p.pos += 7
        returns = _search_return(p)
        p.sp()
    charset: str | None = None
    codec = "utf-8"
    if p.data[p.pos : p.pos + 8].upper() == b"CHARSET ":
        p.pos += 8
        charset, codec = _charset(p)
        p.sp()
    criteria = _Search(p, codec).program()
    return c.Search(criteria, charset, returns, uid)


_SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def _sort(p: _Parser, uid: bool) -> c.Command:
    p.sp()
    returns: c.SearchReturn | None = None
    if p.data[p.pos : p.pos + 7].upper() == b"RETURN ":  # RFC 5267 §3.2
        p.pos += 7
        returns = _search_return(p, sort=True)
        p.sp()
    criteria: list[c.SortKey] = []

    def criterion() -> None:
        name = p.keyword("sort key")
        reverse = name == "REVERSE"
        if reverse:
            p.sp()
            name = p.keyword("sort key")
        if name not in _SORT_KEYS:
            _err(f"Unknown sort key {name}")
        criteria.append(c.SortKey(cast(c.SortKeyName, name), reverse))

    p.paren_list(criterion, "sort criteria")
    p.sp()
    charset, codec = _charset(p)
    p.sp()
    search = _Search(p, codec).program()
    return c.Sort(tuple(criteria), charset, search, returns, uid)


def _thread(p: _Parser, uid: bool) -> c.Command:
    p.sp()
    algorithm = p.keyword("thread algorithm")
    p.sp()
    charset, codec = _charset(p)
    p.sp()
    search = _Search(p, codec).program()
    return c.Thread(algorithm, charset, search, uid)


def _cancelupdate(p: _Parser) -> c.Command:
    """``CANCELUPDATE tag-string *(SP tag-string)`` (RFC 5267 §4.2)."""
    p.sp()
    tags = [p.text(p.string())]
    while p.maybe_sp():
        tags.append(p.text(p.string()))
    p.done()
    return c.CancelUpdate(tuple(tags))


# --- QUOTA (RFC 9208) -----------------------------------------------------------------------------
def _getquota(p: _Parser) -> c.Command:
    p.sp()
    root = p.text(p.astring("quota root"))
    p.done()
    return c.GetQuota(root)


def _setquota(p: _Parser) -> c.Command:
    p.sp()
    root = p.text(p.astring("quota root"))
    p.sp()
    p.char(0x28, "'(' (quota limits)")
    limits: list[tuple[str, int]] = []
    if p.peek() != 0x29:
        while True:
            resource = p.keyword("quota resource")
            p.sp()
            limits.append((resource, p.number("quota limit", big=True)))
            if not p.maybe_sp():
                break
    p.char(0x29, "')' after quota limits")
    p.done()
    return c.SetQuota(root, tuple(limits))


# --- dispatch -------------------------------------------------------------------------------------
_Handler = Callable[[_Parser], c.Command]
_HANDLERS: Final[dict[str, _Handler]] = {
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "ID": _id,
    "COMPRESS": _compress,
    "SELECT": lambda p: _select(p, False),
    "EXAMINE": lambda p: _select(p, True),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "FETCH": lambda p: _fetch(p, False),
    "STORE": lambda p: _store(p, False),
    "COPY": lambda p: _copy_move(p, False, False),
    "MOVE": lambda p: _copy_move(p, False, True),
    "SEARCH": lambda p: _search(p, False),
    "SORT": lambda p: _sort(p, False),
    "THREAD": lambda p: _thread(p, False),
    "CANCELUPDATE": _cancelupdate,
}
_UID_HANDLERS: Final[dict[str, _Handler]] = {
    "FETCH": lambda p: _fetch(p, True),
    "STORE": lambda p: _store(p, True),
    "COPY": lambda p: _copy_move(p, True, False),
    "MOVE": lambda p: _copy_move(p, True, True),
    "SEARCH": lambda p: _search(p, True),
    "SORT": lambda p: _sort(p, True),
    "THREAD": lambda p: _thread(p, True),
    "EXPUNGE": _uid_expunge,
}

COMMAND_NAMES: Final = frozenset(_NO_ARGS) | frozenset(_HANDLERS) | {"UID"}
"""Every command word the grammar knows."""

_NAME: Final = re.compile(rb"[A-Za-z]+")


def parse_command(
    data: bytes, *, utf8: bool = False, literals: Mapping[int, bytes] | None = None
) -> tuple[str, c.Command]:
    """Parse one complete command (see the module docstring) into (tag, command).

    ``utf8``: UTF8=ACCEPT is enabled (mailbox names are UTF-8, RFC 6855). ``literals``: the
    octets of literals not in ``data``, by offset (`receiver.Complete`). Raises `ParseError`
    with ``tag`` set when the tag was valid (the reply is then tagged).
    """
    m = _TAG.match(data)
    if m is None or data[m.end() : m.end() + 1] != b" ":
        raise ParseError("Invalid tag" if data.strip() else "Empty command")
    tag = m.group().decode("ascii")
    try:
        return tag, _parse_after_tag(data, m.end() + 1, utf8, literals)
    except ParseError as e:
        e.tag = tag
        raise
    except RecursionError:  # pragma: no cover - MAX_NESTING keeps well below the limit
        raise ParseError("Command nested too deeply", tag=tag) from None


def _parse_after_tag(
    data: bytes, pos: int, utf8: bool, literals: Mapping[int, bytes] | None
) -> c.Command:
    m = _NAME.match(data, pos)
    if m is None:
        _err("Missing command name")
    name = m.group().decode("ascii").upper()
    p = _Parser(data, m.end(), utf8, literals)
    if name == "UID":
        p.sp()
        sub = p.keyword("UID command")
        uid_handler = _UID_HANDLERS.get(sub)
        if uid_handler is None:
            _err(f"Unknown UID command {sub}")
        return uid_handler(p)
    simple = _NO_ARGS.get(name)
    if simple is not None:
        if not p.at_end():
            if p.peek() != 0x20 and _is_atom_char(data, p.pos):
                _err(f"Unknown command {name}{p.atom()}")
            _err(f"{name} takes no arguments")
        return simple
    handler = _HANDLERS.get(name)
    if handler is None or (not p.at_end() and p.peek() != 0x20):
        _err(f"Unknown command {data[pos:].split(b' ', 1)[0].decode('ascii', 'replace')[:40]}")
    try:
        return handler(p)
    except ParseError as e:
        if not e.text.startswith(name):
            e.text = f"{name}: {e.text}"
            e.args = (e.text,)
        raise
