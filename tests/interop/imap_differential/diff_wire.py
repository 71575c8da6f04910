"""A minimal blocking IMAP client shared by the differential test and its recorder.

It speaks to Mailstead and to Dovecot alike and sends every command the same way to
both, so the two transcripts can be compared answer by answer. Literals in responses
are inlined; a command may carry literals of its own (``parts``: text, literal, text...).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence

_LITERAL_END = re.compile(rb"~?\{(\d+)\}\r\n\Z")
_TAGGED = re.compile(rb"a\d+ ")


class Closed(ConnectionError):
    """The server closed the connection."""


class Client:
    def __init__(self, address: tuple[str, int], timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buf = b""
        self.n = 0
        self._line()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed("closed")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> bytes:
        """One response with its literals inlined."""
        out = b""
        while True:
            line = self._line()
            out += line
            m = _LITERAL_END.search(line)
            if not m:
                return out
            out += self._exact(int(m.group(1)))

    def cmd(
        self, text: bytes | Sequence[bytes], *, check: bool = True, literal8: bool = False
    ) -> list[bytes]:
        """Send a command; return its untagged responses and, last, the tagged one.

        ``text`` is the command line, or alternating text and literal parts (sent as
        ``~{n}`` literal8, RFC 3516, if ``literal8``)."""
        parts = [text] if isinstance(text, bytes) else list(text)
        self.n += 1
        tag = b"a%d" % self.n
        out = tag + b" " + parts[0]
        for i in range(1, len(parts), 2):
            literal = parts[i]
            self.sock.sendall(out + (b" ~{%d}\r\n" if literal8 else b" {%d}\r\n") % len(literal))
            cont = self._line()
            if not cont.startswith(b"+"):
                return [cont]
            out = literal + (parts[i + 1] if i + 1 < len(parts) else b"")
        self.sock.sendall(out + b"\r\n")
        lines = []
        while True:
            r = self.response()
            lines.append(r)
            if r.startswith(tag + b" "):
                if check and not r.startswith(tag + b" OK"):
                    raise RuntimeError(r)
                return lines

    def login(self, user: str, password: str) -> None:
        self.cmd(b"LOGIN %s %s" % (user.encode(), password.encode()))

    def append(self, mailbox: bytes, raw: bytes, date: bytes) -> str | None:
        """APPEND ``raw`` as a literal. If the server refuses that, APPEND it as a literal8
        instead (so the mailbox still holds every message in order) and return the refusal."""
        parts = [b"APPEND " + mailbox + b' "' + date + b'"', raw, b""]
        lines = self.cmd(parts, check=False)
        if lines[-1].startswith(b"a%d OK" % self.n):
            return None
        self.cmd(parts, literal8=True)
        return lines[-1].split(b" ", 1)[1].rstrip(b"\r\n").decode("latin-1")


def fetch_answer(lines: list[bytes]) -> str:
    """The FETCH item as the server wrote it (name, literal and all), UID removed, or the
    tagged NO/BAD line without its tag. Octets as Latin-1."""
    tagged = lines[-1]
    if not re.match(rb"a\d+ OK", tagged):
        return tagged.split(b" ", 1)[1].rstrip(b"\r\n").decode("latin-1")
    found = [r for r in lines if b" FETCH (" in r]
    if len(found) != 1:
        return f"FETCH RESPONSES: {len(found)}"
    resp = found[0]
    body = resp[resp.index(b" FETCH (") + 8 : -3]
    body = re.sub(rb"^UID \d+ ", b"", body)
    body = re.sub(rb" UID \d+$", b"", body)
    return body.decode("latin-1")


def search_answer(lines: list[bytes]) -> str:
    """Untagged SEARCH/ESEARCH responses and the tagged status word (and response code, if
    any) of a SEARCH command; the ESEARCH tag correlator is masked."""
    out = []
    for r in lines[:-1]:
        if r.startswith((b"* SEARCH", b"* ESEARCH")):
            out.append(re.sub(rb'\(TAG "[^"]*"\) ', b"", r.rstrip(b"\r\n")).decode("latin-1"))
    status = lines[-1].split(b" ", 1)[1]
    m = re.match(rb"(OK|NO|BAD)(?: \[([A-Z0-9-]+))?", status)
    assert m, status
    out.append(m.group(1).decode() + (f" [{m.group(2).decode()}]" if m.group(2) else ""))
    return "\n".join(out)
