"""Splitting client input into lines, with a bound on the length of each.

A line ends with LF (CRLF as RFC 1939 requires, a bare LF tolerated); the CR is removed. A line
longer than the limit is not kept: its octets are dropped as they arrive, and when its end comes
`TOO_LONG` stands for it, so that the client gets one reply for it, in its turn.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TOO_LONG", "LineReceiver", "TooLong"]

_COMPACT_AT: Final = 8192


class TooLong(enum.Enum):
    TOO_LONG = "TOO_LONG"

    def __repr__(self) -> str:
        return self.value


TOO_LONG: Final = TooLong.TOO_LONG


class LineReceiver:
    """Buffered input, read a line at a time."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of unread input
        self._discarding = False  # inside an over-long line

    @property
    def unread(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Forget all unread input (after STLS: CVE-2011-0411)."""
        self._buf.clear()
        self._pos = 0
        self._discarding = False

    def line(self, limit: int) -> bytes | TooLong | None:
        """The next line without its line end, `TOO_LONG` for a line of more than ``limit``
        octets (line end included), or None until a whole line is there."""
        buf = self._buf
        end = buf.find(b"\n", self._pos)
        if end < 0:
            if self._discarding or self.unread >= limit:
                # even with its LF still to come this line is too long: keep nothing of it
                self._discarding = True
                buf.clear()
                self._pos = 0
            return None
        start = self._pos
        self._pos = end + 1
        if self._discarding or end + 1 - start > limit:
            self._discarding = False
            self._compact()
            return TOO_LONG
        line = bytes(buf[start : end - 1 if end > start and buf[end - 1] == 0x0D else end])
        self._compact()
        return line

    def _compact(self) -> None:
        if self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
