import pytest

from mailstead.message import (
    Address,
    AddressError,
    domain_to_ascii,
    normalize_domain,
    normalize_localpart,
    parse_address_list,
    split_address,
)


def _t(a: Address):
    """(name_raw, route, mailbox, domain) as ENVELOPE shows an address; markers as such."""
    if a.group is not None:
        return ("GROUP", a.group)
    if a.group_end:
        return ("END",)
    return (a.name_raw, a.route, a.local, a.domain)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a@example.org", [(None, None, "a", "example.org")]),
        (
            b" Joe Q. Public <john.q.public@example.com>",
            [(b"Joe Q. Public", None, "john.q.public", "example.com")],
        ),
        (
            b'"Giant; \\"Big\\" Box" <sysservices@example.net>',
            [(b'Giant; "Big" Box', None, "sysservices", "example.net")],
        ),
        (b"<a@b>", [(None, None, "a", "b")]),
        (
            b"a@b, c@d,\r\n e@f",
            [(None, None, "a", "b"), (None, None, "c", "d"), (None, None, "e", "f")],
        ),
        # encoded words stay raw (ENVELOPE sends the raw text)
        (b"=?utf-8?q?J=C3=B6rg?= <j@x>", [(b"=?utf-8?q?J=C3=B6rg?=", None, "j", "x")]),
        # groups
        (b"undisclosed-recipients:;", [("GROUP", "undisclosed-recipients"), ("END",)]),
        (
            b"Friends: a@x, B <b@x>;, c@x",
            [
                ("GROUP", "Friends"),
                (None, None, "a", "x"),
                (b"B", None, "b", "x"),
                ("END",),
                (None, None, "c", "x"),
            ],
        ),
        # obsolete route
        (b"<@r1.example,@r2.example:joe@x>", [(None, "@r1.example,@r2.example", "joe", "x")]),
        (b"<@bad joe@x>", [(None, "INVALID_ROUTE", "joe", "x")]),
        # comments: the last one becomes the name of a bare addr-spec
        (b"joe@x (Joe Bloggs)", [(b"Joe Bloggs", None, "joe", "x")]),
        (b"joe (c) @ x . example", [(b"c", None, "joe", "x.example")]),
        # missing pieces get Dovecot's placeholders
        (b"user", [(None, None, "user", "MISSING_DOMAIN")]),
        (b"just some words", [(b"just some words", None, "MISSING_MAILBOX", "MISSING_DOMAIN")]),
        (b"<>", [(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN")]),
        (b"a@", [(None, None, "a", "MISSING_DOMAIN")]),
        (b"Name <a@b", [(b"Name", None, "a", "SYNTAX_ERROR")]),
        (b"a@b c@d", [(None, None, "a", "b")]),  # rest after garbage dropped
        # quoted local parts
        (b'"a@b"@example.org', [(None, None, "a@b", "example.org")]),
        (b'"a b"@x', [(None, None, "a b", "x")]),
        (b"a..b@c", [(None, None, "a..b", "c")]),  # non-strict dots
        (b"a@[192.0.2.1]", [(None, None, "a", "[192.0.2.1]")]),
        (b"", []),
        (b"  \r\n ", []),
    ],
)
def test_parse_address_list(value, expected):
    assert [_t(a) for a in parse_address_list(value)] == expected


def test_decoded_names_and_flags():
    (a,) = parse_address_list(b"=?utf-8?q?J=C3=B6rg?= <j@x>")
    assert a.name == "Jörg" and a.name_raw == b"=?utf-8?q?J=C3=B6rg?=" and not a.invalid
    assert a.addr_spec == "j@x"
    (b,) = parse_address_list(b"user")
    assert b.invalid
    start, end = parse_address_list(b"=?utf-8?q?Gr=C3=BCn?=:;")
    assert start.is_group_marker and start.name == "Grün" and start.domain is None
    assert end.is_group_marker and end.group_end


def test_8bit_and_nul():
    (a,) = parse_address_list("Jörg <j@bücher.example>".encode())
    assert a.name_raw == "Jörg".encode() and a.domain == "bücher.example"
    (b,) = parse_address_list(b'"n\x00l" <a@b>')
    assert b.name_raw == "n\ufffdl".encode()
    (c,) = parse_address_list(b"\xff@x")
    assert c.local.encode("utf-8", "surrogateescape") == b"\xff"


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("xn--bcher-kva.example", "bücher.example"),
        ("XN--BCHER-KVA.Example", "bücher.example"),
        ("Bücher.Example", "bücher.example"),
        ("BÜCHER.example", "bücher.example"),
        ("b\u0075\u0308cher.example", "bücher.example"),  # NFC
        ("Example.ORG", "example.org"),
        ("example.org.", "example.org"),
        ("_dmarc.example.org", "_dmarc.example.org"),
        ("[192.0.2.1]", "[192.0.2.1]"),
    ],
)
def test_normalize_domain(domain, expected):
    assert normalize_domain(domain) == expected


@pytest.mark.parametrize(
    "domain",
    ["", ".", "a..b", "xn--zz.example", "a b.example", "-" * 64 + ".x", "bad\u2028.example"],
)
def test_normalize_domain_rejects(domain):
    with pytest.raises(AddressError):
        normalize_domain(domain)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("Example.org", "example.org"),
    ],
)
def test_domain_to_ascii(domain, expected):
    assert domain_to_ascii(domain) == expected


def test_normalize_localpart():
    assert normalize_localpart("John.Doe") == "john.doe"
    assert normalize_localpart("STRASSE") == normalize_localpart("straße")
    assert normalize_localpart("Jo\u0308rg") == normalize_localpart("jörg")


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("a@example.org", ("a", "example.org")),
        ('"a@b"@example.org', ("a@b", "example.org")),
        ('"a\\"b"@x', ('a"b', "x")),
        ("<a@x>", ("a", "x")),
        ("a@b@c", ("a@b", "c")),  # last @; a bare @ in a local part is the caller's problem
    ],
)
def test_split_address(addr, expected):
    assert split_address(addr) == expected


@pytest.mark.parametrize("addr", ["nobody", "a@", "@x", '"a@x', 'a"b@x', '"a"b@x'])
def test_split_address_rejects(addr):
    with pytest.raises(AddressError):
        split_address(addr)
