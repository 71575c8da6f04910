"""DKIM verification, judged by others' signatures: the RFC 8463 Appendix A message and
dkimpy's test data, messages signed at test time by dkimpy and by OpenDKIM's
``opendkim-testmsg``, and hand-edited signatures for each rule of RFC 6376 §6.1."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mailstead.dns import Answer, StubResolver
from mailstead.mailauth.dkim import SigningKey, dns_record, generate_key, sign, txt_value
from mailstead.mailauth.dkim_verify import (
    LARGE_BODY,
    DkimResult,
    DkimVerdict,
    parse_key_record,
    verify_dkim,
)
from mailstead.testing.dns import FakeResolver
from mailstead.testing.nsd import nsd_missing, nsd_server

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "testdata" / "dkim" / "dkimpy-1.1.8"

needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="../shared/testdata/dkim/dkimpy-1.1.8 not found next to the repo"
)

# RFC 8463 A.2: the Ed25519 key of the appendix (the public half of rfc8032_7_1.key)
RFC8463_RECORD = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

MESSAGE = (
    b"From: Joe SixPack <joe@example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?  \r\n"
    b"\r\n"
    b"Joe.\r\n"
    b"\r\n"
)


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def record(name: str) -> str:
    return data(name).decode("ascii").strip()


def run(coro):
    return asyncio.run(coro)


def verify(
    resolver: FakeResolver | StubResolver, message: bytes, **kwargs: object
) -> list[DkimVerdict]:
    return run(verify_dkim(resolver, message, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ed25519_seed() -> bytes:
    """A fresh Ed25519 key as dkimpy wants it (base64 of the 32-octet seed)."""
    return base64.b64encode(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )


def ed25519_record(seed_b64: bytes) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return txt_value("ed25519", base64.b64encode(raw).decode("ascii"))


def dkimpy_sign(
    message: bytes,
    private: bytes,
    *,
    domain: bytes = b"example.com",
    selector: bytes = b"test",
    algorithm: bytes = b"rsa-sha256",
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"relaxed"),
    length: bool = False,
    include_headers: list[bytes] | None = None,
    identity: bytes | None = None,
) -> bytes:
    """``message`` with a DKIM-Signature made by dkimpy in front."""
    if algorithm == b"ed25519-sha256":
        pytest.importorskip("nacl", reason="dkimpy signs Ed25519 only with PyNaCl installed")
    signature = dkimpy.sign(
        message,
        selector,
        domain,
        private,
        identity=identity,
        canonicalize=canonicalize,
        signature_algorithm=algorithm,
        include_headers=include_headers,
        length=length,
    )
    return signature + message


def edit_signature(signed: bytes, old: bytes, new: bytes) -> bytes:
    """Change the first DKIM-Signature field (its tags are checked before any crypto)."""
    end = signed.index(b"\r\n\r\n")
    head, rest = signed[:end], signed[end:]
    assert old in head, (old, head)
    return head.replace(old, new, 1) + rest


@pytest.fixture(scope="module")
def rsa_private() -> bytes:
    if not DATA.is_dir():
        pytest.skip("../shared/testdata/dkim/dkimpy-1.1.8 not found next to the repo")
    return data("test.private")


def resolver_for(key_record: str, name: str = "test._domainkey.example.com") -> FakeResolver:
    return FakeResolver({name: {"TXT": [key_record]}})


# -- others' signed messages ----------------------------------------------------------------------
@needs_data
def test_rfc8463_appendix_a_both_signatures_pass():
    """RFC 8463 A.3: the message signed with Ed25519 and with RSA; both verify."""
    resolver = FakeResolver(
        {
            "brisbane._domainkey.football.example.com": {"TXT": [RFC8463_RECORD]},
            "test._domainkey.football.example.com": {"TXT": [record("test.txt")]},
        }
    )
    verdicts = verify(resolver, data("rfc6376.signed.msg"))
    assert [(v.result, v.algorithm, v.selector) for v in verdicts] == [
        (DkimResult.PASS, "ed25519-sha256", "brisbane"),
        (DkimResult.PASS, "rsa-sha256", "test"),
    ]
    first = verdicts[0]
    assert first.domain == "football.example.com"
    assert first.identity == "@football.example.com"
    assert first.header_b == "9/dsDChY"  # RFC 6008: the first 8 characters of b=
    assert first.key_bits == 256
    assert verdicts[1].key_bits == 1024
    # both keys are looked up, each once
    assert sorted(resolver.queries) == [
        "TXT brisbane._domainkey.football.example.com",
        "TXT test._domainkey.football.example.com",
    ]


@needs_data
def test_exim_ed25519_signature_passes():
    resolver = FakeResolver({"sed._domainkey.test.ex": {"TXT": [record("eximtest.dns")]}})
    [verdict] = verify(resolver, data("ed25519test2.msg"))
    assert verdict.result == DkimResult.PASS, verdict.reason
    assert (verdict.domain, verdict.algorithm) == ("test.ex", "ed25519-sha256")


@needs_data
def test_signature_moved_to_a_header_without_t_fails():
    """dkimpy's rfc6376.signed.no_t.msg carries the b= of a signature that had t=."""
    resolver = FakeResolver({"test._domainkey.football.example.com": {"TXT": [record("test.txt")]}})
    [verdict] = verify(resolver, data("rfc6376.signed.no_t.msg"))
    assert verdict.result == DkimResult.FAIL
    assert verdict.reason == "signature did not verify"


@needs_data
def test_real_message_without_its_key_is_permerror():
    """A real signed message (kitterman.com) whose key is not in the fake DNS."""
    [verdict] = verify(FakeResolver({}), data("message.mbox"))
    assert verdict.result == DkimResult.PERMERROR
    assert verdict.domain == "kitterman.com"
    assert "no key" in verdict.reason


@needs_data
@pytest.mark.parametrize("algorithm", [b"rsa-sha256", b"ed25519-sha256"])
@pytest.mark.parametrize(
    "canonicalize",
    [
        (b"simple", b"simple"),
        (b"relaxed", b"relaxed"),
        (b"simple", b"relaxed"),
        (b"relaxed", b"simple"),
    ],
)
def test_dkimpy_signatures_pass(rsa_private, ed25519_seed, algorithm, canonicalize):
    if algorithm == b"ed25519-sha256":
        private, key_record = ed25519_seed, ed25519_record(ed25519_seed)
    else:
        private, key_record = rsa_private, record("test.txt")
    signed = dkimpy_sign(MESSAGE, private, algorithm=algorithm, canonicalize=canonicalize)
    [verdict] = verify(resolver_for(key_record), signed)
    assert verdict.result == DkimResult.PASS, verdict.reason
    assert verdict.algorithm == algorithm.decode()
    assert verdict.domain == "example.com"
    assert verdict.selector == "test"
    assert verdict.testing is False


@needs_data
def test_dkimpy_signature_with_a_2048_bit_pkcs8_key(tmp_path):
    signed = dkimpy_sign(MESSAGE, data("2048_testkey_PKCS8.key"))
    key_record = "v=DKIM1; k=rsa; p=" + record("2048_testkey_PKCS8.key.pub.txt").split("p=")[-1]
    [verdict] = verify(resolver_for(key_record), signed)
    assert verdict.result == DkimResult.PASS, verdict.reason
    assert verdict.key_bits == 2048


@needs_data
def test_pkcs1_public_key_in_the_record(rsa_private):
    """Some records publish the bare RSAPublicKey (PKCS#1) instead of SubjectPublicKeyInfo."""
    signed = dkimpy_sign(MESSAGE, data("1024_testkey.key"))
    [verdict] = verify(resolver_for(record("1024_testkey_wo_markers.pub.rsa.txt")), signed)
    assert verdict.result == DkimResult.PASS, verdict.reason


@needs_data
def test_rsa_sha1_is_verified_and_reported_as_policy(rsa_private):
    """RFC 8301 §3.1: rsa-sha1 must not count as valid; we still check it, and say which."""
    signed = dkimpy_sign(MESSAGE, rsa_private, algorithm=b"rsa-sha1")
    [verdict] = verify(resolver_for(record("test.txt")), signed)
    assert verdict.result == DkimResult.POLICY
    assert verdict.algorithm == "rsa-sha1"
    assert "rsa-sha1" in verdict.reason
    tampered = signed.replace(b"Hi.", b"Hi!")
    [verdict] = verify(resolver_for(record("test.txt")), tampered)
    assert verdict.result == DkimResult.FAIL


def opendkim_testmsg() -> str:
    binary = shutil.which("opendkim-testmsg") or (
        "/usr/sbin/opendkim-testmsg" if Path("/usr/sbin/opendkim-testmsg").exists() else None
    )
    if binary is None:
        pytest.skip("opendkim-testmsg is not installed (Debian opendkim-tools)")
    return binary


@needs_data
@pytest.mark.interop
def test_opendkim_signature(tmp_path):
    """OpenDKIM's library signs (rsa-sha1, relaxed/simple: what opendkim-testmsg does)."""
    binary = opendkim_testmsg()
    source = tmp_path / "message.eml"
    source.write_bytes(MESSAGE)
    with source.open("rb") as stdin:
        done = subprocess.run(
            [binary, "-C", "-d", "example.com", "-s", "test", "-k", str(DATA / "test.private")],
            stdin=stdin, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
    signed = done.stdout
    assert signed.startswith(b"DKIM-Signature:"), done.stderr
    resolver = resolver_for(record("test.txt"))
    [verdict] = verify(resolver, signed)
    assert verdict.algorithm == "rsa-sha1"
    assert verdict.result == DkimResult.POLICY, verdict.reason  # verified, but SHA-1
    [verdict] = verify(resolver, signed.replace(b"hungry yet", b"hungry now"))
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "body hash did not verify")


# -- what breaks a signature ----------------------------------------------------------------------
@needs_data
def test_tampered_body_fails_on_the_body_hash(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [verdict] = verify(resolver_for(record("test.txt")), signed.replace(b"game", b"match"))
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "body hash did not verify")


@needs_data
def test_relaxed_body_survives_whitespace_changes_simple_does_not(rsa_private):
    relaxed = dkimpy_sign(MESSAGE, rsa_private, canonicalize=(b"relaxed", b"relaxed"))
    simple = dkimpy_sign(MESSAGE, rsa_private, canonicalize=(b"simple", b"simple"))
    resolver = resolver_for(record("test.txt"))
    respaced = (b"hungry yet?  \r\n", b"hungry \t yet?\r\n")
    assert verify(resolver, relaxed.replace(*respaced))[0].result == DkimResult.PASS
    assert verify(resolver, simple.replace(*respaced))[0].result == DkimResult.FAIL
    # empty lines added at the end change neither form (§3.4.3, §3.4.4)
    assert verify(resolver, simple + b"\r\n\r\n")[0].result == DkimResult.PASS


@needs_data
def test_tampered_signed_header_fails(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [verdict] = verify(resolver_for(record("test.txt")), signed.replace(b"dinner", b"lunch"))
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "signature did not verify")


@needs_data
def test_unsigned_header_added_keeps_the_pass(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private, include_headers=[b"from", b"subject"])
    received = b"Received: from relay.example.net by mx.example.org; Mon, 1 Jan 2024\r\n"
    [verdict] = verify(resolver_for(record("test.txt")), received + signed)
    assert verdict.result == DkimResult.PASS, verdict.reason


@needs_data
def test_oversigned_header_guards_against_an_added_one(rsa_private):
    """h= names From twice, the message has one: the second is null (§5.4.2), and a From
    added later (above or below) breaks the signature."""
    names = [b"from", b"from", b"subject", b"subject", b"to"]
    signed = dkimpy_sign(MESSAGE, rsa_private, include_headers=names)
    resolver = resolver_for(record("test.txt"))
    assert verify(resolver, signed)[0].result == DkimResult.PASS
    added = signed.replace(b"To: ", b"From: Mallory <m@evil.example>\r\nTo: ", 1)
    assert verify(resolver, added)[0].result == DkimResult.FAIL
    on_top = b"Subject: Pay now\r\n" + signed
    assert verify(resolver, on_top)[0].result == DkimResult.FAIL


@needs_data
def test_replayed_signature_from_another_domain_fails(rsa_private):
    """A signature lifted from example.com's message and put on another message."""
    signed = dkimpy_sign(MESSAGE, rsa_private)
    signature = signed[: len(signed) - len(MESSAGE)]
    other = (
        b"From: Eve <eve@attacker.example>\r\nTo: suzie@shopping.example.net\r\n"
        b"Subject: Is dinner ready?\r\n\r\nClick here.\r\n"
    )
    [verdict] = verify(resolver_for(record("test.txt")), signature + other)
    assert verdict.result == DkimResult.FAIL
    assert verdict.domain == "example.com"


@needs_data
def test_body_length_tag_allows_appended_text(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private, length=True)
    assert re.search(rb"\bl=\d+", signed)
    resolver = resolver_for(record("test.txt"))
    appended = signed + b"--\r\nUnsubscribe: https://lists.example.net/\r\n"
    assert verify(resolver, appended)[0].result == DkimResult.PASS
    # the signed part itself still counts
    changed = appended.replace(b"Joe.", b"Jim.")
    assert verify(resolver, changed)[0].result == DkimResult.FAIL
    # a body shorter than l= cannot be the one signed
    [cut] = verify(resolver, signed.replace(b"Joe.\r\n\r\n", b""))
    assert (cut.result, cut.reason) == (DkimResult.FAIL, "l= is longer than the body")


# -- key records ----------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize(
    ("record_file", "reason"),
    [
        ("badk.txt", "unknown key type"),
        ("badversion.txt", "bad key record"),
        ("test_tlsrpt.txt", "not for email"),
    ],
)
def test_unusable_key_records_are_permerror(rsa_private, record_file, reason):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [verdict] = verify(resolver_for(record(record_file)), signed)
    assert verdict.result == DkimResult.PERMERROR
    assert reason in verdict.reason


@needs_data
def test_revoked_key(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [verdict] = verify(resolver_for("v=DKIM1; k=rsa; p="), signed)
    assert (verdict.result, verdict.reason) == (DkimResult.PERMERROR, "key revoked")


@needs_data
def test_missing_key_and_dns_trouble(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [missing] = verify(FakeResolver({"example.com": {"A": ["192.0.2.1"]}}), signed)
    assert missing.result == DkimResult.PERMERROR
    assert missing.reason == "no key for the selector (NXDOMAIN)"
    no_txt = FakeResolver({"test._domainkey.example.com": {"A": ["192.0.2.1"]}})
    assert verify(no_txt, signed)[0].result == DkimResult.PERMERROR
    broken = FakeResolver({}, temporary={"test._domainkey.example.com"})
    [trouble] = verify(broken, signed)
    assert (trouble.result, trouble.reason) == (DkimResult.TEMPERROR, "key lookup failed")


@needs_data
def test_wrong_key_fails(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [verdict] = verify(resolver_for(record("1024_testkey_wo_markers.pub.txt")), signed)
    assert (verdict.result, verdict.reason) == (DkimResult.FAIL, "signature did not verify")


@needs_data
def test_key_flags_and_restrictions(rsa_private):
    key = record("test.txt").split("p=")[-1]
    signed = dkimpy_sign(MESSAGE, rsa_private)
    [testing] = verify(resolver_for(f"v=DKIM1; t=y; p={key}"), signed)
    assert testing.result == DkimResult.PASS
    assert testing.testing is True
    assert "testing" in testing.reason
    [sha1_only] = verify(resolver_for(f"v=DKIM1; h=sha1; p={key}"), signed)
    assert sha1_only.result == DkimResult.PERMERROR
    [email] = verify(resolver_for(f"v=DKIM1; s=email:tlsrpt; p={key}"), signed)
    assert email.result == DkimResult.PASS
    sub = dkimpy_sign(MESSAGE, rsa_private, identity=b"joe@news.example.com")
    [strict] = verify(resolver_for(f"v=DKIM1; t=s; p={key}"), sub)
    assert strict.result == DkimResult.PERMERROR
    assert verify(resolver_for(f"v=DKIM1; p={key}"), sub)[0].result == DkimResult.PASS
    [ed_key] = verify(resolver_for(RFC8463_RECORD), signed)
    assert ed_key.result == DkimResult.PERMERROR


def test_key_record_table():
    ed = parse_key_record(RFC8463_RECORD.encode())
    assert (ed.key_type, ed.bits, ed.hashes, ed.testing, ed.strict) == (
        "ed25519",
        256,
        None,
        False,
        False,
    )
    folded = parse_key_record(b"v=DKIM1; k=ed25519; t=y:s; h=sha256; p= 11qYAYKxCrfVS/7TyWQHOg7h"
                              b" cvPapiMlrwIaaPcHURo=")  # fmt: skip
    assert (folded.testing, folded.strict, folded.hashes) == (True, True, frozenset({"sha256"}))
    for bad in (b"v=DKIM2; p=abc", b"k=rsa; v=DKIM1; p=abc", b"v=DKIM1", b"p=abc; p=abc",
                b"k=ed25519; p=AAAA", b"k=rsa; p=!!!"):  # fmt: skip
        with pytest.raises(Exception, match="key") as info:
            parse_key_record(bad)
        assert info.value.result == DkimResult.PERMERROR  # type: ignore[attr-defined]


# -- signature tags (RFC 6376 §6.1.1) -------------------------------------------------------------
@needs_data
@pytest.mark.parametrize(
    ("old", "new", "result", "reason"),
    [
        (b"v=1", b"v=2", DkimResult.PERMERROR, "unsupported version"),
        (b"v=1;", b"", DkimResult.PERMERROR, "required tag v= missing"),
        (b"a=rsa-sha256", b"a=rsa-md5", DkimResult.PERMERROR, "unknown algorithm"),
        (b"c=relaxed/relaxed", b"c=loose/relaxed", DkimResult.PERMERROR, "canonicalization"),
        (b"i=@example.com", b"i=joe@example.net", DkimResult.PERMERROR, "not within d="),
        (b"i=@example.com", b"i=joe@badexample.com", DkimResult.PERMERROR, "not within d="),
        (b"h=from", b"h=sender", DkimResult.PERMERROR, "From is not signed"),
        (b"d=example.com", b"d=example.com; d=example.net", DkimResult.NEUTRAL, "twice"),
        (b"v=1;", b"v=1; ;", DkimResult.NEUTRAL, "syntax error"),
        (b"q=dns/txt", b"q=http", DkimResult.PERMERROR, "query method"),
        (b"d=example.com", b"d=example.com; l=ten", DkimResult.PERMERROR, "l= is not"),
        (b"bh=", b"bh=!", DkimResult.PERMERROR, "bh= is not base64"),
    ],
)  # fmt: skip
def test_signature_tag_errors(rsa_private, old, new, result, reason):
    signed = dkimpy_sign(MESSAGE, rsa_private, include_headers=[b"from", b"subject"])
    edited = edit_signature(signed, old, new)
    resolver = resolver_for(record("test.txt"))
    [verdict] = verify(resolver, edited)
    assert verdict.result == result
    assert reason in verdict.reason
    if result == DkimResult.NEUTRAL or "required" in reason:
        assert resolver.queries == []  # judged without a key


def test_identity_in_a_subdomain_and_z_tag_ignored():
    key = SigningKey.from_pem("s1", generate_key("ed25519").private_key_pem)
    resolver = resolver_for(txt_value("ed25519", key.public_key), "s1._domainkey.example.com")
    signed = sign(MESSAGE, "example.com", [key], timestamp=int(time.time())) + MESSAGE
    signed = edit_signature(signed, b"v=1;", b"v=1; z=From:joe@example.com|To:x;")
    [verdict] = verify(resolver, signed)
    assert verdict.result == DkimResult.FAIL  # z= is ignored, but it is inside the signed field
    fresh = sign(MESSAGE, "example.com", [key], timestamp=int(time.time())) + MESSAGE
    assert verify(resolver, fresh)[0].result == DkimResult.PASS


def test_expiry_and_timestamps():
    """x= in the past fails; t= in the future is tolerated within the clock skew."""
    key = SigningKey.from_pem("s1", generate_key("ed25519").private_key_pem)
    resolver = resolver_for(txt_value("ed25519", key.public_key), "s1._domainkey.example.com")
    now = 1_700_000_000
    signed = sign(MESSAGE, "example.com", [key], timestamp=now, expire_after=3600) + MESSAGE
    assert verify(resolver, signed, now=now + 60)[0].result == DkimResult.PASS
    [expired] = verify(resolver, signed, now=now + 7200)
    assert (expired.result, expired.reason) == (DkimResult.FAIL, "signature expired")
    assert verify(resolver, signed, now=now - 300)[0].result == DkimResult.PASS  # skew
    [future] = verify(resolver, signed, now=now - 86400)
    assert future.result == DkimResult.PERMERROR
    assert "future" in future.reason


# -- several signatures ---------------------------------------------------------------------------
@needs_data
def test_multiple_signatures_with_mixed_results(rsa_private, ed25519_seed):
    """Three signers on one message: a pass, a revoked key, a missing key; then a fourth past
    the limit is not checked."""
    message = MESSAGE
    message = dkimpy_sign(message, rsa_private, domain=b"example.com")
    message = dkimpy_sign(message, ed25519_seed, algorithm=b"ed25519-sha256", domain=b"ed.example")
    message = dkimpy_sign(message, rsa_private, domain=b"gone.example")
    resolver = FakeResolver(
        {
            "test._domainkey.example.com": {"TXT": [record("test.txt")]},
            "test._domainkey.ed.example": {"TXT": ["v=DKIM1; k=ed25519; p="]},
        }
    )
    verdicts = verify(resolver, message)
    # top first: the last signer's field is on top
    assert [(v.domain, v.result) for v in verdicts] == [
        ("gone.example", DkimResult.PERMERROR),
        ("ed.example", DkimResult.PERMERROR),
        ("example.com", DkimResult.PASS),
    ]
    assert verdicts[1].reason == "key revoked"
    assert len({v.header_b for v in verdicts}) == 3
    limited = verify(resolver, message, max_signatures=2)
    assert limited[2].result == DkimResult.POLICY
    assert "more than 2" in limited[2].reason
    assert len(resolver.queries) == 3 + 2  # the third was not looked up the second time


@needs_data
def test_identical_signatures_get_the_whole_b(rsa_private):
    signed = dkimpy_sign(MESSAGE, rsa_private)
    signature = signed[: len(signed) - len(MESSAGE)]
    verdicts = verify(resolver_for(record("test.txt")), signature + signed)
    assert [v.result for v in verdicts] == [DkimResult.PASS, DkimResult.PASS]
    b_value = re.sub(rb"\s", b"", re.search(rb"\bb=([^;]+)", signature).group(1)).decode()
    assert verdicts[0].header_b == verdicts[1].header_b == b_value


def test_unsigned_message_has_no_verdicts():
    assert verify(FakeResolver({}), MESSAGE) == []
    assert verify(FakeResolver({}), b"") == []


def test_bare_lf_message_verifies():
    key = SigningKey.from_pem("s1", generate_key("rsa").private_key_pem)
    resolver = resolver_for(txt_value("rsa", key.public_key), "s1._domainkey.example.com")
    signed = sign(MESSAGE, "example.com", [key], timestamp=int(time.time())) + MESSAGE
    assert verify(resolver, signed.replace(b"\r\n", b"\n"))[0].result == DkimResult.PASS


# -- the event loop -------------------------------------------------------------------------------
class GatedResolver(FakeResolver):
    """Answers no TXT query until ``expected`` of them are waiting: a verifier that looks keys
    up one after another never gets an answer."""

    def __init__(self, expected: int, records: dict) -> None:
        super().__init__(records)
        self.expected = expected
        self.waiting = 0
        self.all_asked = asyncio.Event()

    async def txt(self, name: str) -> Answer[bytes]:
        self.waiting += 1
        if self.waiting >= self.expected:
            self.all_asked.set()
        await asyncio.wait_for(self.all_asked.wait(), timeout=10)
        return await super().txt(name)


@needs_data
def test_keys_are_fetched_concurrently(rsa_private):
    message = dkimpy_sign(MESSAGE, rsa_private, domain=b"one.example")
    message = dkimpy_sign(message, rsa_private, domain=b"two.example")
    resolver = GatedResolver(
        2,
        {
            "test._domainkey.one.example": {"TXT": [record("test.txt")]},
            "test._domainkey.two.example": {"TXT": [record("test.txt")]},
        },
    )
    verdicts = verify(resolver, message)
    assert [v.result for v in verdicts] == [DkimResult.PASS, DkimResult.PASS]


@needs_data
def test_large_body_is_hashed_off_the_event_loop(rsa_private):
    """A 4 MB body: after the key has come back, the loop keeps ticking while the body is
    canonicalized and hashed and the signature checked (a verifier doing that on the loop
    would let the ticker run once at most)."""
    body = b"".join(b"line %d with  some   spaces \t \r\n" % i for i in range(130_000))
    message = MESSAGE + body
    assert len(body) > 60 * LARGE_BODY
    signed = dkimpy_sign(message, rsa_private, canonicalize=(b"relaxed", b"relaxed"))
    ticks = 0
    ticks_at_answer: list[int] = []

    class CountingResolver(FakeResolver):
        async def txt(self, name: str) -> Answer[bytes]:
            ticks_at_answer.append(ticks)
            return await super().txt(name)

    resolver = CountingResolver({"test._domainkey.example.com": {"TXT": [record("test.txt")]}})

    async def main() -> list[DkimVerdict]:
        nonlocal ticks
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        verdicts = await verify_dkim(resolver, signed)
        done = True
        await task
        return verdicts

    verdicts = run(main())
    assert verdicts[0].result == DkimResult.PASS, verdicts[0].reason
    assert ticks - ticks_at_answer[0] > 10


# -- over the wire --------------------------------------------------------------------------------
@pytest.mark.interop
def test_keys_from_a_real_nameserver(tmp_path):
    """A private NSD serves the key records as zone files write them: the 2048-bit RSA record
    split into several character-strings (RFC 6376 §3.6.2.2 joins them), an Ed25519 record,
    a revoked one, and a zone that answers SERVFAIL (temperror)."""
    reason = nsd_missing()
    if reason:
        pytest.skip(reason)
    rsa_key = SigningKey.from_pem("rsa2048", generate_key("rsa").private_key_pem)
    ed_key = SigningKey.from_pem("ed", generate_key("ed25519").private_key_pem)
    rsa_record = dns_record("example.test", "rsa2048", "rsa", rsa_key.public_key)
    assert len(rsa_record.strings) > 1
    zone = "\n".join(
        [
            "$TTL 300",
            "@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300",
            "@ IN NS ns.example.test.",
            "ns IN A 127.0.0.1",
            rsa_record.zone_text(),
            dns_record("example.test", "ed", "ed25519", ed_key.public_key).zone_text(),
            'gone._domainkey IN TXT "v=DKIM1; k=rsa; p="',
        ]
    )
    now = int(time.time())
    signed = sign(MESSAGE, "example.test", [rsa_key, ed_key], timestamp=now) + MESSAGE
    gone = SigningKey.from_pem("gone", rsa_key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    signed = sign(signed, "example.test", [gone], timestamp=now) + signed
    signed = sign(signed, "broken.test", [ed_key], timestamp=now) + signed
    with nsd_server({"example.test": zone + "\n", "broken.test": None}, tmp_path / "nsd") as ns:
        resolver = StubResolver([ns.nameserver], timeout=2, attempts=1)
        verdicts = verify(resolver, signed)
    assert [(v.domain, v.selector, v.result) for v in verdicts] == [
        ("broken.test", "ed", DkimResult.TEMPERROR),
        ("example.test", "gone", DkimResult.PERMERROR),
        ("example.test", "rsa2048", DkimResult.PASS),
        ("example.test", "ed", DkimResult.PASS),
    ]
    assert verdicts[2].key_bits == 2048
