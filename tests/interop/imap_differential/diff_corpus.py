"""The messages, items and SEARCH commands of the IMAP differential test, in recording order.

Two mailboxes, each filled by APPEND in a fixed order with a fixed INTERNALDATE:

- ``envelope``: the messages of tests/message/dovecot_golden.json (cases.py, then the shared
  MIME corpus), the exact octets that recorder APPENDed (bare LF kept);
- ``sections``: the messages of tests/imap/sections_golden.json (section_cases.py, then the
  corpus), CRLF-normalised as that recorder APPENDed them, then EXTRA below.

Dovecot's answers come from those two goldens and from golden.json here (record.py), which
holds what they lack. SEARCH runs in ``sections`` after the STOREs of STORES.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared" / "testdata"
MIME = SHARED / "mime"
INTERNALDATE = b"15-Mar-2020 12:00:00 +0000"


def _load(path: Path) -> ModuleType:
    name = f"_imap_differential_{path.parent.name}_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


message_cases = _load(REPO / "tests" / "message" / "cases.py")
section_cases = _load(REPO / "tests" / "imap" / "section_cases.py")


def crlf(text: str | bytes) -> bytes:
    b = text.encode("utf-8") if isinstance(text, str) else text
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def store_form(raw: bytes) -> bytes:
    """As sections_golden.py APPENDed: CRLF line endings, no lone CR at the very end."""
    raw = crlf(raw)
    return raw[:-1] if raw.endswith(b"\r") else raw


def _b64(text: str, charset: str) -> str:
    return base64.encodebytes(text.encode(charset)).decode()


# Our own messages: words to SEARCH for behind every transfer encoding and several charsets,
# odd Date headers for SENT*, and address fields with encoded words and 8-bit text.
EXTRA: dict[str, bytes] = {
    "qp-latin1": crlf(
        "From: =?iso-8859-1?q?J=FCrgen_M=FCller?= <jm@example.net>\n"
        "To: anna@example.com\nSubject: =?iso-8859-1?q?Gr=FC=DFe_aus_K=F6ln?=\n"
        "Date: Mon, 31 Dec 2001 23:30:00 -1100\nMessage-ID: <qp1@example.net>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\n"
        "Viele Gr=FC=DFe aus K=F6ln, sec=\nretword split by a soft break.\n"
    ),
    "b64-utf8": crlf(
        'From: "Anna \xc4rger" <anna@example.com>\nTo: Friends: jm@example.net, x@example.org;\n'
        "Subject: =?utf-8?q?caf?= =?utf-8?q?=C3=A9_au_lait?=\n"
        "Date: Tue, 1 Jan 2002 00:30:00 +1400\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        + _b64("Die Straße nach Zürich, naïve café.\n", "utf-8")
    ),
    "8bit-utf8": crlf(
        "From: x@example.org\nTo: =?utf-8?b?w4RyZ2Vy?= <arger@example.com>\n"
        "Subject: 日本語 subject raw\nDate: 1 Jan 99 10:00:00 GMT\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        "日本語のテキスト and Ümlaut\n"
    ),
    "koi8": crlf(
        "From: ivan@example.ru\nSubject: =?koi8-r?b?"
        + base64.b64encode("Привет".encode("koi8-r")).decode()
        + "?=\nDate: Sat, 5 Jan 2002 10:00:00 EST\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit\n\n"
    ).replace(b"\r\n\r\n", b"\r\n\r\n" + "Привет мир\r\n".encode("koi8-r"), 1),
    "utf16-b64": crlf(
        "From: w@example.org\nSubject: utf-16 body\nDate: 3 jan 2002 10:00:00 +0000\n"
        "Content-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n"
        + _b64("wide characters wordinutf16\n", "utf-16")
    ),
    "alternative-attachment": crlf(
        "From: a@example.org\nTo: b@example.org\nSubject: alternative and attachment\n"
        "Date: Fri, 4 Jan 2002 10:00 +0100 (CET)\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\n'
        'Content-Type: multipart/alternative; boundary="inner"\n\n--inner\n'
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n"
        "plain alternative text\n--inner\nContent-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n\n<p><b>bold</b>word caf=C3=A9</p>\n"
        '--inner--\n--outer\nContent-Type: application/octet-stream; name="data.bin"\n'
        "Content-Disposition: attachment; filename*=utf-8''n%C3%A4me.bin\n"
        "Content-Transfer-Encoding: base64\n\n"
        + _b64("attachmentword hidden\n", "ascii")
        + "--outer\nContent-Type: text/plain; charset=x-unknown-charset\n"
        "Content-Transfer-Encoding: 8bit\n\nunknown charset w\xf6rd\n--outer--\n"
    ),
    "dates-two-headers": crlf(
        "From: d@example.org\nDate: 2 Jan 2002 10:00:00 +0000\nDate: 9 Jan 2002 10:00:00 +0000\n"
        "Subject: two dates\n\nbody\n"
    ),
    "date-garbage": crlf("From: d@example.org\nDate: yesterday at noon\nSubject: garbage\n\nx\n"),
    "date-none": crlf("From: d@example.org\nSubject: no date\n\nx\n"),
    "date-3digit-year": crlf(
        "From: d@example.org\nDate: Wed, 2 Jan 102 10:00:00 +0000\nSubject: y\n\nx\n"
    ),
    "date-leap-second": crlf(
        "From: d@example.org\nDate: 31 Dec 2001 23:59:60 +0000\nSubject: leap\n\nx\n"
    ),
    "date-no-zone": crlf("From: d@example.org\nDate: 2 Jan 2002 23:00:00\nSubject: nz\n\nx\n"),
    "folded-headers": crlf(
        "From: f@example.org\nX-Folded: one\n two\nX-Empty:\nSubject: a folded\n subject line\n"
        "Date: 2 Jan 2002 10:00:00 +0000\n\nbody\n"
    ),
    "qp-bad-and-bare-cr": crlf(
        "From: q@example.org\nSubject: qp\nContent-Transfer-Encoding: quoted-printable\n\n"
        "bad =ZZ escape and tr=\nailing=20\nsoft=\n"
    ),
    "b64-broken": crlf(
        "From: q@example.org\nSubject: b64 broken\nContent-Transfer-Encoding: base64\n\n"
        "aGVsbG8g*d29y\nbGQ=\n"
    ),
    "rfc822-attached-search": crlf(
        "From: outer@example.org\nSubject: forward\nDate: 2 Jan 2002 10:00:00 +0000\n"
        "Content-Type: multipart/mixed; boundary=F\n\n--F\nContent-Type: text/plain\n\nsee below\n"
        "--F\nContent-Type: message/rfc822\n\nFrom: inner@example.net\n"
        "Subject: =?utf-8?q?inner_=C3=BCber?=\n\ninnerbodyword\n--F--\n"
    ),
}

ENVELOPE_ITEMS = ["BODY", "RFC822.SIZE", "RFC822.HEADER", "RFC822.TEXT"]
SECTIONS_ITEMS = [
    "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "RFC822.HEADER", "RFC822.TEXT",
]  # fmt: skip

STORES: list[bytes] = [
    b"STORE 1:10 +FLAGS.SILENT ($Label1)",
    b"STORE 5:15 +FLAGS.SILENT (\\Flagged)",
    b"STORE 3,7,120 +FLAGS.SILENT (\\Seen custom)",
    b"STORE 2 +FLAGS.SILENT (\\Answered \\Draft)",
    b"STORE 4 -FLAGS.SILENT ($Label1)",
    b"STORE 8:9 FLAGS.SILENT (\\Deleted $label2)",
]


def _utf8(prefix: str, value: str, suffix: str = "") -> tuple[bytes, ...]:
    parts: tuple[bytes, ...] = (b"SEARCH CHARSET UTF-8 " + prefix.encode(), value.encode())
    return (*parts, suffix.encode())


SEARCHES: list[bytes | tuple[bytes, ...]] = [
    b"SEARCH ALL",
    b'SEARCH FROM "jm@example.net"',
    b'SEARCH FROM "example.net"',
    b'SEARCH FROM "Juergen"',
    _utf8("FROM", "Müller"),
    _utf8("FROM", "jürgen"),
    b'SEARCH TO "anna"',
    _utf8("TO", "Ärger"),
    b'SEARCH TO "friends"',
    b'SEARCH CC "example"',
    b'SEARCH SUBJECT "caf"',
    _utf8("SUBJECT", "café au"),
    _utf8("SUBJECT", "grüße"),
    _utf8("SUBJECT", "привет"),
    _utf8("SUBJECT", "日本語"),
    _utf8("SUBJECT", "über"),
    b'SEARCH SUBJECT "folded subject"',
    b'SEARCH SUBJECT "a folded subject"',
    b'SEARCH HEADER "X-Folded" "one two"',
    b'SEARCH HEADER "X-Folded" "one"',
    b'SEARCH HEADER "X-Empty" ""',
    b'SEARCH HEADER "Message-ID" ""',
    b'SEARCH HEADER "Content-Type" "multipart/alternative"',
    b'SEARCH HEADER "X-Nonexistent" ""',
    b'SEARCH HEADER "Date" "2002"',
    b'SEARCH BODY "secretword"',
    b'SEARCH BODY "secret"',
    _utf8("BODY", "straße"),
    _utf8("BODY", "ZÜRICH"),
    _utf8("BODY", "köln"),
    _utf8("BODY", "мир"),
    _utf8("BODY", "日本語"),
    _utf8("BODY", "ümlaut"),
    b'SEARCH BODY "wordinutf16"',
    b'SEARCH BODY "boldword"',
    b'SEARCH BODY "bold</b>word"',
    b'SEARCH BODY "attachmentword"',
    _utf8("BODY", "wörd"),
    b'SEARCH BODY "innerbodyword"',
    b'SEARCH BODY "hello world"',
    b'SEARCH BODY "aGVsbG8"',
    b'SEARCH BODY "=ZZ"',
    b'SEARCH BODY "trailing"',
    b'SEARCH BODY "hello"',
    b'SEARCH TEXT "hello"',
    b'SEARCH TEXT "multipart"',
    b'SEARCH TEXT "example.net"',
    b'SEARCH TEXT "innerbodyword"',
    _utf8("TEXT", "über"),
    b"SEARCH LARGER 1000",
    b"SEARCH SMALLER 300",
    b"SEARCH LARGER 5000 SMALLER 20000",
    b"SEARCH SENTBEFORE 1-Jan-2002",
    b"SEARCH SENTON 1-Jan-2002",
    b"SEARCH SENTON 31-Dec-2001",
    b"SEARCH SENTON 2-Jan-2002",
    b"SEARCH SENTON 3-Jan-2002",
    b"SEARCH SENTON 4-Jan-2002",
    b"SEARCH SENTON 5-Jan-2002",
    b"SEARCH SENTON 1-Jan-1999",
    b"SEARCH SENTON 2-Jan-2002 SENTON 9-Jan-2002",
    b"SEARCH SENTSINCE 1-Jan-2002 SENTBEFORE 10-Jan-2002",
    b"SEARCH SENTBEFORE 1-Jan-1990",
    b"SEARCH SENTSINCE 1-Jan-2020",
    b"SEARCH ON 15-Mar-2020",
    b"SEARCH BEFORE 15-Mar-2020",
    b"SEARCH SINCE 16-Mar-2020",
    b'SEARCH NOT FROM "example"',
    b'SEARCH OR SUBJECT "qp" BODY "secretword"',
    b'SEARCH NOT OR SUBJECT "qp" FROM "example"',
    b"SEARCH OR (LARGER 1000 SMALLER 3000) FLAGGED",
    b'SEARCH OR OR KEYWORD $Label1 FLAGGED NOT BODY "a"',
    b"SEARCH KEYWORD $Label1",
    b"SEARCH KEYWORD $label1",
    b"SEARCH UNKEYWORD $Label1",
    b"SEARCH KEYWORD custom",
    b"SEARCH KEYWORD $label2 DELETED",
    b"SEARCH KEYWORD nosuchkeyword",
    b"SEARCH FLAGGED UNSEEN",
    b"SEARCH SEEN",
    b"SEARCH ANSWERED DRAFT",
    b"SEARCH UNDELETED 1:12",
    b"SEARCH RECENT",
    b"SEARCH NEW",
    b"SEARCH OLD",
    b"SEARCH 1:5,*",
    b"SEARCH 120:*",
    b"UID SEARCH UID 3:6",
    b'SEARCH RETURN (MIN MAX COUNT) BODY "hello"',
    b"SEARCH RETURN (ALL) KEYWORD $Label1",
    b'SEARCH CHARSET X-BOGUS BODY "a"',
    b'SEARCH CHARSET ISO-8859-1 BODY "a"',
]


def envelope_messages() -> list[tuple[str, bytes]]:
    out = [(f"case:{k}", v) for k, v in message_cases.CASES.items()]
    for p in message_cases.corpus_files(MIME) if MIME.is_dir() else []:
        out.append((f"corpus:{p.relative_to(MIME).as_posix()}", p.read_bytes()))
    return out


def sections_messages() -> list[tuple[str, bytes]]:
    out = [(f"case:{k}", store_form(v)) for k, v in section_cases.CASES.items()]
    for p in sorted(MIME.rglob("*.eml")) if MIME.is_dir() else []:
        out.append((f"corpus:{p.relative_to(MIME).as_posix()}", store_form(p.read_bytes())))
    out += [(f"extra:{k}", store_form(v)) for k, v in EXTRA.items()]
    return [(name, raw) for name, raw in out if raw]  # an empty APPEND is refused by both


def items_for(raw: bytes) -> list[str]:
    """The section items section_cases.py asks for a message (for EXTRA)."""
    from mailstead.message import parse_message

    return section_cases.items_for(parse_message(raw))
