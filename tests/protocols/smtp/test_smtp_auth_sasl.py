"""AUTH through the real SASL mechanisms: the core framed by the shell's `AuthExchange`.

Golden transcripts give the exact replies for every way an exchange ends (success, wrong
password, unknown user, "*", bad base64, malformed mechanism data); SCRAM, whose nonces are
random, is driven by the package's own SASL client.
"""

from __future__ import annotations

import asyncio
import base64
import weakref
from collections.abc import Callable

import pytest

from mailstead import sasl
from mailstead.directory import AuthResult
from mailstead.login import Client, LoginService
from mailstead.protocols.smtp import (
    NEED_DATA,
    AuthResponse,
    AuthStart,
    Event,
    ServerCore,
    ServerSettings,
)
from mailstead.sasl import scram
from mailstead.servers.smtp import AuthExchange
from mailstead.store import Account, AccountRole

from .test_smtp_auth import EHLO_SUBMISSION, SUBMISSION
from .transcript import check, settings

ALICE = Account(1, "example.org", "alice", "", 0, 0, AccountRole.USER, True, 0)
PASSWORD = "alice-pw"
SALT = b"0123456789abcdef"
BINDING = b"\x01" * 32  # tls-server-end-point data of "our certificate"


NUL = "\0"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(authzid: str, authcid: str, password: str) -> str:
    """A PLAIN message (RFC 4616), base64."""
    return b64(NUL.join((authzid, authcid, password)))


class FakeDirectory:
    """alice@example.org with one password, answering the login service at once."""

    async def authenticate_detailed(self, address: str, password: str) -> AuthResult | None:
        if address.casefold() == ALICE.address and password == PASSWORD:
            return AuthResult(ALICE, "password")
        return None

    async def scram_lookup(self, address: str) -> tuple[Account, sasl.ScramCredentials] | None:
        if address.casefold() != ALICE.address:
            return None
        key = scram.derive_keys(PASSWORD, SALT, 4096)
        return ALICE, sasl.ScramCredentials(SALT, 4096, [key])


def sasl_auth(
    bindings: dict[str, bytes] | None = None,
) -> Callable[[ServerCore, Event], None]:
    """An auth handler that runs `AuthExchange` over a login service on a `FakeDirectory`, one
    exchange per core (each step on a short-lived event loop: the transcript runner is
    synchronous)."""
    service = LoginService(FakeDirectory())
    exchanges: weakref.WeakKeyDictionary[ServerCore, AuthExchange] = weakref.WeakKeyDictionary()

    def handle(core: ServerCore, event: Event) -> None:
        if isinstance(event, AuthStart):
            client = Client("smtp", "192.0.2.1")
            exchange = AuthExchange(core, service.sasl_exchange(client, event.mechanism,
                                                                 bindings or {}))  # fmt: skip
            exchanges[core] = exchange
            asyncio.run(exchange.start(event))
        else:
            assert isinstance(event, AuthResponse)
            asyncio.run(exchanges[core].respond(event))

    return handle


def test_plain_with_initial_response():
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH PLAIN {plain("", "alice@example.org", "alice-pw")}
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Ok
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_plain_after_an_empty_challenge():
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH PLAIN
        S: 334\\x20
        C: {plain("alice@example.org", "alice@example.org", "alice-pw")}
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_login():
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: {b64("alice@example.org")}
        S: 334 UGFzc3dvcmQ6
        C: {b64("alice-pw")}
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )
    # the user name may come as the initial response
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH LOGIN {b64("alice@example.org")}
        S: 334 UGFzc3dvcmQ6
        C: {b64("alice-pw")}
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_wrong_password_and_unknown_user_get_the_same_reply():
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH PLAIN {plain("", "alice@example.org", "wrong")}
        S: 535 5.7.8 Authentication credentials invalid
        C: AUTH PLAIN {plain("", "nobody@example.org", "alice-pw")}
        S: 535 5.7.8 Authentication credentials invalid
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: {b64("nobody@example.org")}
        S: 334 UGFzc3dvcmQ6
        C: {b64("x")}
        S: 535 5.7.8 Authentication credentials invalid
        C: MAIL FROM:<alice@example.org>
        S: 530 5.7.0 Authentication required
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_no_proxy_authentication():
    """Another authorization identity than the authenticated one fails like a wrong password."""
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH PLAIN {plain("bob@example.org", "alice@example.org", "alice-pw")}
        S: 535 5.7.8 Authentication credentials invalid
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_cancelled_exchange():
    """RFC 4954 §4: "*" cancels with 501 (as a response, and as an initial response)."""
    check(
        EHLO_SUBMISSION
        + """
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH PLAIN *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH PLAIN
        S: 334\\x20
        C: *
        S: 501 5.0.0 Authentication cancelled
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


def test_malformed_base64_and_data():
    """RFC 4954 §4: undecodable base64 gets 501 5.5.2; so does data the mechanism cannot
    parse (PLAIN without its NULs, an empty initial response "=")."""
    check(
        EHLO_SUBMISSION
        + f"""
        C: AUTH PLAIN not*base64
        S: 501 5.5.2 Invalid base64 data
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: YWxp Y2U=
        S: 501 5.5.2 Invalid base64 data
        C: AUTH PLAIN YWxpY2U
        S: 501 5.5.2 Invalid base64 data
        C: AUTH PLAIN {b64("alice@example.org alice-pw")}
        S: 501 5.5.2 Invalid authentication data
        C: AUTH PLAIN =
        S: 501 5.5.2 Invalid authentication data
        C: AUTH PLAIN {plain("", "alice@example.org", "alice-pw")}
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=sasl_auth(),
    )


# -- SCRAM ---------------------------------------------------------------------------------------
def scram_session(
    client: sasl.SaslClient,
    config: ServerSettings = SUBMISSION,
    bindings: dict[str, bytes] | None = None,
    final_answer: bytes | None = None,
) -> bytes:
    """Run EHLO and AUTH with ``client`` against a core; the last reply the server sent."""
    core = ServerCore(config)
    core.start()
    handler = sasl_auth(bindings)
    initial = client.initial_response()
    arg = base64.b64encode(initial).decode() if initial is not None else ""
    core.receive_data(f"EHLO c.example\r\nAUTH {client.mechanism} {arg}\r\n".encode())
    last = b""
    while True:
        event = core.next_event()
        if isinstance(event, AuthStart | AuthResponse):
            handler(core, event)
            continue
        if event is not NEED_DATA:
            continue
        out = core.data_to_send()
        last = out.rsplit(b"\r\n", 2)[-2] if out else last
        if not last.startswith(b"334 "):
            return last
        challenge = base64.b64decode(last[4:])
        if challenge.startswith(b"v="):
            client.respond(challenge)  # checks the server's signature
            answer = final_answer if final_answer is not None else b""
        else:
            answer = client.respond(challenge)
        core.receive_data(base64.b64encode(answer) + b"\r\n")


def test_scram_sha_256():
    client = sasl.SaslClient("SCRAM-SHA-256", authcid="alice@example.org", password=PASSWORD)
    assert scram_session(client) == b"235 2.7.0 Authentication successful"
    assert client.server_verified


def test_scram_sha_256_plus_binds_to_the_certificate():
    bindings = {sasl.TLS_SERVER_END_POINT: BINDING}
    client = sasl.SaslClient(
        "SCRAM-SHA-256-PLUS", authcid="alice@example.org", password=PASSWORD,
        channel_binding=(sasl.TLS_SERVER_END_POINT, BINDING),
    )  # fmt: skip
    assert scram_session(client, bindings=bindings) == b"235 2.7.0 Authentication successful"
    # a man in the middle presents another certificate: the bindings differ
    client = sasl.SaslClient(
        "SCRAM-SHA-256-PLUS", authcid="alice@example.org", password=PASSWORD,
        channel_binding=(sasl.TLS_SERVER_END_POINT, b"\x02" * 32),
    )  # fmt: skip
    assert scram_session(client, bindings=bindings) == (
        b"535 5.7.8 Authentication credentials invalid"
    )


def test_scram_downgrade_is_refused():
    """A client that could bind says so ("y"); when we offered -PLUS, someone removed it."""
    client = sasl.SaslClient(
        "SCRAM-SHA-256", authcid="alice@example.org", password=PASSWORD,
        channel_binding=(sasl.TLS_SERVER_END_POINT, BINDING),
    )  # fmt: skip
    bindings = {sasl.TLS_SERVER_END_POINT: BINDING}
    assert scram_session(client, bindings=bindings) == (
        b"535 5.7.8 Authentication credentials invalid"
    )


@pytest.mark.parametrize(
    ("user", "password"), [("alice@example.org", "wrong"), ("nobody@example.org", PASSWORD)]
)
def test_scram_failures_look_alike(user, password):
    """RFC 5802 §5.1: an unknown user goes through the whole exchange (fake salt) and fails
    exactly like a wrong password."""
    client = sasl.SaslClient("SCRAM-SHA-256", authcid=user, password=password)
    assert scram_session(client) == b"535 5.7.8 Authentication credentials invalid"


def test_scram_final_answer_must_be_empty():
    client = sasl.SaslClient("SCRAM-SHA-256", authcid="alice@example.org", password=PASSWORD)
    assert scram_session(client, final_answer=b"x") == b"501 5.5.2 Invalid authentication data"


def test_plus_is_not_offered_without_tls():
    config = settings(auth_mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"),
                      auth_plaintext=True, auth_required=True)  # fmt: skip
    client = sasl.SaslClient(
        "SCRAM-SHA-256-PLUS", authcid="alice@example.org", password=PASSWORD,
        channel_binding=(sasl.TLS_SERVER_END_POINT, BINDING),
    )  # fmt: skip
    assert scram_session(client, config=config) == b"504 5.5.4 Unrecognized authentication type"
