"""What a :class:`~mailstead.sasl.SaslServer` asks of the shell, one step at a time.

Each call on the server returns one step: a challenge to send, a question for the directory
(:class:`NeedPassword`, :class:`NeedScram`) whose answer comes back through the matching method,
or the outcome. Steps are frozen dataclasses; the server does no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client (the shell base64-encodes it)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedPassword:
    """Check ``password`` for ``authcid`` (PLAIN, LOGIN), then call ``password_checked``.

    ``authzid`` is what the client asked to act as ("" when it did not say); the server has
    already refused any other identity than ``authcid``.
    """

    authcid: str
    authzid: str
    password: str


@dataclass(frozen=True, slots=True)
class NeedScram:
    """Look up the SCRAM credentials of ``authcid``, then call ``scram_credentials``."""

    authcid: str
    authzid: str


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated. ``authzid`` is the identity to act as (``authcid`` when none was asked).

    ``final_data`` is SCRAM's server-final-message: the shell sends it as the success's
    additional data where the protocol allows it (IMAP4rev2, RFC 9051 §6.2.2), otherwise as one
    last challenge whose (empty) answer it reads before reporting success (SMTP, RFC 4954 §4).
    ``credential`` is the label of the SCRAM key that matched (None for PLAIN and LOGIN, where
    the shell learns it from the directory).
    """

    authcid: str
    authzid: str
    account: object | None
    final_data: bytes | None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Not authenticated. ``malformed`` marks a protocol violation by the client (bad syntax,
    oversize data), as opposed to wrong credentials; ``reason`` is for logs, not for clients."""

    reason: str
    malformed: bool


Step = Challenge | NeedPassword | NeedScram | Success | Failure


@dataclass(frozen=True, slots=True)
class Aborted:
    """The client sent "*" (RFC 4422 §3.5): the exchange is cancelled."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A response line that is not valid base64."""

    reason: str


class UnknownMechanism(ValueError):
    """The mechanism is not one we offer (or its -PLUS variant has no channel binding)."""


class SaslStateError(RuntimeError):
    """The shell called the server out of turn (a bug in the caller, not the client's fault)."""


def decode_response(line: bytes) -> bytes | Aborted | Malformed:
    """One client response line (CRLF optional) in its decoded form.

    "*" cancels (RFC 4422 §3.5), "=" is an empty initial response (RFC 4954 §4, RFC 9051
    §6.2.2), an empty line an empty response; anything else must be strict base64 (alphabet
    and padding checked, no whitespace).
    """
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    if line == b"*":
        return Aborted()
    if line in (b"=", b""):
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except binascii.Error:
        return Malformed("invalid base64")
