"""A minimal blocking IMAP client for the golden recorders (not used by the tests).

Talks to the private Dovecot peer (``/work/shared/peers/dovecot.sh start``). It uses
user u4, not u1, so it does not collide with other recorders sharing the peer.
"""

from __future__ import annotations

import re
import socket

HOST, PORT = "127.0.0.1", 20143
USER, PASSWORD = "u4@example.test", "pass"


class Client:
    def __init__(self) -> None:
        self.sock = socket.create_connection((HOST, PORT), timeout=30)
        self.buf = b""
        self.n = 0
        self._line()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> bytes:
        """One response with its literals inlined."""
        out = b""
        while True:
            line = self._line()
            out += line
            m = re.search(rb"~?\{(\d+)\}\r\n\Z", line)
            if not m:
                return out
            out += self._exact(int(m.group(1)))

    def cmd(self, text: bytes, literal: bytes | None = None, *, check: bool = True) -> list[bytes]:
        """Send a command; return the untagged responses and, last, the tagged one."""
        self.n += 1
        tag = b"a%d" % self.n
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
            cont = self._line()
            assert cont.startswith(b"+"), cont
            self.sock.sendall(literal + b"\r\n")
        lines = []
        while True:
            r = self.response()
            lines.append(r)
            if r.startswith(tag + b" "):
                if check and not r.startswith(tag + b" OK"):
                    raise RuntimeError(r)
                return lines

    def login(self, mailbox: bytes, *, expunge: bool = True) -> None:
        self.cmd(b"LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
        self.cmd(b"CREATE " + mailbox, check=False)
        self.cmd(b"SELECT " + mailbox)
        if expunge:
            self.cmd(b"STORE 1:* +FLAGS.SILENT (\\Deleted)", check=False)
            self.cmd(b"EXPUNGE")

    def append(self, mailbox: bytes, raw: bytes, date: bytes | None = None) -> int:
        opts = b"" if date is None else b' "' + date + b'"'
        resp = self.cmd(b"APPEND " + mailbox + opts, raw)
        m = re.search(rb"APPENDUID \d+ (\d+)", resp[-1])
        assert m, resp
        return int(m.group(1))
