"""MIME structure: offsets, sizes and the Dovecot rules (see also test_dovecot_golden.py)."""

import pytest

from mailstead.message import MimePart, ParsedMessage, parse_message
from mailstead.message.mime import MAX_NESTING

from .cases import CASES, crlf, deep_nesting


def _sections(m: ParsedMessage, raw: bytes) -> dict[str, tuple[bytes, bytes]]:
    """IMAP section -> (MIME header, body) octets, walking like BODY[n] numbering."""
    out: dict[str, tuple[bytes, bytes]] = {}

    def walk(p: MimePart, prefix: str) -> None:
        if p.message is not None:
            walk(p.message.root, prefix)
            return
        for i, c in enumerate(p.children, 1):
            sec = f"{prefix}.{i}" if prefix else str(i)
            out[sec] = (raw[c.header_start : c.body_start], raw[c.body_start : c.body_end])
            walk(c, sec) if c.is_multipart or c.message is not None else None

    walk(m.root, "")
    return out


def test_simple_offsets():
    raw = crlf("Subject: x\n\nbody\nline2\n")
    m = parse_message(raw)
    r = m.root
    assert (m.size, m.header_end) == (len(raw), 14)
    assert (r.header_start, r.body_start, r.body_end) == (0, 14, len(raw))
    assert (r.type, r.subtype, r.params, r.encoding) == (
        "text",
        "plain",
        [("charset", "us-ascii")],
        "7bit",
    )
    assert (r.lines, r.size) == (2, 13)


def test_bare_lf_sizes_count_crlf():
    m = parse_message(b"Subject: x\n\nbody\nline2\n")
    assert (m.root.size, m.root.lines) == (13, 2)  # IMAP octets: LF counted as CRLF
    assert m.root.body_end - m.root.body_start == 11


def test_multipart_sections_and_crlf_before_boundary():
    raw = CASES["multipart-basic"]
    m = parse_message(raw)
    assert m.root.is_multipart and m.root.subtype == "mixed"
    assert m.root.param("BOUNDARY") == "XX"
    s = _sections(m, raw)
    assert s["1"] == (b"Content-Type: text/plain; charset=utf-8\r\n\r\n", b"hello")
    assert s["2"][1] == b"AAAA"
    two = m.root.children[1]
    assert (two.type, two.subtype, two.encoding) == ("application", "octet-stream", "base64")
    assert (two.disposition, two.disposition_params) == ("attachment", [("filename", "a.bin")])
    assert two.lines is None and two.size == 4
    # the multipart's body runs to the end (epilogue included)
    assert m.root.body_end == len(raw)


@pytest.mark.parametrize(
    ("case", "bodies"),
    [
        ("multipart-no-close", {"1": b"one", "2": b"two\r\n"}),
        ("boundary-trailing-junk", {"1": b"one", "2": b"two"}),
        (
            "boundary-prefixes",
            {
                "1": b"--ab\r\n\r\ninner1\r\n--ab\r\n\r\ninner2",
                "1.1": b"inner1",
                "1.2": b"inner2",
                "2": b"outer2",
            },
        ),
        ("boundary-same-nested", {"1": b"--s\r\n\r\nx\r\n--s--\r\n", "1.1": b"x", "2": b"y"}),
        ("part-no-headers", {"1": b"no headers"}),
        ("part-empty-body", {"1": b"", "2": b""}),
        ("empty-boundary", {"1": b"a"}),
        ("boundary-first-line-lf", {"1": b"lf body\n"}),
    ],
)
def test_multipart_bodies(case, bodies):
    raw = CASES[case]
    got = {k: v[1] for k, v in _sections(parse_message(raw), raw).items()}
    assert got == bodies


def test_boundary_line_that_is_longer_prefix_is_still_a_boundary():
    # "--bjunk" starts with "--b": RFC 2046 only wants the prefix (Dovecot agrees)
    m = parse_message(CASES["boundary-trailing-junk"])
    assert len(m.root.children) == 2


def test_header_cut_by_boundary():
    raw = CASES["boundary-in-header"]
    m = parse_message(raw)
    first, second = m.root.children
    # the newline before the boundary is not part of the first part's header
    assert raw[first.header_start : first.body_start] == b"Content-Type: text/plain"
    assert first.body_start == first.body_end
    assert raw[second.body_start : second.body_end] == b"second"


def test_multipart_without_boundary_param_has_no_children():
    m = parse_message(CASES["multipart-no-boundary-param"])
    assert m.root.is_multipart and m.root.children == []
    assert m.root.body_end == len(CASES["multipart-no-boundary-param"])


def test_digest_default_is_message_rfc822():
    m = parse_message(CASES["digest"])
    one, two = m.root.children
    assert (one.type, one.subtype) == ("message", "rfc822")
    assert one.message is not None and one.message.subject == "in digest"
    assert (two.type, two.subtype) == ("text", "plain")


def test_embedded_message_offsets_are_outer():
    raw = CASES["rfc822-nested"]
    m = parse_message(raw)
    (part,) = m.root.children
    inner = part.message
    assert inner is not None
    assert inner.root.header_start == part.body_start
    assert raw[inner.root.header_start : inner.header_end].startswith(b"Subject: inner\r\n")
    assert inner.envelope.subject == b"inner" and inner.subject == "inner"
    assert [c.subtype for c in inner.root.children] == ["plain", "html"]
    # the outer close boundary ends the inner multipart (no inner close boundary)
    assert raw[inner.root.children[1].body_start : inner.root.children[1].body_end] == b"<p>x</p>"
    assert part.lines == raw.count(b"\n", part.body_start, part.body_end)


def test_non_mime_content_headers_ignored():
    r = parse_message(CASES["no-mime-version"]).root
    assert (r.encoding, r.disposition, r.id) == ("7bit", None, None)
    r = parse_message(CASES["mime-version-no-type"]).root
    assert r.encoding == "Quoted-Printable" and r.description == "desc\n  folded"
    assert r.language == ["en", "de-DE"] and r.md5 == "Q2hlY2s="


def test_rfc2231_params():
    r = parse_message(CASES["rfc2231"]).root
    assert r.params == [
        ("title*", "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!")
    ]
    assert r.disposition_params == [
        ("filename*", "UTF-8''%C3%A9t%C3%A9.txt"),
        ("name*0", "a"),
        ("name*2", "c"),  # a missing piece: not merged
    ]


def test_nesting_limit():
    m = parse_message(deep_nesting(150))
    depth, p = 0, m.root
    while p.children:
        p, depth = p.children[0], depth + 1
    # past the limit the multipart is one opaque leaf, shown as application/octet-stream
    assert depth == MAX_NESTING - 1
    assert (p.type, p.subtype) == ("application", "octet-stream")
    assert p.body_end == len(deep_nesting(150))


def _check_invariants(m: ParsedMessage, lo: int, hi: int) -> int:
    n = 0
    for p in [m.root]:
        stack = [(p, lo, hi)]
        while stack:
            part, a, b = stack.pop()
            n += 1
            assert a <= part.header_start <= part.body_start <= part.body_end <= b
            assert part.size >= part.body_end - part.body_start
            last = part.body_start
            for c in part.children:
                assert c.header_start >= last  # children in order, not overlapping
                last = c.body_end
                stack.append((c, part.body_start, part.body_end))
            if part.message is not None:
                inner = part.message
                assert inner.root.header_start == part.body_start
                assert inner.header_end == inner.root.body_start
                n += _check_invariants(inner, part.body_start, part.body_end)
    return n


@pytest.mark.parametrize("name", sorted(CASES))
def test_invariants_cases(name):
    m = parse_message(CASES[name])
    assert _check_invariants(m, 0, len(CASES[name])) >= 1
