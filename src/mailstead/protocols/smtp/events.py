"""Events the SMTP server core hands to its shell, and the two sentinels NEED_DATA and PAUSED.

Decision events (`MailFrom`, `RcptTo`, `MessageComplete`, `AuthStart`, `AuthResponse`) leave the
core PAUSED until the shell calls ``accept()`` or ``reply()`` (or, during AUTH,
``auth_challenge()``). All the others are informational: the core already queued its reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthAborted",
    "AuthResponse",
    "AuthStart",
    "CloseConnection",
    "DataChunk",
    "Event",
    "Hello",
    "MailFrom",
    "MailParams",
    "MessageAborted",
    "MessageComplete",
    "Quit",
    "RcptParams",
    "RcptTo",
    "Reset",
    "StartTLS",
]


class Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
"""No complete event in the buffered input: feed more bytes with ``receive_data``."""
PAUSED: Final = Sentinel.PAUSED
"""A decision event is pending: call ``accept()`` or ``reply()`` first."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class MailParams:
    """MAIL FROM parameters, validated (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531, RFC 3461)."""

    size: int | None = None
    body: Literal["7BIT", "8BITMIME"] | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None  # xtext-decoded
    raw: tuple[tuple[str, str | None], ...] = ()  # (keyword, value) as sent
    auth: str | None = None  # RFC 4954 §5 AUTH=, xtext-decoded ("<>" when unknown)


@dataclass(frozen=True, slots=True)
class RcptParams:
    """RCPT TO parameters, validated (RFC 3461 NOTIFY, ORCPT)."""

    notify: tuple[str, ...] = ()  # ("NEVER",) or a subset of SUCCESS, FAILURE, DELAY
    orcpt: tuple[str, str] | None = None  # (addr-type, xtext-decoded address)
    raw: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Hello(Event):
    """HELO or EHLO accepted (already answered 250). ``verb`` is "HELO" or "EHLO"."""

    verb: str
    domain: str


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    """Decision: accept or refuse the sender. ``reverse_path`` is "" for the null sender ``<>``."""

    reverse_path: str
    params: MailParams = field(default_factory=MailParams)


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    """Decision: accept or refuse one recipient."""

    forward_path: str
    params: RcptParams = field(default_factory=RcptParams)


@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    """A piece of message content: dot-unstuffed, line endings normalised to CRLF."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MessageComplete(Event):
    """Decision: the whole message was received; store it durably, then accept or refuse."""

    size: int
    via: Literal["DATA", "BDAT"]


@dataclass(frozen=True, slots=True)
class MessageAborted(Event):
    """Discard the content streamed so far (refused by the core, RSET, connection lost)."""

    reason: str


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """``220 2.0.0 Ready to start TLS`` is queued: flush, handshake, then ``tls_started()``."""


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The mail transaction was cleared (RSET, or HELO/EHLO during a transaction)."""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """QUIT answered with 221: flush and close."""


@dataclass(frozen=True, slots=True)
class CloseConnection(Event):
    """Close after flushing (a 421 was queued, or the client hung up: reason "eof")."""

    reason: str


@dataclass(frozen=True, slots=True)
class AuthStart(Event):
    """Decision: AUTH (RFC 4954 §4) with a mechanism the settings offer now.

    ``initial_response`` is the argument as sent (base64, or "=" for an empty one; not decoded
    here), None when the client sent none. Answer with ``auth_challenge(data)`` (334), ``accept()``
    (235) or ``reply()`` (a refusal; 421 closes). Payloads are left out of ``repr``: they hold
    passwords.
    """

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """Decision: the client's line answering a 334 challenge (terminator removed, not decoded:
    base64, or "*" to cancel). Answered like `AuthStart`."""

    line: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthAborted(Event):
    """The AUTH exchange ended without the shell's verdict (an over-long response line: the core
    answers 500 5.5.6 itself). Forget the exchange."""

    reason: str
