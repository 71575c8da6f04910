"""DKIM signing: canonicalization tables, exact signature bytes, DNS records, and verification
of our signatures by independent verifiers (dkimpy in-process, OpenDKIM as a subprocess)."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import dkim as dkimpy
import dns.zone
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mailstead.mailauth.dkim import (
    DkimError,
    SigningKey,
    check_selector,
    dns_record,
    generate_key,
    relaxed_body,
    relaxed_header,
    sign,
    split_txt,
    txt_value,
)

# RFC 8463 Appendix A: the Ed25519 key (the RFC 8037 one) and the message signed with it.
RFC8463_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_BODY_HASH = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
RFC8463_MESSAGE = (
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def rfc8463_key() -> SigningKey:
    seed = base64.b64decode(RFC8463_SEED)
    return SigningKey.from_pem("brisbane", _pem(ed25519.Ed25519PrivateKey.from_private_bytes(seed)))


@pytest.fixture(scope="module")
def keys():
    """One RSA-2048 and one Ed25519 key, with their DNS records, for example.org."""
    rsa_pair, ed_pair = generate_key("rsa"), generate_key("ed25519")
    rsa_key = SigningKey.from_pem("ms202501", rsa_pair.private_key_pem)
    ed_key = SigningKey.from_pem("ms202501e", ed_pair.private_key_pem)
    records = {
        "ms202501._domainkey.example.org.": txt_value("rsa", rsa_pair.public_key),
        "ms202501e._domainkey.example.org.": txt_value("ed25519", ed_pair.public_key),
    }
    return {"rsa": rsa_key, "ed25519": ed_key, "records": records}


# -- independent verifiers ------------------------------------------------------------------------
def need_ed25519(algorithm: str) -> None:
    if algorithm == "ed25519":
        pytest.importorskip("nacl", reason="dkimpy verifies Ed25519 only with PyNaCl installed")


def dkimpy_verify(signed: bytes, records: dict[str, str], index: int = 0) -> bool:
    """dkimpy's verdict on the ``index``-th DKIM-Signature, DNS answered from ``records``."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode("ascii"), "").encode("ascii")

    try:
        return bool(dkimpy.DKIM(signed).verify(idx=index, dnsfunc=dnsfunc))
    except dkimpy.DKIMException:  # DKIM.verify raises for some failures, returns False for others
        return False


def opendkim_binary() -> str | None:
    return shutil.which("opendkim") or next(
        (p for p in ("/usr/sbin/opendkim", "/usr/bin/opendkim") if Path(p).exists()), None
    )


def opendkim_verify(tmp_path: Path, signed: bytes, records: dict[str, str]) -> dict[str, str]:
    """OpenDKIM's verdict per selector (``pass``, ``fail``...): its test mode (-t) checks every
    signature of the message, with keys read from a file (TestPublicKeys) instead of DNS."""
    binary = opendkim_binary()
    if binary is None:
        pytest.skip(
            "opendkim is not installed (Debian package opendkim, scripts/install-test-deps)"
        )
    keys = tmp_path / "opendkim-keys"
    keys.write_text("".join(f"{name.rstrip('.')} {value}\n" for name, value in records.items()))
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestPublicKeys {keys}\nAuthservID test.example\n")
    message = tmp_path / "message.eml"
    message.write_bytes(signed)
    result = subprocess.run(
        [binary, "-x", str(conf), "-vvv", "-t", str(message)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    verdicts = dict(
        (selector, verdict)
        for verdict, selector in re.findall(r"dkim=(\w+)[^;]*?header\.s=([\w.-]+)", output)
    )
    assert verdicts, f"opendkim said nothing about DKIM:\n{output}"
    return verdicts


# -- canonicalization (RFC 6376 §3.4) -------------------------------------------------------------
def test_relaxed_canonicalization_of_rfc6376_example():
    """RFC 6376 §3.4.5: the example's header fields and body, relaxed."""
    assert relaxed_header("A", b" X") == b"a:X\r\n"
    assert relaxed_header("B", b" Y\t\r\n\tZ  ") == b"b:Y Z\r\n"
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),  # an empty body is hashed as nothing (RFC 6376 errata 3192)
        (b"\r\n\r\n", b""),
        (b" \t \r\n", b""),  # a line of whitespace is an empty line
        (b"text", b"text\r\n"),  # a missing final line end is added
        (b"text  \t", b"text\r\n"),
        (b"a\nb  \n\n", b"a\r\nb\r\n"),  # LF counts as a line end
        (b"a\tb  c\r\n", b"a b c\r\n"),
        (b"  lead\r\n", b" lead\r\n"),  # leading whitespace is kept as one space
        (b"caf\xc3\xa9 \xff\r\n", b"caf\xc3\xa9 \xff\r\n"),  # 8-bit octets pass as they are
        (b"x\r\n\r\ny\r\n\r\n", b"x\r\n\r\ny\r\n"),  # inner empty lines stay
    ],
)
def test_relaxed_body(body, canonical):
    assert relaxed_body(body) == canonical


@pytest.mark.parametrize(
    ("name", "value", "canonical"),
    [
        ("Subject", b" Hello  World ", b"subject:Hello World\r\n"),
        ("SUBJECT", b"x", b"subject:x\r\n"),
        ("To", b" a@example.org,\r\n  b@example.org", b"to:a@example.org, b@example.org\r\n"),
        ("To", b" a,\n\tb", b"to:a, b\r\n"),  # an LF fold unfolds the same
        ("X", b"", b"x:\r\n"),
        ("Subject", b" caf\xc3\xa9", b"subject:caf\xc3\xa9\r\n"),
    ],
)
def test_relaxed_header(name, value, canonical):
    assert relaxed_header(name, value) == canonical


# -- exact bytes ----------------------------------------------------------------------------------
def test_rfc8463_key_and_body_hash():
    key = rfc8463_key()
    assert (key.algorithm, key.public_key) == ("ed25519", RFC8463_PUBLIC)
    header = sign(RFC8463_MESSAGE, "football.example.com", [key], timestamp=1528637909)
    assert f"bh={RFC8463_BODY_HASH};".encode() in header


def test_signature_bytes_are_exact():
    """Ed25519 signatures are deterministic: the whole field, tag order and folding included."""
    header = sign(RFC8463_MESSAGE, "football.example.com", [rfc8463_key()], timestamp=1528637909)
    assert header == (
        b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
        b" d=football.example.com; s=brisbane; t=1528637909; h=From:From:Reply-To:\r\n"
        b" Subject:Subject:Date:Date:To:To:Cc:Message-ID:Message-ID:Sender:MIME-Version:\r\n"
        b" Content-Type:Content-Transfer-Encoding;\r\n"
        b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=M5Pu9js3jhpdL1P6Phe0IY3MED\r\n"
        b" nuGE20vjMp/epR9zV6zR7xMjHXG0FavqgdkMF5HiFSj9CzzKtBnkkH0Vc/Cw==\r\n"
    )


def test_rfc8463_example_verifies_with_dkimpy():
    need_ed25519("ed25519")
    header = sign(RFC8463_MESSAGE, "football.example.com", [rfc8463_key()], timestamp=1528637909)
    records = {"brisbane._domainkey.football.example.com.": txt_value("ed25519", RFC8463_PUBLIC)}
    assert dkimpy_verify(header + RFC8463_MESSAGE, records)


def test_header_list_expiry_and_line_ends(keys):
    message = b"From: a@example.org\nTo: b@example.net\nTo: c@example.net\nX-Other: 1\n\nhi\n"
    options = {
        "timestamp": 1_700_000_000,
        "expire_after": 86400,
        "headers_to_sign": ["From", "To", "X-Other", "Subject"],
        "oversign": ["From"],
    }
    header = sign(message, "example.org", [keys["ed25519"]], **options)
    assert b"\r" not in header  # the message's own line ends
    assert b" t=1700000000; x=1700086400;" in header
    unfolded = header.replace(b"\n ", b" ")
    # present fields as often as they occur, From once more, the absent Subject not at all
    assert b"h=From:From:To:To:X-Other;" in unfolded
    assert all(len(line) <= 78 for line in header.split(b"\n"))
    crlf = sign(message.replace(b"\n", b"\r\n"), "example.org", [keys["ed25519"]], **options)
    assert crlf == header.replace(b"\n", b"\r\n")  # the same signature either way
    assert sign(message, "example.org", [], timestamp=0) == b""


def test_idn_domain_is_signed_as_a_labels(keys):
    message = b"From: j@b\xc3\xbccher.example\r\n\r\nx\r\n"
    header = sign(message, "bücher.example", [keys["ed25519"]], timestamp=1_700_000_000)
    assert b" d=xn--bcher-kva.example;" in header


@pytest.mark.parametrize(
    ("message", "kwargs", "problem"),
    [
        (b"To: b@example.net\r\n\r\nx\r\n", {}, "no From"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"headers_to_sign": ["To"], "oversign": []}, "From"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"headers_to_sign": ["DKIM-Signature"]}, "DKIM"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"headers_to_sign": ["Bad Name"]}, "name"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"expire_after": 0}, "expire_after"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"domain": "[192.0.2.1]"}, "literal"),
        (b"From: a@example.org\r\n\r\nx\r\n", {"domain": "bad..domain"}, "domain"),
    ],
)
def test_sign_refuses(keys, message, kwargs, problem):
    domain = kwargs.pop("domain", "example.org")
    with pytest.raises(DkimError, match=problem):
        sign(message, domain, [keys["ed25519"]], timestamp=1, **kwargs)


# -- keys and DNS records -------------------------------------------------------------------------
def test_generated_keys_and_their_records():
    pair = generate_key()
    assert pair.algorithm == "rsa"
    key = serialization.load_pem_private_key(pair.private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert pair.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    public = serialization.load_der_public_key(base64.b64decode(pair.public_key))
    assert public.public_numbers() == key.public_key().public_numbers()

    ed = generate_key("ed25519")
    assert len(base64.b64decode(ed.public_key)) == 32  # RFC 8463 §4.2: the raw key
    assert SigningKey.from_pem("x", ed.private_key_pem).public_key == ed.public_key

    record = dns_record("example.org", "MS202501", "rsa", pair.public_key)
    assert record.name == "ms202501._domainkey.example.org."
    assert record.value == f"v=DKIM1; k=rsa; p={pair.public_key}"
    assert record.strings[0] == "v=DKIM1; k=rsa; "
    assert "".join(record.strings) == record.value
    assert all(len(s) <= 255 for s in record.strings) and len(record.strings) == 3

    # the zone-file text is what a DNS server reads back (dnspython's master-file parser)
    zone = dns.zone.from_text(
        "$TTL 3600\n" + record.zone_text(),
        origin="example.org.",
        relativize=False,
        check_origin=False,
    )
    rdataset = zone.find_rdataset(record.name, "TXT")
    (txt,) = list(rdataset)
    assert b"".join(txt.strings).decode() == record.value


def test_idn_record_name_and_split():
    record = dns_record("bücher.example", "s1", "ed25519", "A" * 44)
    assert record.name == "s1._domainkey.xn--bcher-kva.example."
    assert record.zone_text() == (
        f's1._domainkey.xn--bcher-kva.example. IN TXT ( "v=DKIM1; k=ed25519; "\n\t"p={"A" * 44}" )'
    )
    assert split_txt("p=" + "B" * 600) == ["p=" + "B" * 253, "B" * 255, "B" * 92]


@pytest.mark.parametrize("selector", ["", "a_b", "-a", "a-", "a..b", "ü", "a b", "x" * 64])
def test_bad_selectors(selector):
    with pytest.raises(DkimError):
        check_selector(selector)


def test_selectors_are_lower_case_labels():
    assert check_selector("MS202501") == "ms202501"
    assert check_selector("2025.eu-1") == "2025.eu-1"


def test_rsa_keys_below_1024_bits_are_refused(tmp_path):
    """RFC 8301 §3.2 (cryptography will not even generate one: OpenSSL makes it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    pem = subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    with pytest.raises(DkimError, match="1024"):
        SigningKey.from_pem("s", pem)


def test_unusable_private_keys():
    with pytest.raises(DkimError, match="cannot load"):
        SigningKey.from_pem("s", "not a key")
    with pytest.raises(DkimError, match="RSA or Ed25519"):
        SigningKey.from_pem("s", _pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(DkimError):
        generate_key("dsa")  # type: ignore[arg-type]


# -- verified by dkimpy ---------------------------------------------------------------------------
LONG_SUBJECT = ("Ünïcödé " * 40).strip().encode("utf-8")
MESSAGES = {
    "crlf": (
        b"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: Hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <1@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"Hello Bob,  \r\n\r\n  how are you?\r\n\r\n\r\n"
    ),
    "lf": b"From: alice@example.org\nTo: bob@example.net\nSubject: lf\n\nline one\nline two\n",
    "8bit": (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: b@example.net\r\n"
        b"Subject: caf\xc3\xa9 \xe2\x82\xac\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe \xf0\x9f\x93\xa8\r\n"
    ),
    "long-headers": (
        b"From: alice@example.org\r\nTo: "
        + b",\r\n ".join(b"user%d@example.net" % i for i in range(60))
        + b"\r\nSubject: "
        + LONG_SUBJECT
        + b"\r\n"
        + b"References: "
        + b" ".join(b"<%d@example.org>" % i for i in range(120))
        + b"\r\n"
        + b"\r\n"
        + b"x" * 990
        + b"\r\n"
    ),
    "repeated-and-empty-body": (
        b"From: alice@example.org\r\nTo: a@example.net\r\nTo: b@example.net\r\n"
        b"Cc:\r\nSubject:  spaced\t out \r\n\r\n"
    ),
    "no-body": b"From: alice@example.org\r\nSubject: headers only\r\n",
}


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
@pytest.mark.parametrize("kind", list(MESSAGES))
def test_dkimpy_verifies_our_signature(keys, kind, algorithm):
    need_ed25519(algorithm)
    message = MESSAGES[kind]
    header = sign(message, "example.org", [keys[algorithm]], timestamp=int(time.time()))
    assert dkimpy_verify(header + message, keys["records"])


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkimpy_rejects_tampering(keys, algorithm):
    need_ed25519(algorithm)
    message = MESSAGES["crlf"]
    header = sign(message, "example.org", [keys[algorithm]], timestamp=int(time.time()))
    signed = header + message
    records = keys["records"]
    assert dkimpy_verify(signed, records)
    assert not dkimpy_verify(signed.replace(b"how are you", b"how are yoU"), records)
    assert not dkimpy_verify(signed.replace(b"Subject: Hello", b"Subject: Hallo"), records)
    # a second From: above or below the first breaks it (From is signed once more than it occurs)
    assert not dkimpy_verify(header + b"From: mallory@example.com\r\n" + message, records)
    added = signed.replace(b"\r\n\r\nHello Bob", b"\r\nFrom: mallory@example.com\r\n\r\nHello Bob")
    assert not dkimpy_verify(added, records)
    assert not dkimpy_verify(header + b"Reply-To: mallory@example.com\r\n" + message, records)
    # relaxed canonicalization: what relays do to whitespace and folding changes nothing
    relayed = signed.replace(b"Subject: Hello", b"Subject:   Hello").replace(
        b"Hello Bob,  \r\n", b"Hello\t Bob,\r\n"
    )
    assert dkimpy_verify(relayed, records)
    # an unsigned field may be added
    assert dkimpy_verify(b"Received: by relay\r\n" + signed, records)


def test_dkimpy_rejects_an_expired_signature(keys):
    message = MESSAGES["crlf"]
    now = int(time.time())
    # dkimpy allows clocks 10 hours of slack
    then = now - 2 * 86400
    expired = sign(message, "example.org", [keys["rsa"]], timestamp=then, expire_after=3600)
    assert not dkimpy_verify(expired + message, keys["records"])
    valid = sign(message, "example.org", [keys["rsa"]], timestamp=then, expire_after=3 * 86400)
    assert dkimpy_verify(valid + message, keys["records"])


def test_two_keys_make_two_valid_signatures(keys):
    need_ed25519("ed25519")
    message = MESSAGES["8bit"]
    header = sign(
        message, "example.org", [keys["rsa"], keys["ed25519"]], timestamp=int(time.time())
    )
    assert header.count(b"DKIM-Signature:") == 2
    assert header.index(b"a=rsa-sha256") < header.index(b"a=ed25519-sha256")
    signed = header + message
    assert dkimpy_verify(signed, keys["records"], 0)
    assert dkimpy_verify(signed, keys["records"], 1)
    # with only the RSA key published, the RSA signature still passes on its own
    rsa_only = {k: v for k, v in keys["records"].items() if "k=rsa" in v}
    assert dkimpy_verify(signed, rsa_only, 0)
    assert not dkimpy_verify(signed, rsa_only, 1)


# -- verified by OpenDKIM -------------------------------------------------------------------------
@pytest.mark.interop
@pytest.mark.parametrize("kind", ["crlf", "lf", "8bit", "long-headers", "no-body"])
def test_opendkim_verifies_both_signatures(tmp_path, keys, kind):
    message = MESSAGES[kind]
    header = sign(
        message, "example.org", [keys["rsa"], keys["ed25519"]], timestamp=int(time.time()),
        expire_after=3600,
    )  # fmt: skip
    verdicts = opendkim_verify(tmp_path, header + message, keys["records"])
    assert verdicts == {"ms202501": "pass", "ms202501e": "pass"}


@pytest.mark.interop
def test_opendkim_rejects_a_tampered_body(tmp_path, keys):
    message = MESSAGES["crlf"]
    header = sign(
        message, "example.org", [keys["rsa"], keys["ed25519"]], timestamp=int(time.time())
    )
    tampered = (header + message).replace(b"how are you", b"how are you!")
    verdicts = opendkim_verify(tmp_path, tampered, keys["records"])
    assert verdicts == {"ms202501": "fail", "ms202501e": "fail"}


def test_body_hash_is_sha256_of_the_relaxed_body(keys):
    message = MESSAGES["crlf"]
    header = sign(message, "example.org", [keys["rsa"]], timestamp=1)
    body = message.split(b"\r\n\r\n", 1)[1]
    expected = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    assert b"bh=" + expected + b";" in header.replace(b"\r\n ", b" ")
