"""Writes the seed corpus, fuzz/corpus/<target>/seed-*: hand-written sessions and values that
reach deep into each parser, plus the tricky messages of tests/message/cases.py.

Run from the repository root: ``python -m fuzz.seeds``. Seeds are committed; the files a
campaign adds go to a temporary directory (see scripts/fuzz), not here.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


SMTP_SESSIONS = [
    _crlf(
        "EHLO c.example\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\nRCPT TO:<c@d.example>"
        " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.example\nRCPT TO:<unknown@d.example>\nDATA\n"
        "Subject: s\n\n..dots\n.\nQUIT\n"
    ),
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    b"a\nb\r\n.\n\r\n.\r\nx\r.\r\n.\r\nRSET\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 7\r\n"
    b"ab\r\ncd\rBDAT 3 LAST\r\n\nefQUIT\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5000\r\n"
    + b"y" * 300
    + b"\r\nBDAT 0 LAST\r\n",
    b"HELO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.\r\nNOOP\r\n",
    b"EHLO c\r\nAUTH PLAIN " + _b64(b"\0user\0secret") + b"\r\nAUTH LOGIN\r\nbW9yZQ==\r\n*\r\n"
    b"AUTH PLAIN =\r\nAUTH PLAIN ok\r\nAUTH LOGIN\r\nb2s=\r\n",
    b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\nEHLO c\r\nMAIL FROM:<a@b.example>\r\n",
    b"NOOP " + b"z" * 600 + b"\r\nVRFY x\r\nEXPN y\r\nHELP\r\nBDAT x\r\n",
    b"EHLO c\r\nMAIL FROM:<\xc3\xa9@b.example> SMTPUTF8\r\nRCPT TO:<\xc3\xa9@d.example>\r\n"
    b"MAIL FROM:<a@b.example> RET=HDRS ENVID=a+2Bb AUTH=<>\r\n",
    b"EHLO c\r\nMAIL FROM:<spam@b.example>\r\nMAIL FROM:<a@[192.0.2.1]>\r\n"
    b"RCPT TO:<@r.example,@s.example:c@d.example>\r\nDATA\r\n" + b"x" * 400 + b"\r\n.\r\n",
]

SMTP_GRAMMAR = [
    (0, b"MAIL FROM:<a@b.example>"),
    (0, b"ehlo  x.example  "),
    (1 | 31 << 3, b"FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x+2Cy"),
    (1 | 31 << 3, b'FROM:<"a b"@[IPv6:2001:db8::1]> AUTH=a+40b'),
    (1, b"FROM:<>"),
    (2 | 1 << 3, b"TO:<c@d.example> NOTIFY=NEVER ORCPT=rfc822;c+40d.example"),
    (2, b"TO:<Postmaster>"),
    (2, b"TO:<@a.example,@b.example:c@d.example>"),
    (3, b"mail.example.org"),
    (3, b"[192.0.2.1]"),
    (4, b"PLAIN AHVzZXIAc2VjcmV0"),
    (4, b"SCRAM-SHA-256"),
    (5, b"1000 LAST"),
    (5, b"0"),
    (6, b"a+2Bb+0D+0A"),
    (7, "é+=x".encode()),
]

SMTP_REPLIES = [
    b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
    b"250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
    b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 unknown\r\n250 2.0.0 queued\r\n221 2.0.0 bye\r\n",
    b"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n",
    b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n",
    b"220 mx\r\n500 no EHLO\r\n250 mx\r\n250 ok\r\n451 4.3.0 try later\r\n",
    b"421 4.3.2 busy\r\n",
    b"220-mx\r\n220-second\r\n220 third\r\n250-mx\r\n250-AUTH PLAIN\r\n250 SIZE\r\n"
    b"250 ok\r\n452 4.5.3 too many\r\n250 ok\r\n354 go\r\n554 5.6.0 refused\r\n",
]

IMAP_SESSIONS = [
    (
        0,
        b"a LOGIN user secret\r\nb CAPABILITY\r\nc SELECT INBOX\r\nd FETCH 1:* (FLAGS)\r\n"
        b"e LOGOUT\r\n",
    ),
    (0, b'a LOGIN {4}\r\nuser {6}\r\nsecret\r\nb LIST "" *\r\n'),
    (0, b"a LOGIN {4+}\r\nuser {6+}\r\nsecret\r\nb NOOP\r\n"),
    (4, b"a APPEND INBOX (\\Seen) {11}\r\nSubject: x\r\n\r\nb APPEND INBOX {9999999}\r\n"),
    (4, b"a APPEND INBOX {99999+}\r\n" + b"x" * 200 + b"\r\nb NOOP\r\n"),
    (
        8,
        b"a IDLE\r\nDONE\r\nb IDLE\r\nnope\r\n"
        b"c UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
    ),
    (
        0,
        b"a AUTHENTICATE PLAIN\r\nbW9yZQ==\r\n*\r\nb AUTHENTICATE PLAIN "
        + _b64(b"\0u\0p")
        + b"\r\n",
    ),
    (0, b"a STARTTLS\r\nb LOGIN injected x\r\nc CAPABILITY\r\n"),
    (4, b"a COMPRESS DEFLATE\r\n" + b"x\x9c"),
    (4, b'a ENABLE UTF8=ACCEPT\r\nb CREATE "caf\xc3\xa9"\r\nc SELECT &AOk-\r\n'),
    (
        8,
        b'a SEARCH CHARSET UTF-8 OR SUBJECT {3}\r\nfoo FROM "x" NOT SEEN\r\n'
        b"b UID SEARCH RETURN (MIN MAX) 1:5,7 SINCE 1-Feb-2024\r\nc STORE 1 +FLAGS (\\Deleted)\r\n",
    ),
    (
        8,
        b"a FETCH 1 (BODY[1.2.MIME] BINARY.PEEK[1]<0.100> BODYSTRUCTURE)\r\n* BAD\r\n"
        + b"x" * 1100
        + b"\r\nb NOOP\r\n",
    ),
    (8, b"a SELECT INBOX (QRESYNC (1 2 1:5 (1:3 4:6)))\r\nb SORT (DATE) UTF-8 ALL\r\n"),
]

IMAP_COMMANDS = [
    b'a LOGIN user "p\\"w"',
    b'a LIST (SUBSCRIBED) "" ("*" "%") RETURN (CHILDREN)',
    b'a SELECT "&AOk-t&AOk-" (CONDSTORE)',
    b"a CREATE x/y (USE (\\Sent))",
    b'a RENAME {3}\r\nabc "d e"',
    b"a STATUS INBOX (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)",
    b'a APPEND INBOX (\\Seen) "1-Feb-2024 10:00:00 +0000" {5}\r\nhello',
    b"a UID FETCH 1:*,$ (UID FLAGS ENVELOPE BODY.PEEK[HEADER] RFC822.SIZE) (CHANGEDSINCE 5)",
    b"a SEARCH RETURN (SAVE) HEADER Subject x LARGER 10 UID 1:5 OR NEW OLD",
    b"a STORE 1:3 +FLAGS.SILENT (\\Seen $Label) ",
    b"a COPY 1 x",
    b'a MOVE 1:2 "y"',
    b'a SETQUOTA "" (STORAGE 1000)',
    b'a ID ("name" "x")',
    b"a GETQUOTAROOT INBOX",
]

POP3_SESSIONS = [
    (
        0,
        b"CAPA\r\nUSER user\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 1\r\nUIDL\r\nRETR 1\r\n"
        b"TOP 1 10\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n",
    ),
    (0, b"USER user\r\nNOOP\r\nPASS secret\r\nAUTH\r\nAUTH PLAIN\r\nmore\r\n*\r\n"),
    (0, b"AUTH PLAIN secret\r\nSTAT\r\nQUIT\r\n"),
    (0, b"STLS\r\nUSER injected\r\nCAPA\r\n"),
    (0, b"USER " + b"u" * 300 + b"\r\nPASS x\r\nAPOP u 0123\r\nXYZZY\r\n"),
    (8, b"USER user\nPASS wrong\nUSER user\nPASS wrong\nUSER user\nPASS wrong\n"),
]

SASL = [
    ("PLAIN", True, [_b64(b"\0user\0secret")]),
    ("PLAIN", False, [b"", _b64(b"user\0user\0secret")]),
    ("LOGIN", False, [b"", _b64(b"user"), _b64(b"secret")]),
    ("LOGIN", True, [_b64(b"user"), b"*"]),
    ("SCRAM-SHA-256", True, [_b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")]),
    ("SCRAM-SHA-256", True, [_b64(b"y,,n=user,r=abc"), _b64(b"c=eSws,r=abcfuzznonce,p=AAAA")]),
    (
        "SCRAM-SHA-256-PLUS",
        True,
        [
            _b64(b"p=tls-exporter,,n=user,r=abc"),
            _b64(b"c=cD10bHMtZXhwb3J0ZXIsLEVFRUU=,r=abcfuzznonce,p=AAAA"),
        ],
    ),
    ("PLAIN", True, [b"="]),
    ("PLAIN", True, [b"!!!"]),
]

HEADERS = [
    (
        0,
        b'From: a@example.org\r\nTo: b@example.org, "C D" <c@example.org>\r\nSubject: x\r\n'
        b" folded\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nbody",
    ),
    (0, b"nocolon\r\n: empty name\r\nX: \r\n\tcont\r\n\r\n"),
    (1, b"=?utf-8?q?caf=C3=A9?= =?utf-8?B?w6k=?= plain =?iso-8859-1?Q?J=F8rn?="),
    (1, b"=?utf-8*fr?q?x?= =?x?q?a?= =?unknown?b?AAAA?= =?utf-16?b?AEEAQg==?="),
    (2, b'Friends: joe@x.example, "J D" <jd@x.example>;, after@x.example'),
    (2, b"a@example.org (comment (nested)) <@route.example:b@example.org>, =?utf-8?q?x?= <c@d>"),
    (2, b'"quoted \\" local"@example.org, <>, @, a@[192.0.2.1]'),
    (3, b'"J D" <jd@x.example>, Friends: a@x.example, b@y.example;'),
    (3, b"a@example.test <b@example.test>"),  # the strict From parser refuses this
    (3, b' "mx.example.org." (comment); spf=pass smtp.mailfrom=a@b'),
    (4, b"xn--caf-dma.example."),
    (4, '"a@b"@bücher.example'.encode()),
]


def _messages() -> list[bytes]:
    out: list[bytes] = []
    spec = importlib.util.spec_from_file_location("cases", ROOT / "tests" / "message" / "cases.py")
    if spec is not None and spec.loader is not None:
        cases = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cases)
        out.extend(v for v in cases.CASES.values() if len(v) <= 8192)
    out.append(
        _crlf(
            'From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
            "--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: "
            "quoted-printable\n\ncaf=C3=A9\n--b1\nContent-Type: message/rfc822\n\n"
            "Subject: inner\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\n\nx\n"
            "--b2--\n--b1\nContent-Type: application/octet-stream; name*0*=utf-8''a%C3;"
            " name*1=b\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment;"
            ' filename="f.bin"\n\nAAEC\n--b1--\nepilogue\n'
        )
    )
    return out


def _write(target: str, seeds: list[bytes]) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for data in seeds:
        (d / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


def main() -> None:
    smtp = []
    for i, session in enumerate(SMTP_SESSIONS):
        smtp += [bytes([flags, i]) + session for flags in (0, 3, 4 | 16, 1 | 2 | 32)]
    _write("smtp_server", smtp)
    _write("smtp_grammar", [bytes([which]) + arg for which, arg in SMTP_GRAMMAR])
    _write("smtp_client", [bytes([f, i]) + r for i, r in enumerate(SMTP_REPLIES) for f in (0, 6)])
    _write("imap_server", [bytes([f, i]) + s for i, (f, s) in enumerate(IMAP_SESSIONS)])
    _write(
        "imap_grammar",
        [bytes([u]) + c for c in IMAP_COMMANDS for u in (0, 1)] + [b"\x021:5,7:*,$", b"\x02*:1"],
    )
    _write("pop3_server", [bytes([f, i]) + s for i, (f, s) in enumerate(POP3_SESSIONS)])
    mechs = sorted(["PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
    _write(
        "sasl",
        [
            bytes([mechs.index(m) | (32 if initial else 0)]) + b"\n".join(lines)
            for m, initial, lines in SASL
        ],
    )
    _write("message_headers", [bytes([which]) + value for which, value in HEADERS])
    _write("message_parse", _messages())


if __name__ == "__main__":
    main()
