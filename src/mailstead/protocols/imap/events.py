"""Events the IMAP server core hands to its shell, and the sentinels NEED_DATA and PAUSED.

`CommandReceived` leaves the core PAUSED until the shell calls ``command_done()``: commands are
handed out one at a time, in order. The other events are informational or belong to an input mode
(IDLE, AUTHENTICATE) the shell switched on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from .commands import Command

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthenticateLine",
    "CommandReceived",
    "ConnectionClosed",
    "Event",
    "IdleDone",
    "ProtocolErrorEvent",
    "Sentinel",
]


class Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
"""No complete event in the buffered input: feed more bytes with ``receive_data``."""
PAUSED: Final = Sentinel.PAUSED
"""A command is outstanding: answer it, then call ``command_done()``."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class CommandReceived(Event):
    """A valid command, legal in the current state. Answer it (untagged data, then a tagged
    ``tag OK/NO/BAD``), then call ``command_done()``."""

    tag: str
    command: Command


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent(Event):
    """The core refused a command and already queued the reply (``tag BAD text``, or ``* BAD``
    when ``tag`` is None). For logging and metrics; nothing to answer."""

    tag: str | None
    text: str


@dataclass(frozen=True, slots=True)
class IdleDone(Event):
    """The client ended IDLE. ``valid`` is False when it sent something other than DONE
    (answer ``tag BAD``); either way the core is back to waiting for ``command_done()``."""

    valid: bool = True


@dataclass(frozen=True, slots=True)
class AuthenticateLine(Event):
    """One client line during AUTHENTICATE (base64 text, without CRLF). ``*`` cancels
    (RFC 9051 §6.2.2: answer ``tag BAD``). ``too_long`` when it exceeded ``max_line``: its
    content was discarded; fail the exchange."""

    data: bytes
    too_long: bool = False

    @property
    def cancelled(self) -> bool:
        return self.data == b"*"

    def __repr__(self) -> str:  # SASL responses carry credentials
        return f"AuthenticateLine(<{len(self.data)} octets>, too_long={self.too_long})"


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Nothing more will be read: flush ``data_to_send()`` and close. ``reason``: "eof" (the
    client closed), "logout", "bye" (the core or the shell sent ``* BYE``)."""

    reason: str
