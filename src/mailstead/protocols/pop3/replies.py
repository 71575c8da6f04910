"""Building POP3 replies: status lines, multi-line responses, messages on the wire, SASL
challenges.

RFC 1939 §3: a multi-line response is the status line, then lines ending in CRLF, each line
that begins with "." getting one more "." in front (byte-stuffing), then ".CRLF". Messages are
sent with CRLF line ends whatever their stored form: a bare LF becomes CRLF and a final line
without its CRLF gets one (`wire_form`), so the octets sent are those of the wire form.
`MessageWriter` does this to a message given in pieces (a large one is never whole in memory).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_STATUS_LINE",
    "MessageWriter",
    "challenge",
    "err",
    "message",
    "multiline",
    "ok",
    "status",
    "top",
    "wire_form",
]

# RFC 2449 §4: a status line is at most 512 octets, CRLF included.
MAX_STATUS_LINE: Final = 512

_BARE_LF: Final = re.compile(rb"(?<!\r)\n")
_TERMINATOR: Final = b".\r\n"


def status(indicator: bytes, text: str = "", code: str | None = None) -> bytes:
    """``+OK``/``-ERR``, then ``[CODE]`` (RFC 2449 §8) and the text, cut to the RFC 2449
    limit; CR and LF in the text become spaces."""
    words = [indicator]
    if code:
        words.append(f"[{code}]".encode("ascii"))
    if text:
        words.append(text.replace("\r", " ").replace("\n", " ").encode("utf-8"))
    line = b" ".join(words)[: MAX_STATUS_LINE - 2]
    return line + b"\r\n"


def ok(text: str = "", code: str | None = None) -> bytes:
    return status(b"+OK", text, code)


def err(text: str, code: str | None = None) -> bytes:
    return status(b"-ERR", text, code)


def _stuff(data: bytes) -> bytes:
    """Byte-stuff CRLF-terminated lines (RFC 1939 §3)."""
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


def multiline(first: bytes, lines: Iterable[str | bytes]) -> bytes:
    """A status line (from `ok`) followed by ``lines`` (without line ends), stuffed and ended."""
    body = b"".join(
        (line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n" for line in lines
    )
    return first + _stuff(body) + _TERMINATOR


def wire_form(raw: bytes) -> bytes:
    """A stored message as POP3 sends it (before byte-stuffing): CRLF line ends, the last line
    ended too."""
    if raw.count(b"\n") != raw.count(b"\r\n"):
        raw = _BARE_LF.sub(b"\r\n", raw)
    if raw and not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw


class MessageWriter:
    """A stored message as the multi-line body of RETR, or of TOP with ``lines``, made from
    its pieces in order: ``feed`` each piece and send what it returns, then send ``end()``.
    What a piece boundary splits is carried over: a CR whose LF may come next, a line that
    starts in the next piece with ".", the blank line that ends the header. The output is that
    of `message` (or `top`) for the whole, whatever the pieces. For TOP, ``done`` is set once
    everything to send was returned: feed no more."""

    def __init__(self, lines: int | None = None) -> None:
        self._header = lines is not None  # TOP, still in the header
        self._lines = lines or 0  # TOP: body lines still to send
        self._top = lines is not None
        self._carry = b""  # a CR at the end of the last piece
        self._line_start = True  # the next octet begins a line
        self._sent = False  # an octet of the message was returned
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The octets to send for the next piece of the message."""
        if self.done:
            return b""
        if self._carry:
            data, self._carry = self._carry + data, b""
        if data.endswith(b"\r"):  # its LF, if any, is in the next piece
            data, self._carry = data[:-1], b"\r"
        if not data:
            return b""
        if data.count(b"\n") != data.count(b"\r\n"):
            data = _BARE_LF.sub(b"\r\n", data)
        if self._top:
            data = self._cut(data)
        return self._stuff(data)

    def end(self) -> bytes:
        """The last octets: what was carried, a CRLF ending the last line, the terminator."""
        tail = b""
        if not self.done:
            tail = self._carry
            if tail:
                self._sent, self._line_start = True, False
            if self._sent and not self._line_start:
                tail += b"\r\n"  # the last line gets its CRLF
        self.done = True
        return tail + _TERMINATOR

    def _stuff(self, data: bytes) -> bytes:
        # RFC 1939 §3: a line starting with "." gets another, also one starting in this piece
        out = data.replace(b"\r\n.", b"\r\n..")
        if self._line_start and out[:1] == b".":
            out = b"." + out
        if out:
            self._sent = True
            self._line_start = out.endswith(b"\r\n")
        return out

    def _cut(self, data: bytes) -> bytes:
        """TOP (RFC 1939 §7): the header, the blank line after it, then ``lines`` lines."""
        pos = 0
        if self._header:
            if self._line_start and data.startswith(b"\r\n"):
                pos = 2  # the blank line starts this piece (or the message has no header)
            else:
                blank = data.find(b"\r\n\r\n")
                if blank < 0:
                    return data
                pos = blank + 4
            self._header = False
        lines = self._lines
        if data.count(b"\r\n", pos) < lines:
            self._lines = lines - data.count(b"\r\n", pos)
            return data
        for _ in range(lines):
            pos = data.index(b"\r\n", pos) + 2
        self._lines = 0
        self.done = True
        return data[:pos]


def message(raw: bytes) -> bytes:
    """The multi-line body of RETR for a stored message (after the status line)."""
    writer = MessageWriter()
    return writer.feed(raw) + writer.end()


def top(raw: bytes, lines: int) -> bytes:
    """The multi-line body of TOP (RFC 1939 §7): the header, the empty line after it, and the
    first ``lines`` lines of the body (all of them if there are fewer)."""
    writer = MessageWriter(lines)
    return writer.feed(raw) + writer.end()


def challenge(data: bytes) -> bytes:
    """A SASL server challenge (RFC 5034 §4): ``+`` SP base64 CRLF."""
    return b"+ " + base64.b64encode(data) + b"\r\n"
