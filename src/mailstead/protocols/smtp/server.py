"""The sans-IO SMTP server core (RFC 5321 with SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
PIPELINING, CHUNKING, DSN, STARTTLS and AUTH).

Bytes go in with ``receive_data``, events come out of ``next_event``, replies come out of
``data_to_send``. Decision events (MAIL, RCPT, end of message, AUTH and each line of its exchange)
pause the core until the shell calls ``accept`` or ``reply`` (or ``auth_challenge``); every other
reply the core sends itself. Time, sockets, TLS, storage and SASL mechanisms are the shell's
business: for AUTH the core frames the exchange (RFC 4954 §4: ``334`` challenges, response lines
of at most ``max_auth_line`` octets) and the shell decodes and judges what the client sent. Which
command is legal when is decided by `state.TABLE` alone.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from collections import deque
from dataclasses import dataclass
from typing import Final

from . import replies
from .events import (
    NEED_DATA,
    PAUSED,
    AuthAborted,
    AuthResponse,
    AuthStart,
    CloseConnection,
    DataChunk,
    Event,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    Quit,
    RcptTo,
    Reset,
    Sentinel,
    StartTLS,
)
from .grammar import (
    GrammarError,
    parse_auth,
    parse_bdat,
    parse_command_line,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
)
from .receivers import BdatReceiver, DataReceiver
from .replies import Reply, format_reply
from .state import TRANSACTION_STATES, Rule, State, check

__all__ = ["ProtocolError", "ServerCore", "ServerSettings"]


class ProtocolError(RuntimeError):
    """The shell used the core wrongly (e.g. ``accept()`` with no decision pending)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the core offers and enforces; see ``ServerCore.update_settings``."""

    hostname: str
    banner: str = "ESMTP Mailstead"
    max_message_size: int = 50 * 1024 * 1024  # SIZE advertised (RFC 1870); 552 5.3.4 past it
    max_recipients: int = 100  # RFC 5321 §4.5.3.1.8: at least 100; 452 4.5.3 past it
    max_command_line: int = 512  # RFC 5321 §4.5.3.1.4, CRLF included; 500 5.5.2 past it
    max_data_line: int = 32768  # content line, CRLF not counted; 554 5.6.0 at end of data past it
    max_commands: int = 10000  # per connection; 421 4.7.0 and close past it
    max_errors: int = 20  # 5xx replies per connection; 421 4.7.0 and close past it
    max_pipeline_buffer: int = 64 * 1024  # unread input while PAUSED; 421 4.7.0 past it
    starttls: bool = True  # advertise STARTTLS (never once tls_active)
    tls_active: bool = False
    chunking: bool = True
    smtputf8: bool = True
    dsn: bool = True
    pipelining: bool = True
    eightbitmime: bool = True
    enhanced_status_codes: bool = True
    require_tls_for_mail: bool = False  # 530 5.7.0 to MAIL before STARTTLS (RFC 3207 §4)
    lmtp: bool = False  # reserved for LHLO (RFC 2033); not implemented yet
    # RFC 4954: SASL mechanisms AUTH offers (upper case, strongest first); () = no AUTH at all.
    # Offered once TLS is active, before only with auth_plaintext (else 538 5.7.11); "-PLUS"
    # mechanisms only with TLS (they bind to the channel).
    auth_mechanisms: tuple[str, ...] = ()
    auth_plaintext: bool = False
    auth_required: bool = False  # submission: MAIL before AUTH gets 530 5.7.0 (RFC 6409 §4.3)
    # RFC 4954 §4: "12288 octets is considered to be a sufficient line length limit" for the
    # responses of an exchange (CRLF included); 500 5.5.6 past it.
    max_auth_line: int = 12288

    def __post_init__(self) -> None:
        if self.max_message_size < 1 or self.max_recipients < 1 or self.max_data_line < 1:
            raise ValueError("limits must be positive")
        if self.max_command_line < 512:  # RFC 5321 §4.5.3.1.4
            raise ValueError("max_command_line must be at least 512")
        if self.max_auth_line < self.max_command_line:
            raise ValueError("max_auth_line must be at least max_command_line")
        if any(m != m.upper() or not m for m in self.auth_mechanisms):
            raise ValueError("auth_mechanisms must be upper-case names")

    @property
    def auth_offered(self) -> tuple[str, ...]:
        """The mechanisms AUTH accepts (and EHLO lists) now."""
        if not (self.tls_active or self.auth_plaintext):
            return ()
        if self.tls_active:
            return self.auth_mechanisms
        return tuple(m for m in self.auth_mechanisms if not m.endswith("-PLUS"))


class _Mode(enum.Enum):
    COMMAND = "command"  # reading command lines
    LONG_LINE = "long-line"  # discarding the rest of an over-long command line
    AUTH = "auth"  # reading the client's response to a 334 challenge
    DATA = "data"  # reading DATA content
    BDAT = "bdat"  # reading a BDAT chunk
    SKIP = "skip"  # discarding the payload of a refused BDAT
    AWAIT_TLS = "await-tls"  # STARTTLS answered, waiting for tls_started(); input discarded
    CLOSED = "closed"


class _Decision(enum.Enum):
    MAIL = "mail"
    RCPT = "rcpt"
    MESSAGE = "message"
    AUTH = "auth"


_NO_ARGS: Final = frozenset({"DATA", "RSET", "QUIT", "STARTTLS"})
_COMPACT_AT: Final = 8192


class ServerCore:
    """One SMTP server connection, as a state machine. See the module docstring."""

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings
        self._state = State.GREETED
        self._mode = _Mode.COMMAND
        self._buf = bytearray()
        self._pos = 0  # start of unread input in _buf
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: _Decision | None = None
        self._started = False
        self._eof = False
        self._overflow = False
        self._commands = 0
        self._errors = 0
        self._esmtp = False
        self._tx_smtputf8 = False
        self._recipients = 0
        self._spooling = False  # content may have reached the shell and is not yet complete/aborted
        self._data: DataReceiver | None = None
        self._bdat: BdatReceiver | None = None
        self._skip = 0  # payload octets of a refused BDAT still to discard
        self._bdat_chunk = 0  # size of the BDAT chunk being read, for its 250 reply
        self._wire: dict[Reply, bytes] = {}
        self._ehlo_reply: Reply | None = None
        self._authenticated = False
        self._long_line_reply = replies.LINE_TOO_LONG

    # --- public API -------------------------------------------------------------------------------
    @property
    def settings(self) -> ServerSettings:
        return self._settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def authenticated(self) -> bool:
        """AUTH succeeded in this session (and no STARTTLS since)."""
        return self._authenticated

    def update_settings(self, **changes: object) -> None:
        """Replace settings fields (e.g. ``starttls=False``); takes effect from the next command."""
        self._settings = dataclasses.replace(self._settings, **changes)  # type: ignore[arg-type]
        self._wire.clear()
        self._ehlo_reply = None

    def start(self) -> None:
        """Queue the 220 greeting (RFC 5321 §4.2: no enhanced code)."""
        if self._started:
            raise ProtocolError("start() called twice")
        self._started = True
        s = self._settings
        self._out += format_reply(Reply(220, None, f"{s.hostname} {s.banner}".rstrip()))

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the client closed its side."""
        if not self._started:
            raise ProtocolError("receive_data() before start()")
        mode = self._mode
        if mode is _Mode.CLOSED or mode is _Mode.AWAIT_TLS:
            return  # after STARTTLS: plaintext injection (CVE-2011-0411), discarded
        if not data:
            self._eof = True
            return
        if self._pos >= _COMPACT_AT or (self._pos and self._pos == len(self._buf)):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        unread = len(self._buf) - self._pos
        if self._pending is not None and unread > self._settings.max_pipeline_buffer:
            self._overflow = True  # the shell should have stopped reading while PAUSED
            self._buf.clear()
            self._pos = 0

    def next_event(self) -> Event | Sentinel:
        """The next event, NEED_DATA (feed more bytes) or PAUSED (a decision is pending)."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._pending is not None:
                return PAUSED
            mode = self._mode
            if mode is _Mode.COMMAND:
                progressed = self._step_command()
            elif mode is _Mode.DATA:
                progressed = self._step_data()
            elif mode is _Mode.BDAT:
                progressed = self._step_bdat()
            elif mode is _Mode.SKIP:
                progressed = self._step_skip()
            elif mode is _Mode.LONG_LINE:
                progressed = self._step_long_line()
            elif mode is _Mode.AUTH:
                progressed = self._step_auth()
            else:  # CLOSED, AWAIT_TLS
                return NEED_DATA
            if self._errors > self._settings.max_errors and self._mode is not _Mode.CLOSED:
                self._close(replies.TOO_MANY_ERRORS, "too many errors")
            if not progressed and not self._events and self._pending is None:
                if self._eof and self._mode is not _Mode.CLOSED:
                    self._close(None, "eof")
                    continue
                return NEED_DATA

    def data_to_send(self) -> bytes:
        """Bytes to write to the client (possibly empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def accept(self, text: str | None = None) -> None:
        """The default positive reply to the pending decision (250 2.1.0 / 2.1.5 / 2.0.0; for
        AUTH 235 2.7.0: the client is authenticated)."""
        pending = self._pending
        if pending is _Decision.AUTH:
            self._resolve(replies.AUTH_SUCCEEDED if text is None else Reply(235, "2.7.0", text))
        elif pending is _Decision.MAIL:
            self._resolve(replies.SENDER_OK if text is None else Reply(250, "2.1.0", text))
        elif pending is _Decision.RCPT:
            self._resolve(replies.RECIPIENT_OK if text is None else Reply(250, "2.1.5", text))
        elif pending is _Decision.MESSAGE:
            self._resolve(replies.OK if text is None else Reply(250, "2.0.0", text))
        else:
            raise ProtocolError("accept() with no decision pending")

    def reply(self, reply: Reply) -> None:
        """The shell's reply to the pending decision; a 2xx accepts, anything else refuses
        (during AUTH, anything else ends the exchange unauthenticated)."""
        if self._pending is None:
            raise ProtocolError("reply() with no decision pending")
        self._resolve(reply)

    def auth_challenge(self, data: bytes) -> None:
        """Answer a pending AUTH decision with the challenge ``334 <base64 of data>`` (RFC 4954
        §4); the client's next line comes back as `AuthResponse`."""
        if self._pending is not _Decision.AUTH:
            raise ProtocolError("auth_challenge() with no AUTH decision pending")
        self._pending = None
        # continue-req = "334" SP [base64] CRLF: the space stays even when data is empty
        self._out += b"334 " + base64.b64encode(data) + b"\r\n"
        self._mode = _Mode.AUTH

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: forget everything (RFC 3207 §4.2)."""
        if self._mode is not _Mode.AWAIT_TLS:
            raise ProtocolError("tls_started() without STARTTLS")
        self.update_settings(tls_active=True, starttls=False)
        self._buf.clear()
        self._pos = 0
        self._clear_transaction()
        self._state = State.GREETED
        self._esmtp = False
        self._authenticated = False  # RFC 3207 §4.2: nothing learnt before TLS is kept
        self._mode = _Mode.COMMAND

    def close(self, reply: Reply | None = None, reason: str = "closed by server") -> None:
        """Close on the shell's initiative (idle timeout, shutdown): queue ``reply``, then
        ``next_event`` returns CloseConnection."""
        if self._mode is not _Mode.CLOSED:
            self._pending = None
            self._close(reply, reason)

    # --- internals: output and closing ------------------------------------------------------------
    def _send(self, reply: Reply) -> None:
        wire = self._wire.get(reply)
        if wire is None:
            wire = format_reply(reply, enhanced=self._settings.enhanced_status_codes)
            self._wire[reply] = wire
        self._out += wire
        if reply.code >= 500:
            self._errors += 1

    def _close(self, reply: Reply | None, reason: str) -> None:
        if reply is not None:
            self._send(reply)
        self._abort("connection closed")
        self._events.append(CloseConnection(reason))
        self._mode = _Mode.CLOSED
        self._state = State.CLOSED
        self._buf.clear()
        self._pos = 0

    def _abort(self, reason: str) -> None:
        if self._spooling:
            self._spooling = False
            self._events.append(MessageAborted(reason))

    def _clear_transaction(self) -> None:
        self._tx_smtputf8 = False
        self._recipients = 0
        self._data = None
        self._bdat = None
        self._spooling = False

    def _resolve(self, reply: Reply) -> None:
        pending = self._pending
        self._pending = None
        positive = 200 <= reply.code < 300
        if pending is _Decision.MAIL:
            if positive:
                self._state = State.MAIL
            else:
                self._tx_smtputf8 = False
        elif pending is _Decision.RCPT:
            if positive:
                self._state = State.RCPT
                self._recipients += 1
        elif pending is _Decision.AUTH:
            self._authenticated = reply.code == 235
        else:  # end of message: the transaction is over whatever the verdict (RFC 5321 §4.1.1.4)
            self._clear_transaction()
            self._state = State.READY
        self._send(reply)
        if reply.code == 421:
            self._close(None, "421 reply")
        elif self._overflow:
            self._close(replies.PIPELINE_OVERFLOW, "pipeline overflow")
        elif self._errors > self._settings.max_errors:
            self._close(replies.TOO_MANY_ERRORS, "too many errors")

    # --- internals: reading -----------------------------------------------------------------------
    def _step_command(self) -> bool:
        buf = self._buf
        pos = self._pos
        limit = self._settings.max_command_line
        nl = buf.find(b"\n", pos, pos + limit)
        if nl == -1:
            if len(buf) - pos >= limit:  # RFC 5321 §4.5.3.1.4; the rest is discarded as it streams
                self._mode = _Mode.LONG_LINE
                self._pos = pos + limit  # searched already: no LF there
                return True
            return False
        crlf = nl > pos and buf[nl - 1] == 0x0D
        line = bytes(buf[pos : nl - 1 if crlf else nl])
        self._pos = nl + 1
        self._command(line, crlf)
        return True

    def _step_long_line(self) -> bool:
        buf = self._buf
        nl = buf.find(b"\n", self._pos)
        if nl == -1:
            buf.clear()
            self._pos = 0
            return False
        self._pos = nl + 1
        self._mode = _Mode.COMMAND
        self._commands += 1
        self._send(self._long_line_reply)
        self._long_line_reply = replies.LINE_TOO_LONG
        return True

    def _step_auth(self) -> bool:
        buf = self._buf
        pos = self._pos
        limit = self._settings.max_auth_line
        nl = buf.find(b"\n", pos, pos + limit)
        if nl == -1:
            if len(buf) - pos >= limit:  # RFC 4954 §4 and §6: 500 5.5.6, the exchange ends
                self._mode = _Mode.LONG_LINE
                self._long_line_reply = replies.AUTH_LINE_TOO_LONG
                self._pos = pos + limit
                self._events.append(AuthAborted("response line too long"))
                return True
            return False
        crlf = nl > pos and buf[nl - 1] == 0x0D
        line = bytes(buf[pos : nl - 1 if crlf else nl])
        self._pos = nl + 1
        self._mode = _Mode.COMMAND
        self._commands += 1
        if self._commands > self._settings.max_commands:
            self._close(replies.TOO_MANY_COMMANDS, "too many commands")
            return True
        self._pending = _Decision.AUTH
        self._events.append(AuthResponse(line))
        return True

    def _available(self) -> bytes:
        data = bytes(memoryview(self._buf)[self._pos :]) if self._pos else bytes(self._buf)
        return data

    def _step_data(self) -> bool:
        if self._pos == len(self._buf):
            return False
        rx = self._data
        assert rx is not None
        out, used, done = rx.feed(self._available())
        self._pos += used
        if out:
            self._events.append(DataChunk(out))
        if rx.refusal is not None:
            self._abort(rx.refusal.text)
        if done:
            self._mode = _Mode.COMMAND
            self._end_of_message(rx.refusal, rx.size, "DATA")
        return True

    def _step_bdat(self) -> bool:
        rx = self._bdat
        assert rx is not None
        if rx.remaining:
            if self._pos == len(self._buf):
                return False
            out, used, done = rx.feed(self._available())
            self._pos += used
            if out:
                self._events.append(DataChunk(out))
        else:
            done = True  # BDAT 0
        if done:
            self._mode = _Mode.COMMAND
            if rx.last:
                rx.finish()
        if rx.refusal is not None:
            self._abort(rx.refusal.text)
        if done:
            if rx.last:
                self._end_of_message(rx.refusal, rx.size, "BDAT")
            elif rx.refusal is not None:
                self._send(rx.refusal)  # RFC 3030 §2: the client sends no more chunks after this
            else:
                self._send(Reply(250, "2.0.0", f"{self._bdat_chunk} octets received"))
        return True

    def _step_skip(self) -> bool:
        available = len(self._buf) - self._pos
        if not available:
            return False
        used = min(available, self._skip)
        self._pos += used
        self._skip -= used
        if not self._skip:
            self._mode = _Mode.COMMAND
        return True

    def _end_of_message(self, refusal: Reply | None, size: int, via: str) -> None:
        if refusal is not None:
            self._clear_transaction()
            self._state = State.READY
            self._send(refusal)
            return
        self._spooling = False
        self._pending = _Decision.MESSAGE
        self._events.append(MessageComplete(size, "DATA" if via == "DATA" else "BDAT"))

    # --- internals: commands ----------------------------------------------------------------------
    def _command(self, line: bytes, crlf: bool) -> None:
        self._commands += 1
        if self._commands > self._settings.max_commands:
            self._close(replies.TOO_MANY_COMMANDS, "too many commands")
            return
        try:
            cmd = parse_command_line(line)
        except GrammarError as e:
            self._send(e.reply)
            return
        verb, arg = cmd.verb, cmd.arg
        verdict = check(
            self._state,
            verb,
            authenticated=self._authenticated,
            auth_required=self._settings.auth_required,
        )
        if verb == "BDAT":
            self._cmd_bdat(arg, verdict)
            return
        if isinstance(verdict, Reply):
            self._send(verdict)
            return
        if verdict.extension is not None:
            refusal = self._extension_refusal(verdict)
            if refusal is not None:
                self._send(refusal)
                return
        if arg and verb in _NO_ARGS:
            self._send(replies.SYNTAX_ERROR)
            return
        try:
            if verb == "MAIL":
                self._cmd_mail(arg)
            elif verb == "RCPT":
                self._cmd_rcpt(arg)
            elif verb == "DATA":
                self._cmd_data(crlf)
            elif verb == "EHLO" or verb == "HELO":
                self._cmd_hello(verb, arg)
            elif verb == "RSET":
                self._abort("RSET")
                if self._state in TRANSACTION_STATES:
                    self._events.append(Reset())
                self._clear_transaction()
                if self._state is not State.GREETED:
                    self._state = State.READY
                self._send(replies.OK)
            elif verb == "NOOP":
                self._send(replies.OK)
            elif verb == "QUIT":
                self._send(replies.BYE)
                self._abort("QUIT")
                self._events.append(Quit())
                self._mode = _Mode.CLOSED
                self._state = State.CLOSED
            elif verb == "VRFY":
                self._send(replies.CANNOT_VRFY if arg else replies.SYNTAX_ERROR)
            elif verb == "EXPN":
                self._send(replies.EXPN_DISABLED if arg else replies.SYNTAX_ERROR)
            elif verb == "HELP":
                self._send(replies.HELP)
            elif verb == "AUTH":
                self._cmd_auth(arg)
            elif verb == "STARTTLS":
                self._send(replies.READY_FOR_TLS)
                self._buf.clear()  # CVE-2011-0411: nothing read before the handshake survives it
                self._pos = 0
                self._mode = _Mode.AWAIT_TLS
                self._events.append(StartTLS())
            else:  # pragma: no cover - the state table lists only the verbs above
                self._send(replies.UNKNOWN_COMMAND)
        except GrammarError as e:
            self._send(e.reply)

    def _extension_refusal(self, rule: Rule) -> Reply | None:
        s = self._settings
        if rule.extension == "starttls":
            if s.tls_active:
                return replies.TLS_ALREADY_ACTIVE
            if not s.starttls:
                return replies.TLS_NOT_AVAILABLE
        elif (rule.extension == "chunking" and not s.chunking) or (
            rule.extension == "auth" and not s.auth_mechanisms
        ):
            return replies.NOT_IMPLEMENTED
        if not self._esmtp:
            return replies.NEED_EHLO  # extensions exist only after EHLO (RFC 5321 §2.2.1)
        if rule.extension == "auth" and not s.auth_offered:
            return replies.AUTH_ENCRYPTION_REQUIRED  # RFC 4954 §6
        return None

    def _cmd_hello(self, verb: str, arg: str) -> None:
        domain = parse_helo(arg)
        self._abort("new EHLO/HELO")
        if self._state in TRANSACTION_STATES:
            self._events.append(Reset())  # RFC 5321 §4.1.4
        self._clear_transaction()
        self._state = State.READY
        self._esmtp = verb == "EHLO"
        if self._esmtp:
            self._send(self._ehlo())
        else:
            self._send(Reply(250, None, self._settings.hostname))
        self._events.append(Hello(verb, domain))

    def _ehlo(self) -> Reply:
        if self._ehlo_reply is None:
            s = self._settings
            lines = [s.hostname]
            if s.pipelining:
                lines.append("PIPELINING")
            lines.append(f"SIZE {s.max_message_size}")
            if s.eightbitmime:
                lines.append("8BITMIME")
            if s.smtputf8:
                lines.append("SMTPUTF8")
            if s.enhanced_status_codes:
                lines.append("ENHANCEDSTATUSCODES")
            if s.starttls and not s.tls_active:
                lines.append("STARTTLS")
            if s.auth_offered:
                lines.append("AUTH " + " ".join(s.auth_offered))  # RFC 4954 §3
            if s.chunking:
                lines.append("CHUNKING")
            if s.dsn:
                lines.append("DSN")
            lines.append("HELP")
            self._ehlo_reply = Reply(250, None, "\n".join(lines))  # RFC 2034: no enhanced codes
        return self._ehlo_reply

    def _mail_keywords(self) -> frozenset[str]:
        s = self._settings
        if not self._esmtp:
            return frozenset()
        keys = {"SIZE"}
        if s.eightbitmime:
            keys.add("BODY")
        if s.smtputf8:
            keys.add("SMTPUTF8")
        if s.dsn:
            keys.update(("RET", "ENVID"))
        if s.auth_offered:
            keys.add("AUTH")  # RFC 4954 §5
        return frozenset(keys)

    def _cmd_mail(self, arg: str) -> None:
        s = self._settings
        if s.require_tls_for_mail and not s.tls_active:
            self._send(replies.MUST_STARTTLS)
            return
        path, params = parse_mail_from(arg, self._mail_keywords())
        if params.size is not None and params.size > s.max_message_size:
            self._send(replies.MESSAGE_TOO_BIG)  # RFC 1870 §6.1
            return
        if not params.smtputf8 and not path.isascii():
            self._send(replies.NON_ASCII_ADDRESS)  # RFC 6531 §3.4
            return
        self._tx_smtputf8 = params.smtputf8
        self._pending = _Decision.MAIL
        self._events.append(MailFrom(path, params))

    def _cmd_rcpt(self, arg: str) -> None:
        keys = frozenset({"NOTIFY", "ORCPT"}) if self._esmtp and self._settings.dsn else frozenset()
        path, params = parse_rcpt_to(arg, keys)
        if not self._tx_smtputf8 and not path.isascii():
            self._send(replies.NON_ASCII_ADDRESS)
            return
        if self._recipients >= self._settings.max_recipients:
            self._send(replies.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10
            return
        self._pending = _Decision.RCPT
        self._events.append(RcptTo(path, params))

    def _cmd_auth(self, arg: str) -> None:
        mechanism, initial_response = parse_auth(arg)
        if mechanism not in self._settings.auth_offered:
            self._send(replies.AUTH_UNKNOWN_MECHANISM)  # RFC 4954 §4: 504
            return
        self._pending = _Decision.AUTH
        self._events.append(AuthStart(mechanism, initial_response))

    def _cmd_data(self, crlf: bool) -> None:
        s = self._settings
        self._data = DataReceiver(s.max_message_size, s.max_data_line, after_crlf=crlf)
        self._spooling = True
        self._mode = _Mode.DATA
        self._send(replies.START_DATA)

    def _cmd_bdat(self, arg: str, verdict: Rule | Reply) -> None:
        try:
            size, last = parse_bdat(arg)
        except GrammarError as e:
            # The chunk length is unknown, so the byte stream cannot be followed any more.
            self._send(e.reply)
            self._close(replies.BDAT_DESYNC, "bad BDAT")
            return
        refusal = verdict if isinstance(verdict, Reply) else self._extension_refusal(verdict)
        if refusal is not None:
            self._send(refusal)
            if size:
                self._skip = size  # RFC 3030 §2: the payload follows anyway; read and discard it
                self._mode = _Mode.SKIP
            return
        s = self._settings
        rx = self._bdat
        if rx is None:
            rx = self._bdat = BdatReceiver(s.max_message_size, s.max_data_line)
            self._spooling = True
            self._state = State.BDAT
        rx.start_chunk(size, last)
        if rx.refusal is not None:
            self._abort(rx.refusal.text)
        self._bdat_chunk = size
        self._mode = _Mode.BDAT
