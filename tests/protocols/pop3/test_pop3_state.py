"""The state table: what each command gets in each state, through the core."""

from __future__ import annotations

import pytest

from mailstead.protocols.pop3 import CommandReceived, ProtocolErrorEvent, State
from mailstead.protocols.pop3.state import TABLE, check

from .transcript import check as transcript


def test_every_command_in_every_state():
    expected = {
        State.AUTHORIZATION: {
            "CAPA": None, "QUIT": None, "USER": None, "AUTH": None, "STLS": None,
            "PASS": "Send USER first",
            **{k: "Log in first" for k in ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
                                           "TOP", "UIDL")},
        },
        State.USER: {
            "CAPA": None, "QUIT": None, "USER": None, "AUTH": None, "STLS": None, "PASS": None,
            **{k: "Log in first" for k in ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
                                           "TOP", "UIDL")},
        },
        State.TRANSACTION: {
            "CAPA": None, "QUIT": None, "STAT": None, "LIST": None, "RETR": None, "DELE": None,
            "NOOP": None, "RSET": None, "TOP": None, "UIDL": None,
            **{k: "Already logged in" for k in ("USER", "PASS", "AUTH", "STLS")},
        },
    }  # fmt: skip
    for state, answers in expected.items():
        assert set(answers) == set(TABLE)
        for keyword, answer in answers.items():
            assert check(state, keyword) == answer, (state, keyword)
    assert check(State.AUTHORIZATION, "XYZZY") is None  # unknown: the core's business


def test_commands_before_login_are_refused():
    transcript("""
        C: STAT
        S: -ERR Log in first
        C: RETR 1
        S: -ERR Log in first
        C: PASS secret
        S: -ERR Send USER first
        C: NOOP
        S: -ERR Log in first
        C: CAPA
        S: +OK CAPA
    """)


def test_login_commands_after_login_are_refused():
    events = transcript("""
        C: USER alice
        S: +OK send PASS
        C: PASS secret
        S: +OK logged in
        C: USER bob
        S: -ERR Already logged in
        C: PASS secret
        S: -ERR Already logged in
        C: AUTH PLAIN
        S: -ERR Already logged in
        C: STLS
        S: -ERR Already logged in
        C: STAT
        S: +OK STAT
    """)
    assert [type(e) for e in events] == [CommandReceived] * 2 + [ProtocolErrorEvent] * 4 + [
        CommandReceived
    ]


@pytest.mark.parametrize("between", [b"CAPA", b"NOOP", b"USER", b"XYZZY", b"x" * 300])
def test_pass_must_follow_user_at_once(between):
    # RFC 1939 §7: PASS only "immediately after a successful USER command"
    reply = {b"CAPA": "+OK CAPA", b"NOOP": "-ERR Log in first", b"USER": "-ERR Missing user name",
             b"XYZZY": "-ERR Unknown command"}.get(between, "-ERR Line too long")  # fmt: skip
    transcript(f"""
        C: USER alice
        S: +OK send PASS
        C: {between.decode()}
        S: {reply}
        C: PASS secret
        S: -ERR Send USER first
    """)


def test_failed_pass_and_a_new_user():
    transcript("""
        C: USER alice
        S: +OK send PASS
        C: PASS wrong
        S: -ERR [AUTH] failed
        C: PASS secret
        S: -ERR Send USER first
        C: USER alice
        S: +OK send PASS
        C: USER bob
        S: +OK send PASS
        C: PASS secret
        S: +OK logged in
    """)


def test_quit_ends_reading():
    events = transcript(
        """
        C: USER alice
        S: +OK send PASS
        C: PASS secret
        S: +OK logged in
        C: QUIT
        S: +OK bye
        C: STAT
        """
    )
    assert events[-1].reason == "quit"
