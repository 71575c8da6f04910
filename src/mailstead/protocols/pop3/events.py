"""Events the POP3 server core hands to its shell, and the sentinels NEED_DATA and PAUSED.

`CommandReceived` leaves the core PAUSED until the shell calls ``command_done()``: commands are
handed out one at a time, in pipeline order. `AuthResponse` belongs to the SASL input mode the
shell switches on with ``begin_auth()``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from .commands import Command

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthResponse",
    "CommandReceived",
    "ConnectionClosed",
    "Event",
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
    """A valid command, legal in the current state: answer it, then ``command_done()``."""

    command: Command


@dataclass(frozen=True, slots=True)
class ProtocolErrorEvent(Event):
    """The core refused a line and already queued the ``-ERR`` reply (for logs and metrics)."""

    text: str


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """One client line during an AUTH exchange, without its CRLF (base64, or ``*`` to cancel,
    RFC 5034 §4). ``too_long``: the line exceeded ``max_auth_line`` and was discarded."""

    data: bytes
    too_long: bool = False

    def __repr__(self) -> str:  # SASL responses carry credentials
        return f"AuthResponse(<{len(self.data)} octets>, too_long={self.too_long})"


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """Nothing more will be read: flush ``data_to_send()`` and close. ``reason``: "eof" (the
    client closed), "quit", "errors" (too many errors), "input" (too much pipelined input),
    "shell" (``close()``)."""

    reason: str
