"""Authentication-Results (RFC 8601): the field we write (checked by the `authres` parser, the
one dkimpy uses) and the removal of fields that claim our authserv-id."""

from __future__ import annotations

import authres
import pytest

from mailstead.mailauth.results import (
    MethodResult,
    format_authentication_results,
    parse_authserv_id,
    quote_value,
    remove_own_results,
)


def parse(field: bytes):
    """The field read back by authres (it wants the unfolded value without the line end)."""
    text = field.decode("utf-8")
    assert text.endswith("\r\n")
    return authres.AuthenticationResultsHeader.parse(text[:-2].replace("\r\n", ""))


def unfolded(field: bytes) -> bytes:
    return field.replace(b"\r\n\t", b" ")


def props(result):
    return {f"{p.type}.{p.name}": p.value for p in result.properties}


FULL = dict(
    spf=("pass", {"smtp.mailfrom": "bounces@example.com"}),
    dkim=[
        MethodResult(
            "pass", {"header.d": "example.com", "header.s": "ms202501", "header.b": "Ab/cd+Ef"}
        ),
        ("fail", {"header.d": "other.example", "header.i": "@other.example"}, "bad signature"),
    ],
    dmarc=MethodResult("pass", {"header.from": "example.com"}, comment="p=reject dis=none"),
    arc=("pass", {"smtp.remote-ip": "192.0.2.1"}, "i=1"),
    others=[("iprev", ("pass", {"policy.iprev": "192.0.2.1"}, "mail.example.com"))],
)

GOLDEN = (
    b"Authentication-Results: mx.example.org;\r\n"
    b"\tspf=pass smtp.mailfrom=bounces@example.com;\r\n"
    b'\tdkim=pass header.d=example.com header.s=ms202501 header.b="Ab/cd+Ef";\r\n'
    b"\tdkim=fail (bad signature) header.d=other.example header.i=@other.example;\r\n"
    b"\tdmarc=pass (p=reject dis=none) header.from=example.com;\r\n"
    b"\tarc=pass (i=1) smtp.remote-ip=192.0.2.1;\r\n"
    b"\tiprev=pass (mail.example.com) policy.iprev=192.0.2.1\r\n"
)


def test_every_method_in_one_field():
    field = format_authentication_results("mx.example.org", **FULL)
    assert field == GOLDEN
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    header = parse(field)
    assert header.authserv_id == "mx.example.org"
    found = [(r.method, r.result, props(r)) for r in header.results]
    assert found == [
        ("spf", "pass", {"smtp.mailfrom": "bounces@example.com"}),
        (
            "dkim",
            "pass",
            {"header.d": "example.com", "header.s": "ms202501", "header.b": "Ab/cd+Ef"},
        ),
        ("dkim", "fail", {"header.d": "other.example", "header.i": "@other.example"}),
        ("dmarc", "pass", {"header.from": "example.com"}),
        ("arc", "pass", {"smtp.remote-ip": "192.0.2.1"}),
        ("iprev", "pass", {"policy.iprev": "192.0.2.1"}),
    ]


def test_nothing_to_say_is_none():
    field = format_authentication_results("mx.example.org")
    assert field == b"Authentication-Results: mx.example.org; none\r\n"
    assert parse(field).results == []
    assert format_authentication_results("mx.example.org", linesep=b"\n").endswith(b"none\n")


def test_long_values_fold_between_words():
    dkim = [
        ("pass", {"header.d": f"sub{i}.a-rather-long-domain-name.example", "header.s": f"sel{i}"})
        for i in range(4)
    ]
    field = format_authentication_results(
        "mx.example.org", dkim=dkim, dmarc=("fail", {}, "x " * 60)
    )
    lines = field.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b"\t") for line in lines[1:-1])
    header = parse(field)
    assert [props(r).get("header.d") for r in header.results][:4] == [
        f"sub{i}.a-rather-long-domain-name.example" for i in range(4)
    ]
    assert header.results[-1].method == "dmarc"


@pytest.mark.parametrize(
    ("value", "written", "read"),
    [
        ("example.com", "example.com", "example.com"),
        ("user@example.com", "user@example.com", "user@example.com"),  # local-part@domain form
        ("@example.com", "@example.com", "@example.com"),
        ("Ab/cd=", '"Ab/cd="', "Ab/cd="),  # tspecials: quoted
        # authres keeps quoted-pairs as they are written
        ('a "b" c\\d', '"a \\"b\\" c\\\\d"', 'a \\"b\\" c\\\\d'),
        ("we ird@example.com", '"we ird@example.com"', "we ird@example.com"),
        ("line\r\nbreak", '"line break"', "line break"),
    ],
)
def test_property_values_are_quoted_when_not_tokens(value, written, read):
    field = format_authentication_results("mx.example.org", spf=("pass", {"smtp.mailfrom": value}))
    expected = f"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom={written}\r\n"
    assert unfolded(field) == expected.encode()
    (result,) = parse(field).results
    assert props(result) == {"smtp.mailfrom": read}


def test_comments_and_reasons_are_escaped():
    field = format_authentication_results(
        "mx.example.org", spf=MethodResult("fail", {}, comment="a (b) \\ c", reason='said "no"')
    )
    assert unfolded(field) == (
        b"Authentication-Results: mx.example.org; "
        b'spf=fail (a \\(b\\) \\\\ c) reason="said \\"no\\""\r\n'
    )
    (result,) = parse(field).results
    assert (result.method, result.result, result.reason) == ("spf", "fail", 'said \\"no\\"')


def test_authserv_id_quoted_when_needed_and_bad_names_refused():
    assert quote_value("mx.example.org") == "mx.example.org"
    field = format_authentication_results("odd id", spf="none")
    assert field == b'Authentication-Results: "odd id"; spf=none\r\n'
    with pytest.raises(ValueError, match="method"):
        format_authentication_results("mx", others=[("bad method", "pass")])
    with pytest.raises(ValueError, match="result"):
        format_authentication_results("mx", spf="pass now")
    with pytest.raises(ValueError, match="ptype"):
        format_authentication_results("mx", spf=("pass", {"mailfrom": "x"}))


# -- removing fields that claim to be ours -------------------------------------------------------

BLOCK = (
    b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Authentication-Results: MX.Example.ORG; spf=pass smtp.mailfrom=x.test\r\n"
    b"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n"
    b"authentication-results:(forged)\r\n (twice) mx.example.org;\r\n\tdmarc=pass\r\n"
    b"Authentication-Results: mx.example.org.evil.test; spf=pass\r\n"
    b'Authentication-Results: "mx.example.org"; arc=pass\r\n'
    b"Authentication-Results: mx.example.orgx; spf=pass\r\n"
    b"ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"
    b"Subject: Authentication-Results: mx.example.org;\r\n"
    b"\r\n"
    b"Authentication-Results: mx.example.org; body text stays\r\n"
)

KEPT = (
    b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Authentication-Results: other.example; dkim=pass header.d=x.test\r\n"
    b"Authentication-Results: mx.example.org.evil.test; spf=pass\r\n"
    b"Authentication-Results: mx.example.orgx; spf=pass\r\n"
    b"ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"
    b"Subject: Authentication-Results: mx.example.org;\r\n"
    b"\r\n"
    b"Authentication-Results: mx.example.org; body text stays\r\n"
)


def test_remove_own_results():
    assert remove_own_results(BLOCK, "mx.example.org") == KEPT
    assert remove_own_results(BLOCK.replace(b"\r\n", b"\n"), "MX.EXAMPLE.ORG") == KEPT.replace(
        b"\r\n", b"\n"
    )
    assert remove_own_results(KEPT, "mx.example.org") is KEPT  # nothing to drop: same bytes


def test_remove_then_add_ours():
    ours = format_authentication_results("mx.example.org", **FULL)
    cleaned = remove_own_results(ours + BLOCK, "mx.example.org")
    assert cleaned == KEPT


@pytest.mark.parametrize(
    ("value", "authserv_id"),
    [
        (b" mx.example.org; none", "mx.example.org"),
        (b"mx.example.org 1; spf=pass", "mx.example.org"),
        (b" (c (nested) \\) ) \r\n\tmx.example.org;", "mx.example.org"),
        (b' "quoted \\"id\\""; none', 'quoted "id"'),
        (b" b\xc3\xbccher.example; none", "bücher.example"),
        (b" ; none", None),
        (b" (unclosed", None),
        (b"", None),
    ],
)
def test_parse_authserv_id(value, authserv_id):
    assert parse_authserv_id(value) == authserv_id


@pytest.mark.parametrize(
    "forged",
    [
        b"Authentication-Results: mx.example.org.; dmarc=pass header.from=strict.test\r\n",
        b"Authentication-Results: MX.EXAMPLE.ORG. ; dmarc=pass\r\n",
        b'Authentication-Results: "mx.example.org."; dmarc=pass\r\n',
        b'Authentication-Results: " mx.example.org "; dmarc=pass\r\n',
        b'Authentication-Results: "mx.example.org; dmarc=pass header.from=strict.test\r\n',
        b"Authentication-Results: (comment mx.example.org; dmarc=pass\r\n",
        b"Authentication-Results: ; dmarc=pass\r\n",
        b"Authentication-Results:\r\n",
    ],
)
def test_forged_results_with_a_disguised_authserv_id_are_removed(forged):
    """Forged Authentication-Results with a trailing dot or an unclosed quote (issue 11): a
    reader takes them for ours, so they go too (and so does any whose id cannot be read)."""
    block = b"Subject: x\r\n" + forged + b"To: y@example.org\r\n\r\nbody\r\n"
    assert remove_own_results(block, "mx.example.org") == (
        b"Subject: x\r\nTo: y@example.org\r\n\r\nbody\r\n"
    )
    assert remove_own_results(block, "MX.example.org.") == (
        b"Subject: x\r\nTo: y@example.org\r\n\r\nbody\r\n"
    )
