"""Crafted messages for BODY[section] / BINARY goldens (recorded from Dovecot by
sections_golden.py), and the list of items fetched for every message."""

from __future__ import annotations

import base64
from pathlib import Path

from mailstead.message import MimePart, ParsedMessage

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "testdata"


def crlf(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_B64_NUL = base64.encodebytes(b"a\0b\0\xff\xfe binary\r\nline two\r\n").decode()

CASES: dict[str, bytes] = {
    "nested": crlf(
        "From: A <a@x.example>\nTo: b@x.example\nSubject: nested\nReceived: by x\n"
        " (folded)\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=OUT\n\n"
        "preamble\n--OUT\nContent-Type: text/plain\n\nfirst part\n"
        "--OUT\nContent-Type: message/rfc822\nContent-Description: inner\n\n"
        "From: c@x.example\nSubject: inner one\nContent-Type: multipart/alternative;"
        " boundary=IN\n\n--IN\nContent-Type: text/plain\nContent-Transfer-Encoding:"
        " quoted-printable\n\ncaf=C3=A9 soft=\n break=3d  \n--IN\nContent-Type: text/html\n\n"
        "<p>x</p>\n--IN--\n"
        "--OUT\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        + _B64_NUL
        + "--OUT--\nepilogue\n"
    ),
    "header-only": crlf("From: a@x.example\nSubject: no body\nX-Last: no newline").rstrip(b"\r\n"),
    "header-only-newline": crlf("From: a@x.example\nSubject: no blank line\n"),
    "odd-fields": crlf(
        "From: a@x.example\nsubject : spaced name\nX Odd Name: with space\n"
        "no colon line\nX-Folded: one\n two\n\tthree\nX-\xfcml\xe4ut: eight bit\n"
        "X-Empty:\nTO: upper@x.example\nx-tab\t: tab before colon\n"
        "Subject: second subject\n\nbody\n"
    ),
    "top-rfc822": crlf(
        "From: a@x.example\nContent-Type: message/rfc822\n\n"
        "From: inner@x.example\nSubject: inner\n\ninner body\n"
    ),
    "qp-edges": crlf(
        "From: a@x.example\nContent-Type: multipart/mixed; boundary=B\n\n"
        "--B\nContent-Transfer-Encoding: quoted-printable\n\nlow=c3=a9 trail \t\nend=\n"
        "--B\nContent-Transfer-Encoding: quoted-printable\n\nbad =ZZ here\n"
        "--B\nContent-Transfer-Encoding: Quoted-Printable (comment)\n\nplain\n"
        "--B\nContent-Transfer-Encoding: quoted-printable\n\nsoft =  \nbreak\n--B--\n"
    ),
    "cte-edges": crlf(
        "From: a@x.example\nContent-Type: multipart/mixed; boundary=B\n\n"
        "--B\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n"
        "--B\nContent-Transfer-Encoding: base64 junk\n\naGk=\n"
        "--B\nContent-Transfer-Encoding: base64; x=y\n\naGk=\n"
        "--B\nContent-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n\naGk=\n"
        "--B\nContent-Transfer-Encoding: base64\n\naGk*=\n"
        "--B\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ\n"
        "--B\nContent-Transfer-Encoding: base64\n\naGk=aGk=\n"
        "--B\nContent-Transfer-Encoding:\n\nempty cte\n"
        "--B\nContent-Transfer-Encoding: BASE64\n\n  aGVs\n bG8=  \n\n"
        "--B--\n"
    ),
    "nul-text": b"From: a@x.example\r\nSubject: nul\r\n\r\nbefore\0after\r\n",
    "nul-header": b"From: a@x.example\r\nX-Nul: a\0b\r\n\r\nbody\r\n",
    "no-boundary": crlf("From: a@x.example\nContent-Type: multipart/mixed\n\njust text\n"),
    "empty-multipart": crlf(
        "From: a@x.example\nContent-Type: multipart/mixed; boundary=B\n\n--B--\n"
    ),
    "b64-qp-mixed-rfc822": crlf(
        "From: a@x.example\nContent-Type: multipart/mixed; boundary=B\n\n"
        "--B\nContent-Type: message/rfc822\n\n"
        "Subject: inner b64\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        "aGVsbG8K\n--B\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 7bit\n\n"
        "Subject: inner plain\n\nplain inner\n--B--\n"
    ),
    "top-base64": crlf(
        "From: a@x.example\nSubject: b64\nContent-Transfer-Encoding: base64\n"
        "Content-Type: text/plain\n\naGVsbG8gd29ybGQK\n"
    ),
    "empty": b"",
    "blank-only": b"\r\n",
}

# fetched for every message (BODY.PEEK / BINARY.PEEK; answers name them BODY / BINARY)
FIXED_ITEMS: list[str] = [
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2.1]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[2.1.HEADER]",
    "BODY.PEEK[2.1.MIME]",
    "BODY.PEEK[1.1]",
    "BODY.PEEK[1.HEADER]",
    "BODY.PEEK[1.TEXT]",
    "BODY.PEEK[99]",
    "BODY.PEEK[0]",
    "BODY.PEEK[HEADER.FIELDS (From To Subject)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (Received)]",
    "BODY.PEEK[HEADER.FIELDS (X-Nonexistent)]",
    "BODY.PEEK[HEADER.FIELDS (content-type X-Folded)]",
    'BODY.PEEK[HEADER.FIELDS ("X Odd Name" "subject")]',
    "BODY.PEEK[HEADER.FIELDS.NOT (From To Subject Received)]",
    "BODY.PEEK[2.HEADER.FIELDS (From Subject)]",
    "BODY.PEEK[2.HEADER.FIELDS.NOT (From)]",
    "BODY.PEEK[1.HEADER.FIELDS (Subject)]",
    "BODY.PEEK[]<0.10>",
    "BODY.PEEK[TEXT]<5.7>",
    "BODY.PEEK[HEADER]<1000000.5>",
    "BODY.PEEK[1]<2>",
    "BODY.PEEK[]<0.0>",
    "BINARY.PEEK[]",
    "BINARY.PEEK[TEXT]",
    "BINARY.PEEK[1]",
    "BINARY.SIZE[1]",
    "BINARY.PEEK[2]",
    "BINARY.SIZE[2]",
    "BINARY.PEEK[99]",
    "BINARY.SIZE[99]",
    "BINARY.PEEK[1]<1.3>",
]


def _numbers(part: MimePart, prefix: tuple[int, ...], out: list[tuple[tuple[int, ...], MimePart]]):
    kids = part.children if part.message is None else [part.message.root]
    if part.message is not None:
        inner = part.message.root
        if inner.type == "multipart":
            for i, k in enumerate(inner.children, 1):
                out.append(((*prefix, i), k))
                _numbers(k, (*prefix, i), out)
        else:
            out.append(((*prefix, 1), inner))
        return
    for i, k in enumerate(kids, 1):
        out.append(((*prefix, i), k))
        _numbers(k, (*prefix, i), out)


def items_for(parsed: ParsedMessage, limit: int = 24) -> list[str]:
    """FIXED_ITEMS plus sections derived from the message's structure."""
    parts: list[tuple[tuple[int, ...], MimePart]] = []
    if parsed.root.type == "multipart":
        _numbers(parsed.root, (), parts)
    else:
        parts.append(((1,), parsed.root))
        if parsed.root.message is not None:
            _numbers(parsed.root, (1,), parts)
    items = list(FIXED_ITEMS)
    for nums, p in parts[:limit]:
        s = ".".join(map(str, nums))
        items += [f"BODY.PEEK[{s}]", f"BODY.PEEK[{s}.MIME]"]
        if p.message is not None:
            items += [
                f"BODY.PEEK[{s}.HEADER]",
                f"BODY.PEEK[{s}.TEXT]",
                f"BODY.PEEK[{s}.HEADER.FIELDS (From Subject Content-Type)]",
            ]
        items += [f"BINARY.PEEK[{s}]", f"BINARY.SIZE[{s}]"]
    seen: set[str] = set()
    out = []
    for it in items:
        if it not in seen:
            seen.add(it)
            out.append(it)
    return out
