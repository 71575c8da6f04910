"""Building POP3 replies: status lines, multi-line responses, messages on the wire, SASL
challenges.

RFC 1939 §3: a multi-line response is the status line, then lines ending in CRLF, each line
that begins with "." getting one more "." in front (byte-stuffing), then ".CRLF". Messages are
sent with CRLF line ends whatever their stored form: a bare LF becomes CRLF and a final line
without its CRLF gets one (`wire_form`), so the octets sent are those of the wire form.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "MAX_STATUS_LINE",
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


def message(raw: bytes) -> bytes:
    """The multi-line body of RETR for a stored message (after the status line)."""
    return _stuff(wire_form(raw)) + _TERMINATOR


def top(raw: bytes, lines: int) -> bytes:
    """The multi-line body of TOP (RFC 1939 §7): the header, the empty line after it, and the
    first ``lines`` lines of the body (all of them if there are fewer)."""
    data = wire_form(raw)
    if data.startswith(b"\r\n"):
        header_end = 2
    else:
        blank = data.find(b"\r\n\r\n")
        header_end = len(data) if blank < 0 else blank + 4
    end = header_end
    for _ in range(lines):
        found = data.find(b"\r\n", end)
        if found < 0:
            end = len(data)
            break
        end = found + 2
    return _stuff(data[:end]) + _TERMINATOR


def challenge(data: bytes) -> bytes:
    """A SASL server challenge (RFC 5034 §4): ``+`` SP base64 CRLF."""
    return b"+ " + base64.b64encode(data) + b"\r\n"
