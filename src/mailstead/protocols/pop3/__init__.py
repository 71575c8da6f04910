"""Sans-IO POP3 (RFC 1939 with RFC 2449 CAPA, RESP-CODES and PIPELINING, RFC 2595 STLS, RFC 5034
AUTH): the server core, the command parser, the state table and the reply writer.

Pure: no asyncio, no sockets, no TLS, no clock. ``servers.pop3`` wires `ServerCore` to the
network; the session logic (``mailstead.pop3``) answers the typed commands of `commands` with
bytes built by `replies`.
"""

from . import commands, replies
from .commands import ParseError, parse_command
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
from .server import TOO_MANY_ERRORS, ProtocolError, ServerCore, Settings
from .state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "TOO_MANY_ERRORS",
    "AuthResponse",
    "CommandReceived",
    "ConnectionClosed",
    "Event",
    "ParseError",
    "ProtocolError",
    "ProtocolErrorEvent",
    "Sentinel",
    "ServerCore",
    "Settings",
    "State",
    "commands",
    "parse_command",
    "replies",
]
