"""The sans-IO POP3 server core (RFC 1939, RFC 2449 CAPA/RESP-CODES/PIPELINING, RFC 2595 STLS,
RFC 5034 AUTH).

Bytes go in with ``receive_data``, events come out of ``next_event``, reply bytes (built with
`replies`) go in with ``send`` and out with ``data_to_send``. Time, sockets, TLS, SASL and the
store are the shell's business.

The contract, in order of a connection's life:

1. ``greet(text)`` queues ``+OK text``.
2. Feed what the socket gives to ``receive_data`` (``b""`` at EOF), then call ``next_event`` until
   it returns `NEED_DATA`; read from the socket only then. More than ``max_buffered_input``
   unread octets (pipelining gone wild) close the connection.
3. `CommandReceived` is a valid command, legal in the current state (`state.TABLE` decides).
   The core is `PAUSED` until the shell answered it and called ``command_done()``: commands are
   handed out one at a time, in pipeline order (RFC 2449 §6.6 PIPELINING). The shell moves
   between states with ``set_state``; `State.UPDATE` (after QUIT) stops reading.
4. The core answers what it refuses itself, with ``-ERR`` and a `ProtocolErrorEvent`: unknown
   commands, bad arguments, commands illegal in the state, lines over ``max_line``. The session
   reports its own failures worth counting (failed logins) with ``count_error()``. At
   ``max_errors`` errors the core adds ``-ERR Too many errors, closing connection`` and closes.
5. AUTH: ``begin_auth()`` makes each following client line an `AuthResponse` (the shell sends
   the ``+ challenge`` lines) until ``command_done()``.
6. STLS: from the moment the command is handed out, input is discarded (CVE-2011-0411); answer
   ``+OK``, flush, do the handshake, then ``tls_started()`` (which ends the command and goes
   back to AUTHORIZATION), or refuse and ``command_done()``.
7. `ConnectionClosed`: flush ``data_to_send()`` and close.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from . import replies
from .commands import ParseError, Stls, parse_command, split_keyword
from .events import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    Event,
    ProtocolErrorEvent,
    Sentinel,
)
from .receiver import TOO_LONG, LineReceiver, TooLong
from .state import TABLE, State, check

__all__ = ["ProtocolError", "ServerCore", "Settings"]

TOO_MANY_ERRORS: Final = "Too many errors, closing connection"


class ProtocolError(RuntimeError):
    """The shell used the core wrongly (e.g. ``command_done()`` with no command outstanding)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the core enforces. Sizes in octets, line ends included."""

    max_line: int = 255  # RFC 2449 §4: a command line is at most 255 octets with CRLF
    # A SASL response line (RFC 5034 §4 leaves its length open); 12288 as SMTP AUTH (RFC 4954 §4)
    max_auth_line: int = 12288
    max_errors: int = 10  # -ERR replies (refused lines, failed logins) before closing
    max_buffered_input: int = 1024 * 1024  # unread input; the shell reads only on NEED_DATA

    def __post_init__(self) -> None:
        if self.max_line < 255 or self.max_auth_line < 255:  # RFC 2449 §4
            raise ValueError("line limits must be at least 255 octets")
        if self.max_errors < 1:
            raise ValueError("max_errors must be positive")
        if self.max_buffered_input < max(self.max_line, self.max_auth_line):
            raise ValueError("max_buffered_input must hold one line")


class _Mode(enum.Enum):
    COMMAND = "command"
    AUTH = "auth"
    AWAIT_TLS = "await-tls"
    CLOSED = "closed"


class ServerCore:
    """One POP3 server connection, as a state machine. See the module docstring."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings()
        self._state = State.AUTHORIZATION
        self._mode = _Mode.COMMAND
        self._rx = LineReceiver()
        self._events: deque[Event] = deque()
        self._out = bytearray()
        self._outstanding = False
        self._eof = False
        self._errors = 0

    # --- properties ---------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def errors(self) -> int:
        return self._errors

    # --- output -------------------------------------------------------------------------------
    def greet(self, text: str) -> None:
        self.send(replies.ok(text))

    def send(self, data: bytes) -> None:
        """Queue reply bytes (built with `replies`)."""
        self._out += data

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (possibly empty)."""
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
            return  # CVE-2011-0411: plaintext after STLS is never read
        self._rx.feed(data)
        if self._rx.unread > self._settings.max_buffered_input:
            self.send(replies.err("Too much pipelined input"))
            self._close("input")

    def next_event(self) -> Event | Sentinel:
        """The next event, NEED_DATA (feed more bytes) or PAUSED (a command is outstanding)."""
        while True:
            if self._events:
                return self._events.popleft()
            mode = self._mode
            if mode is _Mode.CLOSED:
                return NEED_DATA
            if mode is _Mode.AUTH:
                response = self._rx.line(self._settings.max_auth_line)
                if response is None:
                    if self._eof:
                        self._close("eof")
                        continue
                    return NEED_DATA
                if response is TOO_LONG:
                    return AuthResponse(b"", too_long=True)
                return AuthResponse(response)
            if self._outstanding:
                return PAUSED
            line = self._rx.line(self._settings.max_line)
            if line is None:
                if self._eof:
                    self._close("eof")
                    continue
                return NEED_DATA
            self._command(line)

    # --- the shell's decisions ----------------------------------------------------------------
    def command_done(self) -> None:
        """The outstanding command is answered: go on with the next one (also ends the AUTH
        input mode, and a refused STLS)."""
        if not self._outstanding:
            raise ProtocolError("command_done() with no command outstanding")
        self._outstanding = False
        if self._mode in (_Mode.AUTH, _Mode.AWAIT_TLS):
            self._mode = _Mode.COMMAND

    def set_state(self, state: State) -> None:
        """Move to ``state``; UPDATE stops reading and yields `ConnectionClosed` ("quit")."""
        self._state = state
        if state is State.UPDATE and self._mode is not _Mode.CLOSED:
            self._close("quit")

    def begin_auth(self) -> None:
        """Read SASL response lines for the outstanding AUTH until ``command_done()``."""
        if not self._outstanding:
            raise ProtocolError("begin_auth() with no command outstanding")
        if self._mode is _Mode.COMMAND:
            self._mode = _Mode.AUTH

    def tls_started(self) -> None:
        """The handshake after STLS succeeded: forget all input so far, end the command, and
        start AUTHORIZATION afresh (RFC 2595 §4)."""
        if self._mode is not _Mode.AWAIT_TLS:
            raise ProtocolError("tls_started() without an outstanding STLS")
        self._rx.clear()
        self._mode = _Mode.COMMAND
        self._outstanding = False
        self._state = State.AUTHORIZATION

    def count_error(self) -> None:
        """Count an error the session answered (a failed login) towards ``max_errors``."""
        self._error()

    def close(self, text: str) -> None:
        """Close on the shell's initiative (idle timeout, shutdown): ``-ERR text``."""
        if self._mode is not _Mode.CLOSED:
            self.send(replies.err(text))
            self._close("shell")

    # --- internals ----------------------------------------------------------------------------
    def _close(self, reason: str) -> None:
        self._mode = _Mode.CLOSED
        self._rx.clear()
        self._events.append(ConnectionClosed(reason))

    def _error(self) -> None:
        self._errors += 1
        if self._errors >= self._settings.max_errors and self._mode is not _Mode.CLOSED:
            self.send(replies.err(TOO_MANY_ERRORS))
            self._close("errors")

    def _refuse(self, text: str) -> None:
        self.send(replies.err(text))
        self._events.append(ProtocolErrorEvent(text))
        self._error()

    def _command(self, line: bytes | TooLong) -> None:
        if isinstance(line, TooLong):
            if self._state is State.USER:
                self._state = State.AUTHORIZATION
            self._refuse("Line too long")
            return
        keyword, _ = split_keyword(line)
        if self._state is State.USER and keyword != "PASS":
            self._state = State.AUTHORIZATION  # PASS must come right after USER (RFC 1939 §7)
        if keyword not in TABLE:
            self._refuse("Unknown command")
            return
        refused = check(self._state, keyword)
        if refused is not None:
            self._refuse(refused)
            return
        try:
            command = parse_command(line)
        except ParseError as exc:
            self._refuse(exc.text)
            return
        self._outstanding = True
        if isinstance(command, Stls):
            self._rx.clear()
            self._mode = _Mode.AWAIT_TLS
        self._events.append(CommandReceived(command))
