"""DATA and BDAT content receivers: bounded, streaming, and closed to SMTP smuggling.

Each receiver takes raw bytes as they arrive and returns message content ready for the spool,
keeping at most a few bytes between calls (never a line, never the message).

Line endings and smuggling (SEC Consult, 2023; CVE-2023-51764/51765/51766)
---------------------------------------------------------------------------
Two servers that disagree on where a message ends let an attacker hide a second message inside
the first. The rules here:

* End of data is only ``<CR><LF>.<CR><LF>`` (RFC 5321 §4.1.1.4), the first CRLF being the end of the
  DATA command line or of the previous content line. ``\\n.\\n``, ``\\n.\\r\\n``, ``\\r\\n.\\n``,
  ``\\r.\\r`` and friends never end the data.
* A bare LF is normalised to CRLF, as Postfix 3.9 does with
  ``smtpd_forbid_bare_newline = normalize``: software that writes LF-only lines is common, the
  intent is unambiguous, and once stored the message has only CRLF lines, so a later hop cannot
  read it differently. A line ended by a bare LF never counts towards the end-of-data sequence.
* **A bare CR (not followed by LF) refuses the message**: ``554 5.6.0 Bare CR not allowed`` at the
  end of data. RFC 5321 §2.3.8 forbids it in SMTP text; unlike bare LF no legitimate sender
  produces it, and its meaning is ambiguous (some software treats CR alone as a line break, which
  is exactly what the ``\\r.\\r`` smuggling variants exploit). Normalising it would have to
  guess where lines end; refusing does not guess.
* A line that is a single "." but does not end the data (it followed a bare LF, or ends in one)
  keeps its dot: RFC 5321 §4.5.2 removes the first dot only from lines with other characters.
  Stored as ``.\\r\\n``, it is dot-stuffed again by whichever client relays it.

Limits: the size counts the content after unstuffing and normalisation. Past ``max_size``, a line
longer than ``max_line`` octets (CRLF not counted), or a bare CR, the receiver records its refusal,
stops producing content and keeps reading to the end (DATA) or the announced count (BDAT),
discarding.
"""

from __future__ import annotations

import re
from typing import Final

from . import replies
from .replies import Reply

__all__ = ["BdatReceiver", "DataReceiver"]

_BARE_LF: Final = re.compile(rb"(?<!\r)\n")
_UNSTUFF: Final = re.compile(rb"\n\.(?!\r\n)")  # RFC 5321 §4.5.2, a lone "." line keeps its dot
_END: Final = b"\r\n.\r\n"


# When several problems occur the reply does not depend on how the bytes arrived: the one listed
# first wins. Past the size limit nothing else is checked.
_PRIORITY: Final = (replies.MESSAGE_TOO_BIG, replies.BARE_CR, replies.DATA_LINE_TOO_LONG)


class _ContentFilter:
    """Bare CR detection, bare LF normalisation, size and line-length accounting."""

    __slots__ = ("_line_len", "_problems", "max_line", "max_size", "refusal", "size", "too_big")

    def __init__(self, max_size: int, max_line: int) -> None:
        self.max_size = max_size
        self.max_line = max_line
        self.size = 0
        self._line_len = 0  # octets of the current, unfinished line
        self._problems: set[Reply] = set()
        self.refusal: Reply | None = None  # the reply refusing the message, None while acceptable
        self.too_big = False

    def refuse(self, reply: Reply) -> None:
        self._problems.add(reply)
        self.too_big = self.too_big or reply is replies.MESSAGE_TOO_BIG
        self.refusal = next(r for r in _PRIORITY if r in self._problems)

    def _normalise(self, region: bytes) -> bytes:
        """``region`` never ends with a CR whose LF may follow (the caller holds it back)."""
        ncr = region.count(b"\r")
        ncrlf = region.count(b"\r\n") if ncr else 0
        if ncr != ncrlf:
            self.refuse(replies.BARE_CR)
        if region.count(b"\n") != ncrlf:
            region = _BARE_LF.sub(b"\r\n", region)
        return region

    def _account(self, out: bytes) -> None:
        """Count ``out`` (normalised: every LF follows a CR unless a bare CR was found)."""
        n = len(out)
        self.size += n
        if self.size > self.max_size:
            self.refuse(replies.MESSAGE_TOO_BIG)
            return
        last = out.rfind(b"\n")
        if self._line_len + n > self.max_line:  # some line may be too long: look closer
            if last == -1:
                self._line_len += n
                if self._line_len > self.max_line:
                    self.refuse(replies.DATA_LINE_TOO_LONG)
                return
            first = out.find(b"\n")
            longest = self._line_len + first - 1
            if first != last:
                longest = max(longest, max(map(len, out[first + 1 : last].split(b"\n"))) - 1)
            tail = n - last - 1
            if longest > self.max_line or tail > self.max_line:
                self.refuse(replies.DATA_LINE_TOO_LONG)
            self._line_len = tail
        elif last == -1:
            self._line_len += n
        else:
            self._line_len = n - last - 1


class DataReceiver(_ContentFilter):
    """Content after DATA: dot-unstuffed, bare LF normalised, ends at ``<CR><LF>.<CR><LF>``."""

    __slots__ = ("_after_crlf", "_bol", "_tail")

    def __init__(self, max_size: int, max_line: int, *, after_crlf: bool = True) -> None:
        """``after_crlf``: the DATA command line ended with CRLF (not a bare LF)."""
        super().__init__(max_size, max_line)
        self._tail = b""  # at most 3 undecided bytes: "\r", "." or ".\r" at a line start
        self._bol = True  # at the start of a line (for dot-unstuffing)
        self._after_crlf = after_crlf  # ... and that line follows a real CRLF (for end of data)

    def feed(self, data: bytes) -> tuple[bytes, int, bool]:
        """Take ``data``; return (content, octets of ``data`` consumed, end of data reached).

        Everything is consumed unless the end of data is reached: then the bytes after
        ``<CR><LF>.<CR><LF>`` are left to the caller (pipelined commands).
        """
        tail = self._tail
        raw = tail + data if tail else data
        if self._after_crlf and raw[:3] == b".\r\n":
            cut, used = 0, 3
        else:
            i = raw.find(_END)
            cut, used = (i + 2, i + 5) if i != -1 else (-1, -1)
        if cut != -1:
            self._tail = b""
            out = self._process(raw[:cut]) if cut else b""
            return out, used - len(tail), True
        hold = 0
        nl = raw.rfind(b"\n")
        if nl != -1 or self._bol:
            suffix = raw[nl + 1 :]
            if suffix == b"." or suffix == b".\r":
                hold = len(suffix)
        if not hold and raw[-1:] == b"\r":
            hold = 1
        if hold:
            self._tail = raw[-hold:]
            raw = raw[:-hold]
        else:
            self._tail = b""
        out = self._process(raw) if raw else b""
        return out, len(data), False

    def _process(self, region: bytes) -> bytes:
        bol = self._bol
        self._bol = region[-1:] == b"\n"
        self._after_crlf = region[-2:] == b"\r\n"
        if self.too_big:
            return b""
        out = self._normalise(region)
        if bol and out[:1] == b"." and out[:3] != b".\r\n":
            out = out[1:]
        if b"\n." in out:
            out = _UNSTUFF.sub(b"\n", out)
        self._account(out)
        return b"" if self.refusal is not None else out


class BdatReceiver(_ContentFilter):
    """Content of the BDAT chunks of one transaction (RFC 3030): counted, not dot-stuffed.

    Bare LF is normalised and bare CR refused as with DATA; a CRLF split across two chunks is
    recognised.
    """

    __slots__ = ("_tail", "last", "remaining")

    def __init__(self, max_size: int, max_line: int) -> None:
        super().__init__(max_size, max_line)
        self._tail = b""  # a CR at the end of the previous bytes, waiting for its LF
        self.remaining = 0
        self.last = False

    def start_chunk(self, size: int, last: bool) -> None:
        self.remaining = size
        self.last = last
        if not self.too_big and self.size + len(self._tail) + size > self.max_size:
            self.refuse(replies.MESSAGE_TOO_BIG)  # RFC 1870: refused before reading, read anyway

    def feed(self, data: bytes) -> tuple[bytes, int, bool]:
        """Take up to ``remaining`` octets of ``data``: (content, consumed, chunk complete)."""
        take = min(self.remaining, len(data))
        self.remaining -= take
        done = self.remaining == 0
        if self.too_big or not take:
            return b"", take, done
        piece = data[:take] if take < len(data) else data
        raw = self._tail + piece if self._tail else piece
        if raw[-1:] == b"\r":
            self._tail = b"\r"
            raw = raw[:-1]
        else:
            self._tail = b""
        if not raw:
            return b"", take, done
        out = self._normalise(raw)
        self._account(out)
        return (b"" if self.refusal is not None else out), take, done

    def finish(self) -> None:
        """After the LAST chunk: a CR still waiting for its LF is a bare CR."""
        if self._tail:
            self._tail = b""
            self.refuse(replies.BARE_CR)
