"""SMTP replies: the `Reply` value, its wire format, and the catalogue of named replies.

Every reply the server sends is built here, so codes stay consistent: a basic code (RFC 5321
§4.2), an enhanced status code (RFC 2034 / RFC 3463) and human text. Text containing newlines
is sent as a multi-line reply (``250-first`` ... ``250 last``, RFC 5321 §4.2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply; ``enhanced`` is an RFC 3463 code (``"5.1.1"``) or None (greeting, EHLO)."""

    code: int
    enhanced: str | None
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.enhanced is not None and not _ENHANCED_RE.fullmatch(self.enhanced):
            raise ValueError(f"bad enhanced status code: {self.enhanced!r}")
        if self.enhanced is not None and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code class differs from reply class: {self!r}")

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    def lines(self) -> list[str]:
        return self.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


_ENHANCED_RE: Final = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


def format_reply(reply: Reply, *, enhanced: bool = True) -> bytes:
    """Wire form of a reply; ``enhanced=False`` leaves out the enhanced status code."""
    code = str(reply.code)
    head = f"{reply.enhanced} " if enhanced and reply.enhanced is not None else ""
    lines = reply.lines()
    last = len(lines) - 1
    out = [
        f"{code}{' ' if i == last else '-'}{head}{line}".rstrip(" ") + "\r\n"
        for i, line in enumerate(lines)
    ]
    return "".join(out).encode("utf-8")


_REPLY_LINE_RE: Final = re.compile(rb"([2-5][0-9][0-9])([ -])(.*?)\r?\n")
_ENHANCED_PREFIX_RE: Final = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?: |$)")


def parse_reply(data: bytes | bytearray, *, max_lines: int = 1000) -> tuple[Reply, int] | None:
    """Parse one complete (possibly multi-line) reply at the start of ``data``.

    Returns the reply and the number of bytes it used, or None when more bytes are needed. Raises
    ValueError on a malformed line. The enhanced code is taken from the first line when present and
    removed from every line that repeats it (RFC 2034 §4: each line carries the same code).
    """
    pos = 0
    texts: list[str] = []
    code: bytes | None = None
    while True:
        m = _REPLY_LINE_RE.match(data, pos)
        if m is None:
            end = data.find(b"\n", pos)
            if end == -1:
                return None
            raise ValueError(f"malformed reply line: {bytes(data[pos : end + 1])!r}")
        if code is None:
            code = m.group(1)
        elif m.group(1) != code:
            raise ValueError("reply code changes inside a multi-line reply")
        texts.append(m.group(3).decode("utf-8", "replace"))
        pos = m.end()
        if m.group(2) == b" ":
            break
        if len(texts) >= max_lines:
            raise ValueError("too many lines in one reply")
    enhanced: str | None = None
    e = _ENHANCED_PREFIX_RE.match(texts[0])
    if e is not None and e.group(1)[0] == chr(code[0]):
        enhanced = e.group(1)
        texts = [t[len(enhanced) :].lstrip(" ") if t.startswith(enhanced) else t for t in texts]
    return Reply(int(code), enhanced, "\n".join(texts)), pos


# --- The catalogue --------------------------------------------------------------------------------
# Generic positive replies.
OK: Final = Reply(250, "2.0.0", "Ok")
SENDER_OK: Final = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK: Final = Reply(250, "2.1.5", "Ok")
QUEUED: Final = Reply(250, "2.0.0", "Ok: queued")
START_DATA: Final = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
BYE: Final = Reply(221, "2.0.0", "Bye")
READY_FOR_TLS: Final = Reply(220, "2.0.0", "Ready to start TLS")
CANNOT_VRFY: Final = Reply(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)
HELP: Final = Reply(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS\nSee RFC 5321",
)

# Syntax and sequence errors (RFC 5321 §4.2.2, RFC 3463 X.5.x).
UNKNOWN_COMMAND: Final = Reply(500, "5.5.2", "Command not recognized")
LINE_TOO_LONG: Final = Reply(500, "5.5.2", "Line too long")
SYNTAX_ERROR: Final = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
# RFC 3461 §4.4 / §4.2: what xtext decodes to must not break a DSN's lines
BAD_ENVID: Final = Reply(501, "5.5.4", "ENVID must decode to printable US-ASCII (RFC 3461 4.4)")
BAD_ORCPT: Final = Reply(501, "5.5.4", "ORCPT must not decode to control characters")
NOT_IMPLEMENTED: Final = Reply(502, "5.5.1", "Command not implemented")
EXPN_DISABLED: Final = Reply(502, "5.5.1", "EXPN not available")
BAD_SEQUENCE: Final = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO: Final = Reply(503, "5.5.1", "Send HELO/EHLO first")
NEED_EHLO: Final = Reply(503, "5.5.1", "Send EHLO first")
NESTED_MAIL: Final = Reply(503, "5.5.1", "Nested MAIL command")
NEED_MAIL: Final = Reply(503, "5.5.1", "Need MAIL command")
NEED_RCPT: Final = Reply(503, "5.5.1", "Need RCPT command")
NO_VALID_RECIPIENTS: Final = Reply(554, "5.5.1", "No valid recipients")
DATA_AFTER_BDAT: Final = Reply(503, "5.5.1", "DATA not allowed after BDAT in one transaction")
RCPT_AFTER_BDAT: Final = Reply(503, "5.5.1", "RCPT not allowed after BDAT")
TRANSACTION_IN_PROGRESS: Final = Reply(503, "5.5.1", "Mail transaction in progress")
TLS_ALREADY_ACTIVE: Final = Reply(503, "5.5.1", "TLS already active")
TLS_NOT_AVAILABLE: Final = Reply(454, "4.7.0", "TLS not available")  # RFC 3207 §4
MUST_STARTTLS: Final = Reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 §4
UNKNOWN_PARAMETER: Final = Reply(555, "5.5.4", "Unsupported parameter")
DUPLICATE_PARAMETER: Final = Reply(501, "5.5.4", "Duplicate parameter")
BAD_SENDER_SYNTAX: Final = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX: Final = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_HELO_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: EHLO/HELO domain")
NON_ASCII_ADDRESS: Final = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")  # RFC 6531
BAD_BDAT_SIZE: Final = Reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")

# Limits.
MESSAGE_TOO_BIG: Final = Reply(552, "5.3.4", "Message too big")  # RFC 1870
TOO_MANY_RECIPIENTS: Final = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
DATA_LINE_TOO_LONG: Final = Reply(554, "5.6.0", "Line too long in message content")
BARE_CR: Final = Reply(554, "5.6.0", "Bare CR not allowed")  # RFC 5321 §2.3.8
TOO_MANY_COMMANDS: Final = Reply(421, "4.7.0", "Too many commands, closing connection")
TOO_MANY_ERRORS: Final = Reply(421, "4.7.0", "Too many errors, closing connection")
PIPELINE_OVERFLOW: Final = Reply(421, "4.7.0", "Too much pipelined input, closing connection")
BDAT_DESYNC: Final = Reply(421, "4.7.0", "Cannot resynchronise after bad BDAT, closing connection")

# Decisions the shell takes (directory, policy, store).
RELAY_DENIED: Final = Reply(554, "5.7.1", "Relay access denied")
USER_UNKNOWN: Final = Reply(550, "5.1.1", "User unknown")
MAILBOX_FULL: Final = Reply(452, "4.2.2", "Mailbox full")
QUOTA_EXCEEDED_PERM: Final = Reply(552, "5.2.2", "Mailbox quota exceeded")
MAILBOX_DISABLED: Final = Reply(550, "5.2.1", "Mailbox disabled")
SENDER_REJECTED: Final = Reply(550, "5.7.1", "Sender rejected")
POLICY_REJECTED: Final = Reply(550, "5.7.1", "Rejected by policy")
SPF_FAIL: Final = Reply(550, "5.7.23", "SPF validation failed")  # RFC 7372
AUTH_REQUIRED: Final = Reply(530, "5.7.0", "Authentication required")
CONTENT_REJECTED: Final = Reply(554, "5.7.1", "Message content rejected")
VIRUS_FOUND: Final = Reply(554, "5.7.1", "Message rejected: virus found")
SHUTTING_DOWN: Final = Reply(421, "4.3.2", "Service shutting down")
TOO_MANY_CONNECTIONS: Final = Reply(421, "4.7.0", "Too many connections, try again later")
TIMEOUT: Final = Reply(421, "4.4.2", "Idle timeout")
TEMP_FAILURE: Final = Reply(451, "4.3.0", "Temporary failure, try again later")
STORAGE_FULL: Final = Reply(452, "4.3.1", "Insufficient system storage")
GREYLISTED: Final = Reply(451, "4.7.1", "Greylisted, try again later")
RATE_LIMITED: Final = Reply(451, "4.7.1", "Rate limit exceeded, try again later")

# Authentication (RFC 4954 §4 and §6; enhanced codes from RFC 3463 and RFC 5248).
AUTH_SUCCEEDED: Final = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED: Final = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_CANCELLED: Final = Reply(501, "5.0.0", "Authentication cancelled")  # the client sent "*"
AUTH_BAD_BASE64: Final = Reply(501, "5.5.2", "Invalid base64 data")
AUTH_BAD_DATA: Final = Reply(501, "5.5.2", "Invalid authentication data")  # e.g. PLAIN without NULs
AUTH_LINE_TOO_LONG: Final = Reply(500, "5.5.6", "Authentication Exchange line is too long")
AUTH_UNKNOWN_MECHANISM: Final = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_ENCRYPTION_REQUIRED: Final = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_TEMP_FAILURE: Final = Reply(454, "4.7.0", "Temporary authentication failure")
AUTH_ALREADY_DONE: Final = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION: Final = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
BAD_AUTH_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_BANNED: Final = Reply(421, "4.7.0", "Too many authentication failures, try again later")


# Submission (RFC 6409): what an authenticated user may send.
def sender_not_owned(address: str, user: str) -> Reply:
    """MAIL FROM with an address the user may not use (RFC 6409 §6.1)."""
    return Reply(550, "5.7.1", f"<{address}>: sender address not owned by user {user}")


def from_header_not_owned(address: str, user: str, field: str = "From") -> Reply:
    """An address of a From: (Sender:, Resent-From:, …) header the user may not use, at end of
    data."""
    return Reply(550, "5.7.1", f"<{address}>: {field}: header address not owned by user {user}")


def remote_delivery_unavailable(address: str) -> Reply:
    """A remote recipient on submission, until the outbound queue exists (issue 5)."""
    return Reply(
        451, "4.3.0", f"Remote delivery is not available yet: message not accepted for <{address}>"
    )
