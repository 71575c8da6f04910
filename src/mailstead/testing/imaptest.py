"""Dovecot ImapTest scripted tests, run from Python against any IMAP server.

In charge of: reading ImapTest scripts and their ``.mbox`` fixtures, bringing a server's test
mailbox to the state a script asks for, sending the script's commands and judging the
server's replies the way ImapTest does.  The rules follow ImapTest's C parser and executor
(``src/test-parser.c``, ``src/test-exec.c``), not only its format document: argument
tokenising as Dovecot's imap-parser with ``ATOM_ALLCHARS``, default list directives,
first-match variable binding (reverted when the reply as a whole does not match),
``$!unordered[=n]``/``$!noextra``/``$!ignore=``/``$!ban=``, ``$`` and ``$]`` wildcards,
``$n`` relative sequences tracked through EXPUNGEs, ``$modseqN`` ordering, prefix matching
of OK/NO/BAD/BYE replies and of tagged replies.

The matcher (:class:`Matcher`) does no I/O.  :func:`run_script` talks to the server through
sockets that a ``connect()`` callable opens, so it is server-agnostic.  Two deliberate
differences from ImapTest: synchronising literals wait for the server's ``+`` (ImapTest
rewrites them as LITERAL+), and with ``mailbox="INBOX"`` the setup expunges INBOX (which
cannot be deleted).  ImapTest's mailbox-state consistency checker (duplicate \\Recent and
the like) is not reproduced.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

# ---------------------------------------------------------------------------------------
# IMAP arguments, tokenised as Dovecot's imap-parser does with ATOM_ALLCHARS

# Text is handled as latin-1 `str`, so every byte round-trips and case folding stays ASCII.
_ENCODING = "latin-1"
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Atom:
    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or a literal (``literal8`` for ``~{n}``)."""

    value: str
    literal: bool = False
    literal8: bool = False


@dataclass(frozen=True, slots=True)
class Nil:
    value: str = "NIL"


@dataclass(slots=True)
class ImapList:
    items: list[Arg]


Arg = Atom | String | Nil | ImapList


class ParseError(ValueError):
    """A line that Dovecot's imap-parser would refuse."""


def parse_args(text: str) -> list[Arg]:
    """Parse one line (literals inline as ``{n}\\r\\n<data>``) into arguments.

    Stops at the first CR or LF met where an argument would start, as Dovecot does.
    """
    root: list[Arg] = []
    stack: list[list[Arg]] = [root]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == " ":
            i += 1
            continue
        if c in "\r\n":
            break
        if c == '"':
            buf: list[str] = []
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ParseError("Missing '\"'")
            stack[-1].append(String("".join(buf)))
            i = j + 1
        elif c == "{" or (c == "~" and text.startswith("{", i + 1)):
            literal8 = c == "~"
            start = i + int(literal8)
            close = text.find("}", start)
            spec = text[start + 1 : close] if close != -1 else ""
            digits = spec[:-1] if spec.endswith("+") else spec
            if close == -1 or not digits.isdigit():
                raise ParseError("Invalid literal size")
            j = close + 1
            if text.startswith("\r", j):
                j += 1
            if not text.startswith("\n", j):
                raise ParseError("Missing LF after literal size")
            j += 1
            size = int(digits)
            if n - j < size:
                raise ParseError("Missing data")
            stack[-1].append(String(text[j : j + size], literal=True, literal8=literal8))
            i = j + size
        elif c == "(":
            new: list[Arg] = []
            stack[-1].append(ImapList(new))
            stack.append(new)
            i += 1
        elif c == ")":
            if len(stack) == 1:
                raise ParseError("Unexpected ')'")
            stack.pop()
            i += 1
        else:
            j = i
            while j < n and text[j] not in " \r\n" and not (text[j] == ")" and len(stack) > 1):
                j += 1
            word = text[i:j]
            stack[-1].append(Nil(word) if word.upper() == "NIL" else Atom(word))
            i = j
    if len(stack) > 1:
        raise ParseError("Missing ')'")
    return root


_STATUS_WORDS = frozenset({"OK", "NO", "BAD", "BYE", "PREAUTH"})


def parse_response(text: str) -> list[Arg]:
    """Parse a server response line; free text after a status word is kept as one atom
    when it would not tokenise (unbalanced parentheses and the like)."""
    try:
        return parse_args(text)
    except ParseError:
        m = re.match(r"(\S+ )?(\S+)( \[[^\]]*\])?( .*)?$", text, re.S)
        if m is None or m.group(2).upper() not in _STATUS_WORDS:
            raise
        head = parse_args(text[: m.end(3) if m.group(3) else m.end(2)])
        rest = (m.group(4) or "").strip()
        return head + ([Atom(rest)] if rest else [])


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_args(args: Sequence[Arg]) -> str:
    """Arguments back as text, for reports (literals as ``{n}`` plus their escaped data)."""
    out: list[str] = []
    for arg in args:
        if isinstance(arg, ImapList):
            out.append("(" + format_args(arg.items) + ")")
        elif isinstance(arg, String):
            if arg.literal:
                data = arg.value.encode("unicode_escape").decode("ascii").replace('"', '\\"')
                out.append(f'{"~" if arg.literal8 else ""}{{{len(arg.value)}}}"{data}"')
            else:
                out.append(_quote(arg.value))
        else:
            out.append(arg.value)
    return " ".join(out)


def _astring(arg: Arg | None) -> str | None:
    """The value of an atom or string, cut at NUL as ImapTest's C strings are."""
    if isinstance(arg, Atom | String):
        return arg.value.split("\0", 1)[0]
    return None


def _ci(value: str) -> str:
    return value.translate(_UPPER)


# ---------------------------------------------------------------------------------------
# Scripts

State = Literal["nonauth", "auth", "created", "appended", "selected"]
_STATES: tuple[State, ...] = ("nonauth", "auth", "created", "appended", "selected")
Existence = Literal["*", "!", "?"]


class ScriptError(ValueError):
    """A script ImapTest itself would refuse to load."""


@dataclass(slots=True)
class ExpectedUntagged:
    args: list[Arg]
    existence: Existence
    line: int
    text: str


@dataclass(slots=True)
class Command:
    line: int
    text: str
    tag: int  # the script's tagN, 0 when none
    reply: list[Arg] | None

    @property
    def expects_bad(self) -> bool:
        first = _astring(self.reply[0]) if self.reply else None
        return first is not None and _ci(first) == "BAD"


@dataclass(slots=True)
class CommandGroup:
    connection: int  # 0-based
    commands: list[Command] = field(default_factory=list)
    untagged: list[ExpectedUntagged] = field(default_factory=list)
    have_untagged_bye: bool = False
    replies_pending: int = 0
    sleep: float = 0.0
    output: list[str] = field(default_factory=list)

    @property
    def line(self) -> int:
        if self.commands:
            return self.commands[0].line
        return self.untagged[0].line if self.untagged else 0


@dataclass(slots=True)
class Script:
    name: str
    path: Path
    mbox_path: Path
    capabilities: tuple[str, ...] = ()
    connections: int = 1
    messages: int | None = 0  # None: the whole mbox once
    state: State = "selected"
    ignore_extra_untagged: bool = True
    usernames: dict[int, str] = field(default_factory=dict)  # 0-based connection -> user
    require_user2: bool = False
    have_banner_check: bool = False
    groups: list[CommandGroup] = field(default_factory=list)


_REPLY_WORDS = {"ok": "ok", "no": "no", "bad": "bad", '""': ""}
_MAX_CONNECTIONS = 100


def _uint(text: str) -> int | None:
    return int(text) if text.isdigit() and text.isascii() else None


@dataclass(slots=True)
class _DirectivesContext:
    reply_name: str
    parent: _DirectivesContext | None = None
    prev_atom: str | None = None
    parent_chain_idx: int = 0
    chain_count: int = 1
    directives: bool = False


def _parse_directives(ctx: _DirectivesContext, items: list[Arg]) -> None:
    for arg in items:
        if not isinstance(arg, Atom) or not arg.value.startswith("$!"):
            break
        d = arg.value[2:]
        if d.startswith("unordered"):
            if d == "unordered":
                pass
            elif d[9] == "=" and _uint(d[10:]) is not None:
                ctx.chain_count = int(d[10:])
            else:
                raise ScriptError("Broken $!unordered directive")
        elif not (d in ("ordered", "noextra", "extra") or d.startswith(("ignore=", "ban="))):
            raise ScriptError(f"Unknown directive: {d}")
        ctx.directives = True


def _add_default_directives(ctx: _DirectivesContext, items: list[Arg]) -> None:
    """ImapTest's implicit directives for LIST/LSUB flags, STATUS and FETCH lists."""
    parent = ctx.parent
    if parent is None:
        return
    top = parent.parent is None and parent.parent_chain_idx == 0
    if ctx.reply_name in ("list", "lsub"):
        if top and ctx.parent_chain_idx == 1:
            items.insert(0, Atom("$!unordered"))
    elif ctx.reply_name == "status":
        if top and ctx.parent_chain_idx == 2:
            items.insert(0, Atom("$!unordered=2"))
    elif ctx.reply_name == "fetch":
        if top and ctx.parent_chain_idx == 2:
            items.insert(0, Atom("$!unordered=2"))
        elif (
            parent.parent is not None
            and parent.parent.parent is None
            and parent.parent.parent_chain_idx == 0
            and parent.parent_chain_idx == 2
            and ctx.prev_atom == "flags"
        ):
            for d in ("$!unordered", "$!noextra", "$!ignore=\\recent",
                      "$!ignore=$HasAttachment", "$!ignore=$HasNoAttachment"):  # fmt: skip
                items.insert(0, Atom(d))


def _handle_directives(ctx: _DirectivesContext, items: list[Arg]) -> None:
    _parse_directives(ctx, items)
    if not ctx.directives:
        _add_default_directives(ctx, items)
    first = items[0] if items else None
    leading = len(items) if isinstance(first, Atom) and first.value.startswith("$!") else 0
    if (len(items) - leading) % ctx.chain_count != 0:
        raise ScriptError(f"Invalid list argument count, chain size={ctx.chain_count}")
    prev_atom: str | None = None
    for i, arg in enumerate(items):
        if isinstance(arg, Atom):
            prev_atom = arg.value.lower()
        if isinstance(arg, ImapList):
            sub = _DirectivesContext(
                reply_name=ctx.reply_name.lower(),
                parent=ctx,
                prev_atom=prev_atom,
                parent_chain_idx=i if ctx.chain_count == 1 else i % ctx.chain_count,
            )
            _handle_directives(sub, arg.items)


def parse_expected_untagged(text: str) -> list[Arg]:
    """An expected untagged reply (without ``* ``), with ImapTest's default directives."""
    try:
        args = parse_args(text)
    except ParseError as e:
        raise ScriptError(str(e)) from e
    name = ""
    if args and isinstance(args[0], Atom):
        name = args[0].value
        if name[:1] == "$" or name[:1].isdigit():
            name = args[1].value if len(args) > 1 and isinstance(args[1], Atom) else ""
    _handle_directives(_DirectivesContext(reply_name=name), args)
    return args


class _ScriptParser:
    def __init__(self, script: Script, env: Mapping[str, str]) -> None:
        self.script = script
        self.env = env
        self.group: CommandGroup | None = None
        self.ifenv: list[tuple[int, bool, bool]] = []  # (line, skip before, else seen)
        self.skip = False

    def header(self, line: str) -> None:
        s = self.script
        if ":" not in line:
            raise ScriptError("Missing ':'")
        key, value = line.split(":", 1)
        key, value = key.rstrip(" ").lower(), value.lstrip(" ")
        if key == "capabilities":
            s.capabilities = tuple(value.split())
        elif key == "connections":
            count = 2 if value == "n" else int(re.match(r"\d*", value).group() or 0)  # type: ignore[union-attr]
            if not 0 < count <= _MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
            s.connections = count
        elif key == "ignore_extra_untagged":
            s.ignore_extra_untagged = value[:1] == "y"
        elif key.startswith("user ") and (_uint(key[5:]) or 0) > 0:
            idx = int(key[5:])
            if idx > _MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
            if value in ("$user2", "${user2}"):
                s.require_user2 = True
            s.usernames[idx - 1] = value
        elif key == "messages":
            s.messages = None if value == "all" else int(re.match(r"\d*", value).group() or 0)  # type: ignore[union-attr]
        elif key == "state":
            if value.lower() not in _STATES:
                raise ScriptError("Unknown state value")
            s.state = value.lower()  # type: ignore[assignment]
        else:
            raise ScriptError("Unknown setting")

    @staticmethod
    def cmd_reply(line: str) -> tuple[list[Arg] | None, int, str]:
        """The optional ``tagN`` and expected OK/NO/BAD/"" at the start of a line."""
        tag = 0
        arg = line.split(" ", 1)[0]
        if arg[:3].lower() == "tag" and " " in line and (_uint(arg[3:]) or 0) > 0:
            tag = int(arg[3:])
            line = line.split(" ", 1)[1]
            arg = line.split(" ", 1)[0]
        word = _REPLY_WORDS.get(arg.lower())
        if word is None:
            return None, tag, line
        line = line[len(arg) :]
        if line.startswith(" "):
            line = line[1:]
        return [Atom(word)], tag, line

    def untagged(self, group: CommandGroup, text: str, existence: Existence, linenum: int) -> None:
        args = parse_expected_untagged(text)
        name = ""
        if args and isinstance(args[0], Atom):
            name = args[0].value
            if name[:1] == "$" or name[:1].isdigit():
                name = args[1].value if len(args) > 1 and isinstance(args[1], Atom) else ""
        if name[:3].upper() == "BYE":
            if existence == "*":
                group.have_untagged_bye = True
            elif existence == "?":
                raise ScriptError("? BYE not currently supported")
        group.untagged.append(ExpectedUntagged(args, existence, linenum, text))

    def command_line(self, linenum: int, line: str) -> None:
        s = self.script
        for prefix in ("!ifenv ", "!ifnenv "):
            if line.startswith(prefix):
                skip = line[len(prefix) :] not in self.env
                if prefix == "!ifnenv ":
                    skip = not skip
                self.ifenv.append((linenum, self.skip, False))
                if skip:
                    self.skip = True
                return
        if line == "!else":
            if not self.ifenv:
                raise ScriptError("!else without !ifenv")
            ln, before, seen = self.ifenv[-1]
            if seen:
                raise ScriptError("!else already seen")
            self.ifenv[-1] = (ln, before, True)
            if not before:
                self.skip = not self.skip
            return
        if line == "!endif":
            if not self.ifenv:
                raise ScriptError("!endif without !ifenv")
            self.skip = self.ifenv.pop()[1]
            return
        if self.skip:
            return

        group = self.group
        if group is not None:
            if line.startswith("!sleep "):
                group.sleep = _parse_interval(line[7:])
                return
            if line.startswith("!output "):
                group.output.append(line[8:])
                return
            if line[:2] in ("* ", "! ", "? "):
                self.untagged(group, line[2:], line[0], linenum)  # type: ignore[arg-type]
                return
            if group.replies_pending > 0:
                rest, conn = line, 0
                first = line.split(" ", 1)[0]
                if s.connections > 1 and (_uint(first) or 0) > 0:
                    conn = int(first)
                    rest = line.split(" ", 1)[1] if " " in line else ""
                reply, tag, _ = self.cmd_reply(rest)
                if reply is not None:
                    if s.connections > 1:
                        if conn == 0:
                            raise ScriptError("Missing client index")
                        if conn - 1 != group.connection:
                            raise ScriptError("Reply for wrong connection")
                    self.finish_command(group, tag, rest)
                    return

        if group is None or group.replies_pending == 0:
            group = CommandGroup(connection=0)
            self.group = group
            s.groups.append(group)

        if s.connections > 1:
            first = line.split(" ", 1)[0]
            conn = _uint(first) or 0
            if conn == 0:
                raise ScriptError("Missing client index")
            if conn > _MAX_CONNECTIONS:
                raise ScriptError("Too many connections")
            if group.commands and group.connection != conn - 1:
                raise ScriptError("All pipelined commands must use the same connection")
            group.connection = conn - 1
            s.connections = max(s.connections, conn)
            line = line.split(" ", 1)[1] if " " in line else ""

        reply, tag, line = self.cmd_reply(line)
        if tag == 0:
            if group.replies_pending > 0:
                raise ScriptError("Missing reply from previous command group")
        elif any(c.tag == tag for c in group.commands):
            raise ScriptError("Tag reused within command group")
        if not group.commands and line[:2] in ("* ", "! ", "? "):
            s.have_banner_check = True
            self.untagged(group, line[2:], line[0], linenum)  # type: ignore[arg-type]
            return
        if reply is None:
            group.replies_pending += 1
        group.commands.append(Command(linenum, line, tag, reply))

    def finish_command(self, group: CommandGroup, tag: int, line: str) -> None:
        cmd = next((c for c in group.commands if c.tag == tag), None)
        if cmd is None:
            raise ScriptError("Reply for unknown tag")
        if cmd.reply is not None:
            raise ScriptError("Command already has a reply")
        try:
            args = parse_args(line)
        except ParseError as e:
            raise ScriptError(str(e)) from e
        cmd.reply = args if tag == 0 else args[1:]
        group.replies_pending -= 1


def _parse_interval(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+)\s*(ms|msecs?|s|secs?|)\s*", text)
    if m is None:
        raise ScriptError(f"Invalid !sleep value {text}")
    return int(m.group(1)) / (1000 if m.group(2).startswith("m") else 1)


def load_script(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Script:
    """Read an ImapTest script (and note its ``.mbox``, or the directory's default.mbox).

    ``env`` decides ``!ifenv``/``!ifnenv`` blocks; it defaults to ``os.environ``.
    """
    path = Path(path)
    mbox = path.with_name(path.name + ".mbox")
    if not mbox.exists():
        mbox = path.with_name("default.mbox")
    script = Script(name=path.name, path=path, mbox_path=mbox)
    parser = _ScriptParser(script, os.environ if env is None else env)
    data = path.read_bytes().decode(_ENCODING)
    if data and not data.endswith("\n"):
        raise ScriptError(f"{path}: Last line doesn't end with LF")
    header = True
    multiline: list[str] | None = None  # pieces of a {{{ ... }}} command being collected
    start_line = 0
    binary = False
    body: list[str] = []
    for linenum, line in enumerate(data.split("\n")[:-1], start=1):
        try:
            if multiline is not None:
                if not line.startswith("}}}"):
                    body.append(line + ("\n" if binary else "\r\n"))
                    continue
                literal = "".join(body)
                # the line break before }}} is not part of the literal
                literal = literal[: -1 if binary else -2] if literal else literal
                multiline.append(f"{'~' if binary else ''}{{{len(literal)}}}\r\n{literal}")
                rest = line[3:]
                if rest.endswith("{{{"):
                    binary = rest.endswith("~{{{")
                    multiline.append(rest[: -4 if binary else -3])
                    body = []
                    continue
                line = "".join(multiline) + rest
                multiline = None
            else:
                start_line = linenum
                if line == "":
                    header = False
                    continue
                if line.startswith("#"):
                    continue
                if line.endswith("{{{"):
                    binary = line.endswith("~{{{")
                    multiline = [line[: -4 if binary else -3]]
                    body = []
                    continue
            if header:
                parser.header(line)
            else:
                parser.command_line(start_line, line)
        except ScriptError as e:
            raise ScriptError(f"{path} line {linenum}: {e}") from e
    if multiline is not None:
        raise ScriptError(f"{path}: Multiline reply at line {start_line} not ended")
    if parser.group is None:
        raise ScriptError(f"{path}: No commands in file")
    if parser.group.replies_pending > 0:
        raise ScriptError(f"{path}: Missing reply from previous command")
    if parser.ifenv:
        raise ScriptError(f"{path}: !ifenv at line {parser.ifenv[0][0]} not closed with !endif")
    has_logout = any(
        g.have_untagged_bye or any(c.text.lower() == "logout" for c in g.commands)
        for g in script.groups
    )
    if not has_logout:
        # ImapTest logs out (on the first connection only) unless the script does
        script.groups.append(
            CommandGroup(connection=0, commands=[Command(0, "logout", 0, [Atom("ok")])])
        )
    return script


def list_scripts(directory: str | os.PathLike[str]) -> list[Path]:
    """The scripts in a directory, as ImapTest picks them (sorted; no .mbox, no dirs)."""
    return sorted(
        p for p in Path(directory).iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".mbox")
        and p.name not in ("COPYING.MIT", "FORMAT-scripted_test.md")
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# mbox fixtures

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FROM_DATE = re.compile(
    r"(?P<wd>\S{3}) (?P<mon>\S{3}) +(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d)(?::(?P<s>\d\d))?"
    r"(?: (?P<tz1>[+-]\d{4}))?(?: [A-Za-z]+)? (?P<year>\d{4})(?: (?P<tz2>[+-]\d{4}))?"
)


@dataclass(frozen=True, slots=True)
class MboxMessage:
    data: bytes  # CRLF line endings
    internaldate: str  # RFC 3501 date-time, from the From_ line


def _from_line_date(line: bytes) -> str | None:
    """The INTERNALDATE of a valid ``From `` line, else None (then it is body text)."""
    if not line.startswith(b"From "):
        return None
    text = line[5:].decode(_ENCODING)
    m = re.match(r'(?:"(?:[^"\\]|\\.)*")?\S*\s+', text)
    if m is None:
        return None
    d = _FROM_DATE.match(text, m.end())
    if d is None or d["mon"].capitalize() not in _MONTHS:
        return None
    naive = datetime(
        int(d["year"]), _MONTHS.index(d["mon"].capitalize()) + 1, max(int(d["day"]), 1),
        int(d["h"]), int(d["m"]), int(d["s"] or 0),
    )  # fmt: skip
    tz = d["tz1"] or d["tz2"]
    if tz:
        offset = (int(tz[1:3]) * 60 + int(tz[3:5])) * (-1 if tz[0] == "-" else 1)
        when = naive.replace(tzinfo=timezone(timedelta(minutes=offset)))
    else:
        when = naive.astimezone()  # like ImapTest: a From_ date without zone is local time
    return when.strftime("%d-%b-%Y %H:%M:%S %z")


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def read_mbox(path: str | os.PathLike[str]) -> list[MboxMessage]:
    """Split an mbox at valid ``From `` lines; LF becomes CRLF as ImapTest's istream-crlf.

    A message ends with the line before the next From_ line (blank line included).
    """
    messages: list[MboxMessage] = []
    lines = Path(path).read_bytes().splitlines(keepends=True)
    if not lines or _from_line_date(lines[0].rstrip(b"\r\n")) is None:
        raise ValueError(f"Not a valid mbox file: {path}")
    date = ""
    body: list[bytes] = []
    for raw in lines:
        new_date = _from_line_date(raw.rstrip(b"\r\n"))
        if new_date is not None:
            if body:
                messages.append(MboxMessage(_crlf(b"".join(body)), date))
            date, body = new_date, []  # a From_ line right after another: empty message skipped
            continue
        body.append(raw)
    if not body:
        raise ValueError(f"mbox file ends with From-line: {path}")
    messages.append(MboxMessage(_crlf(b"".join(body)), date))
    return messages


class _MboxSource:
    """The messages in order, wrapping around at the end as ImapTest's mbox source."""

    def __init__(self, messages: list[MboxMessage]) -> None:
        self.messages = messages
        self.next = 0

    def eof(self) -> bool:
        return self.next == len(self.messages)

    def get(self) -> MboxMessage:
        if self.next == len(self.messages):
            self.next = 0
        msg = self.messages[self.next]
        self.next += 1
        return msg


# ---------------------------------------------------------------------------------------
# Matching

_FULL = -1  # "the whole thing matched"; otherwise the count of matched arguments
_MANY = 1 << 30


def _is_var_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def _var_name(text: str, i: int) -> tuple[str | None, int]:
    """The variable name at ``text[i]`` (after ``$``) and where it ends."""
    if text.startswith("{", i):
        close = text.find("}", i + 1)
        if close == -1:
            return None, i
        return text[i + 1 : close], close + 1
    j = i
    while j < len(text) and _is_var_char(text[j]):
        j += 1
    return text[i:j], j


class Matcher:
    """ImapTest's variables and matching rules, without I/O.

    ``variables`` bind on first match; ``seqmap`` maps ``$n`` (a sequence number when the
    command group started) to the current sequence (0 once expunged).
    """

    def __init__(self, variables: Mapping[str, str] | None = None) -> None:
        self.variables: dict[str, str] = dict(variables or {})
        self.seqmap: list[int] = []
        self.added: list[str] = []
        self.modseq_idx = 0
        self.modseq_value = 0
        self.errors: list[str] = []

    # -- variables --------------------------------------------------------------------
    def relative_seq(self, seq: int) -> str:
        if seq == 0:
            return "<zero seq>"
        if seq > len(self.seqmap):
            return "<out of range>"
        return "<expunged>" if self.seqmap[seq - 1] == 0 else str(self.seqmap[seq - 1])

    def start_group(self, message_count: int) -> None:
        self.seqmap = list(range(1, message_count + 1))

    def expunged(self, seq: int) -> None:
        """Follow an ``* n EXPUNGE`` in the ``$n`` map."""
        if seq > len(self.seqmap):
            return
        for i in range(seq - 1, len(self.seqmap)):
            if self.seqmap[i] == seq:
                self.seqmap[i] = 0
            elif self.seqmap[i] > seq:
                self.seqmap[i] -= 1

    def expand(self, text: str, *, skip_uninitialized: bool = False) -> str:
        """Expand ``$var``, ``${var}``, ``$n`` and ``$$`` in a command; drop ``$!`` directives.

        An unset variable is an error (appended to ``errors``; the rest is dropped) unless
        ``skip_uninitialized``, which leaves ``$`` in its place.
        """
        if "$" not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c != "$" or i == n - 1:
                out.append(c)
                i += 1
                continue
            i += 1
            if text[i] == "$":
                out.append("$")
                i += 1
            elif text[i] == "!":
                while i + 1 < n and text[i + 1] != " ":
                    i += 1
                i += 1
            else:
                name, i = _var_name(text, i)
                if name is None:
                    self.errors.append("Missing '}'")
                    break
                if _uint(name) is not None:
                    value: str | None = self.relative_seq(int(name))
                else:
                    value = self.variables.get(name)
                    if value is None:
                        if not skip_uninitialized:
                            self.errors.append(f"Uninitialized variable: {name}")
                            break
                        value = "$"
                out.append(value)  # type: ignore[arg-type]  # mypy loses the narrowing
        return "".join(out)

    def _new_modseq(self, idx: int, text: str) -> str:
        if _uint(text) is None:
            return "$modseq-not-number"
        if self.modseq_idx > idx:
            return "$modseq-order-mismatch"
        value = int(text)
        at_least = self.modseq_value + (idx - self.modseq_idx)
        if value < at_least:
            text, value = f"$modseq-at-least-{at_least}", at_least
        self.modseq_idx, self.modseq_value = idx, value
        return text

    def _expand_input(self, pattern: str, given: str) -> tuple[str | None, bool]:
        """Match one expected string against the server's, binding unset variables.

        Returns the expanded pattern (None on mismatch) and whether comparison is
        case-insensitive (``${case:...}`` makes it exact).
        """
        icase = True
        out: list[str] = []
        i = j = 0
        while i < len(pattern):
            c = pattern[i]
            if c != "$" or pattern.startswith("$", i + 1):
                if c == "$":
                    i += 1
                ch = given[j] if j < len(given) else "\0"
                if _ci(c) != _ci(ch):
                    return None, icase
                j += 1
                out.append(c)
                i += 1
                continue
            name, i = _var_name(pattern, i + 1)
            if name is None:
                return "", icase
            if _uint(name) is not None:
                value: str | None = self.relative_seq(int(name))
            elif name.startswith("case:"):
                value, icase = name[5:], False
            else:
                value = self.variables.get(name) if name else None
                if value is None:
                    rest = pattern[i:]
                    sub_icase = True
                    if rest.startswith("$"):
                        stop, sub_icase = self._expand_input(rest, given[j:])
                        rest = stop or ""
                    p = j
                    if rest:
                        if sub_icase:
                            while p < len(given) and _ci(given[p]) != _ci(rest[0]):
                                p += 1
                        else:
                            while p < len(given) and given[p] != rest[0]:
                                p += 1
                    else:
                        p = len(given)
                    value = given[j:p]
                    modseq = re.fullmatch(r"modseq(\d+)", name)
                    if name == "":
                        pass
                    elif modseq:
                        value = self._new_modseq(int(modseq.group(1)), value)
                        self.variables[name] = value
                    else:
                        self.variables[name] = value
                        self.added.append(name)
            assert value is not None
            out.append(value)
            if given[j : j + len(value)] != value:
                return None, icase
            j += len(value)
        return "".join(out), icase

    def match_args(
        self, expected: Sequence[Arg], given: Sequence[Arg], *, prefix: bool = False,
        limit: int = _MANY,
    ) -> int:  # fmt: skip
        """Match argument lists; ``_FULL`` (-1) on success, else how many matched.

        With ``prefix`` the last expected string need only be a prefix and extra given
        arguments are allowed (status replies carry free text).
        """
        ret = 0
        ai = 0
        mi = 0
        while mi < len(expected) and limit > 0:
            m = expected[mi]
            a = given[ai] if ai < len(given) else None
            if isinstance(m, Nil):
                if not isinstance(a, Nil):
                    return ret
            elif isinstance(m, Atom | String):
                mvalue = m.value.split("\0", 1)[0]
                if mvalue == "$" and isinstance(a, ImapList):
                    pass
                elif mvalue == "$]":
                    while isinstance(a, Atom) and "]" not in a.value:
                        ai += 1
                        a = given[ai] if ai < len(given) else None
                else:
                    astr = _astring(a)
                    if astr is None:
                        return ret
                    mstr, icase = self._expand_input(mvalue, astr)
                    if mstr is None:
                        return ret
                    if icase:
                        mstr, astr = _ci(mstr), _ci(astr)
                    if prefix and mi == len(expected) - 1:
                        if not astr.startswith(mstr):
                            return ret
                    elif astr != mstr:
                        return ret
            else:
                if not isinstance(a, ImapList):
                    return ret
                sub = self.match_list(m.items, a.items)
                if sub != _FULL:
                    return ret + sub
            ret += 1
            mi += 1
            ai += 1
            limit -= 1
        if prefix or ai >= len(given) or limit == 0:
            return _FULL
        return ret

    def match_list(self, expected: Sequence[Arg], given: Sequence[Arg]) -> int:
        unordered, chain = False, 1
        ignores: list[str] = []
        bans: list[str] = []
        noextra: bool | None = None
        k = 0
        while k < len(expected):
            m = expected[k]
            if not isinstance(m, Atom) or not m.value.startswith("$!"):
                break
            d = m.value[2:]
            if d.startswith("unordered"):
                unordered = True
                if noextra is None:
                    noextra = False
                if d[9:10] == "=":
                    chain = int(re.match(r"\d*", d[10:]).group() or 1)  # type: ignore[union-attr]
            elif d == "ordered":
                unordered = False
            elif d == "extra":
                noextra = False
            elif d == "noextra":
                noextra = True
            elif d.startswith("ignore="):
                ignores.append(_ci(d[7:]))
            elif d.startswith("ban="):
                bans.append(_ci(d[4:]))
            else:
                raise ScriptError(f"Unknown directive: {d}")
            k += 1
        if noextra is None:
            noextra = True
        rest = expected[k:]
        if not unordered:
            return self.match_args(rest, given)
        if len(given) % chain != 0:
            return 0
        matched = [False] * len(given)
        ret = 0
        for c in range(0, len(rest), chain):
            for i in range(0, len(given), chain):
                if self.match_args(rest[c:], given[i:], limit=chain) == _FULL:
                    matched[i] = True
                    break
            else:
                return ret
            ret += 1
        listed = ignores if noextra else bans
        if noextra or bans:
            for i in range(0, len(given), chain):
                if matched[i]:
                    continue
                value = _astring(given[i])
                if value is None:
                    continue
                if (_ci(value) in listed) != noextra:
                    return ret
        return _FULL

    def try_match(self, expected: Sequence[Arg], given: Sequence[Arg], *, prefix: bool) -> int:
        """``match_args``, reverting the variables it bound unless everything matched."""
        self.added = []
        count = self.match_args(expected, given, prefix=prefix)
        if count != _FULL:
            for name in self.added:
                self.variables.pop(name, None)
        self.added = []
        return count

    def matches_untagged(self, expected: str, response: str) -> bool:
        """Does ``* <response>`` satisfy the script line ``* <expected>``?  (For tests.)"""
        given = parse_response(response)
        return self.try_match(
            parse_expected_untagged(expected), given, prefix=_is_status(given)
        ) == _FULL  # fmt: skip


def _is_status(args: Sequence[Arg]) -> bool:
    return bool(args) and isinstance(args[0], Atom) and _ci(args[0].value) in (
        "OK", "NO", "BAD", "BYE",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# Running a script

Status = Literal["pass", "fail", "skip"]


@dataclass(slots=True)
class Failure:
    line: int  # the script line of the command group (0: ImapTest's implicit LOGOUT)
    command: str
    message: str
    transcript: list[str]

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "setup"
        shown = "\n".join("    " + _shorten(t) for t in self.transcript)
        return f"{where}: {self.command}\n  {self.message}\n  transcript:\n{shown}"


@dataclass(slots=True)
class Result:
    name: str
    status: Status
    reason: str = ""
    failures: list[Failure] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # from !output lines
    seconds: float = 0.0

    def report(self) -> str:
        head = f"{self.name}: {self.status}" + (f" ({self.reason})" if self.reason else "")
        return "\n".join([head, *(str(f) for f in self.failures)])


def _shorten(text: str, limit: int = 600) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text)} chars]"


class _Abort(Exception):
    """Ends the script run: a disconnection, a timeout, an init failure."""


class _Closed(Exception):
    pass


class _Connection:
    def __init__(self, index: int, sock: socket.socket, timeout: float, log: list[str]) -> None:
        self.index = index
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.log = log
        self.closed = False
        self.tags = 0
        self.capabilities: list[str] | None = None
        self.postlogin = False
        self.messages = 0  # as known from EXISTS/EXPUNGE
        self.seen_bye = False
        self.logout_sent = False

    def next_tag(self) -> str:
        self.tags += 1
        return f"{self.index + 1}.{self.tags}"

    def send(self, data: str) -> None:
        if self.closed:
            raise _Closed
        self.log.append(f"C{self.index + 1}: {data.removesuffix(chr(13) + chr(10))}")
        try:
            self.sock.sendall(data.encode(_ENCODING))
        except OSError as e:
            raise _Closed from e

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as e:
            raise _Closed from e
        if not chunk:
            self.closed = True
            raise _Closed
        self.buf += chunk

    def read_response(self) -> str:
        """One response, literals included; without the final CRLF."""
        if self.closed:
            raise _Closed
        parts: list[bytes] = []
        while True:
            nl = self.buf.find(b"\n")
            while nl == -1:
                self._fill()
                nl = self.buf.find(b"\n")
            line = bytes(self.buf[: nl + 1])
            del self.buf[: nl + 1]
            parts.append(line)
            m = re.search(rb"(?:^|[ (])~?\{(\d+)\+?\}\r?\n$", line)
            if m is None:
                break
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            parts.append(bytes(self.buf[:size]))
            del self.buf[:size]
        text = b"".join(parts).decode(_ENCODING).removesuffix("\n").removesuffix("\r")
        self.log.append(f"S{self.index + 1}: {text}")
        return text

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


def _literal_chunks(cmdline: str) -> list[str]:
    """Split a command where a synchronising literal needs the server's ``+`` first."""
    chunks: list[str] = []
    start = pos = 0
    while (nl := cmdline.find("\n", pos)) != -1:
        m = re.search(r" ~?\{(\d+)(\+?)\}\r?$", cmdline[pos:nl])
        if m is None:
            pos = nl + 1
            continue
        if not m.group(2):
            chunks.append(cmdline[start : nl + 1])
            start = nl + 1
        pos = nl + 1 + int(m.group(1))
    chunks.append(cmdline[start:])
    return chunks


def _append_has_body(args_text: str, replace: bool) -> bool:
    try:
        args = parse_args(args_text)
    except ParseError:
        return False
    i = 1 if replace else 0
    if i >= len(args):
        return False
    if i + 1 < len(args) and isinstance(args[i + 1], ImapList):
        i += 1
    if i + 1 < len(args) and isinstance(args[i + 1], String) and not args[i + 1].literal:  # type: ignore[union-attr]
        i += 1
    nxt = args[i + 1] if i + 1 < len(args) else None
    return (isinstance(nxt, String) and nxt.literal) or (
        isinstance(nxt, Atom) and _ci(nxt.value) == "CATENATE"
    )


class _Run:
    def __init__(
        self, script: Script, connect: Callable[[], socket.socket], user: str, password: str,
        mailbox: str, user2: str | None, timeout: float,
    ) -> None:  # fmt: skip
        self.script = script
        self.connect = connect
        self.mailbox = mailbox
        self.timeout = timeout
        self.users = [user] * script.connections
        for idx, name in script.usernames.items():
            if idx < len(self.users):
                self.users[idx] = user2 if name in ("$user2", "${user2}") and user2 else name
        self.password = password
        self.source = _MboxSource(read_mbox(script.mbox_path))
        self.matcher = Matcher()
        self.conns: list[_Connection] = []
        self.log: list[str] = []
        self.failures: list[Failure] = []
        self.output: list[str] = []
        self.group: CommandGroup | None = None
        self.init_finished = False
        # per command group
        self.found: list[bool] = []
        self.best: list[tuple[int, str]] = []
        self.mismatches = 0
        self.first_extra: str | None = None
        self.pending: dict[str, Command] = {}
        self.continuation = False
        self.last_response = ""

    # -- reporting ----------------------------------------------------------------------
    def fail(self, message: str) -> None:
        group = self.group
        if not self.init_finished or group is None:
            self.failures.append(Failure(0, "(initialization)", message, list(self.log)))
            return
        command = group.commands[0].text if group.commands else "(banner)"
        self.failures.append(Failure(group.line, command, message, list(self.log)))

    # -- variables ----------------------------------------------------------------------
    def init_variables(self) -> None:
        v = self.matcher.variables
        for i, name in enumerate(self.users):
            suffix = "" if i == 0 else str(i + 1)
            v["user" + suffix] = name
            v["username" + suffix] = name.split("@", 1)[0]
            v["domain" + suffix] = name.split("@", 1)[1] if "@" in name else "localhost"
            v["password" + suffix] = self.password
        v["mailbox"] = self.mailbox
        v["mailbox_url"] = _mailbox_url(self.mailbox)

    # -- responses ----------------------------------------------------------------------
    def handle(self, conn: _Connection, text: str) -> tuple[str, list[Arg]] | None:
        """Process one response; tagged ones are returned as (tag, args after the tag)."""
        self.last_response = text
        if text == "+" or text.startswith("+ "):
            self.continuation = True
            return None
        try:
            args = parse_response(text)
        except ParseError as e:
            self.fail(f"error parsing input: {e}: {text}")
            raise _Abort from e
        if not args or not isinstance(args[0], Atom):
            self.fail(f"Broken tag: {text}")
            raise _Abort
        tag, rest = args[0].value, args[1:]
        if tag == "*":
            self.untagged(conn, rest)
            return None
        self.capability_from_code(conn, rest)
        return tag, rest

    def capability_from_code(self, conn: _Connection, args: Sequence[Arg]) -> None:
        if len(args) > 1 and isinstance(args[1], Atom) and _ci(args[1].value) == "[CAPABILITY":
            words: list[str] = []
            for a in args[2:]:
                value = _astring(a) or ""
                words.append(value.split("]", 1)[0])
                if "]" in value:
                    break
            conn.capabilities = [w for w in words if w]
            conn.postlogin = conn.postlogin or self.logged_in

    logged_in = False

    def untagged(self, conn: _Connection, args: list[Arg]) -> None:
        first = _ci(_astring(args[0]) or "") if args else ""
        second = _ci(_astring(args[1]) or "") if len(args) > 1 else ""
        if second == "EXISTS" and first.isdigit():
            conn.messages = int(first)
        elif second == "EXPUNGE" and first.isdigit():
            conn.messages = max(conn.messages - 1, 0)
        elif first == "CAPABILITY":
            conn.capabilities = [_astring(a) or "" for a in args[1:]]
            conn.postlogin = conn.postlogin or self.logged_in
        elif first == "BYE":
            conn.seen_bye = True
        elif first in ("OK", "PREAUTH"):
            self.capability_from_code(conn, args)
        if self.init_finished and self.group is not None:
            self.match_untagged(conn, args)
        if second == "EXPUNGE" and first.isdigit():
            self.matcher.expunged(int(first))
        if first in ("LIST", "LSUB") and len(args) >= 4 and isinstance(args[1], ImapList):
            name = _astring(args[3])
            if name is not None:
                (self.lsub_seen if first == "LSUB" else self.list_seen).append(name)

    list_seen: list[str]
    lsub_seen: list[str]

    def match_untagged(self, conn: _Connection, args: list[Arg]) -> None:
        group = self.group
        assert group is not None
        if not group.untagged and (self.script.ignore_extra_untagged or conn.logout_sent):
            return
        prefix = _is_status(args)
        tag = None
        if group.commands:
            first_tag = next((t for t, c in self.pending.items() if c is group.commands[0]), None)
            tag = first_tag
        m = self.matcher
        found_some = False
        for i, ut in enumerate(group.untagged):
            if self.found[i]:
                continue
            saved = m.variables.get("tag")
            if tag is not None:
                m.variables["tag"] = tag
            count = m.match_args(ut.args, args, prefix=prefix)
            if tag is not None:
                m.variables.pop("tag", None)
                if saved is not None:
                    m.variables["tag"] = saved
            if count == _FULL:
                if ut.existence == "!":
                    self.fail(
                        f"Unexpected untagged match:\n  Match: {format_args(ut.args)}\n"
                        f"  Reply: {format_args(args)}"
                    )
                    m.added = []
                    return
                self.found[i] = True
                found_some = True
                m.added = []
                continue
            if self.best[i][0] < count:
                self.best[i] = (count, format_args(args))
            for name in m.added:
                m.variables.pop(name, None)
            m.added = []
        if not found_some:
            self.mismatches += 1
            if not self.script.ignore_extra_untagged and self.first_extra is None:
                self.first_extra = format_args(args)

    # -- commands -----------------------------------------------------------------------
    def command(self, conn: _Connection, text: str) -> list[Arg]:
        """Send a setup command and wait for its tagged reply (args after the tag)."""
        tag = conn.next_tag()
        self.send(conn, tag, text)
        while True:
            done = self.handle(conn, conn.read_response())
            if done is not None and done[0] == tag:
                return done[1]

    def send(self, conn: _Connection, tag: str, cmdline: str) -> bool:
        """Send a command, waiting for ``+`` at each synchronising literal.

        False when the server answered the command before taking all of it.
        """
        chunks = _literal_chunks(f"{tag} {cmdline}\r\n")
        for i, chunk in enumerate(chunks):
            conn.send(chunk)
            if i == len(chunks) - 1:
                break
            self.continuation = False
            while not self.continuation:
                done = self.handle(conn, conn.read_response())
                if done is not None:
                    if self.init_finished:
                        self.tagged(conn, *done)
                    if done[0] == tag:
                        return False
        return True

    def append_command(self, args: str | None) -> str:
        msg = self.source.get()
        data = msg.data.decode(_ENCODING)
        if args is None:
            head = f"APPEND {_quote(self.mailbox)} {_quote(msg.internaldate)}"
        else:
            head = args
        return f"{head} {{{len(data)}}}\r\n{data}"

    def tagged(self, conn: _Connection, tag: str, args: list[Arg]) -> None:
        """A tagged reply during the test proper."""
        cmd = self.pending.pop(tag, None)
        if cmd is None:
            self.fail(f"Unexpected tagged reply: {tag} {format_args(args)}")
            raise _Abort
        status = _ci(_astring(args[0]) or "") if args else ""
        if status not in ("OK", "NO", "BAD"):
            self.fail(f"Broken tagged reply: {tag} {format_args(args)}")
            raise _Abort
        assert cmd.reply is not None
        m = self.matcher
        m.variables["tag"] = tag
        count = m.match_args(cmd.reply, args, prefix=True)
        m.variables.pop("tag", None)
        m.added = []
        if count != _FULL:
            self.fail(
                f"Expected tagged reply '{format_args(cmd.reply)}', got '{self.last_response}'"
            )
        if status == "BAD" and not cmd.expects_bad:
            self.fail(f"BAD reply for command: {cmd.text}")
            raise _Abort

    def run_group(self, group: CommandGroup) -> None:
        self.group = group
        self.log = []
        for c in self.conns:
            c.log = self.log
        conn = self.conns[group.connection]
        self.found = [False] * len(group.untagged)
        self.best = [(0, "")] * len(group.untagged)
        self.mismatches = 0
        self.first_extra = None
        self.matcher.start_group(conn.messages)
        self.pending = {}
        try:
            for cmd in group.commands:
                self.matcher.errors = []
                cmdline = self.matcher.expand(cmd.text)
                for error in self.matcher.errors:
                    self.fail(error)
                lower = cmdline.lower()
                if lower == "append":
                    cmdline = self.append_command(None)
                elif lower.startswith("append ") and not _append_has_body(cmdline[7:], False):
                    cmdline = self.append_command("APPEND " + cmdline[7:])
                elif lower.startswith("replace ") and not _append_has_body(cmdline[8:], True):
                    cmdline = self.append_command("REPLACE " + cmdline[8:])
                elif lower.startswith("uid replace ") and not _append_has_body(cmdline[12:], True):
                    cmdline = self.append_command("UID REPLACE " + cmdline[12:])
                elif cmd.line == 0 or lower == "logout" or group.have_untagged_bye:
                    conn.logout_sent = True
                if lower.startswith(("select ", "examine ")):
                    conn.messages = 0
                tag = conn.next_tag()
                self.pending[tag] = cmd
                self.send(conn, tag, cmdline)
            while self.pending:
                done = self.handle(conn, conn.read_response())
                if done is not None:
                    self.tagged(conn, *done)
        except _Closed as e:
            conn.closed = True
            if group.have_untagged_bye and conn.seen_bye:
                for cmd in group.commands:
                    if cmd.reply is None or format_args(cmd.reply) != "":
                        self.fail(
                            f"Command expected '{format_args(cmd.reply or [])}' as tagged reply"
                            ' - only "" allowed when BYE happens'
                        )
            else:
                self.fail("Unexpected disconnection")
                raise _Abort from e
        self.group_finished(group)

    def group_finished(self, group: CommandGroup) -> None:
        missing = [
            i for i, ut in enumerate(group.untagged) if ut.existence == "*" and not self.found[i]
        ]
        if missing:
            ut = group.untagged[missing[0]]
            unexpanded = format_args(ut.args)
            expanded = self.matcher.expand(unexpanded, skip_uninitialized=True)
            self.fail(
                f"Missing {len(missing)} untagged replies ({self.mismatches} mismatches)\n"
                f"  - first unexpanded: {unexpanded}\n"
                f"  - first expanded: {expanded}\n"
                f"  - best match: {self.best[missing[0]][1]}"
            )
        if self.first_extra is not None:
            self.fail(
                f"{self.mismatches} unexpected untagged replies received, first: {self.first_extra}"
            )
        for line in group.output:
            self.output.append(self.matcher.expand(line))
        if group.sleep:
            time.sleep(group.sleep)

    # -- setup --------------------------------------------------------------------------
    def setup_failed(self, what: str, args: Sequence[Arg]) -> None:
        self.fail(f"{what} failed: {format_args(args)}")
        raise _Abort

    def setup(self) -> str | None:
        """Bring the server to the script's state; a skip reason when capabilities lack."""
        script = self.script
        self.list_seen, self.lsub_seen = [], []
        for i in range(script.connections):
            conn = _Connection(i, self.connect(), self.timeout, self.log)
            self.conns.append(conn)
            text = conn.read_response()
            if i == 0 and script.have_banner_check:
                self.init_finished = True
                self.group = script.groups[0]
                self.found = [False] * len(self.group.untagged)
                self.best = [(0, "")] * len(self.group.untagged)
                self.handle(conn, text)
                self.group_finished(self.group)
                self.init_finished = False
                self.group = None
            else:
                self.handle(conn, text)
            if not text.startswith("* "):
                self.fail(f"Malformed banner: {text}")
                raise _Abort
        if script.state == "nonauth":
            conn = self.conns[0]
            if conn.capabilities is None:
                self.command(conn, "CAPABILITY")
            return self.missing_capabilities(conn)
        self.logged_in = True
        for conn in self.conns:
            reply = self.command(
                conn, f"LOGIN {_quote(self.users[conn.index])} {_quote(self.password)}"
            )
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed("LOGIN", reply)
        first = self.conns[0]
        if not first.postlogin:
            self.command(first, "CAPABILITY")
        missing = self.missing_capabilities(first)
        if missing:
            return missing
        box = self.mailbox
        is_inbox = _ci(box) == "INBOX"
        for cmd in ("LIST", "LSUB"):
            reply = self.command(first, f'{cmd} "" {_quote(box + "*")}')
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed(cmd, reply)
        for name in sorted(set(self.list_seen), key=_ci, reverse=True):
            reply = self.command(first, f"DELETE {_quote(name)}")  # NO: e.g. \Noselect
            if _ci(_astring(reply[0]) or "") == "BAD":
                self.setup_failed("DELETE", reply)
        for name in sorted(set(self.lsub_seen), key=_ci, reverse=True):
            reply = self.command(first, f"UNSUBSCRIBE {_quote(name)}")
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed("UNSUBSCRIBE", reply)
        if is_inbox:
            self.empty_inbox(first)
        if script.state == "auth":
            return None
        if not is_inbox:
            reply = self.command(first, f"CREATE {_quote(box)}")
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed("CREATE", reply)
        if script.state == "created":
            return None
        appends = 0
        while (script.messages is None and not self.source.eof()) or (
            script.messages is not None and appends < script.messages
        ):
            appends += 1
            tag = first.next_tag()
            if self.send(first, tag, self.append_command(None)):
                while True:
                    done = self.handle(first, first.read_response())
                    if done is not None and done[0] == tag:
                        break
                reply = done[1]
            else:
                reply = [Atom("NO")]
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed("APPEND", reply)
        if script.state == "appended":
            return None
        for conn in self.conns:
            reply = self.command(conn, f"SELECT {_quote(box)}")
            if _ci(_astring(reply[0]) or "") != "OK":
                self.setup_failed("SELECT", reply)
        return None

    def empty_inbox(self, conn: _Connection) -> None:
        """INBOX cannot be deleted: expunge it instead (ImapTest leaves it as it is)."""
        self.command(conn, "SELECT INBOX")
        if conn.messages:
            self.command(conn, "STORE 1:* +FLAGS.SILENT (\\Deleted)")
            self.command(conn, "EXPUNGE")
        self.command(conn, "CLOSE")
        conn.messages = 0

    def missing_capabilities(self, conn: _Connection) -> str | None:
        have = {_ci(c) for c in conn.capabilities or []}
        missing = [c for c in self.script.capabilities if _ci(c) not in have]
        return "server lacks " + " ".join(missing) if missing else None

    def execute(self) -> Result:
        started = time.monotonic()
        status: Status = "pass"
        reason = ""
        try:
            skip = self.setup()
            if skip:
                status, reason = "skip", skip
            else:
                self.init_finished = True
                self.init_variables()
                groups = (
                    self.script.groups[1:]
                    if self.script.have_banner_check
                    else (self.script.groups)
                )
                for group in groups:
                    self.run_group(group)
        except _Abort:
            pass
        except _Closed:
            self.fail("Unexpected disconnection")
        except TimeoutError:
            self.fail(f"Timeout ({self.timeout}s) waiting for the server")
        finally:
            for conn in self.conns:
                conn.close()
        if self.failures:
            status = "fail"
            reason = self.failures[0].message.split("\n", 1)[0]
        return Result(
            self.script.name, status, reason, self.failures, self.output,
            time.monotonic() - started,
        )  # fmt: skip


def _mailbox_url(mailbox: str) -> str:
    """The mailbox as an IMAP URL path segment (mUTF-7 decoded, then %-escaped)."""
    from urllib.parse import quote

    return quote(_decode_mutf7(mailbox), safe="!$&'()*+,=:@/-._~")


def _decode_mutf7(name: str) -> str:
    import base64

    def repl(m: re.Match[str]) -> str:
        chunk = m.group(1)
        if not chunk:
            return "&"
        raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4))
        return raw.decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", repl, name)


def _capability_name(cap: str) -> str:
    return _ci(cap.split("=", 1)[0])


def run_script(
    script: Script,
    connect: Callable[[], socket.socket],
    user: str,
    password: str,
    *,
    mailbox: str = "imaptest",
    user2: str | None = None,
    skip_extensions: Collection[str] = (),
    timeout: float = 10.0,
) -> Result:
    """Run one script against the server that ``connect()`` reaches (a new socket each call).

    ``mailbox`` is ImapTest's ``box`` (default ``imaptest``; it and ``<mailbox>*`` are
    deleted first, so use a dedicated account).  ``user2`` serves ``user 2: $user2``
    headers.  A script needing one of ``skip_extensions`` (compared by capability name,
    so ``URLAUTH`` also covers ``URLAUTH=BINARY``) is skipped without connecting.
    """
    skip = {_capability_name(e) for e in skip_extensions}
    excluded = [c for c in script.capabilities if _capability_name(c) in skip]
    if excluded:
        return Result(script.name, "skip", "extension skipped by caller: " + " ".join(excluded))
    if script.require_user2 and user2 is None:
        return Result(script.name, "skip", "needs a second user (user2)")
    return _Run(script, connect, user, password, mailbox, user2, timeout).execute()


def run_directory(
    directory: str | os.PathLike[str], connect: Callable[[], socket.socket], user: str,
    password: str, **options: object,
) -> Iterator[Result]:  # fmt: skip
    """Every script of a directory in ImapTest's order (see :func:`run_script`)."""
    for path in list_scripts(directory):
        yield run_script(load_script(path), connect, user, password, **options)  # type: ignore[arg-type]
