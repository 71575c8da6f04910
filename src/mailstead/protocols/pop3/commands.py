"""POP3 commands as typed values, and the parser from a command line to one of them.

RFC 1939 §3: a keyword of three or four characters (case-insensitive), then arguments each
separated by a single space. We accept runs of spaces between arguments; PASS takes the rest
of the line as its one argument (RFC 1939 §7: passwords may contain spaces), and so does USER.
Message numbers are decimal, from 1; they are checked against the maildrop by the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = [
    "Auth",
    "Capa",
    "Command",
    "Dele",
    "List",
    "Noop",
    "ParseError",
    "Pass",
    "Quit",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "parse_command",
    "split_keyword",
]

# Numbers beyond any maildrop (clients send "TOP n 99999999" for a whole message), bounded
# to keep int() away from huge digit strings.
_MAX_NUMBER_DIGITS: Final = 20


class ParseError(ValueError):
    """A line that is not a valid command; ``text`` goes into the ``-ERR`` reply."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True, slots=True)
class Command:
    NAME: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class User(Command):
    NAME: ClassVar[str] = "USER"
    name: str


@dataclass(frozen=True, slots=True)
class Pass(Command):
    NAME: ClassVar[str] = "PASS"
    password: str

    def __repr__(self) -> str:  # never log a password
        return "Pass(<password>)"


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """``AUTH`` alone asks for the mechanisms (RFC 1734 practice); ``initial_response`` is the
    base64 text as sent (``=`` for an empty one, RFC 5034 §4), decoded by the SASL layer."""

    NAME: ClassVar[str] = "AUTH"
    mechanism: str | None
    initial_response: bytes | None = None

    def __repr__(self) -> str:  # the initial response carries credentials
        ir = None if self.initial_response is None else f"<{len(self.initial_response)} octets>"
        return f"Auth(mechanism={self.mechanism!r}, initial_response={ir})"


@dataclass(frozen=True, slots=True)
class Capa(Command):
    NAME: ClassVar[str] = "CAPA"


@dataclass(frozen=True, slots=True)
class Stls(Command):
    NAME: ClassVar[str] = "STLS"


@dataclass(frozen=True, slots=True)
class Stat(Command):
    NAME: ClassVar[str] = "STAT"


@dataclass(frozen=True, slots=True)
class List(Command):
    NAME: ClassVar[str] = "LIST"
    msg: int | None = None


@dataclass(frozen=True, slots=True)
class Retr(Command):
    NAME: ClassVar[str] = "RETR"
    msg: int


@dataclass(frozen=True, slots=True)
class Dele(Command):
    NAME: ClassVar[str] = "DELE"
    msg: int


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Rset(Command):
    NAME: ClassVar[str] = "RSET"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    NAME: ClassVar[str] = "QUIT"


@dataclass(frozen=True, slots=True)
class Top(Command):
    NAME: ClassVar[str] = "TOP"
    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl(Command):
    NAME: ClassVar[str] = "UIDL"
    msg: int | None = None


def split_keyword(line: bytes) -> tuple[str, bytes]:
    """The upper-cased keyword (``""`` if it is not printable ASCII) and the rest of the line
    after one space."""
    keyword, _, rest = line.partition(b" ")
    if not keyword or not all(0x21 <= c <= 0x7E for c in keyword) or len(keyword) > 16:
        return "", rest
    return keyword.decode("ascii").upper(), rest


def _number(arg: bytes, what: str = "message number") -> int:
    if not arg.isdigit() or len(arg) > _MAX_NUMBER_DIGITS:
        raise ParseError(f"Invalid {what}")
    return int(arg)


def _args(rest: bytes) -> list[bytes]:
    return rest.split()


def _text(rest: bytes, what: str) -> str:
    if not rest:
        raise ParseError(f"Missing {what}")
    try:
        return rest.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"Invalid UTF-8 in {what}") from None


def _no_args(rest: bytes, make: type[Command]) -> Command:
    if rest.strip(b" "):
        raise ParseError("Too many arguments")
    return make()


def _one_number(rest: bytes, *, optional: bool) -> int | None:
    args = _args(rest)
    if not args:
        if optional:
            return None
        raise ParseError("Missing message number")
    if len(args) > 1:
        raise ParseError("Too many arguments")
    return _number(args[0])


def parse_command(line: bytes) -> Command:
    """One command line (without CRLF) to its typed command; `ParseError` otherwise."""
    keyword, rest = split_keyword(line)
    if keyword == "USER":
        return User(_text(rest, "user name"))
    if keyword == "PASS":
        return Pass(_text(rest, "password"))
    if keyword == "AUTH":
        args = _args(rest)
        if not args:
            return Auth(None)
        if len(args) > 2:
            raise ParseError("Too many arguments")
        mechanism = args[0].decode("ascii", "replace").upper()
        return Auth(mechanism, args[1] if len(args) == 2 else None)
    if keyword in ("LIST", "UIDL"):
        msg = _one_number(rest, optional=True)
        return List(msg) if keyword == "LIST" else Uidl(msg)
    if keyword in ("RETR", "DELE"):
        number = _one_number(rest, optional=False)
        assert number is not None
        return Retr(number) if keyword == "RETR" else Dele(number)
    if keyword == "TOP":
        args = _args(rest)
        if len(args) != 2:
            raise ParseError("TOP needs a message number and a line count")
        return Top(_number(args[0]), _number(args[1], "line count"))
    simple: dict[str, type[Command]] = {
        "CAPA": Capa, "STLS": Stls, "STAT": Stat, "NOOP": Noop, "RSET": Rset, "QUIT": Quit,
    }  # fmt: skip
    make = simple.get(keyword)
    if make is None:
        raise ParseError("Unknown command")
    return _no_args(rest, make)
