"""The SASL server: what is advertised, PLAIN/LOGIN tables, SCRAM outcomes, limits, turn order."""

from __future__ import annotations

import base64

import pytest

from mailstead.sasl import (
    MAX_RESPONSE,
    Aborted,
    Challenge,
    Failure,
    Malformed,
    NeedPassword,
    NeedScram,
    SaslClient,
    SaslServer,
    SaslStateError,
    ScramCredentials,
    Success,
    UnknownMechanism,
    decode_response,
    mechanisms,
    scram,
)

SALT = b"0123456789abcdef"
ITERATIONS = 4096
MAIN = scram.derive_keys("main-pw", SALT, ITERATIONS, label="password")
APP1 = scram.derive_keys("aaaa-bbbb-cccc-dddd", SALT, ITERATIONS, label="app-password:phone")
APP2 = scram.derive_keys("eeee-ffff-gggg-hhhh", SALT, ITERATIONS, label="app-password:laptop")
CREDS = ScramCredentials(SALT, ITERATIONS, [MAIN, APP1, APP2])
INVALID = Failure("invalid credentials", False)


def exchange(client, server, creds=CREDS, *, account="acct", use_initial=True):
    """Run ``client`` against ``server`` the way a shell would; returns the final step."""
    initial = client.initial_response() if use_initial else None
    step = server.start(initial)
    while True:
        if isinstance(step, NeedScram):
            step = server.scram_credentials(creds, account=account)
        elif isinstance(step, NeedPassword):
            step = server.password_checked(account if step.password == "main-pw" else None)
        elif isinstance(step, Challenge):
            step = server.respond(client.respond(step.data))
        else:
            if isinstance(step, Success) and step.final_data is not None:
                client.verify_final(step.final_data)
            return step


# -- what to advertise --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tls", "allow_plaintext", "channel_binding", "expected"),
    [
        (False, False, False, []),
        (False, True, False, ["SCRAM-SHA-256", "PLAIN", "LOGIN"]),
        (True, False, False, ["SCRAM-SHA-256", "PLAIN", "LOGIN"]),
        (True, False, True, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]),
        (True, True, True, ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]),
    ],
)
def test_advertised_mechanisms(tls, allow_plaintext, channel_binding, expected):
    advertised = mechanisms(
        tls=tls, allow_plaintext=allow_plaintext, channel_binding=channel_binding
    )
    assert advertised == expected


def test_unknown_mechanisms_and_plus_without_binding_are_refused():
    for name in ("CRAM-MD5", "GSSAPI", "XOAUTH2", ""):
        with pytest.raises(UnknownMechanism):
            SaslServer(name)
    with pytest.raises(UnknownMechanism):
        SaslServer("SCRAM-SHA-256-PLUS")
    with pytest.raises(UnknownMechanism):
        SaslServer("SCRAM-SHA-256-PLUS", channel_bindings={"tls-exporter": b""})
    with pytest.raises(ValueError, match="tls-unique"):
        SaslServer("SCRAM-SHA-256", channel_bindings={"tls-unique": b"x"})
    assert SaslServer("plain").mechanism == "PLAIN"  # IMAP auth-type is case-insensitive


# -- decode_response ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"*", Aborted()),
        (b"*\r\n", Aborted()),
        (b"=", b""),
        (b"", b""),
        (b"\r\n", b""),
        (b"AHVzZXIAcGVuY2ls\r\n", b"\0user\0pencil"),
        (b"dXNlcg==", b"user"),
        (b"dXNlcg", Malformed("invalid base64")),  # padding missing
        (b"dXN lcg==", Malformed("invalid base64")),
        (b"dXNlcg==\x00", Malformed("invalid base64")),
        (b"****", Malformed("invalid base64")),
    ],
)
def test_decode_response(line, expected):
    assert decode_response(line) == expected


# -- PLAIN --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\0alice@example.org\0main-pw", NeedPassword("alice@example.org", "", "main-pw")),
        (b"alice@example.org\0alice@example.org\0pw",
         NeedPassword("alice@example.org", "alice@example.org", "pw")),
        (b"Alice@Example.org\0alice@example.org\0pw",
         NeedPassword("alice@example.org", "Alice@Example.org", "pw")),
        ("\0jürgen@bücher.example\0pässwörd".encode(),
         NeedPassword("jürgen@bücher.example", "", "pässwörd")),
        (b"bob@example.org\0alice@example.org\0pw", Failure("authorization identity not allowed",
                                                          False)),
        (b"\0alice\0", Failure("PLAIN message with an empty authcid or password", True)),
        (b"\0\0pw", Failure("PLAIN message with an empty authcid or password", True)),
        (b"alice\0pw", Failure("PLAIN message without exactly two NULs", True)),
        (b"\0alice\0pw\0x", Failure("PLAIN message without exactly two NULs", True)),
        (b"", Failure("PLAIN message without exactly two NULs", True)),
        (b"\0alice\0\xff\xfe", Failure("response is not UTF-8", True)),
        (b"\0" + b"a" * 256 + b"\0pw", Failure("PLAIN field longer than 255 bytes", True)),
    ],
)  # fmt: skip
def test_plain_messages(message, expected):
    assert SaslServer("PLAIN").start(message) == expected


def test_plain_success_and_wrong_password():
    server = SaslServer("PLAIN")
    assert server.start(None) == Challenge(b"")  # no initial response: empty challenge
    assert server.respond(b"\0alice\0main-pw") == NeedPassword("alice", "", "main-pw")
    assert server.password_checked("acct") == Success("alice", "alice", "acct", None, None)
    server = SaslServer("PLAIN")
    server.start(b"\0alice\0wrong")
    assert server.password_checked(None) == INVALID
    assert server.done


def test_plain_through_the_client():
    client = SaslClient("PLAIN", authcid="alice", password="main-pw")
    assert exchange(client, SaslServer("PLAIN")) == Success("alice", "alice", "acct", None, None)
    client = SaslClient("PLAIN", authcid="alice", password="main-pw")
    assert exchange(client, SaslServer("PLAIN"), use_initial=False).account == "acct"


# -- LOGIN --------------------------------------------------------------------------------------
def test_login_challenges_and_responses():
    server = SaslServer("LOGIN")
    assert server.start(None) == Challenge(b"Username:")
    assert server.respond(b"alice") == Challenge(b"Password:")
    assert server.respond(b"main-pw") == NeedPassword("alice", "", "main-pw")
    assert server.password_checked("acct") == Success("alice", "alice", "acct", None, None)


def test_login_with_the_username_as_initial_response():
    server = SaslServer("LOGIN")
    assert server.start(b"alice") == Challenge(b"Password:")
    assert server.respond(b"x") == NeedPassword("alice", "", "x")
    assert server.password_checked(None) == INVALID


@pytest.mark.parametrize(
    ("username", "password", "expected"),
    [
        (b"", None, Failure("LOGIN with an empty username", True)),
        (b"alice", b"", Failure("LOGIN with an empty password", True)),
        (b"\xc3", None, Failure("response is not UTF-8", True)),
        (b"alice", b"\xff", Failure("response is not UTF-8", True)),
    ],
)
def test_login_errors(username, password, expected):
    server = SaslServer("LOGIN")
    server.start(None)
    step = server.respond(username)
    if password is not None:
        step = server.respond(password)
    assert step == expected
    assert server.done


def test_login_through_the_client():
    client = SaslClient("LOGIN", authcid="alice", password="main-pw")
    assert exchange(client, SaslServer("LOGIN")).account == "acct"


# -- SCRAM --------------------------------------------------------------------------------------
def scram_client(password, **kwargs):
    return SaslClient(kwargs.pop("mechanism", "SCRAM-SHA-256"), authcid="alice",
                      password=password, **kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("password", "label"),
    [
        ("main-pw", "password"),
        ("aaaa-bbbb-cccc-dddd", "app-password:phone"),
        ("eeee-ffff-gggg-hhhh", "app-password:laptop"),
    ],
)
def test_scram_accepts_each_of_the_accounts_keys(password, label):
    client = scram_client(password)
    step = exchange(client, SaslServer("SCRAM-SHA-256"))
    assert isinstance(step, Success)
    assert (step.authcid, step.authzid, step.account, step.credential) == (
        "alice", "alice", "acct", label
    )  # fmt: skip
    assert client.server_verified  # signed with the matching key's ServerKey


def test_scram_wrong_password():
    assert exchange(scram_client("nope"), SaslServer("SCRAM-SHA-256")) == INVALID


def test_scram_unknown_user_is_indistinguishable_from_a_wrong_password():
    def server_first(name, creds):
        server = SaslServer("SCRAM-SHA-256")
        server.start(f"n,,n={name},r=abc".encode())
        return server.scram_credentials(creds).data.decode()

    real = scram.parse_server_first(server_first("alice", ScramCredentials(
        SALT, scram.DEFAULT_ITERATIONS, [MAIN])))  # fmt: skip
    fake = scram.parse_server_first(server_first("ghost", None))
    assert len(fake.salt) == len(real.salt)
    assert fake.iterations == real.iterations
    # the same unknown name always gets the same salt (a random one would give it away)
    assert scram.parse_server_first(server_first("ghost", None)).salt == fake.salt
    assert scram.parse_server_first(server_first("ghost2", None)).salt != fake.salt
    # and the exchange ends exactly as a wrong password does
    step = exchange(scram_client("main-pw"), SaslServer("SCRAM-SHA-256"), None)
    assert step == INVALID
    empty = ScramCredentials(SALT, ITERATIONS, [])  # an account without any SCRAM secret
    assert exchange(scram_client("main-pw"), SaslServer("SCRAM-SHA-256"), empty) == INVALID


def test_scram_tampered_proof():
    client = scram_client("main-pw")
    server = SaslServer("SCRAM-SHA-256")
    server.start(client.initial_response())
    final = client.respond(server.scram_credentials(CREDS).data)
    head, proof = final.rsplit(b",p=", 1)
    raw = bytearray(base64.b64decode(proof))
    raw[0] ^= 1
    assert server.respond(head + b",p=" + base64.b64encode(bytes(raw))) == INVALID


def test_scram_tampered_nonce_and_auth_message():
    client = scram_client("main-pw")
    server = SaslServer("SCRAM-SHA-256")
    server.start(client.initial_response())
    final = client.respond(server.scram_credentials(CREDS).data)
    tampered = final.replace(b"r=", b"r=X", 1)
    assert server.respond(tampered) == Failure("client-final-message with another nonce", True)


def test_scram_authzid_must_be_the_user():
    client = scram_client("main-pw", authzid="alice")
    assert exchange(client, SaslServer("SCRAM-SHA-256")).authzid == "alice"
    server = SaslServer("SCRAM-SHA-256")
    assert server.start(b"n,a=bob,n=alice,r=abc") == Failure(
        "authorization identity not allowed", False
    )


def test_scram_usernames_with_escapes():
    server = SaslServer("SCRAM-SHA-256")
    assert server.start(b"n,,n=a=2Cb=3Dc@example.org,r=abc") == NeedScram("a,b=c@example.org", "")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"n,,m=x,n=alice,r=abc", "invalid client-first-message: unsupported mandatory extension"),
        (b"garbage", "invalid client-first-message: no GS2 header"),
        (b"n,,n=alice", "invalid client-first-message: expected n=username,r=nonce"),
        (b"n,,n=al\xffice,r=abc", "response is not UTF-8"),
    ],
)
def test_scram_malformed_client_first(message, reason):
    step = SaslServer("SCRAM-SHA-256").start(message)
    assert isinstance(step, Failure)
    assert step.malformed
    assert step.reason.startswith(reason)


@pytest.mark.parametrize(
    "suffix",
    [b"c=biws,r={nonce}", b"c=biws,r={nonce},p=AAAA", b"r={nonce},c=biws,p=" + b"A" * 43 + b"=",
     b"c=***,r={nonce},p=" + b"A" * 43 + b"="],
)  # fmt: skip
def test_scram_malformed_client_final(suffix):
    server = SaslServer("SCRAM-SHA-256", server_nonce="srv")
    server.start(b"n,,n=alice,r=cli")
    server.scram_credentials(CREDS)
    step = server.respond(suffix.replace(b"{nonce}", b"clisrv"))
    assert isinstance(step, Failure)
    assert step.malformed


# -- channel binding (RFC 5802 §6, RFC 9266, RFC 5929) ------------------------------------------
CB_CERT = b"\x11" * 32  # stand-ins for what the shell computes
CB_EXPORTER = b"\x22" * 32


def test_plus_with_each_binding_type():
    for cb_type, data in (("tls-server-end-point", CB_CERT), ("tls-exporter", CB_EXPORTER)):
        server = SaslServer("SCRAM-SHA-256-PLUS", channel_bindings={cb_type: data})
        client = scram_client("main-pw", mechanism="SCRAM-SHA-256-PLUS",
                              channel_binding=(cb_type, data))  # fmt: skip
        assert isinstance(exchange(client, server), Success), cb_type
        assert client.server_verified


def test_plus_with_other_binding_data_fails():
    """A man-in-the-middle terminates TLS itself: the client's binding differs from ours."""
    server = SaslServer("SCRAM-SHA-256-PLUS", channel_bindings={"tls-server-end-point": CB_CERT})
    client = scram_client("main-pw", mechanism="SCRAM-SHA-256-PLUS",
                          channel_binding=("tls-server-end-point", b"\x99" * 32))  # fmt: skip
    assert exchange(client, server) == Failure("channel-bindings-dont-match", False)


def test_plus_with_a_binding_type_we_lack_fails():
    server = SaslServer("SCRAM-SHA-256-PLUS", channel_bindings={"tls-server-end-point": CB_CERT})
    client = scram_client("main-pw", mechanism="SCRAM-SHA-256-PLUS",
                          channel_binding=("tls-exporter", CB_EXPORTER))  # fmt: skip
    assert exchange(client, server) == Failure("unsupported-channel-binding-type tls-exporter",
                                               False)  # fmt: skip


def test_plus_without_channel_binding_flag_is_malformed():
    server = SaslServer("SCRAM-SHA-256-PLUS", channel_bindings={"tls-exporter": CB_EXPORTER})
    assert server.start(b"n,,n=alice,r=abc") == Failure(
        "SCRAM-SHA-256-PLUS without channel binding", True
    )


def test_downgrade_from_plus_is_detected():
    """The client can bind ("y") but did not see -PLUS: someone stripped it from our list."""
    bindings = {"tls-server-end-point": CB_CERT}
    client = scram_client("main-pw", channel_binding=("tls-server-end-point", CB_CERT))
    step = exchange(client, SaslServer("SCRAM-SHA-256", channel_bindings=bindings))
    assert step == Failure("server-does-support-channel-binding (downgrade)", False)
    # without TLS bindings on our side, "y" is an honest answer
    client = scram_client("main-pw", channel_binding=("tls-server-end-point", CB_CERT))
    assert isinstance(exchange(client, SaslServer("SCRAM-SHA-256")), Success)


def test_binding_with_the_non_plus_mechanism_is_malformed():
    server = SaslServer("SCRAM-SHA-256", channel_bindings={"tls-exporter": CB_EXPORTER})
    assert server.start(b"p=tls-exporter,,n=alice,r=abc") == Failure(
        "channel binding with SCRAM-SHA-256", True
    )


def test_gs2_header_must_be_echoed_in_c():
    """c= must repeat the GS2 header: a client that said "y" cannot claim "n" afterwards."""
    server = SaslServer("SCRAM-SHA-256", server_nonce="srv")
    server.start(b"y,,n=alice,r=cli")
    server.scram_credentials(CREDS)
    step = server.respond(b"c=biws,r=clisrv,p=" + base64.b64encode(bytes(32)))
    assert step == Failure("channel-bindings-dont-match", False)


# -- limits, abort, turn order ------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
def test_oversize_response_fails_as_malformed(mechanism):
    server = SaslServer(mechanism)
    server.start(None)
    step = server.respond(b"\0" + b"x" * MAX_RESPONSE)
    assert step == Failure(f"response longer than {MAX_RESPONSE} bytes", True)
    assert server.done
    assert SaslServer(mechanism).start(b"y" * (MAX_RESPONSE + 1)).malformed


def test_a_response_of_exactly_the_limit_is_read():
    step = SaslServer("LOGIN").start(b"u" * MAX_RESPONSE)
    assert step == Challenge(b"Password:")


def test_aborted_exchange():
    server = SaslServer("SCRAM-SHA-256")
    server.start(None)
    assert decode_response(b"*\r\n") == Aborted()
    assert server.abort() == Failure("aborted by the client", False)
    assert server.done
    with pytest.raises(SaslStateError):
        server.respond(b"n,,n=alice,r=abc")


def test_calls_out_of_turn_raise():
    server = SaslServer("PLAIN")
    with pytest.raises(SaslStateError, match="respond"):
        server.respond(b"x")
    server.start(b"\0alice\0pw")
    with pytest.raises(SaslStateError):
        server.respond(b"\0alice\0pw")
    with pytest.raises(SaslStateError):
        server.scram_credentials(CREDS)
    server.password_checked("acct")
    with pytest.raises(SaslStateError):
        server.password_checked("acct")
    server = SaslServer("SCRAM-SHA-256")
    server.start(b"n,,n=alice,r=abc")
    with pytest.raises(SaslStateError):
        server.password_checked("acct")
