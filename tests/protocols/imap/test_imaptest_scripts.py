"""Every command of Dovecot's imaptest scripts must parse (or be a known syntax-error case).

The scripts are read in place from ``/work/shared/testdata/imaptest-tests`` (set
``MAILSTEAD_IMAPTEST_DIR`` to use another copy); nothing is copied into the repository. A command is
a line after the header whose first word, after an optional connection number, is ``ok``, ``no``,
``bad`` or ``""`` (imaptest's "method 1"). Variables get plausible values; imaptest's multi-line
``{{{ ... }}}`` literals become real literals; a bare ``append`` (imaptest supplies the message)
gets a small message literal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mailstead.protocols.imap import ParseError, parse_command

SCRIPTS = Path(os.environ.get("MAILSTEAD_IMAPTEST_DIR", "/work/shared/testdata/imaptest-tests"))

# Extensions this grammar does not implement: their scripts are skipped as a whole.
UNSUPPORTED = {"CATENATE", "NOTIFY", "URLAUTH", "URLAUTH=BINARY"}

# (script, command prefix) → the command is expected to be refused by the grammar.
EXPECTED_ERRORS = {
    ("atoms", "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}"),  # not mUTF-7 ("&'"): NO
    ("listext", "LIST (IMAPTEST)"),  # unknown selection option: BAD (RFC 5258 §3.1)
    ("listext", "LIST (RECURSIVEMATCH)"),  # RECURSIVEMATCH alone: BAD
    ("listext", 'LIST "" "" RETURN (IMAPTEST)'),  # unknown return option: BAD
}

VARIABLES = {
    "mailbox": "imaptest",
    "sep": "/",
    "user": "user@example.com",
    "username": "user",
    "domain": "example.com",
    "password": "secret",
    "tag": "tag1",
    "searchtag": "tag1",
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z_0-9][A-Za-z0-9_]*)")
_HEADER = re.compile(r"^([A-Za-z_-]+):\s*(.*)$")
MESSAGE = b"From: a@example.com\r\nSubject: test\r\n\r\nbody\r\n"


def _substitute(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        return VARIABLES.get(name, "7")  # uids, modseqs, sizes, uidvalidity: any number

    return _VAR.sub(repl, text)


def _commands(path: Path) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    lines = path.read_text("utf-8", "surrogateescape").split("\n")
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and (m := _HEADER.match(lines[i])):
        header[m.group(1).lower()] = m.group(2).strip()
        i += 1
    commands: list[tuple[str, bytes]] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        words = line.split(" ", 1)
        if words[0].isdigit() and len(words) == 2:
            words = words[1].split(" ", 1)
        if len(words) < 2 or words[0].lower() not in ("ok", "no", "bad", '""'):
            continue
        expect, text = words[0].lower(), words[1]
        if not text or text.startswith("["):
            continue  # a reply line of imaptest's "method 2"
        wire = b""
        while text.endswith("{{{"):  # imaptest multi-line literal, up to "}}}"
            body: list[str] = []
            while i < len(lines) and not lines[i].startswith("}}}"):
                body.append(lines[i])
                i += 1
            content = "\r\n".join(body).encode("utf-8", "surrogateescape")
            wire += _substitute(text[:-3]).encode() + b"{%d}\r\n" % len(content) + content
            text = lines[i][3:] if i < len(lines) else ""
            i += 1
        wire += _substitute(text).encode("utf-8", "surrogateescape")
        if re.fullmatch(rb"(?i)append( \S+( \([^)]*\))?)?", wire):
            if wire.lower() == b"append":
                wire += b" imaptest"
            wire += b" {%d}\r\n%b" % (len(MESSAGE), MESSAGE)
        commands.append((expect, wire))
    return header, commands


def _scripts() -> list[Path]:
    if not SCRIPTS.is_dir():
        return []
    return sorted(
        p
        for p in SCRIPTS.rglob("*")
        if p.is_file() and p.suffix != ".mbox" and not p.name.startswith(("FORMAT", "COPYING"))
    )


@pytest.mark.skipif(not SCRIPTS.is_dir(), reason=f"imaptest scripts not found at {SCRIPTS}")
@pytest.mark.parametrize("path", _scripts(), ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_imaptest_script_commands_parse(path: Path):
    header, commands = _commands(path)
    caps = set(header.get("capabilities", "").upper().split())
    if caps & UNSUPPORTED:
        pytest.skip(f"needs {', '.join(sorted(caps & UNSUPPORTED))}, not implemented")
    name = path.relative_to(SCRIPTS).name
    failures = []
    for expect, wire in commands:
        expected_error = any(
            n == name and wire.upper().startswith(prefix.upper().encode())
            for n, prefix in EXPECTED_ERRORS
        )
        try:
            parse_command(b"t1 " + wire, utf8=False)
        except ParseError as e:
            if not expected_error and expect != e.status.lower():
                failures.append(f"{wire[:120]!r}: {e.text}")
        else:
            if expected_error:
                failures.append(f"{wire[:120]!r}: expected a syntax error")
    assert not failures, "\n".join(failures)


@pytest.mark.skipif(not SCRIPTS.is_dir(), reason=f"imaptest scripts not found at {SCRIPTS}")
def test_imaptest_scripts_found():
    total = sum(len(_commands(p)[1]) for p in _scripts())
    assert total > 500
