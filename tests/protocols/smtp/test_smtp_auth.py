"""AUTH (RFC 4954) in the core: golden transcripts of its framing and its place in the state table.

The shell's side is scripted here (challenge, accept, refuse); the exchange through the real SASL
mechanisms is in test_smtp_auth_sasl.py. Every transcript also runs byte by byte and at random
split points (transcript.check).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import pytest

from mailstead.protocols.smtp import (
    AuthAborted,
    AuthResponse,
    AuthStart,
    Event,
    Hello,
    MailFrom,
    MailParams,
    ServerCore,
    replies,
)
from mailstead.protocols.smtp.grammar import GrammarError, parse_auth

from .transcript import EHLO_REPLY, check, run, settings

MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN")
# A submission service after TLS (587 after STARTTLS, or 465).
SUBMISSION = settings(auth_mechanisms=MECHANISMS, auth_required=True, tls_active=True,
                      starttls=False)  # fmt: skip
EHLO_SUBMISSION = """
    C: EHLO client.example
    S: 250-mx.example.org
    S: 250-PIPELINING
    S: 250-SIZE 52428800
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-ENHANCEDSTATUSCODES
    S: 250-AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN
    S: 250-CHUNKING
    S: 250-DSN
    S: 250 HELP
"""

Action = tuple[str, object]


def scripted(*actions: Action) -> Callable[[ServerCore, Event], None]:
    """An auth handler answering the AUTH events of each core in turn with ``actions``:
    ("challenge", bytes), ("accept", None) or ("reply", Reply)."""
    done: weakref.WeakKeyDictionary[ServerCore, int] = weakref.WeakKeyDictionary()

    def handle(core: ServerCore, event: Event) -> None:
        n = done.get(core, 0)
        done[core] = n + 1
        kind, arg = actions[n]
        if kind == "challenge":
            assert isinstance(arg, bytes)
            core.auth_challenge(arg)
        elif kind == "accept":
            core.accept()
        else:
            assert isinstance(arg, replies.Reply)
            core.reply(arg)

    return handle


def auth_events(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, AuthStart | AuthResponse | AuthAborted)]


def test_ehlo_advertises_the_mechanisms_after_tls():
    check(EHLO_SUBMISSION, config=SUBMISSION)


def test_before_tls_auth_is_neither_advertised_nor_accepted():
    """RFC 4954 §4 and §6: 538 5.7.11; the port 25 EHLO is unchanged."""
    config = settings(auth_mechanisms=MECHANISMS, auth_required=True)
    events = check(
        "C: EHLO client.example\n"
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines())
        + """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 538 5.7.11 Encryption required for requested authentication mechanism
        C: MAIL FROM:<alice@example.org>
        S: 530 5.7.0 Authentication required
    """,
        config=config,
    )
    assert auth_events(events) == []


def test_plaintext_allowed_offers_all_but_plus_before_tls():
    """On loopback with auth.allow_plaintext_on_loopback the shell sets auth_plaintext: the
    channel-bound mechanism needs TLS all the same."""
    config = settings(auth_mechanisms=MECHANISMS, auth_plaintext=True)
    out, _, _ = run([b"EHLO client.example\r\nAUTH SCRAM-SHA-256-PLUS\r\n"], config=config)
    assert b"250-AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n" in out
    assert out.endswith(b"504 5.5.4 Unrecognized authentication type\r\n")


def test_port_25_has_no_auth():
    check(
        "C: EHLO client.example\n"
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines())
        + """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 502 5.5.1 Command not implemented
        C: MAIL FROM:<alice@example.org> AUTH=<>
        S: 555 5.5.4 Unsupported parameter
    """
    )


def test_initial_response_then_success():
    events = check(
        EHLO_SUBMISSION
        + """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Ok
    """,
        config=SUBMISSION,
        auth=scripted(("accept", None)),
    )
    assert auth_events(events) == [AuthStart("PLAIN", b"AGFsaWNlAHNlY3JldA==")]


def test_challenges_keep_their_space_and_lines_come_back_raw():
    """RFC 4954 §4: continue-req = "334" SP [base64] CRLF, even for an empty challenge; the
    client's lines reach the shell undecoded ("=" and "*" included)."""
    events = check(
        EHLO_SUBMISSION
        + """
        C: auth login
        S: 334 VXNlcm5hbWU6
        C: YWxpY2U=
        S: 334 UGFzc3dvcmQ6
        C: c2VjcmV0
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=scripted(("challenge", b"Username:"), ("challenge", b"Password:"), ("accept", None)),
    )
    assert auth_events(events) == [
        AuthStart("LOGIN", None), AuthResponse(b"YWxpY2U="), AuthResponse(b"c2VjcmV0"),
    ]  # fmt: skip
    events = check(
        EHLO_SUBMISSION
        + """
        C: AUTH PLAIN
        S: 334\\x20
        C: *
        S: 501 5.0.0 Authentication cancelled
    """,
        config=SUBMISSION,
        auth=scripted(("challenge", b""), ("reply", replies.AUTH_CANCELLED)),
    )
    assert auth_events(events) == [AuthStart("PLAIN", None), AuthResponse(b"*")]


def test_failure_leaves_the_client_unauthenticated():
    check(
        EHLO_SUBMISSION
        + """
        C: AUTH PLAIN AGFsaWNlAHdyb25n
        S: 535 5.7.8 Authentication credentials invalid
        C: MAIL FROM:<alice@example.org>
        S: 530 5.7.0 Authentication required
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
    """,
        config=SUBMISSION,
        auth=scripted(("reply", replies.AUTH_FAILED), ("accept", None)),
    )


def test_auth_sequence_rules():
    """RFC 4954 §4: after EHLO only, never twice, never in a mail transaction."""
    check(
        """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Send EHLO first
        C: HELO client.example
        S: 250 mx.example.org
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Send EHLO first
    """
        + EHLO_SUBMISSION
        + """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Already authenticated
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Ok
        C: AUTH LOGIN
        S: 503 5.5.1 AUTH not allowed during a mail transaction
        C: RSET
        S: 250 2.0.0 Ok
    """
        + EHLO_SUBMISSION
        + """
        C: AUTH LOGIN
        S: 503 5.5.1 Already authenticated
        C: MAIL FROM:<alice@example.org>
        S: 250 2.1.0 Ok
    """,
        config=SUBMISSION,
        auth=scripted(("accept", None)),
    )


def test_unknown_mechanism_and_syntax():
    check(
        EHLO_SUBMISSION
        + """
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Unrecognized authentication type
        C: AUTH
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: AUTH PLAIN a b
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: AUTH THIS-NAME-IS-FAR-TOO-LONG
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: AUTH PLA\\xc4\\xb1N
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
    """,
        config=SUBMISSION,
    )


def test_over_long_response_line_ends_the_exchange():
    """RFC 4954 §4: 12288 octets per response line; 500 5.5.6 past it, streamed away."""
    long_line = b"A" * 20000
    client = b"EHLO c.example\r\nAUTH PLAIN\r\n" + long_line + b"\r\nNOOP\r\n"
    for pieces in ([client], [client[i : i + 1000] for i in range(0, len(client), 1000)]):
        out, events, core = run(pieces, config=SUBMISSION, auth=scripted(("challenge", b"")))
        assert out.endswith(
            b"334 \r\n500 5.5.6 Authentication Exchange line is too long\r\n250 2.0.0 Ok\r\n"
        )
        assert auth_events(events) == [AuthStart("PLAIN", None),
                                       AuthAborted("response line too long")]  # fmt: skip
        assert not core.authenticated
    # a line of exactly the limit (CRLF included) is fine
    line = b"A" * (12288 - 2)
    out, events, _ = run(
        [b"EHLO c.example\r\nAUTH PLAIN\r\n" + line + b"\r\n"],
        config=SUBMISSION,
        auth=scripted(("challenge", b""), ("reply", replies.AUTH_FAILED)),
    )
    assert auth_events(events)[1] == AuthResponse(line)
    assert out.endswith(b"535 5.7.8 Authentication credentials invalid\r\n")


def test_a_421_from_the_shell_closes():
    out, _, core = run(
        [b"EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nNOOP\r\n"],
        config=SUBMISSION,
        auth=scripted(("reply", replies.AUTH_BANNED)),
    )
    assert out.endswith(b"421 4.7.0 Too many authentication failures, try again later\r\n")
    assert core.closed


def test_starttls_forgets_the_authentication():
    """RFC 3207 §4.2: on loopback AUTH may come before STARTTLS; TLS starts the session over."""
    config = settings(auth_mechanisms=MECHANISMS, auth_plaintext=True, auth_required=True)
    out, events, core = run(
        [b"EHLO c.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTARTTLS\r\n",
         b"EHLO c.example\r\nMAIL FROM:<alice@example.org>\r\n"],
        config=config,
        auth=scripted(("accept", None)),
    )  # fmt: skip
    assert b"235 2.7.0" in out
    assert out.endswith(b"530 5.7.0 Authentication required\r\n")
    assert not core.authenticated
    assert [e for e in events if isinstance(e, Hello)][-1] == Hello("EHLO", "c.example")


def test_mail_auth_parameter():
    """RFC 4954 §5: AUTH=<mailbox> or AUTH=<> as xtext, only where AUTH is offered."""
    events = check(
        EHLO_SUBMISSION
        + """
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 235 2.7.0 Authentication successful
        C: MAIL FROM:<alice@example.org> AUTH=<alice+2Bx@example.org>
        S: 250 2.1.0 Ok
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<alice@example.org> AUTH
        S: 501 5.5.4 Syntax error in parameters or arguments
        C: MAIL FROM:<alice@example.org> AUTH=<bad+xx>
        S: 501 5.5.4 Syntax error in parameters or arguments
    """,
        config=SUBMISSION,
        auth=scripted(("accept", None)),
    )
    [mail] = [e for e in events if isinstance(e, MailFrom)]
    assert mail.params == MailParams(
        raw=(("AUTH", "<alice+2Bx@example.org>"),), auth="<alice+x@example.org>"
    )


def test_payloads_stay_out_of_repr():
    """Events may end up in logs: what the client sent during AUTH does not."""
    assert "c2VjcmV0" not in repr(AuthStart("PLAIN", b"c2VjcmV0"))
    assert "c2VjcmV0" not in repr(AuthResponse(b"c2VjcmV0"))


def test_auth_counts_towards_the_error_limit():
    config = settings(auth_mechanisms=MECHANISMS, tls_active=True, max_errors=2)
    out, _, core = run(
        [b"EHLO c.example\r\n" + b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n" * 3],
        config=config,
        auth=scripted(*[("reply", replies.AUTH_FAILED)] * 3),
    )
    assert out.count(b"535 5.7.8") == 3
    assert out.endswith(b"421 4.7.0 Too many errors, closing connection\r\n")
    assert core.closed


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("PLAIN", ("PLAIN", None)),
        ("plain =", ("PLAIN", b"=")),
        ("SCRAM-SHA-256 biwsbj1h", ("SCRAM-SHA-256", b"biwsbj1h")),
        ("X_1-2", ("X_1-2", None)),
    ],
)
def test_parse_auth(arg, expected):
    assert parse_auth(arg) == expected


@pytest.mark.parametrize("arg", ["", "PLAIN x y", "PL@IN", "A" * 21, "PLAIN \x01", "PLAIN \u00e9"])
def test_parse_auth_refuses(arg):
    with pytest.raises(GrammarError) as info:
        parse_auth(arg)
    assert info.value.reply == replies.BAD_AUTH_SYNTAX
