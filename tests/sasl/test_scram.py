"""SCRAM-SHA-256: RFC 7677's example byte for byte, key derivation, storage encoding, syntax."""

from __future__ import annotations

import base64

import pytest

from mailstead.sasl import (
    NeedScram,
    SaslClient,
    SaslClientError,
    SaslServer,
    ScramCredentials,
    Success,
    scram,
)

# RFC 7677 §3
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_example_server_side():
    server = SaslServer("SCRAM-SHA-256", server_nonce=RFC_SERVER_NONCE)
    assert server.start(RFC_CLIENT_FIRST) == NeedScram("user", "")
    key = scram.derive_keys("pencil", RFC_SALT, 4096, label="password")
    step = server.scram_credentials(ScramCredentials(RFC_SALT, 4096, [key]), account="acct")
    assert step.data == RFC_SERVER_FIRST
    assert server.respond(RFC_CLIENT_FINAL) == Success(
        "user", "user", "acct", RFC_SERVER_FINAL, "password"
    )
    assert server.done


def test_rfc7677_example_client_side():
    client = SaslClient(
        "SCRAM-SHA-256", authcid="user", password="pencil", client_nonce=RFC_CLIENT_NONCE
    )
    assert client.initial_response() == RFC_CLIENT_FIRST
    assert client.respond(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert not client.server_verified
    assert client.respond(RFC_SERVER_FINAL) == b""
    assert client.server_verified


def test_client_refuses_a_wrong_server_signature():
    client = SaslClient(
        "SCRAM-SHA-256", authcid="user", password="pencil", client_nonce=RFC_CLIENT_NONCE
    )
    client.initial_response()
    client.respond(RFC_SERVER_FIRST)
    wrong = b"v=" + base64.b64encode(bytes(32))
    with pytest.raises(SaslClientError, match="signature"):
        client.verify_final(wrong)
    with pytest.raises(SaslClientError, match="invalid-proof"):
        client.verify_final(b"e=invalid-proof")
    assert not client.server_verified


@pytest.mark.parametrize(
    ("server_first", "error"),
    [
        (b"r=someoneelse123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),  # not extended
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000", "iteration"),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999", "iteration"),
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "m="),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,s=***,i=4096", "base64"),
        (b"r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", "expected"),
    ],
)
def test_client_refuses_bad_server_first_messages(server_first, error):
    client = SaslClient(
        "SCRAM-SHA-256", authcid="user", password="pencil", client_nonce=RFC_CLIENT_NONCE
    )
    client.initial_response()
    with pytest.raises(SaslClientError, match=error):
        client.respond(server_first)


# Reference keys made by GNU SASL: `gsasl --mkpasswd -m SCRAM-SHA-256 --iteration-count 4096
# --salt W22ZaJ0SNY7soEsUEjb6gQ== -p PASSWORD` (full SASLprep through libidn).
GSASL_KEYS = [
    ("pencil", "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
     "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="),
    ("Ⅸ pä ss", "ysP/bDV9s6011Jafka73C3587ih3RadItNQmjBYX0Yw=",
     "koABJEb9/kVgE9uzucq7yBRGcYTcIPWkM7ItNjE7rAg="),
]  # fmt: skip


@pytest.mark.parametrize(("password", "stored", "server"), GSASL_KEYS)
def test_derived_keys_match_gnu_sasl(password, stored, server):
    key = scram.derive_keys(password, RFC_SALT, 4096)
    assert scram.b64(key.stored_key) == stored
    assert scram.b64(key.server_key) == server


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("pencil", "pencil"),
        ("I\u00adX", "IX"),  # RFC 4013 §3 example: SOFT HYPHEN mapped to nothing
        ("user\u00a0pw", "user pw"),  # non-ASCII space mapped to SPACE
        ("\u2168", "IX"),  # NFKC: ROMAN NUMERAL NINE
        ("\u00aa", "a"),  # NFKC: FEMININE ORDINAL INDICATOR
        ("e\u0301", "é"),  # NFKC composes
        ("tab\there", "tab\there"),  # ASCII is never changed (full SASLprep would refuse)
    ],
)
def test_saslprep_mapping_and_nfkc(password, prepared):
    assert scram.saslprep(password) == prepared


def test_storage_encoding_round_trip():
    secret = scram.new_secret("pencil", salt=RFC_SALT, iterations=4096)
    text = scram.encode_key(secret)
    assert text == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
    )
    assert scram.decode_key(text, label="main") == scram.ScramSecret(
        RFC_SALT, 4096, scram.ScramKey(secret.key.stored_key, secret.key.server_key, "main")
    )


def test_new_secrets_use_a_fresh_salt_and_the_default_iterations():
    a, b = scram.new_secret("same"), scram.new_secret("same")
    assert a.salt != b.salt
    assert len(a.salt) == scram.SALT_LENGTH
    assert a.iterations == scram.DEFAULT_ITERATIONS >= 4096


@pytest.mark.parametrize(
    "text",
    [
        "",
        "md5$abc",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",  # short keys
        "SCRAM-SHA-256$100:W22ZaJ0SNY7soEsUEjb6gQ==$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ$" + "A" * 43 + "=:" + "A" * 43 + "=",
    ],
)
def test_malformed_stored_secrets_are_refused(text):
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the fault
        scram.decode_key(text)


@pytest.mark.parametrize("iterations", [1, 4095, scram.MAX_ITERATIONS + 1])
def test_iteration_bounds(iterations):
    with pytest.raises(ValueError, match="iteration"):
        scram.derive_keys("pw", RFC_SALT, iterations)


def test_credentials_keep_only_secrets_sharing_the_first_salt():
    main = scram.new_secret("a", salt=RFC_SALT, iterations=4096, label="password")
    app = scram.new_secret("b", salt=RFC_SALT, iterations=4096, label="app")
    stray = scram.new_secret("c", iterations=4096, label="stray")
    creds = scram.credentials([main, app, stray])
    assert creds == ScramCredentials(RFC_SALT, 4096, [main.key, app.key])
    assert scram.credentials([]) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("n,,n=user,r=abc", ("n", None, "", "user", "abc", "n,,")),
        ("y,,n=user,r=abc", ("y", None, "", "user", "abc", "y,,")),
        ("p=tls-exporter,,n=u,r=x", ("p", "tls-exporter", "", "u", "x", "p=tls-exporter,,")),
        ("n,a=user,n=user,r=abc", ("n", None, "user", "user", "abc", "n,a=user,")),
        ("n,,n=a=2Cb=3Dc,r=abc", ("n", None, "", "a,b=c", "abc", "n,,")),
        ("n,,n=user,r=abc,x=ext", ("n", None, "", "user", "abc", "n,,")),  # extension ignored
    ],
)
def test_client_first_parses(message, expected):
    first = scram.parse_client_first(message)
    got = (first.cb_flag, first.cb_name, first.authzid, first.username, first.nonce)
    assert (*got, first.gs2_header) == expected
    assert first.gs2_header + first.bare == message


@pytest.mark.parametrize(
    "message",
    [
        "n,n=user,r=abc",  # no authzid field
        "x,,n=user,r=abc",  # bad flag
        "p=,,n=user,r=abc",  # empty cb name
        "n,b=user,n=user,r=abc",  # authzid without a=
        "n,,m=ext,n=user,r=abc",  # reserved-mext
        "n,,r=abc,n=user",  # order
        "n,,n=user",  # no nonce
        "n,,n=,r=abc",  # empty username
        "n,,n=us=er,r=abc",  # "=" not followed by 2C/3D
        "n,,n=user,r=a b\x7f",  # nonce not printable
        "n,,n=user,r=",  # empty nonce
        "n,,n=user,r=abc,",  # empty attribute
        "n,,n=user,r=abc,1=x",  # attribute name not a letter
    ],
)
def test_client_first_syntax_errors(message):
    with pytest.raises(scram.ScramSyntaxError):
        scram.parse_client_first(message)


def test_saslname_escaping_round_trips():
    for name in ("plain", "a,b", "x=y", "=2C,=", "jürgen@bücher.example"):
        assert scram.decode_saslname(scram.encode_saslname(name)) == name
