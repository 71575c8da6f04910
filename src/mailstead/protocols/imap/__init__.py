"""Sans-IO IMAP (IMAP4rev2 RFC 9051, IMAP4rev1 RFC 3501): the server core, the command grammar,
the state table, the response writer and the modified UTF-7 codec.

Pure: no asyncio, no sockets, no TLS, no clock. ``servers.imap`` wires `ServerCore` to the
network; the session logic answers the typed commands of `commands` with bytes built by
`response`.
"""

from . import commands, mutf7, response
from .events import (
    NEED_DATA,
    PAUSED,
    AuthenticateLine,
    CommandReceived,
    ConnectionClosed,
    Event,
    IdleDone,
    ProtocolErrorEvent,
)
from .grammar import ParseError, parse_command, parse_sequence_set
from .server import ProtocolError, ServerCore, Settings
from .state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthenticateLine",
    "CommandReceived",
    "ConnectionClosed",
    "Event",
    "IdleDone",
    "ParseError",
    "ProtocolError",
    "ProtocolErrorEvent",
    "ServerCore",
    "Settings",
    "State",
    "commands",
    "mutf7",
    "parse_command",
    "parse_sequence_set",
    "response",
]
