"""Reading SMTP replies off a raw (or TLS-wrapped) socket, for tests that must send bytes
smtplib would not: pipelined commands, bad input, BDAT, injection attempts."""

from __future__ import annotations

import socket


class ReplyReader:
    """Whole replies (multi-line ones joined with CRLF) from ``sock``; leftover bytes stay in
    ``buffer``, so a test can check that nothing else was sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def reply(self) -> bytes:
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"\r\n".join(lines)
