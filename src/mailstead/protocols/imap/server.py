"""The sans-IO IMAP server core (IMAP4rev2 RFC 9051, IMAP4rev1 RFC 3501).

Bytes go in with ``receive_data``, events come out of ``next_event``, response bytes (built with
`response`) go in with ``send`` and out with ``data_to_send``. Time, sockets, TLS and the store
are the shell's business.

The contract, in order of a connection's life:

1. ``greet(text, capabilities)`` queues ``* OK [CAPABILITY ...] text`` (or ``* PREAUTH``).
2. Feed what the socket gives to ``receive_data`` (``b""`` at EOF), then call ``next_event`` until
   it returns `NEED_DATA`. Read from the socket only then: while the core is `PAUSED` it does
   not look at further input, and more than ``max_buffered_input`` unread octets close the
   connection with ``* BYE``.
3. `CommandReceived` is a valid command, legal in the current state (the state table decides).
   The core is `PAUSED` until the shell answered it and called ``command_done()``: commands are
   handed out strictly one at a time, in pipeline order. The shell moves states with
   ``set_state`` (after LOGIN, SELECT, CLOSE ...; `State.LOGOUT` ends the connection).
4. The core answers protocol errors itself and reports them as `ProtocolErrorEvent`: malformed
   commands and commands illegal in the state (``tag BAD``; ``* BAD`` without a valid tag),
   unsupported charsets (``tag NO [BADCHARSET ...]``), over-long command lines, and literals over
   the limits, refused *before* they are read when synchronising (``tag NO [TOOBIG]`` for
   APPEND, RFC 7889; ``tag BAD [TOOBIG]`` otherwise). It sends ``+ Ready for literal data`` for
   each accepted synchronising literal. More than ``max_errors`` consecutive refusals: ``* BYE``.
5. Input modes the shell switches on for the outstanding command: ``begin_idle()`` (the core
   sends ``+ idling``; lines until DONE give `IdleDone`), ``begin_authenticate()`` (each client
   line is an `AuthenticateLine`; the shell sends its own ``+ challenge`` lines). Both end with
   ``command_done()``.
6. STARTTLS: from the moment the command is handed out, input is discarded (CVE-2011-0411);
   answer OK, flush, do the handshake, then ``tls_started()`` (which also ends the command), or
   refuse and ``command_done()``.
7. COMPRESS DEFLATE: queue the tagged OK, then ``start_compression()`` (RFC 4978): everything
   queued after it is deflated (raw deflate, a sync flush per ``data_to_send()``), and all input
   not yet read, and all later input, is inflated. Then ``command_done()``.
8. `ConnectionClosed` (EOF, LOGOUT state, ``* BYE``): flush ``data_to_send()`` and close.

Literal limits (see `Settings`): a literal is at most ``max_literal`` octets, or
``max_append_size`` in APPEND (advertise it as APPENDLIMIT); one command's literals together at
most ``max_command_literals``. APPEND messages are held in memory up to those bounds, not
streamed. A non-synchronising literal over the limit cannot be refused before it arrives: it is
read and discarded without being buffered and the command gets the same tagged refusal, unless
it is more than ten times ``max_append_size``: then ``* BYE`` and close.

Before login (state NOT_AUTHENTICATED) the literals of one command together, and each
AUTHENTICATE line, are at most ``max_preauth_literals`` octets (the command text is bounded by
``max_line`` as always), so an unauthenticated client holds little memory: a synchronising
literal past it gets ``tag BAD [TOOBIG]`` instead of ``+``; a non-synchronising one gets the
same and ``* BYE``, and the connection closes.
"""

from __future__ import annotations

import enum
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from . import response
from .commands import Idle, StartTLS
from .events import (
    NEED_DATA,
    PAUSED,
    AuthenticateLine,
    CommandReceived,
    ConnectionClosed,
    Event,
    IdleDone,
    ProtocolErrorEvent,
    Sentinel,
)
from .grammar import COMMAND_NAMES, ParseError, parse_command, split_tag
from .receiver import CommandReceiver, Complete, Continue, Fatal, Refusal, Rejected
from .state import State, check

__all__ = ["ProtocolError", "ServerCore", "Settings"]

_TOOBIG: Final = b"[TOOBIG]"


class ProtocolError(RuntimeError):
    """The shell used the core wrongly (e.g. ``command_done()`` with no command outstanding)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the core enforces. Sizes in octets."""

    max_line: int = 64 * 1024  # command text without literals; past it BAD "Command line too long"
    max_literal: int = 64 * 1024  # one literal outside APPEND (names, search strings, passwords)
    max_append_size: int = 50 * 1024 * 1024  # one APPEND message; advertise as APPENDLIMIT
    max_command_literals: int = 50 * 1024 * 1024  # all literals of one command (MULTIAPPEND)
    # before login, the literals of one command together, and one AUTHENTICATE line: LOGIN has
    # two short strings, SASL responses are short (the text is bounded by max_line)
    max_preauth_literals: int = 8 * 1024
    literal_plus: bool = True  # LITERAL+ (RFC 7888); False: LITERAL- ({n+} up to 4096 only)
    utf8_accept: bool = False  # UTF-8 mailbox names from the start (else after enable_utf8())
    max_buffered_input: int = 1024 * 1024  # unread input; the shell reads only on NEED_DATA
    max_errors: int = 20  # consecutive refused commands before * BYE
    continuation_text: str = "Ready for literal data"

    def __post_init__(self) -> None:
        if min(self.max_line, self.max_literal, self.max_append_size,
               self.max_preauth_literals) < 1024:  # fmt: skip
            raise ValueError("line and literal limits must be at least 1024 octets")
        if self.max_buffered_input < self.max_line + 2:
            raise ValueError("max_buffered_input must hold one command line")


class _Mode(enum.Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTHENTICATE = "authenticate"
    AWAIT_TLS = "await-tls"
    CLOSED = "closed"


class ServerCore:
    """One IMAP server connection, as a state machine. See the module docstring."""

    def __init__(self, settings: Settings | None = None) -> None:
        s = settings or Settings()
        self._settings = s
        self._state = State.NOT_AUTHENTICATED
        self._mode = _Mode.COMMAND
        self._rx = CommandReceiver(s.max_line, s.max_append_size, literal_minus=not s.literal_plus)
        self._rx.max_literals = s.max_preauth_literals
        self._events: deque[Event] = deque()
        self._out = bytearray()
        self._outstanding: str | None = None  # tag of the command being answered
        self._outstanding_idle = False
        self._eof = False
        self._errors = 0
        self._utf8 = s.utf8_accept
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None
        self._zin = b""  # compressed input not inflated yet
        self._zdirty = False
        self._continue = response.continuation(s.continuation_text)

    # --- properties ---------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def utf8(self) -> bool:
        """UTF-8 mailbox names and quoted strings (UTF8=ACCEPT enabled, RFC 6855)."""
        return self._utf8

    @property
    def compressing(self) -> bool:
        return self._deflate is not None

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def outstanding(self) -> str | None:
        """The tag of the command handed out and not yet done, if any."""
        return self._outstanding

    # --- output -------------------------------------------------------------------------------
    def greet(self, text: str, capabilities: Iterable[str] = (), *, preauth: bool = False) -> None:
        """Queue the greeting; ``preauth`` sends ``* PREAUTH`` and enters AUTHENTICATED."""
        caps = list(capabilities)
        code = response.code("CAPABILITY", *caps) if caps else None
        self.send(response.tagged("*", "PREAUTH" if preauth else "OK", text, code))
        if preauth:
            self.set_state(State.AUTHENTICATED)

    def send(self, data: bytes) -> None:
        """Queue response bytes (built with `response`)."""
        if self._deflate is not None:
            self._out += self._deflate.compress(data)
            self._zdirty = True
        else:
            self._out += data

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (possibly empty)."""
        if self._deflate is not None and self._zdirty:
            self._out += self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self._zdirty = False
        out = bytes(self._out)
        self._out.clear()
        return out

    # --- input --------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the client closed its side."""
        mode = self._mode
        if mode is _Mode.CLOSED:
            return
        if not data:
            self._eof = True
            return
        if mode is _Mode.AWAIT_TLS:
            return  # CVE-2011-0411: plaintext after STARTTLS is never read
        limit = self._settings.max_buffered_input
        if self._inflate is not None:
            self._zin += data
            if len(self._zin) > limit:
                self._bye("Too much pipelined input")
            return
        self._rx.feed(data)
        if self._rx.unread > limit:
            self._bye("Too much pipelined input")

    def next_event(self) -> Event | Sentinel:
        """The next event, NEED_DATA (feed more bytes) or PAUSED (a command is outstanding)."""
        while True:
            if self._events:
                return self._events.popleft()
            mode = self._mode
            if mode is _Mode.CLOSED:
                return NEED_DATA
            if mode is _Mode.IDLE or mode is _Mode.AUTHENTICATE:
                line = self._rx.line()
                if line is None:
                    if self._inflate_more():
                        continue
                    if self._eof:
                        self._close("eof")
                        continue
                    return NEED_DATA
                if mode is _Mode.IDLE:
                    self._mode = _Mode.COMMAND  # still outstanding until command_done()
                    return IdleDone(line is not False and line.upper() == b"DONE")
                if line is False:
                    return AuthenticateLine(b"", too_long=True)
                return AuthenticateLine(line)
            if self._outstanding is not None:
                return PAUSED
            out = self._rx.step(self._judge)
            if out is None:
                if self._inflate_more():
                    continue
                if self._eof:
                    self._close("eof")
                    continue
                return NEED_DATA
            if isinstance(out, Complete):
                self._command(out.data, out.literals)
                del out  # a large literal lives on in the command only
            elif isinstance(out, Continue):
                self.send(self._continue)
            elif isinstance(out, Rejected):
                r = out.refusal
                self._refuse(out.tag, r.status, r.text, r.code)
            elif isinstance(out, Fatal):
                if out.refusal is not None:
                    r = out.refusal
                    self.send(response.tagged(out.tag or "*", r.status, r.text, r.code))
                self._bye(out.text)

    # --- the shell's decisions ----------------------------------------------------------------
    def command_done(self) -> None:
        """The outstanding command is answered: go on with the next one (ends IDLE and
        AUTHENTICATE input modes, and a refused STARTTLS)."""
        if self._outstanding is None:
            raise ProtocolError("command_done() with no command outstanding")
        self._outstanding = None
        self._outstanding_idle = False
        if self._mode in (_Mode.IDLE, _Mode.AUTHENTICATE, _Mode.AWAIT_TLS):
            self._mode = _Mode.COMMAND

    def set_state(self, state: State) -> None:
        """Move to ``state``; LOGOUT stops reading and yields `ConnectionClosed` ("logout")."""
        self._state = state
        preauth = state is State.NOT_AUTHENTICATED
        self._rx.max_literals = self._settings.max_preauth_literals if preauth else None
        if state is State.LOGOUT and self._mode is not _Mode.CLOSED:
            self._close("logout")

    def begin_idle(self, text: str = "idling") -> None:
        """Answer the outstanding IDLE with ``+ text`` and wait for DONE (RFC 2177/9051 §6.3.13)."""
        if self._outstanding is None or not self._outstanding_idle:
            raise ProtocolError("begin_idle() without an outstanding IDLE")
        self.send(response.continuation(text))
        self._mode = _Mode.IDLE

    def begin_authenticate(self) -> None:
        """Read SASL response lines for the outstanding AUTHENTICATE until ``command_done()``."""
        if self._outstanding is None:
            raise ProtocolError("begin_authenticate() with no command outstanding")
        self._mode = _Mode.AUTHENTICATE

    def enable_utf8(self) -> None:
        """After ENABLE UTF8=ACCEPT (or IMAP4rev2): mailbox names are UTF-8 (RFC 6855 §3)."""
        self._utf8 = True

    def start_compression(self) -> None:
        """After queueing COMPRESS's tagged OK: deflate all later output, inflate all later input
        (RFC 4978 §3). Unread input is compressed data already and is inflated too."""
        if self._outstanding is None:
            raise ProtocolError("start_compression() with no command outstanding")
        if self._deflate is not None:
            raise ProtocolError("compression is already active")
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self._zin = self._rx.take_unread()

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: forget all input so far and end the
        command (RFC 9051 §6.2.1; CVE-2011-0411)."""
        if self._mode is not _Mode.AWAIT_TLS:
            raise ProtocolError("tls_started() without an outstanding STARTTLS")
        self._rx.clear()
        self._mode = _Mode.COMMAND
        self._outstanding = None

    def close(self, text: str = "Server shutting down") -> None:
        """Close on the shell's initiative (idle timeout, shutdown): ``* BYE text``."""
        if self._mode is not _Mode.CLOSED:
            self._bye(text)

    # --- internals ----------------------------------------------------------------------------
    def _close(self, reason: str) -> None:
        self._mode = _Mode.CLOSED
        self._rx.clear()
        self._zin = b""
        self._events.append(ConnectionClosed(reason))

    def _bye(self, text: str) -> None:
        self.send(response.tagged("*", "BYE", text))
        self._close("bye")

    def _inflate_more(self) -> bool:
        """Inflate compressed input into the receiver, at most up to ``max_buffered_input``
        unread octets (a small deflate stream can expand a thousandfold). True when the receiver
        got input or the connection was closed; only called when the receiver needs input."""
        inflate = self._inflate
        if inflate is None or not self._zin:
            return False
        room = self._settings.max_buffered_input - self._rx.unread
        try:
            data = inflate.decompress(self._zin, max(room, 1))
        except zlib.error:
            self._bye("Invalid compressed data")
            return True
        self._zin = inflate.unconsumed_tail
        if data:
            self._rx.feed(data)
            return True
        return False

    def _refuse(self, tag: str | None, status: str, text: str, code: bytes | None) -> None:
        self.send(response.tagged(tag or "*", "NO" if status == "NO" else "BAD", text, code))
        self._events.append(ProtocolErrorEvent(tag, text))
        self._errors += 1
        if self._errors > self._settings.max_errors:
            self._bye("Too many invalid commands")

    def _judge(self, first: bytes, size: int, kept: int, sync: bool) -> Refusal | None:
        """Accept or refuse a literal before reading it (see the module docstring)."""
        tag, name = split_tag(first)
        if tag is None:
            return Refusal("BAD", "Invalid tag")
        base = name.rsplit(" ", 1)[-1] if name else ""
        if name is None or base not in COMMAND_NAMES:
            return Refusal("BAD", "Unknown command")
        refused = check(self._state, name)
        if refused is not None:
            return Refusal("BAD", refused)
        s = self._settings
        if base == "APPEND":  # RFC 7889 §4: NO [TOOBIG] over APPENDLIMIT
            if size > s.max_append_size or kept + size > s.max_command_literals:
                return Refusal("NO", "Message too large", _TOOBIG)
        elif size > s.max_literal or kept + size > s.max_command_literals:
            return Refusal("BAD", "Literal too large", _TOOBIG)
        return None

    def _command(self, data: bytes, literals: dict[int, bytes]) -> None:
        tag, name = split_tag(data)
        if tag is not None and name is not None:
            refused = check(self._state, name)
            if refused is not None and name.rsplit(" ", 1)[-1] in COMMAND_NAMES:
                self._refuse(tag, "BAD", refused, None)
                return
        try:
            tag, command = parse_command(data, utf8=self._utf8, literals=literals)
        except ParseError as e:
            self._refuse(e.tag, e.status, e.text, e.code)
            return
        self._errors = 0
        self._outstanding = tag
        if isinstance(command, StartTLS):
            self._rx.clear()
            self._mode = _Mode.AWAIT_TLS
        self._outstanding_idle = isinstance(command, Idle)
        self._events.append(CommandReceived(tag, command))
