"""AUTH (RFC 5034): the SASL exchange over POP3, its failures and their exact replies."""

from __future__ import annotations

import base64

import pytest

from mailstead.sasl import SaslClient

from .harness import ALICE, ALICE_PW

AUTH_FAILED = b"-ERR [AUTH] Authentication failed\r\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PLAIN = b64(f"\0{ALICE}\0{ALICE_PW}".encode())


def test_plain_with_initial_response(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line(f"AUTH PLAIN {PLAIN}") == (
            b"+OK Logged in, 0 messages (0 octets)\r\n"
        )
        assert conn.session.account is not None

    run(scenario)


def test_plain_without_initial_response(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH plain") == b"+ \r\n"
        assert (await conn.line(PLAIN)).startswith(b"+OK Logged in")

    run(scenario)


def test_plain_with_an_empty_initial_response(run):
    async def scenario(h):
        conn = h.connect()
        # RFC 5034 §4: "=" is an empty initial response; PLAIN needs its message, so it fails
        assert await conn.line("AUTH PLAIN =") == b"-ERR Invalid authentication data\r\n"

    run(scenario)


def test_login_mechanism(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH LOGIN") == f"+ {b64(b'Username:')}\r\n".encode()
        assert await conn.line(b64(ALICE.encode())) == f"+ {b64(b'Password:')}\r\n".encode()
        assert (await conn.line(b64(ALICE_PW.encode()))).startswith(b"+OK Logged in")

    run(scenario)


@pytest.mark.parametrize(
    "credentials",
    [f"\0{ALICE}\0wrong", "\0nobody@example.org\0wrong", "\0nobody@nowhere.example\0x"],
)
def test_wrong_password_and_unknown_user_get_the_same_reply(run, credentials):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line(f"AUTH PLAIN {b64(credentials.encode())}") == AUTH_FAILED
        assert conn.session.stats.login_failures == 1
        assert conn.core.errors == 1

    run(scenario)


def test_other_authorization_identity_is_refused(run):
    async def scenario(h):
        conn = h.connect()
        message = f"bob@example.org\0{ALICE}\0{ALICE_PW}".encode()
        assert await conn.line(f"AUTH PLAIN {b64(message)}") == AUTH_FAILED

    run(scenario)


def test_malformed_base64(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH PLAIN not-base64!") == b"-ERR Invalid base64 data\r\n"
        assert await conn.line("AUTH PLAIN") == b"+ \r\n"
        assert await conn.line("%%%") == b"-ERR Invalid base64 data\r\n"
        assert await conn.line("STAT") == b"-ERR Log in first\r\n"  # back to commands
        assert conn.core.errors == 3

    run(scenario)


def test_malformed_plain_message(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line(f"AUTH PLAIN {b64(b'no nul at all')}") == (
            b"-ERR Invalid authentication data\r\n"
        )

    run(scenario)


def test_aborted_exchange(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH LOGIN") == f"+ {b64(b'Username:')}\r\n".encode()
        assert await conn.line(b64(ALICE.encode())) == f"+ {b64(b'Password:')}\r\n".encode()
        assert await conn.line("*") == b"-ERR Authentication cancelled\r\n"  # RFC 5034 §4
        assert conn.session.account is None
        assert (await conn.login()).startswith(b"+OK Logged in")  # the session goes on

    run(scenario)


def test_aborted_in_the_initial_response(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH PLAIN *") == b"-ERR Authentication cancelled\r\n"

    run(scenario)


def test_response_line_too_long(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH PLAIN") == b"+ \r\n"
        assert await conn.line("A" * 20000) == b"-ERR Invalid authentication data\r\n"
        assert await conn.line("NOOP") == b"-ERR Log in first\r\n"

    run(scenario)


def test_mechanisms_and_refusals(run):
    async def scenario(h):
        conn = h.connect()
        assert await conn.line("AUTH") == (
            b"+OK Mechanisms follow\r\nSCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n.\r\n"
        )
        assert await conn.line("AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism\r\n"
        assert await conn.line("AUTH PLAIN a b") == b"-ERR Too many arguments\r\n"
        plaintext = h.connect(tls=False)
        assert await plaintext.line("AUTH") == b"+OK Mechanisms follow\r\n.\r\n"
        assert await plaintext.line(f"AUTH PLAIN {PLAIN}") == (
            b"-ERR [AUTH] Plaintext authentication disallowed, use STLS first\r\n"
        )
        assert await plaintext.line("AUTH PLAIN") == (
            b"-ERR [AUTH] Plaintext authentication disallowed, use STLS first\r\n"
        )

    run(scenario)


def test_auth_takes_the_maildrop_lock_too(run):
    async def scenario(h):
        first, second = h.connect(), h.connect()
        await first.login()
        assert await second.line(f"AUTH PLAIN {PLAIN}") == (
            b"-ERR [IN-USE] Maildrop is locked by another session\r\n"
        )

    run(scenario)


# -- SCRAM (RFC 5802, RFC 7677) -----------------------------------------------------------------
BINDING = {"tls-server-end-point": bytes(range(32))}


def scram(password: str = ALICE_PW, *, user: str = ALICE, plus: bool = False) -> SaslClient:
    mechanism = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"
    binding = ("tls-server-end-point", BINDING["tls-server-end-point"]) if plus else None
    return SaslClient(mechanism, authcid=user, password=password, channel_binding=binding)


def test_scram_sha_256(run):
    async def scenario(h):
        conn = h.connect()
        client = scram()
        # the server-final-message comes as a last challenge, answered empty (RFC 4422 §4)
        assert (await conn.sasl(client)).startswith(b"+OK Logged in")
        assert client.server_verified

    run(scenario)


def test_scram_without_initial_response(run):
    async def scenario(h):
        conn = h.connect()
        client = scram()
        assert (await conn.sasl(client, initial=False)).startswith(b"+OK Logged in")

    run(scenario)


@pytest.mark.parametrize(
    ("user", "password"), [(ALICE, "wrong"), ("nobody@example.org", "x"), ("not@here.example", "x")]
)
def test_scram_failures_look_alike(run, user, password):
    async def scenario(h):
        conn = h.connect()
        assert await conn.sasl(scram(password, user=user)) == AUTH_FAILED

    run(scenario)


def test_scram_plus_binds_to_the_tls_certificate(run):
    async def scenario(h):
        conn = h.connect(channel_bindings=BINDING)
        capa = await conn.line("CAPA")
        assert b"SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN\r\n" in capa
        client = scram(plus=True)
        assert (await conn.sasl(client)).startswith(b"+OK Logged in")
        assert client.server_verified

    run(scenario)


def test_scram_plus_with_other_binding_data_fails(run):
    async def scenario(h):
        conn = h.connect(channel_bindings={"tls-server-end-point": b"\xff" * 32})
        assert await conn.sasl(scram(plus=True)) == AUTH_FAILED

    run(scenario)


def test_scram_downgrade_is_refused(run):
    async def scenario(h):
        # a client that could bind ("y") while we offered -PLUS: someone removed it (RFC 5802 §6)
        conn = h.connect(channel_bindings=BINDING)
        client = SaslClient("SCRAM-SHA-256", authcid=ALICE, password=ALICE_PW,
                            channel_binding=("tls-server-end-point", b"x" * 32))  # fmt: skip
        assert await conn.sasl(client) == AUTH_FAILED

    run(scenario)


def test_scram_plus_needs_tls(run):
    async def scenario(h):
        conn = h.connect(tls=False, insecure=True, channel_bindings=BINDING)
        assert b"-PLUS" not in await conn.line("CAPA")
        assert await conn.line("AUTH SCRAM-SHA-256-PLUS") == (
            b"-ERR Unsupported authentication mechanism\r\n"
        )

    run(scenario)


def test_data_after_the_final_challenge_fails(run):
    async def scenario(h):
        conn = h.connect()
        client = scram()
        first = base64.b64encode(client.initial_response() or b"").decode()
        server_first = await conn.line(f"AUTH SCRAM-SHA-256 {first}")
        final = client.respond(base64.b64decode(server_first[2:].strip()))
        server_final = await conn.line(base64.b64encode(final).decode())
        assert server_final.startswith(b"+ ")
        assert await conn.line("eHl6") == b"-ERR Invalid authentication data\r\n"
        assert conn.session.account is None

    run(scenario)
