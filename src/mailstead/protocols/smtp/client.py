"""The sans-IO SMTP client core (RFC 5321): one connection to one server, as a state machine.

Replies go in with ``receive_data``, events come out of ``next_event``, commands and message
content come out of ``data_to_send``. The caller (``outbound.sender``) moves bytes, runs TLS,
enforces time limits and runs SASL mechanisms; the core decides everything the protocol decides:

- greeting, EHLO with fallback to HELO on a 5xx (RFC 5321 §4.1.4), the EHLO keywords
  (`Extensions`);
- STARTTLS (RFC 3207) by `TlsMode`: the core says when to hand the connection to TLS
  (`TlsHandshake`), forgets what it learnt in plaintext and says EHLO again;
- AUTH framing (RFC 4954) without any mechanism: ``authenticate(mechanism, initial)`` sends the
  command, 334 challenges come out decoded (`AuthChallenge`), answers go back with
  ``auth_respond``;
- transactions: MAIL with SIZE= (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
  RET=/ENVID= (RFC 3461, only when the server offers DSN); RCPT with NOTIFY=/ORCPT=; the content
  with DATA (line endings made CRLF, dot-stuffed, final dot) or BDAT chunks (RFC 3030); pipelined
  (RFC 2920) when the server offers PIPELINING, in lock-step otherwise; RSET before every
  transaction after the first; one result per recipient (`TransactionDone`);
- refusals decided before a byte is sent: a message over the server's SIZE, 8-bit content to a
  server without 8BITMIME, an SMTPUTF8 message to a server without SMTPUTF8 (no downgrade).

Which call is legal when is checked against `_ALLOWED`; using the core wrongly raises
`ProtocolError`; what the server does wrong ends the session with `SessionFailed`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from .events import NEED_DATA, PAUSED, Sentinel
from .grammar import GrammarError, parse_helo, parse_mail_from, parse_rcpt_to, xtext_encode
from .replies import Reply, format_reply, parse_reply
from .server import ProtocolError

__all__ = [
    "SEND_MORE",
    "AuthChallenge",
    "Authenticated",
    "ClientCore",
    "ClientEvent",
    "ClientSettings",
    "ClientState",
    "Extensions",
    "FailureKind",
    "OutboundMessage",
    "OutboundRecipient",
    "Phase",
    "Ready",
    "RecipientResult",
    "RecipientStatus",
    "SessionClosed",
    "SessionFailed",
    "SessionFailure",
    "TlsHandshake",
    "TlsMode",
    "TransactionDone",
    "parse_ehlo",
]

MAX_COMMAND_LINE: Final = 512  # RFC 5321 §4.5.3.1.4, CRLF included
# RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers send longer ones, and an
# AUTH challenge may be long (RFC 4954 §4 names 12288 octets for the exchange's lines).
MAX_REPLY_LINE: Final = 12288
MAX_REPLY_LINES: Final = 256  # an EHLO reply has a dozen lines
MAX_INPUT: Final = 1024 * 1024  # unread input; a server cannot answer more than we asked
CONTENT_BLOCK: Final = 64 * 1024  # content per data_to_send() call, and per BDAT chunk
BDAT_WINDOW: Final = 16  # BDAT chunks sent ahead of their replies (with PIPELINING, RFC 3030 §4.2)
MAX_ENVID: Final = 100  # RFC 3461 §4.4, xtext-encoded
MAX_ORCPT: Final = 500  # RFC 3461 §4.2, xtext-encoded

_NOTIFY_VALUES: Final = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ADDR_TYPE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_LINE_END_RE: Final = re.compile(rb"\r\n|\r|\n")


class _Signal(enum.Enum):
    SEND_MORE = "SEND_MORE"

    def __repr__(self) -> str:
        return self.value


SEND_MORE: Final = _Signal.SEND_MORE
"""There is something to send (commands, or a block of content): call ``data_to_send()`` and
write it before reading."""


# --- Inputs ---------------------------------------------------------------------------------------
class TlsMode(enum.Enum):
    """What the core does about STARTTLS (RFC 3207); certificate checks are the caller's."""

    NONE = "none"  # never start TLS
    OPPORTUNISTIC = "opportunistic"  # start TLS when offered, go on in plaintext otherwise
    REQUIRED = "required"  # start TLS or give up (FailureKind.TLS_UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How the core behaves; the defaults are the protocol's."""

    helo_name: str  # our host name (ASCII) or address literal, for EHLO/HELO
    tls: TlsMode = TlsMode.OPPORTUNISTIC
    tls_active: bool = False  # TLS from the first byte (port 465): no STARTTLS
    use_pipelining: bool = True  # pipeline when the server offers PIPELINING
    use_chunking: bool = True  # BDAT instead of DATA when the server offers CHUNKING
    content_block: int = CONTENT_BLOCK
    bdat_window: int = BDAT_WINDOW
    max_reply_line: int = MAX_REPLY_LINE
    max_reply_lines: int = MAX_REPLY_LINES
    max_input: int = MAX_INPUT
    trace: bool = False  # keep a protocol trace (``take_trace``): AUTH data and content left out

    def __post_init__(self) -> None:
        try:
            helo: str | None = parse_helo(self.helo_name)
        except GrammarError:
            helo = None
        if helo != self.helo_name or not self.helo_name.isascii():
            raise ValueError(
                f"helo_name must be an ASCII domain or address literal: {self.helo_name!r}"
            )
        if self.content_block < 512 or self.bdat_window < 1:
            raise ValueError("content_block must be at least 512 and bdat_window at least 1")
        if self.max_reply_line < 512 or self.max_reply_lines < 1 or self.max_input < 65536:
            raise ValueError("reply limits below the protocol's minimum")


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    """One recipient, with its DSN parameters (RFC 3461 §4.1, §4.2) to pass on."""

    address: str
    notify: tuple[str, ...] = ()  # ("NEVER",) or a subset of SUCCESS, FAILURE, DELAY
    orcpt: tuple[str, str] | None = None  # (addr-type, address), e.g. ("rfc822", "a@b.example")

    def __post_init__(self) -> None:
        items = tuple(n.upper() for n in self.notify)
        if (
            items
            and items != ("NEVER",)
            and not (len(set(items)) == len(items) and all(i in _NOTIFY_VALUES for i in items))
        ):
            raise ValueError(f"bad NOTIFY: {self.notify!r}")
        object.__setattr__(self, "notify", items)
        if self.orcpt is not None:
            kind, address = self.orcpt
            if _ADDR_TYPE_RE.fullmatch(kind) is None or not address:
                raise ValueError(f"bad ORCPT: {self.orcpt!r}")
            if len(kind) + 1 + len(xtext_encode(address)) > MAX_ORCPT:
                raise ValueError("ORCPT too long (RFC 3461 §4.2)")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to send: the envelope, the content (CRLF lines, not dot-stuffed) and what
    the content needs from the server.

    ``eightbit`` and ``smtputf8`` say what the content is; 8-bit content is also detected (any
    octet over 127), and non-ASCII addresses imply SMTPUTF8.
    """

    reverse_path: str  # "" for the null sender <>
    recipients: tuple[OutboundRecipient, ...]
    content: bytes = field(repr=False)
    eightbit: bool = False
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None  # RFC 3461 §4.3
    envid: str | None = None  # RFC 3461 §4.4, sent xtext-encoded

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("a message needs at least one recipient")
        if self.envid is not None and len(xtext_encode(self.envid)) > MAX_ENVID:
            raise ValueError("ENVID too long (RFC 3461 §4.4)")

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def needs_8bitmime(self) -> bool:
        return self.eightbit or not self.content.isascii()

    @property
    def needs_smtputf8(self) -> bool:
        return (
            self.smtputf8
            or not self.reverse_path.isascii()
            or not all(r.address.isascii() for r in self.recipients)
        )


# --- What the server offers -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Extensions:
    """The EHLO reply: the server's name and its keywords (upper case) with their parameters.

    After HELO (``esmtp`` False) nothing is offered.
    """

    esmtp: bool = False
    hostname: str = ""
    keywords: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def offers(self, keyword: str) -> bool:
        return keyword in self.keywords

    @property
    def pipelining(self) -> bool:
        return self.offers("PIPELINING")

    @property
    def eightbitmime(self) -> bool:
        return self.offers("8BITMIME")

    @property
    def smtputf8(self) -> bool:
        return self.offers("SMTPUTF8")

    @property
    def chunking(self) -> bool:
        return self.offers("CHUNKING")

    @property
    def dsn(self) -> bool:
        return self.offers("DSN")

    @property
    def starttls(self) -> bool:
        return self.offers("STARTTLS")

    @property
    def enhanced_status_codes(self) -> bool:
        return self.offers("ENHANCEDSTATUSCODES")

    @property
    def size(self) -> bool:
        """SIZE offered: the MAIL parameter SIZE= may be used (RFC 1870)."""
        return self.offers("SIZE")

    @property
    def max_size(self) -> int | None:
        """The server's fixed message size limit; None when it announced none (or ``SIZE 0``)."""
        params = self.keywords.get("SIZE", ())
        if params and params[0].isascii() and params[0].isdigit() and int(params[0]) > 0:
            return int(params[0])
        return None

    @property
    def auth(self) -> tuple[str, ...]:
        """SASL mechanisms offered with AUTH (RFC 4954 §3), upper case, in the server's order."""
        return self.keywords.get("AUTH", ())


def parse_ehlo(reply: Reply) -> Extensions:
    """The extensions of a 250 reply to EHLO (RFC 5321 §4.1.1.1: ``ehlo-line``s after the
    greeting line). ``AUTH=MECH`` (old servers) is read as ``AUTH MECH``; a keyword listed twice
    keeps the parameters of both (for AUTH) or of the first."""
    lines = reply.lines()
    hostname = lines[0].split(" ", 1)[0] if lines else ""
    keywords: dict[str, tuple[str, ...]] = {}
    for line in lines[1:]:
        words = line.split()
        if not words:
            continue
        key = words[0].upper()
        params = words[1:]
        if key.startswith("AUTH="):
            key, params = "AUTH", [key[5:], *params]
        if key == "AUTH":
            merged = keywords.get("AUTH", ()) + tuple(p.upper() for p in params if p)
            keywords["AUTH"] = tuple(dict.fromkeys(merged))
        elif key not in keywords:
            keywords[key] = tuple(params)
    return Extensions(True, hostname, keywords)


# --- Results --------------------------------------------------------------------------------------
class RecipientStatus(enum.Enum):
    ACCEPTED = "accepted"  # the server took responsibility for the message (2xx at the end)
    TEMPORARY = "temporary"  # try again later (4xx, or the session failed)
    PERMANENT = "permanent"  # give up: bounce (5xx, or refused here before sending)


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What became of one recipient. ``remote`` False: the reply was made up here (a refusal
    decided before sending, or a session failure), not received from the server."""

    address: str
    status: RecipientStatus
    reply: Reply
    remote: bool = True


class FailureKind(enum.Enum):
    """Why a session ended early. The first two are the caller's (the core never sees them)."""

    CONNECT = "connect failed"
    TIMEOUT = "timeout"
    GREETING_TEMPORARY = "greeting 4xx"
    GREETING_PERMANENT = "greeting 5xx"
    HELO = "EHLO and HELO refused"
    TLS_UNAVAILABLE = "TLS required but not available"  # not offered, or STARTTLS refused
    TLS_FAILED = "TLS handshake failed"  # the caller's
    AUTH = "authentication failed"
    CLOSED_BY_SERVER = "service closing"  # a 421 reply (RFC 5321 §3.8)
    CONNECTION_LOST = "connection lost"
    PROTOCOL = "protocol error"  # a malformed or unexpected reply


_FAILURE_ENHANCED: Final[Mapping[FailureKind, str]] = {
    FailureKind.CONNECT: "4.4.1",  # RFC 3463: no answer from host
    FailureKind.TIMEOUT: "4.4.2",  # bad connection
    FailureKind.CONNECTION_LOST: "4.4.2",
    FailureKind.GREETING_TEMPORARY: "4.4.2",
    FailureKind.GREETING_PERMANENT: "4.4.2",
    FailureKind.CLOSED_BY_SERVER: "4.4.2",
    FailureKind.HELO: "4.5.0",  # other protocol status
    FailureKind.PROTOCOL: "4.5.0",
    FailureKind.TLS_UNAVAILABLE: "4.7.4",  # RFC 3463: security features not supported
    FailureKind.TLS_FAILED: "4.7.5",  # cryptographic failure
    FailureKind.AUTH: "4.7.0",
}


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """A session that ended early: its kind, a sentence for logs and DSNs, and the server's
    reply when one caused it. Recipients it leaves undecided are temporary failures: the caller
    tries the next host or later (a 5xx greeting too, RFC 5321 §3.1 and §5.1)."""

    kind: FailureKind
    detail: str
    reply: Reply | None = None

    def recipient_reply(self) -> Reply:
        """The temporary reply recorded for the recipients this failure leaves undecided."""
        if self.reply is not None and self.reply.code // 100 == 4:
            return self.reply
        return Reply(451, _FAILURE_ENHANCED[self.kind], f"{self.kind.value}: {self.detail}")


# --- Events ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base class of the client's events."""


@dataclass(frozen=True, slots=True)
class Ready(ClientEvent):
    """The session is set up (greeting, EHLO or HELO, STARTTLS as the mode asks): start a
    transaction, ``authenticate`` or ``quit``."""

    extensions: Extensions
    tls: bool


@dataclass(frozen=True, slots=True)
class TlsHandshake(ClientEvent):
    """The server said 220 to STARTTLS: write what ``data_to_send`` holds (nothing), do the TLS
    handshake, then call ``tls_started()``. Plaintext received after the 220 was discarded."""


@dataclass(frozen=True, slots=True)
class AuthChallenge(ClientEvent):
    """A 334 challenge, base64-decoded: answer with ``auth_respond`` or ``auth_cancel``."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticated(ClientEvent):
    """AUTH succeeded (235); the session is ready again."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class TransactionDone(ClientEvent):
    """One message is done: a result per recipient, in the message's order.

    ``reply`` is the server's answer to the content (None when it was never sent), ``failure``
    the session failure that cut the transaction short (a `SessionFailed` follows), ``dsn``
    whether the DSN parameters went to the server (RFC 3461 §4: else the caller owes a
    "relayed" notice to recipients that asked NOTIFY=SUCCESS).
    """

    results: tuple[RecipientResult, ...]
    reply: Reply | None = None
    failure: SessionFailure | None = None
    dsn: bool = False


@dataclass(frozen=True, slots=True)
class SessionFailed(ClientEvent):
    """The session cannot go on. ``quit()`` if ``can_quit``, then close the connection."""

    failure: SessionFailure


@dataclass(frozen=True, slots=True)
class SessionClosed(ClientEvent):
    """QUIT was answered (``reply``) or the server closed the connection after it (None)."""

    reply: Reply | None = None


# --- The state table ------------------------------------------------------------------------------
class ClientState(enum.Enum):
    GREETING = "greeting"  # waiting for the 220
    HELLO = "hello"  # EHLO or HELO sent
    STARTTLS = "starttls"  # STARTTLS sent
    TLS = "tls"  # 220 to STARTTLS received: the caller runs the handshake
    AUTH = "auth"  # an AUTH exchange is under way
    READY = "ready"  # idle: transaction, AUTH or QUIT may start
    TRANSACTION = "transaction"
    QUIT = "quit"  # QUIT sent
    CLOSED = "closed"  # QUIT answered, or the server closed after it
    FAILED = "failed"  # the session ended early (SessionFailed)


# Which caller action is legal in which state (AUTH answers also need a pending challenge).
_ALLOWED: Final[Mapping[str, frozenset[ClientState]]] = {
    "start_transaction": frozenset({ClientState.READY}),
    "authenticate": frozenset({ClientState.READY}),
    "auth_respond": frozenset({ClientState.AUTH}),
    "auth_cancel": frozenset({ClientState.AUTH}),
    "tls_started": frozenset({ClientState.TLS}),
    "quit": frozenset({ClientState.READY, ClientState.FAILED}),
    "abandon": frozenset(set(ClientState) - {ClientState.CLOSED, ClientState.FAILED}),
}


class Phase(enum.Enum):
    """What the core waits for, for the caller's timeouts (RFC 5321 §4.5.3.2)."""

    GREETING = "greeting"  # §4.5.3.2.1 initial 220: 5 minutes
    MAIL = "mail"  # §4.5.3.2.2: 5 minutes
    RCPT = "rcpt"  # §4.5.3.2.3: 5 minutes
    DATA_INIT = "data-init"  # §4.5.3.2.4 the 354: 2 minutes
    DATA_BLOCK = "data-block"  # §4.5.3.2.5 each content write (and a non-last BDAT's reply): 3 min
    DATA_END = "data-end"  # §4.5.3.2.6 the reply to the final dot (or BDAT LAST): 10 minutes
    COMMAND = "command"  # EHLO, HELO, STARTTLS, AUTH, RSET, QUIT: 5 minutes like MAIL


class _Cmd(enum.Enum):
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    RSET = "RSET"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    DOT = "."
    BDAT = "BDAT"
    BDAT_LAST = "BDAT LAST"
    QUIT = "QUIT"


_PHASES: Final[Mapping[_Cmd, Phase]] = {
    _Cmd.GREETING: Phase.GREETING,
    _Cmd.MAIL: Phase.MAIL,
    _Cmd.RCPT: Phase.RCPT,
    _Cmd.DATA: Phase.DATA_INIT,
    _Cmd.DOT: Phase.DATA_END,
    _Cmd.BDAT: Phase.DATA_BLOCK,
    _Cmd.BDAT_LAST: Phase.DATA_END,
}


@dataclass(slots=True)
class _Pending:
    cmd: _Cmd
    index: int = -1  # the recipient of an RCPT


@dataclass(slots=True)
class _Command:
    pending: _Pending
    line: str


# --- Refusals decided before sending --------------------------------------------------------------
def _too_big(size: int, limit: int) -> Reply:
    # RFC 1870 §6.1: a message larger than the server's fixed limit is not attempted.
    return Reply(552, "5.3.4", f"message size exceeds the remote limit ({size} > {limit} octets)")


NEEDS_8BITMIME: Final = Reply(  # RFC 6152 §3: no 8-bit data to a server without 8BITMIME
    554, "5.6.3", "8-bit content but the remote server does not support 8BITMIME (RFC 6152)"
)
NEEDS_SMTPUTF8: Final = Reply(  # RFC 6531 §3.2: an MTA bounces, no downgrade
    553, "5.6.7", "the remote server cannot take internationalised mail (RFC 6531)"
)
BAD_SENDER: Final = Reply(553, "5.1.7", "bad sender address syntax")
BAD_RECIPIENT: Final = Reply(553, "5.1.3", "bad recipient address syntax")


def _status(reply: Reply) -> RecipientStatus:
    if reply.code < 400:
        return RecipientStatus.ACCEPTED
    return RecipientStatus.TEMPORARY if reply.code < 500 else RecipientStatus.PERMANENT


# --- Reading replies ------------------------------------------------------------------------------
class _BadReply(Exception):
    pass


class _ReplyReader:
    """Whole replies out of the input, each line bounded; the `Reply` is built by the grammar
    the server uses (``replies.parse_reply``)."""

    def __init__(self, settings: ClientSettings) -> None:
        self._max_line = settings.max_reply_line
        self._max_lines = settings.max_reply_lines
        self._buf = bytearray()
        self._pos = 0
        self._lines: list[bytes] = []

    @property
    def unread(self) -> int:
        return len(self._buf) - self._pos + sum(len(line) for line in self._lines)

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos >= 65536:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()
        self._pos = 0
        self._lines.clear()

    def next_reply(self) -> Reply | None:
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end == -1:
                if len(self._buf) - self._pos > self._max_line:
                    raise _BadReply("reply line too long")
                return None
            line = bytes(self._buf[self._pos : end + 1])
            self._pos = end + 1
            if len(line) > self._max_line:
                raise _BadReply("reply line too long")
            text = line.rstrip(b"\r\n")
            if len(text) == 3:  # RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF
                text += b" "
            self._lines.append(text + b"\r\n")
            if len(self._lines) > self._max_lines:
                raise _BadReply("too many lines in one reply")
            if text[3:4] != b"-":
                data = b"".join(self._lines)
                self._lines.clear()
                try:
                    parsed = parse_reply(data, max_lines=self._max_lines)
                except ValueError as exc:
                    raise _BadReply(str(exc)) from None
                if parsed is None or parsed[1] != len(data):
                    raise _BadReply(f"malformed reply: {data[:100]!r}")
                return parsed[0]


# --- Content --------------------------------------------------------------------------------------
def _crlf(raw: bytes) -> bytes:
    """Every line ending (CRLF, bare CR, bare LF) as CRLF: no server can then read an end of
    data into content (SMTP smuggling)."""
    pairs = raw.count(b"\r\n")
    if raw.count(b"\r") == pairs and raw.count(b"\n") == pairs:
        return raw
    return _LINE_END_RE.sub(b"\r\n", raw)


class _ContentEncoder:
    """The content in blocks of at most ``block`` input octets: line endings made CRLF, a last
    line ended, and for DATA dot-stuffed (RFC 5321 §4.5.2) with the final ``.CRLF``."""

    def __init__(self, data: bytes, *, stuff: bool, block: int) -> None:
        self._data = data
        self._stuff = stuff
        self._block = block
        self._pos = 0
        self._line_start = True
        self.done = False

    def next_block(self) -> tuple[bytes, bool]:
        """The next encoded block and whether it is the last."""
        end = min(self._pos + self._block, len(self._data))
        last = end >= len(self._data)
        if not last and self._data[end - 1] == 0x0D:
            end -= 1  # a CR at the block's end may start a CRLF: it goes with the next block
        out = _crlf(self._data[self._pos : end])
        self._pos = end
        if self._stuff and out:
            if self._line_start and out[:1] == b".":
                out = b"." + out
            out = out.replace(b"\r\n.", b"\r\n..")
        if out:
            self._line_start = out.endswith(b"\r\n")
        if last:
            if not self._line_start:
                out += b"\r\n"
            if self._stuff:
                out += b".\r\n"
            self.done = True
        return out, last


# --- Transactions ---------------------------------------------------------------------------------
class _Tx:
    """One message under way."""

    def __init__(
        self, message: OutboundMessage, results: list[RecipientResult | None], *, bdat: bool
    ) -> None:
        self.message = message
        self.results = results
        self.bdat = bdat
        self.dsn = False
        self.mail: Reply | None = None
        self.rcpt: dict[int, Reply] = {}
        self.refusal: Reply | None = None  # DATA, BDAT or end-of-data failure
        self.final: Reply | None = None  # the positive reply to the content
        self.content: _ContentEncoder | None = None
        self.discard = False  # a 354 without accepted recipients: only a lone dot is sent
        self.content_stopped = False  # a BDAT chunk was refused: send no more

    @property
    def accepted(self) -> list[int]:
        return [i for i, r in self.rcpt.items() if r.is_positive]

    @property
    def envelope_ok(self) -> bool:
        return self.mail is not None and self.mail.is_positive and bool(self.accepted)

    def outcome(self, failure: SessionFailure | None) -> tuple[RecipientResult, ...]:
        recipients = self.message.recipients
        out: list[RecipientResult] = []
        for i, decided in enumerate(self.results):
            address = recipients[i].address
            reply: Reply | None
            if decided is not None:
                out.append(decided)
                continue
            if self.mail is not None and not self.mail.is_positive:
                reply = self.mail
            elif i in self.rcpt and not self.rcpt[i].is_positive:
                reply = self.rcpt[i]
            elif i in self.rcpt:
                reply = self.final if self.final is not None and not self.discard else self.refusal
            else:
                reply = None
            if reply is None:
                lost = failure or SessionFailure(FailureKind.PROTOCOL, "transaction not finished")
                out.append(
                    RecipientResult(
                        address, RecipientStatus.TEMPORARY, lost.recipient_reply(), remote=False
                    )
                )
            else:
                out.append(RecipientResult(address, _status(reply), reply))
        return tuple(out)


def _check_path(path: str, *, sender: bool) -> bool:
    """The path parses back to itself with the server's grammar: no CR, LF, spaces or angle
    brackets can smuggle a command into MAIL or RCPT."""
    try:
        if sender:
            parsed, _ = parse_mail_from(f"FROM:<{path}>", ())
        else:
            parsed, _ = parse_rcpt_to(f"TO:<{path}>", ())
    except GrammarError:
        return False
    return parsed == path


# --- The core -------------------------------------------------------------------------------------
class ClientCore:
    """One SMTP client connection, as a state machine. See the module docstring."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._state = ClientState.GREETING
        self._reader = _ReplyReader(settings)
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._outstanding: deque[_Pending] = deque([_Pending(_Cmd.GREETING)])
        self._todo: deque[_Command] = deque()
        self._ext = Extensions()
        self._tls = settings.tls_active
        self._after_tls = False  # the EHLO being answered follows STARTTLS (no HELO fallback)
        self._eof = False
        self._overflow = False
        self._can_quit = False
        self._tx: _Tx | None = None
        self._transactions = 0
        self._challenge_pending = False
        self._auth_held: bytes | None = None  # initial response too long for the AUTH line
        self._auth_error: str | None = None
        self._trace: list[str] | None = [] if settings.trace else None
        self._trace_out: list[str] = []

    # --- what the caller reads ------------------------------------------------------------------
    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def extensions(self) -> Extensions:
        """What the server offers (after EHLO; nothing before, or after HELO)."""
        return self._ext

    @property
    def tls_active(self) -> bool:
        return self._tls

    @property
    def can_quit(self) -> bool:
        """A QUIT makes sense: the session is idle, or it failed with the server still
        listening (a refusal, not a broken connection)."""
        return self._state is ClientState.READY or (
            self._state is ClientState.FAILED and self._can_quit
        )

    @property
    def waiting_for(self) -> Phase | None:
        """The reply the core waits for (for the caller's timeout), None when it waits for none."""
        if not self._outstanding:
            return None
        return _PHASES.get(self._outstanding[0].cmd, Phase.COMMAND)

    def take_trace(self) -> list[str]:
        """The protocol trace since the last call (``C:`` / ``S:`` lines; settings.trace)."""
        if self._trace is None:
            return []
        out, self._trace = self._trace, []
        return out

    # --- bytes in, events and bytes out ---------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means it closed the connection."""
        if self._state in (ClientState.CLOSED, ClientState.TLS):
            return  # after the 220 to STARTTLS: plaintext injection, discarded (CVE-2011-0411)
        if not data:
            self._eof = True
            return
        if self._state is ClientState.FAILED and not self._outstanding:
            return
        self._reader.feed(data)
        if self._reader.unread > self._settings.max_input:
            self._overflow = True
            self._reader.clear()

    def next_event(self) -> ClientEvent | Sentinel | _Signal:
        """The next event; SEND_MORE (call ``data_to_send`` and write), NEED_DATA (everything
        is sent: read, then ``receive_data``) or PAUSED (the core waits for a call: a
        transaction, AUTH, ``tls_started``, ``quit``, or nothing more once closed or failed)."""
        while True:
            if self._events:
                return self._events.popleft()
            if self._state in (ClientState.CLOSED, ClientState.TLS) or (
                self._state is ClientState.FAILED and not self._outstanding
            ):
                return PAUSED
            if self._overflow:
                self._overflow = False
                self._fail(FailureKind.PROTOCOL, "too much input from the server")
                continue
            try:
                reply = self._reader.next_reply()
            except _BadReply as exc:
                self._reader.clear()
                self._fail(FailureKind.PROTOCOL, str(exc))
                continue
            if reply is not None:
                self._on_reply(reply)
                continue
            if self._eof:
                self._on_eof()
                continue
            if self._out or self._content_sendable():
                return SEND_MORE
            if self._outstanding:
                return NEED_DATA
            return PAUSED

    def data_to_send(self) -> bytes:
        """Bytes to write to the server (possibly empty). Content comes one block per call:
        call until it returns ``b""``."""
        if self._content_sendable():
            self._send_block()
        if self._trace is not None and self._trace_out:
            self._trace.append("\n".join(self._trace_out))
        self._trace_out.clear()
        out = bytes(self._out)
        self._out.clear()
        return out

    # --- caller actions ---------------------------------------------------------------------------
    def tls_started(self) -> None:
        """The TLS handshake after `TlsHandshake` succeeded: forget the plaintext session
        (RFC 3207 §4.2) and say EHLO again."""
        self._require("tls_started")
        self._tls = True
        self._reader.clear()
        self._ext = Extensions()
        self._after_tls = True
        self._state = ClientState.HELLO
        self._command(_Cmd.EHLO, f"EHLO {self._settings.helo_name}")

    def authenticate(self, mechanism: str, initial_response: bytes | None = None) -> None:
        """Start AUTH (RFC 4954 §4) with a mechanism the server offers; ``initial_response``
        is the mechanism's first message (None: wait for a challenge; b"": empty)."""
        self._require("authenticate")
        name = mechanism.upper()
        if name not in self._ext.auth:
            raise ProtocolError(f"the server does not offer AUTH {name}")
        line = trace = f"AUTH {name}"
        self._auth_held = None
        self._auth_error = None
        if initial_response is not None:
            encoded = _b64(initial_response) or "="  # RFC 4954 §4: "=" for an empty one
            if len(line) + 1 + len(encoded) + 2 <= MAX_COMMAND_LINE:
                line += " " + encoded
                trace += " <initial response>"
            else:  # RFC 4954 §4: too long for the line, so it answers the first challenge
                self._auth_held = initial_response
        self._state = ClientState.AUTH
        self._command(_Cmd.AUTH, line, trace=trace)

    def auth_respond(self, data: bytes) -> None:
        """Answer the pending `AuthChallenge` (base64-encoded here; b"" sends an empty line)."""
        self._require("auth_respond")
        if not self._challenge_pending:
            raise ProtocolError("no AUTH challenge to answer")
        self._challenge_pending = False
        self._send_raw(_b64(data), "<AUTH response>")

    def auth_cancel(self, reason: str) -> None:
        """Cancel the exchange ("*"): the mechanism cannot answer (``reason`` is kept for the
        failure that follows)."""
        self._require("auth_cancel")
        if not self._challenge_pending:
            raise ProtocolError("no AUTH challenge to answer")
        self._challenge_pending = False
        self._auth_error = reason
        self._send_raw("*", "*")

    def start_transaction(self, message: OutboundMessage) -> None:
        """Send one message. Its `TransactionDone` comes at once when it is refused here (too
        big, 8-bit or SMTPUTF8 for a server that cannot take it, no valid address)."""
        self._require("start_transaction")
        ext = self._ext
        n = len(message.recipients)
        refusal: Reply | None = None
        limit = ext.max_size
        if limit is not None and message.size > limit:
            refusal = _too_big(message.size, limit)
        elif message.needs_smtputf8 and not ext.smtputf8:
            refusal = NEEDS_SMTPUTF8
        elif message.needs_8bitmime and not ext.eightbitmime:
            refusal = NEEDS_8BITMIME
        elif not _check_path(message.reverse_path, sender=True):
            refusal = BAD_SENDER
        if refusal is not None:
            self._events.append(TransactionDone(self._local(message, range(n), refusal)))
            return
        results: list[RecipientResult | None] = [None] * n
        sent = []
        for i, recipient in enumerate(message.recipients):
            if _check_path(recipient.address, sender=False):
                sent.append(i)
            else:
                results[i] = RecipientResult(
                    recipient.address, RecipientStatus.PERMANENT, BAD_RECIPIENT, remote=False
                )
        if not sent:
            self._events.append(TransactionDone(tuple(r for r in results if r is not None)))
            return
        tx = _Tx(message, results, bdat=ext.chunking and self._settings.use_chunking)
        tx.dsn = ext.dsn
        self._tx = tx
        self._state = ClientState.TRANSACTION
        if self._transactions:
            self._todo.append(_Command(_Pending(_Cmd.RSET), "RSET"))
        self._transactions += 1
        self._todo.append(_Command(_Pending(_Cmd.MAIL), self._mail_line(message)))
        for i in sent:
            line = self._rcpt_line(message.recipients[i])
            self._todo.append(_Command(_Pending(_Cmd.RCPT, i), line))
        if not tx.bdat:
            self._todo.append(_Command(_Pending(_Cmd.DATA), "DATA"))
        self._pump()

    def quit(self) -> None:
        """Send QUIT (RFC 5321 §4.1.1.10); `SessionClosed` follows."""
        self._require("quit")
        if not self.can_quit:
            raise ProtocolError("the connection cannot take a QUIT")
        self._state = ClientState.QUIT
        self._reader.clear()
        self._outstanding.clear()
        self._command(_Cmd.QUIT, "QUIT")

    def abandon(self, kind: FailureKind, detail: str, *, can_quit: bool = False) -> None:
        """The caller gives up on the session (a timeout, a failed TLS handshake, no usable AUTH
        mechanism): the transaction under way ends (`TransactionDone`), then `SessionFailed`.
        ``can_quit``: the server still listens and a QUIT is polite."""
        self._require("abandon")
        self._fail(kind, detail, can_quit=can_quit)

    # --- internals: sending -----------------------------------------------------------------------
    def _require(self, action: str) -> None:
        if self._state not in _ALLOWED[action]:
            raise ProtocolError(f"{action}() not allowed in state {self._state.value}")

    def _command(self, cmd: _Cmd, line: str, *, index: int = -1, trace: str | None = None) -> None:
        self._outstanding.append(_Pending(cmd, index))
        self._send_raw(line, trace if trace is not None else line)

    def _send_raw(self, line: str, trace: str) -> None:
        self._out += line.encode("utf-8") + b"\r\n"
        if self._trace is not None:
            self._trace_out.append("C: " + trace)

    def _pump(self) -> None:
        """Send queued transaction commands: all at once with PIPELINING (RFC 2920 §3.1: DATA
        ends the group), else one per reply."""
        pipelining = self._ext.pipelining and self._settings.use_pipelining
        while self._todo and (pipelining or not self._outstanding):
            command = self._todo.popleft()
            tx = self._tx
            if command.pending.cmd is _Cmd.DATA and not pipelining:
                assert tx is not None
                if not tx.envelope_ok:
                    continue  # lock-step: no accepted recipient, no DATA
            self._outstanding.append(command.pending)
            self._send_raw(command.line, command.line)

    def _mail_line(self, message: OutboundMessage) -> str:
        ext = self._ext
        words = [f"MAIL FROM:<{message.reverse_path}>"]
        if ext.size:
            words.append(f"SIZE={message.size}")
        if message.needs_8bitmime:
            words.append("BODY=8BITMIME")
        if message.needs_smtputf8:
            words.append("SMTPUTF8")
        if ext.dsn:
            if message.ret is not None:
                words.append(f"RET={message.ret}")
            if message.envid is not None:
                words.append(f"ENVID={xtext_encode(message.envid)}")
        return " ".join(words)

    def _rcpt_line(self, recipient: OutboundRecipient) -> str:
        words = [f"RCPT TO:<{recipient.address}>"]
        if self._ext.dsn:
            if recipient.notify:
                words.append("NOTIFY=" + ",".join(recipient.notify))
            if recipient.orcpt is not None:
                kind, address = recipient.orcpt
                words.append(f"ORCPT={kind};{xtext_encode(address)}")
        return " ".join(words)

    def _content_sendable(self) -> bool:
        tx = self._tx
        if tx is None or tx.content is None or tx.content.done or tx.content_stopped:
            return False
        if not tx.bdat:
            return True
        window = self._settings.bdat_window if self._ext.pipelining else 1
        if not self._settings.use_pipelining:
            window = 1
        return sum(1 for p in self._outstanding if p.cmd is _Cmd.BDAT) < window

    def _send_block(self) -> None:
        tx = self._tx
        assert tx is not None
        assert tx.content is not None
        block, last = tx.content.next_block()
        if tx.bdat:
            head = f"BDAT {len(block)}" + (" LAST" if last else "")
            self._command(_Cmd.BDAT_LAST if last else _Cmd.BDAT, head)
            self._out += block
            if self._trace is not None:
                self._trace_out.append(f"C: <{len(block)} octets>")
            return
        self._out += block
        if self._trace is not None:
            self._trace_out.append(f"C: <{len(block)} octets>" + ("\nC: ." if last else ""))
        if last:
            self._outstanding.append(_Pending(_Cmd.DOT))

    # --- internals: replies -----------------------------------------------------------------------
    def _on_reply(self, reply: Reply) -> None:
        if self._trace is not None:
            if reply.code == 334:
                shown = ["334 <challenge>"]
            else:
                shown = format_reply(reply).decode("utf-8", "replace").split("\r\n")[:-1]
            self._trace.append("\n".join("S: " + line for line in shown))
        if not self._outstanding:
            if reply.code == 421:
                self._fail(FailureKind.CLOSED_BY_SERVER, reply.text, reply)
            else:
                self._fail(FailureKind.PROTOCOL, f"unexpected reply {reply.code}", reply)
            return
        pending = self._outstanding.popleft()
        cmd = pending.cmd
        if reply.code == 421 and cmd is not _Cmd.QUIT:  # RFC 5321 §3.8: closing
            if cmd is _Cmd.GREETING:
                kind = FailureKind.GREETING_TEMPORARY
            else:
                kind = FailureKind.CLOSED_BY_SERVER
            self._fail(kind, reply.text, reply)
            return
        handler = _HANDLERS[cmd]
        handler(self, pending, reply)

    def _on_greeting(self, pending: _Pending, reply: Reply) -> None:
        if reply.code == 220:
            self._state = ClientState.HELLO
            self._command(_Cmd.EHLO, f"EHLO {self._settings.helo_name}")
        elif reply.code // 100 == 4:
            self._fail(FailureKind.GREETING_TEMPORARY, reply.text, reply, can_quit=True)
        elif reply.code // 100 == 5:  # RFC 5321 §3.1: a 554 greeting waits for QUIT
            self._fail(FailureKind.GREETING_PERMANENT, reply.text, reply, can_quit=True)
        else:
            self._fail(FailureKind.PROTOCOL, f"unexpected greeting {reply.code}", reply)

    def _on_ehlo(self, pending: _Pending, reply: Reply) -> None:
        if reply.code == 250:
            self._ext = parse_ehlo(reply)
            self._hello_done()
        elif reply.code // 100 == 5 and not self._after_tls:  # RFC 5321 §4.1.4: try HELO
            self._command(_Cmd.HELO, f"HELO {self._settings.helo_name}")
        else:
            self._fail(FailureKind.HELO, f"EHLO: {_reply_text(reply)}", reply, can_quit=True)

    def _on_helo(self, pending: _Pending, reply: Reply) -> None:
        if reply.code == 250:
            self._ext = Extensions(False, reply.text.split(" ", 1)[0])
            self._hello_done()
        else:
            self._fail(FailureKind.HELO, f"HELO: {_reply_text(reply)}", reply, can_quit=True)

    def _hello_done(self) -> None:
        mode = self._settings.tls
        if self._tls or mode is TlsMode.NONE:
            self._ready()
        elif self._ext.starttls:
            self._state = ClientState.STARTTLS
            self._command(_Cmd.STARTTLS, "STARTTLS")
        elif mode is TlsMode.REQUIRED:
            self._fail(
                FailureKind.TLS_UNAVAILABLE,
                "TLS is required but STARTTLS was not offered",
                can_quit=True,
            )
        else:
            self._ready()

    def _ready(self) -> None:
        self._state = ClientState.READY
        self._events.append(Ready(self._ext, self._tls))

    def _on_starttls(self, pending: _Pending, reply: Reply) -> None:
        if reply.code == 220:
            self._state = ClientState.TLS
            self._reader.clear()  # RFC 3207 §4.2: nothing read in plaintext survives
            self._eof = False
            self._events.append(TlsHandshake())
        elif self._settings.tls is TlsMode.REQUIRED:
            self._fail(
                FailureKind.TLS_UNAVAILABLE,
                f"TLS is required but STARTTLS was refused: {_reply_text(reply)}",
                reply,
                can_quit=True,
            )
        else:
            self._ready()  # opportunistic: go on in plaintext

    def _on_auth(self, pending: _Pending, reply: Reply) -> None:
        if reply.code == 334:
            self._outstanding.appendleft(pending)  # the exchange goes on
            if self._auth_held is not None:
                held, self._auth_held = self._auth_held, None
                self._send_raw(_b64(held), "<AUTH initial response>")
                return
            try:
                challenge = base64.b64decode(reply.text.strip(), validate=True)
            except (binascii.Error, ValueError):
                self._auth_error = "the server's challenge is not base64"
                self._send_raw("*", "*")
                return
            self._challenge_pending = True
            self._events.append(AuthChallenge(challenge))
        elif reply.code // 100 == 2 and self._auth_error is None:
            self._state = ClientState.READY
            self._events.append(Authenticated(reply))
        else:
            detail = self._auth_error or _reply_text(reply)
            self._fail(FailureKind.AUTH, detail, reply, can_quit=True)

    def _on_rset(self, pending: _Pending, reply: Reply) -> None:
        if reply.code // 100 == 2:
            self._advance()
        else:
            self._fail(FailureKind.PROTOCOL, f"RSET refused: {_reply_text(reply)}", reply)

    def _on_mail(self, pending: _Pending, reply: Reply) -> None:
        tx = self._tx
        assert tx is not None
        if reply.code // 100 == 3:
            self._fail(FailureKind.PROTOCOL, f"unexpected reply to MAIL: {reply.code}", reply)
            return
        tx.mail = reply
        if not reply.is_positive:
            self._todo.clear()  # lock-step: no RCPT after a refused MAIL
        self._advance()

    def _on_rcpt(self, pending: _Pending, reply: Reply) -> None:
        tx = self._tx
        assert tx is not None
        if reply.code // 100 == 3:
            self._fail(FailureKind.PROTOCOL, f"unexpected reply to RCPT: {reply.code}", reply)
            return
        tx.rcpt[pending.index] = reply
        self._advance()

    def _on_data(self, pending: _Pending, reply: Reply) -> None:
        tx = self._tx
        assert tx is not None
        if reply.code == 354:
            if tx.envelope_ok:
                tx.content = _ContentEncoder(
                    tx.message.content, stuff=True, block=self._settings.content_block
                )
            else:  # RFC 2920 §3.1: nobody to deliver to, so an empty message ends the data
                tx.discard = True
                tx.content = _ContentEncoder(b"", stuff=True, block=self._settings.content_block)
        elif reply.code // 100 in (4, 5):
            tx.refusal = reply
        else:
            self._fail(FailureKind.PROTOCOL, f"unexpected reply to DATA: {reply.code}", reply)
            return
        self._advance()

    def _on_content_end(self, pending: _Pending, reply: Reply) -> None:
        tx = self._tx
        assert tx is not None
        if reply.code // 100 == 3:
            self._fail(FailureKind.PROTOCOL, f"unexpected reply to {pending.cmd.value}", reply)
            return
        if not reply.is_positive:
            tx.content_stopped = True  # RFC 3030 §2: a refused chunk ends the transaction
            if tx.refusal is None and tx.final is None:
                tx.refusal = reply
        elif pending.cmd is not _Cmd.BDAT and tx.refusal is None:
            tx.final = reply
        self._advance()

    def _on_quit(self, pending: _Pending, reply: Reply) -> None:
        self._state = ClientState.CLOSED
        self._events.append(SessionClosed(reply))

    def _advance(self) -> None:
        """After a reply in a transaction: send what may go now, start BDAT content once the
        envelope is answered, or finish."""
        self._pump()
        tx = self._tx
        if tx is None or self._outstanding or self._todo:
            return
        if tx.content is None:
            if tx.bdat and tx.envelope_ok:
                tx.content = _ContentEncoder(
                    tx.message.content, stuff=False, block=self._settings.content_block
                )
                return
            self._finish(None)
        elif tx.content.done or tx.content_stopped:
            self._finish(None)

    def _finish(self, failure: SessionFailure | None) -> None:
        tx = self._tx
        assert tx is not None
        self._tx = None
        reply = tx.final if not tx.discard else None
        self._events.append(TransactionDone(tx.outcome(failure), reply, failure, tx.dsn))
        if failure is None:
            self._state = ClientState.READY

    def _on_eof(self) -> None:
        self._eof = False
        if self._state is ClientState.QUIT:
            self._state = ClientState.CLOSED
            self._events.append(SessionClosed(None))
            return
        waiting = self.waiting_for
        detail = "the server closed the connection"
        if waiting is not None:
            detail += f" while we waited for its {waiting.value} reply"
        self._fail(FailureKind.CONNECTION_LOST, detail)

    def _fail(
        self, kind: FailureKind, detail: str, reply: Reply | None = None, *, can_quit: bool = False
    ) -> None:
        failure = SessionFailure(kind, detail, reply)
        if self._tx is not None:
            self._finish(failure)
        self._outstanding.clear()
        self._todo.clear()
        self._challenge_pending = False
        self._state = ClientState.FAILED
        self._can_quit = can_quit
        self._events.append(SessionFailed(failure))

    @staticmethod
    def _local(
        message: OutboundMessage, indices: Sequence[int] | range, reply: Reply
    ) -> tuple[RecipientResult, ...]:
        return tuple(
            RecipientResult(message.recipients[i].address, _status(reply), reply, remote=False)
            for i in indices
        )


_HANDLERS: Final = {
    _Cmd.GREETING: ClientCore._on_greeting,
    _Cmd.EHLO: ClientCore._on_ehlo,
    _Cmd.HELO: ClientCore._on_helo,
    _Cmd.STARTTLS: ClientCore._on_starttls,
    _Cmd.AUTH: ClientCore._on_auth,
    _Cmd.RSET: ClientCore._on_rset,
    _Cmd.MAIL: ClientCore._on_mail,
    _Cmd.RCPT: ClientCore._on_rcpt,
    _Cmd.DATA: ClientCore._on_data,
    _Cmd.DOT: ClientCore._on_content_end,
    _Cmd.BDAT: ClientCore._on_content_end,
    _Cmd.BDAT_LAST: ClientCore._on_content_end,
    _Cmd.QUIT: ClientCore._on_quit,
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reply_text(reply: Reply) -> str:
    head = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
    return head + reply.text
