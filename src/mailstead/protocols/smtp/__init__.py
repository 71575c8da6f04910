"""Sans-IO SMTP (RFC 5321): the server core, the client core, the command/reply grammar and the
reply catalogue.

Pure: no asyncio, no sockets, no TLS, no clock. ``servers.smtp`` wires `ServerCore` to the network,
``outbound.sender`` wires `ClientCore` (the client's events and types are in `client`).
"""

from . import client, replies
from .client import ClientCore, ClientSettings
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
    MailParams,
    MessageAborted,
    MessageComplete,
    Quit,
    RcptParams,
    RcptTo,
    Reset,
    StartTLS,
)
from .grammar import GrammarError
from .replies import Reply, format_reply, parse_reply
from .server import ProtocolError, ServerCore, ServerSettings
from .state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AuthAborted",
    "AuthResponse",
    "AuthStart",
    "ClientCore",
    "ClientSettings",
    "CloseConnection",
    "DataChunk",
    "Event",
    "GrammarError",
    "Hello",
    "MailFrom",
    "MailParams",
    "MessageAborted",
    "MessageComplete",
    "ProtocolError",
    "Quit",
    "RcptParams",
    "RcptTo",
    "Reply",
    "Reset",
    "ServerCore",
    "ServerSettings",
    "StartTLS",
    "State",
    "client",
    "format_reply",
    "parse_reply",
    "replies",
]
