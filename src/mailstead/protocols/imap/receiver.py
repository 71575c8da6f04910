"""Splitting the client's byte stream into complete IMAP commands, with literals, bounded.

A command is lines joined by literals (RFC 9051 §4.3): a line ending in ``{n}`` (synchronising:
the server must answer ``+`` first), ``{n+}`` (non-synchronising, RFC 7888 LITERAL+/LITERAL-) or
``~{n}`` / ``~{n+}`` (literal8, RFC 3516) is followed by n octets and then the rest of the command.
`CommandReceiver.step` returns one outcome at a time:

- `Complete`: the whole command in wire form (the final CRLF removed, lines re-joined with
  CRLF), ready for `grammar.parse_command`. A literal's octets are not in it: each is one
  bytes object in ``literals``, keyed by the offset right after its ``{n}\\r\\n`` where they
  would be, so a large APPEND literal is never copied once received (`grammar` takes it as it
  is).
- `Continue`: a synchronising literal was accepted; send ``+ ...`` now, the octets follow.
- `Rejected`: the command was refused and is being discarded; send ``tag BAD``/``tag NO``.
- `Fatal`: the stream cannot be followed safely any more; send ``* BYE`` and close.

Every literal is judged by the caller's ``judge(first_line, size, kept_so_far)`` before any of
it is read: it returns None to accept or a `Refusal`. A refused synchronising literal is never
sent by the client (it sees the tagged reply instead of ``+``, RFC 9051 §7.5), so the command
simply ends. A refused non-synchronising literal is already on its way: its octets are read and
dropped as they stream (never buffered) and the rest of the command with them, unless it is
absurd (more than ``ABSURD_FACTOR`` times ``max_literal_hint``): then `Fatal`.

Bounds: the text of a command, literals excluded, is at most ``max_line`` octets (past it the
rest of the line is discarded as it streams and the command is `Rejected`); literal octets are
kept only once accepted, so the judge bounds them; unread input is the caller's to bound. When
``max_literals`` is set (before login), the literal octets of one command together, and every
plain line, are bounded by it too: a synchronising literal that would cross it is `Rejected`
(``BAD [TOOBIG]``, never sent), a non-synchronising one is `Fatal` after the same tagged
refusal (its octets are on their way; RFC 7888 §4 lets the server close, as Dovecot's login
does). A command is then at most ``max_line + max_literals`` octets.
"""

from __future__ import annotations

import enum
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from .grammar import split_tag

__all__ = [
    "ABSURD_FACTOR",
    "LITERAL_MINUS_MAX",
    "CommandReceiver",
    "Complete",
    "Continue",
    "Fatal",
    "Outcome",
    "Refusal",
    "Rejected",
]

ABSURD_FACTOR: Final = 10
LITERAL_MINUS_MAX: Final = 4096  # RFC 7888 §4: LITERAL- allows {n+} only up to 4096 octets
_MARKER: Final = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_TAIL: Final = 32  # octets kept while discarding a long line, to see a literal marker at its end
_COMPACT_AT: Final = 65536


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a literal (and so its command) is refused: the tagged reply to send."""

    status: Literal["BAD", "NO"]
    text: str
    code: bytes | None = None


@dataclass(frozen=True, slots=True)
class Complete:
    """``data``: the command without its literals' octets; ``literals``: each literal, by the
    offset in ``data`` right after its ``{n}\\r\\n``."""

    data: bytes
    literals: dict[int, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Continue:
    pass


@dataclass(frozen=True, slots=True)
class Rejected:
    """``tag`` is None when the command had no valid tag (send ``* BAD``)."""

    tag: str | None
    refusal: Refusal


@dataclass(frozen=True, slots=True)
class Fatal:
    """Send ``* BYE text`` and close; first the tagged ``refusal`` when there is one."""

    text: str
    tag: str | None = None
    refusal: Refusal | None = None


Outcome = Complete | Continue | Rejected | Fatal
Judge = Callable[[bytes, int, int, bool], Refusal | None]
"""(first line of the command, literal size, literal octets already kept, synchronising)."""

_CONTINUE: Final = Continue()


class _Mode(enum.Enum):
    LINE = "line"
    LITERAL = "literal"
    LONG_LINE = "long-line"


class CommandReceiver:
    """The input buffer and the command splitter; also reads plain lines (IDLE, AUTHENTICATE)."""

    def __init__(self, max_line: int, max_literal_hint: int, literal_minus: bool = False) -> None:
        self.max_line = max_line
        self.max_literal_hint = max_literal_hint  # for the absurd-size rule
        self.literal_minus = literal_minus
        self.max_literals: int | None = None  # literals of one command, and a plain line
        self._buf = bytearray()
        self._pos = 0
        self._mode = _Mode.LINE
        self._cmd = bytearray()  # the command so far, wire form without literal octets
        self._literals: dict[int, bytes] = {}  # the command's literals, by offset in _cmd
        # the literal being kept: written as it arrives into one buffer that grows in place
        # (realloc), whose bytes getvalue() then hands over without a copy
        self._literal: io.BytesIO | None = None
        self._first = b""  # first line of the command (tag and name)
        self._line_len = 0  # command text so far, literals excluded
        self._kept = 0  # literal octets kept so far
        self._remaining = 0  # literal octets still to read
        self._doomed = False  # the command was refused: discard what is left of it
        self._tail = b""

    # input -----------------------------------------------------------------------------------
    @property
    def unread(self) -> int:
        return len(self._buf) - self._pos

    @property
    def in_command(self) -> bool:
        """True while part of a command has been read (a literal, or a line awaiting its end)."""
        return bool(self._first) or self._mode is not _Mode.LINE

    def feed(self, data: bytes) -> None:
        if self._pos >= _COMPACT_AT or (self._pos and self._pos == len(self._buf)):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def take_unread(self) -> bytes:
        """Remove and return everything not yet read (for COMPRESS: it is deflated data)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest

    def clear(self) -> None:
        """Forget all input, including a partly read command (STARTTLS, CVE-2011-0411)."""
        self._buf.clear()
        self._pos = 0
        self._reset()
        self._mode = _Mode.LINE
        self._tail = b""

    def _reset(self) -> None:
        self._cmd = bytearray()
        self._literals = {}
        self._literal = None
        self._first = b""
        self._line_len = 0
        self._kept = 0
        self._doomed = False

    # plain lines -------------------------------------------------------------------------------
    def line(self) -> bytes | Literal[False] | None:
        """One line without its line ending; False when it was longer than ``max_line`` (its
        content is discarded, and so is the rest of it as it streams); None: need more input."""
        while True:
            if self._mode is _Mode.LONG_LINE:
                nl = self._buf.find(b"\n", self._pos)
                if nl == -1:
                    self._pos = len(self._buf)
                    return None
                self._pos = nl + 1
                self._mode = _Mode.LINE
                continue
            limit = min(self.max_line, self.max_literals or self.max_line) + 2
            nl = self._buf.find(b"\n", self._pos, self._pos + limit)
            if nl == -1:
                if self.unread >= limit:
                    self._mode = _Mode.LONG_LINE
                    self._pos += limit
                    return False
                return None
            end = nl - 1 if nl > self._pos and self._buf[nl - 1] == 0x0D else nl
            line = bytes(self._buf[self._pos : end])
            self._pos = nl + 1
            return line

    # commands ----------------------------------------------------------------------------------
    def step(self, judge: Judge) -> Outcome | None:
        """The next outcome, or None when more input is needed."""
        buf = self._buf
        while True:
            mode = self._mode
            if mode is _Mode.LITERAL:
                take = min(len(buf) - self._pos, self._remaining)
                if take:
                    if self._literal is not None:
                        self._literal.write(buf[self._pos : self._pos + take])
                    self._pos += take
                    self._remaining -= take
                if self._remaining:
                    return None
                if self._literal is not None:
                    self._literals[len(self._cmd)] = self._literal.getvalue()
                    self._literal = None
                self._mode = _Mode.LINE
                continue
            if mode is _Mode.LONG_LINE:
                nl = buf.find(b"\n", self._pos)
                if nl == -1:
                    self._tail = (self._tail + bytes(buf[self._pos :]))[-_TAIL:]
                    self._pos = len(buf)
                    return None
                seen = (self._tail + bytes(buf[self._pos : nl]))[-_TAIL:]
                self._pos = nl + 1
                self._tail = b""
                self._mode = _Mode.LINE
                out = self._end_of_line(seen.rstrip(b"\r"), judge)
                if out is not None:
                    return out
                continue
            # LINE
            allowance = self.max_line - self._line_len
            nl = buf.find(b"\n", self._pos, self._pos + allowance + 2)
            if nl == -1:
                if len(buf) - self._pos < allowance + 2:
                    return None
                # RFC 9051 §4 leaves line length to the server; past ours, discard to the LF
                first = self._first or bytes(buf[self._pos : self._pos + 256])
                doomed = self._doomed
                self._mode = _Mode.LONG_LINE
                self._tail = bytes(
                    buf[max(self._pos, self._pos + allowance - _TAIL) : self._pos + allowance + 2]
                )
                self._pos += allowance + 2
                self._cmd = bytearray()
                self._literals = {}
                self._doomed = True
                if doomed:
                    continue  # already answered
                return Rejected(_tag(first), Refusal("BAD", "Command line too long"))
            end = nl - 1 if nl > self._pos and buf[nl - 1] == 0x0D else nl
            line = bytes(buf[self._pos : end])
            self._pos = nl + 1
            out = self._end_of_line(line, judge)
            if out is not None:
                return out

    def _end_of_line(self, line: bytes, judge: Judge) -> Outcome | None:
        """A line of the current command ended; ``line`` is its text (for a long line, only the
        tail). Returns an outcome, or None to read on."""
        m = _MARKER.search(line) if line.endswith(b"}") else None
        if self._doomed:
            if m is not None and m.group(3):  # non-synchronising: its octets follow anyway
                self._start_literal(int(m.group(2)), keep=False)
            else:
                self._reset()  # the refused command ends here (a synchronising literal is not sent)
            return None
        if not self._first:
            self._first = line
        self._line_len += len(line)
        if m is None:
            self._cmd += line
            complete = Complete(bytes(self._cmd), self._literals)
            self._reset()
            return complete
        size = int(m.group(2))
        sync = not m.group(3)
        refusal: Refusal | None = None
        tag = _tag(self._first)
        limit = self.max_literals
        if limit is not None and self._kept + size > limit:
            refusal = Refusal("BAD", "Command too large before login", b"[TOOBIG]")
            self._reset()
            return Rejected(tag, refusal) if sync else Fatal("Too much input", tag, refusal)
        if not sync and self.literal_minus and size > LITERAL_MINUS_MAX:
            refusal = Refusal("BAD", "Non-synchronizing literal over 4096 octets", b"[TOOBIG]")
        if refusal is None:
            refusal = judge(self._first, size, self._kept, sync)
        if refusal is not None:
            if sync:
                self._reset()  # the client will not send it
                return Rejected(tag, refusal)
            if size > ABSURD_FACTOR * self.max_literal_hint:
                self._reset()
                return Fatal("Literal too large")
            self._cmd = bytearray()
            self._literals = {}
            self._doomed = True
            self._start_literal(size, keep=False)
            return Rejected(tag, refusal)
        self._cmd += line
        self._cmd += b"\r\n"
        self._kept += size
        self._start_literal(size, keep=True)
        return _CONTINUE if sync else None

    def _start_literal(self, size: int, *, keep: bool) -> None:
        self._remaining = size
        self._literal = io.BytesIO() if keep else None
        self._mode = _Mode.LITERAL


def _tag(first: bytes) -> str | None:
    return split_tag(first)[0]
