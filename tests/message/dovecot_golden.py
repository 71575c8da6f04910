"""Record Dovecot's ENVELOPE and BODYSTRUCTURE answers into dovecot_golden.json.

Not a test: run it by hand against the private Dovecot peer
(``/work/shared/peers/dovecot.sh start``) after changing ``cases.py`` or the corpus:

    .venv/bin/python tests/message/dovecot_golden.py

Each message is APPENDed to u1's INBOX (so Dovecot stores the exact octets), then
``UID FETCH n (ENVELOPE)`` and ``UID FETCH n (BODYSTRUCTURE)`` are sent and the answers
kept verbatim (literals included). The JSON stores octets as Latin-1 strings.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES, corpus_dir, corpus_files  # noqa: E402

HOST, PORT = "127.0.0.1", 20143


class Client:
    def __init__(self) -> None:
        self.sock = socket.create_connection((HOST, PORT), timeout=10)
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
            self.buf += self.sock.recv(65536)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _response(self) -> bytes:
        """One response line with its literals inlined."""
        out = b""
        while True:
            line = self._line()
            out += line
            m = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if not m:
                return out
            out += self._exact(int(m.group(1)))

    def cmd(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
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
            r = self._response()
            if r.startswith(tag + b" "):
                if not r.startswith(tag + b" OK"):
                    raise RuntimeError(r)
                lines.append(r)
                return lines
            lines.append(r)


def fetch_item(c: Client, uid: int, item: bytes) -> str:
    (resp,) = [r for r in c.cmd(b"UID FETCH %d (%s)" % (uid, item)) if b" FETCH (" in r]
    body = resp[resp.index(b" FETCH (") + 8 : -3]  # strip ")\r\n"
    body = re.sub(rb"(?:^| )UID \d+(?= |$)", b"", body).strip()
    assert body.startswith(item + b" "), body[:80]
    return body[len(item) + 1 :].decode("latin-1")


def main() -> None:
    messages: dict[str, bytes] = {f"case:{k}": v for k, v in CASES.items()}
    base = corpus_dir()
    if base is not None:
        for p in corpus_files(base):
            messages[f"corpus:{p.relative_to(base).as_posix()}"] = p.read_bytes()
    c = Client()
    c.cmd(b"LOGIN u1@example.test pass")
    c.cmd(b"SELECT INBOX")
    golden: dict[str, dict[str, str]] = {}
    for name, raw in messages.items():
        resp = c.cmd(b"APPEND INBOX", raw)
        m = re.search(rb"APPENDUID \d+ (\d+)", resp[-1])
        assert m, resp
        uid = int(m.group(1))
        golden[name] = {
            "envelope": fetch_item(c, uid, b"ENVELOPE"),
            "bodystructure": fetch_item(c, uid, b"BODYSTRUCTURE"),
        }
        c.cmd(b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
    c.cmd(b"EXPUNGE")
    c.cmd(b"LOGOUT")
    out = HERE / "dovecot_golden.json"
    out.write_text(json.dumps(golden, indent=0, sort_keys=True, ensure_ascii=True) + "\n")
    print(f"wrote {len(golden)} entries to {out}")


if __name__ == "__main__":
    main()
