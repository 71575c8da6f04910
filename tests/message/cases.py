"""Tricky messages shared by the tests and by dovecot_golden.py (the Dovecot recorder)."""

from __future__ import annotations

from pathlib import Path

CORPUS_REL = Path("..") / "shared" / "testdata" / "mime"


def corpus_dir() -> Path | None:
    """/work/shared/testdata/mime, found relative to the repository root."""
    repo = Path(__file__).resolve().parents[2]
    d = (repo / CORPUS_REL).resolve()
    return d if d.is_dir() else None


def corpus_files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.eml") if p.is_file())


def crlf(s: str) -> bytes:
    return s.replace("\n", "\r\n").encode("utf-8")


CASES: dict[str, bytes] = {
    "plain": crlf("From: a@example.org\nSubject: hi\n\nbody\nline2\n"),
    "bare-lf": b"From: a@example.org\nSubject: hi\n\nbody\nline2\n",
    "no-body": crlf("Subject: no blank line\nFrom: x@y"),
    "empty-body": crlf("Subject: x\n\n"),
    "folded-subject": crlf('Subject: a\n  b\n\tc\nFrom: "Q\\"x" <q@x.example>\n\nb\n'),
    "encoded-words": crlf(
        "From: =?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>\n"
        'To: =?utf-8?B?w6lsw6hvbm9yZQ==?= <e@x.example>, "=?utf-8?q?x?=" <y@x.example>\n'
        "Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_au_lait?=\n\nx\n"
    ),
    "groups": crlf(
        "From: a@b.example\n"
        "To: undisclosed-recipients:;\n"
        'Cc: Friends: joe@x.example, "J D" <jd@x.example>;, after@x.example\n'
        "Bcc: Empty Group: ;\n\nx\n"
    ),
    "obsolete-route": crlf(
        "From: Joe <@relay1.example,@relay2.example:joe@x.example>\n"
        "To: <@bad.example joe@x.example>\n"
        "Cc: joe (Joe Comment) @ x . example\n\nx\n"
    ),
    "garbage-addresses": crlf(
        "From: just some words\n"
        "To: user\n"
        'Cc: <>, @nolocal.example, a@, "quoted"\n'
        "Reply-To: a@b c@d\n"
        'Sender: "unterminated <x@y>\n\nx\n'
    ),
    "quoted-local": crlf('From: "a@b"@example.org, "a b"@x.example, a.."b"@c\n\nx\n'),
    "multiple-headers": crlf(
        "Subject: first\nSubject: second\nFrom: a@x.example\nFrom: b@x.example\n"
        "Message-ID: <1@x>\nMessage-Id: <2@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nx\n"
    ),
    "weird-header-lines": crlf(
        "From: a@x.example\nno colon here\nSubject : spaced name\nX-Empty:\nSubject:    \n\nx\n"
    ),
    "multipart-basic": crlf(
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n\n'
        "preamble\n--XX\nContent-Type: text/plain; charset=utf-8\n\nhello\n"
        "--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="a.bin"\n\nAAAA\n--XX--\nepilogue\n'
    ),
    "multipart-no-close": crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n"
    ),
    "multipart-no-boundary-param": crlf("Content-Type: multipart/mixed\n\n--b\n\none\n--b--\n"),
    "multipart-no-parts": crlf("Content-Type: multipart/alternative; boundary=zz\n\nnothing\n"),
    "boundary-trailing-junk": crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b   \n\none\n--bjunk\n\ntwo\n--b--  x\n"
    ),
    "boundary-prefixes": crlf(
        "Content-Type: multipart/mixed; boundary=a\n\n--a\n"
        "Content-Type: multipart/mixed; boundary=ab\n\n--ab\n\ninner1\n--ab\n\ninner2\n"
        "--a\n\nouter2\n--a--\n"
    ),
    "boundary-same-nested": crlf(
        "Content-Type: multipart/mixed; boundary=s\n\n--s\n"
        "Content-Type: multipart/mixed; boundary=s\n\n--s\n\nx\n--s--\n\n--s\n\ny\n--s--\n"
    ),
    "boundary-in-header": crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
        "--b\nX-A: 1\n\nsecond\n--b--\n"
    ),
    "part-no-headers": crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nno headers\n--b--\n"
    ),
    "part-empty-body": crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\n--b--\n"),
    "digest": crlf(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in digest\n"
        "From: d@x.example\n\ndigest body\n--d\nContent-Type: text/plain\n\ntext\n--d--\n"
    ),
    "rfc822-nested": crlf(
        "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\n"
        "Subject: inner\nFrom: i@x.example\nContent-Type: multipart/alternative; boundary=i\n\n"
        "--i\n\ninner text\n--i\nContent-Type: text/html\n\n<p>x</p>\n--o--\n"
    ),
    "rfc822-top": crlf(
        "Mime-Version: 1.0\nContent-Type: Message/RFC822\n\nSubject: inside\n\nbody\n"
    ),
    "rfc822-cut-by-boundary": crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n--b--\n"
    ),
    "no-mime-version": crlf(
        "Content-Transfer-Encoding: base64\nContent-Disposition: inline\nContent-ID: <x>\n\nx\n"
    ),
    "mime-version-no-type": crlf(
        "MIME-Version: 1.0\nContent-Transfer-Encoding: Quoted-Printable\n"
        "Content-Description: desc\n  folded\nContent-Language: en, de-DE\n"
        "Content-Location: http://x.example/a\nContent-MD5: Q2hlY2s=\n\nx\n"
    ),
    "broken-content-type": crlf("Content-Type: text\n\nx\n"),
    "broken-content-type2": crlf("Content-Type: text/html junk; charset=x\n\nx\n"),
    "upper-case-type": crlf('Content-Type: TEXT/HTML; CHARSET="ISO-8859-1"; Format=Flowed\n\nx\n'),
    "rfc2231": crlf(
        "Content-Type: application/x-stuff;\n title*0*=us-ascii'en'This%20is%20even%20more%20;\n"
        ' title*1*=%2A%2A%2Afun%2A%2A%2A%20;\n title*2="isn\'t it!"\n'
        "Content-Disposition: attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt;"
        " name*0=a; name*2=c\n\nx\n"
    ),
    "rfc2231-gap": crlf("Content-Type: text/plain; x*0=a; x*2=c; y=1\n\nx\n"),
    "disposition-twice": crlf(
        "Content-Type: text/plain\nContent-Disposition: inline\n"
        "Content-Disposition: attachment; filename=x\n\nx\n"
    ),
    "cte-junk": crlf("Content-Type: text/plain\nContent-Transfer-Encoding: base64 junk\n\nx\n"),
    "empty-boundary": crlf('Content-Type: multipart/mixed; boundary=""\n\n--\n\na\n----\n'),
    "boundary-first-line-lf": (
        b"Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\n"
        b"lf body\n\n--q--\n"
    ),
    "8bit-headers": ("Subject: café\r\nFrom: Jörg <j@bücher.example>\r\n\r\nx\r\n".encode()),
    "nul-in-header": b'Subject: a\x00b\r\nFrom: "n\x00l" <a@b>\r\n\r\nx\r\n',
    "message-global": crlf(
        "Content-Type: multipart/mixed; boundary=g\n\n--g\nContent-Type: message/global\n\n"
        "Subject: g\n\nx\n--g--\n"
    ),
    "literal-and-quotes": crlf(
        'Subject: "quoted" \\ back \\ slash "and" more "q"\nDate: \n  Mon, 1 Jan 2024\n'
        "In-Reply-To: <a@b>\n <c@d>\n\nx\n"
    ),
    "long-line-body": crlf("Content-Type: text/plain\n\n" + "x" * 5000 + "\nend"),
}


def deep_nesting(n: int) -> bytes:
    """``n`` multiparts nested in each other (boundaries x0y, x1y, ... none a prefix of another)."""
    head = b"".join(
        b"--x%dy\r\nContent-Type: multipart/mixed; boundary=x%dy\r\n\r\n" % (i, i + 1)
        for i in range(n)
    )
    top = b"Content-Type: multipart/mixed; boundary=x0y\r\n\r\n"
    return top + head + b"--x%dy\r\n\r\nleaf\r\n" % n


def deep_rfc822(n: int) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" * n + b"Subject: bottom\r\n\r\nleaf\r\n"


CASES["deep-multipart"] = deep_nesting(150)
CASES["deep-rfc822"] = deep_rfc822(120)
