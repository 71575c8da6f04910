"""The core as a whole: pipelining, EOF, the AUTH input mode, misuse by the shell."""

from __future__ import annotations

import pytest

from mailstead.protocols.pop3 import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    CommandReceived,
    ConnectionClosed,
    ProtocolError,
    ServerCore,
    State,
    commands,
)

from .transcript import check, run


def test_pipelined_commands_are_answered_in_order():
    # RFC 2449 §6.6: a PIPELINING server reads commands sent without waiting for replies
    out, events, _ = run(
        [b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n"]
    )
    assert out == (
        b"+OK ready\r\n+OK send PASS\r\n+OK logged in\r\n+OK STAT\r\n+OK LIST\r\n+OK UIDL\r\n"
        b"+OK RETR\r\n+OK DELE\r\n+OK bye\r\n"
    )
    names = [e.command.NAME for e in events if isinstance(e, CommandReceived)]
    assert names == ["USER", "PASS", "STAT", "LIST", "UIDL", "RETR", "DELE", "QUIT"]
    assert events[-1] == ConnectionClosed("quit")


def test_one_command_at_a_time():
    core = ServerCore()
    core.receive_data(b"CAPA\r\nQUIT\r\n")
    event = core.next_event()
    assert isinstance(event, CommandReceived) and event.command == commands.Capa()
    assert core.next_event() is PAUSED
    assert core.next_event() is PAUSED
    core.command_done()
    event = core.next_event()
    assert isinstance(event, CommandReceived) and event.command == commands.Quit()


def test_bare_lf_and_lowercase_are_accepted():
    check("""
        C= user alice\\n
        S: +OK send PASS
        C= pass secret\\n
        S: +OK logged in
        C= stat\\r\\n
        S: +OK STAT
    """)


def test_eof_closes():
    out, events, core = run([b"CAPA\r\nNOO"], eof=True)
    assert out == b"+OK ready\r\n+OK CAPA\r\n"
    assert events[-1] == ConnectionClosed("eof")
    assert core.closed
    core.receive_data(b"NOOP\r\n")
    assert core.next_event() is NEED_DATA


def test_auth_exchange_lines():
    events = check("""
        C: AUTH PLAIN
        S: +\\x20
        C: more
        S: + YWdhaW4=
        C: secret
        S: +OK logged in
        C: STAT
        S: +OK STAT
    """)
    auth = [e for e in events if isinstance(e, AuthResponse)]
    assert auth == [AuthResponse(b"more"), AuthResponse(b"secret")]
    assert "secret" not in repr(auth)


def test_auth_cancelled_then_commands_again():
    check("""
        C: AUTH PLAIN
        S: +\\x20
        C: *
        S: -ERR cancelled
        C: USER alice
        S: +OK send PASS
    """)


def test_auth_line_limit():
    core = ServerCore()
    core.receive_data(b"AUTH X\r\n")
    assert isinstance(core.next_event(), CommandReceived)
    core.begin_auth()
    core.receive_data(b"A" * 12286 + b"\r\n")  # 12288 octets with CRLF
    assert core.next_event() == AuthResponse(b"A" * 12286)
    core.receive_data(b"A" * 12287 + b"\r\n")
    assert core.next_event() == AuthResponse(b"", too_long=True)
    core.command_done()
    core.receive_data(b"NOOP\r\n")
    assert core.next_event() is not NEED_DATA  # back to commands


def test_misuse_by_the_shell():
    core = ServerCore()
    with pytest.raises(ProtocolError):
        core.command_done()
    with pytest.raises(ProtocolError):
        core.begin_auth()
    with pytest.raises(ProtocolError):
        core.tls_started()


def test_shell_close():
    core = ServerCore()
    core.close("Disconnected for inactivity")
    assert core.data_to_send() == b"-ERR Disconnected for inactivity\r\n"
    assert core.next_event() == ConnectionClosed("shell")
    core.close("again")
    assert core.data_to_send() == b""


def test_states_move_only_when_told():
    core = ServerCore()
    assert core.state is State.AUTHORIZATION
    core.set_state(State.TRANSACTION)
    assert core.state is State.TRANSACTION
    assert not core.closed
    core.set_state(State.UPDATE)
    assert core.closed
