"""STLS command injection (CVE-2011-0411): plaintext sent after STLS is never executed."""

from __future__ import annotations

from mailstead.protocols.pop3 import CommandReceived, ServerCore, State, commands

from .transcript import run


def test_commands_pipelined_after_stls_are_discarded():
    out, events, _ = run([b"STLS\r\nUSER alice\r\nPASS secret\r\n", b"CAPA\r\n"])
    # the runner's fake shell "starts TLS" at once: only CAPA, sent afterwards, is read
    assert out == b"+OK ready\r\n+OK begin TLS\r\n+OK CAPA\r\n"
    names = [e.command.NAME for e in events if isinstance(e, CommandReceived)]
    assert names == ["STLS", "CAPA"]


def test_input_before_the_handshake_is_discarded():
    core = ServerCore()
    core.receive_data(b"STLS\r\n")
    event = core.next_event()
    assert isinstance(event, CommandReceived) and event.command == commands.Stls()
    core.receive_data(b"USER mallory\r\n")  # arrives in plaintext before the handshake
    core.tls_started()
    core.receive_data(b"CAPA\r\n")
    event = core.next_event()
    assert isinstance(event, CommandReceived) and event.command == commands.Capa()


def test_tls_forgets_user():
    core = ServerCore()
    core.receive_data(b"USER alice\r\n")
    core.next_event()
    core.set_state(State.USER)
    core.command_done()
    core.receive_data(b"STLS\r\n")
    core.next_event()
    core.tls_started()
    assert core.state is State.AUTHORIZATION


def test_refused_stls_reads_on():
    core = ServerCore()
    core.receive_data(b"STLS\r\n")
    core.next_event()
    core.command_done()  # e.g. "-ERR TLS not available"
    core.receive_data(b"CAPA\r\n")
    event = core.next_event()
    assert isinstance(event, CommandReceived) and event.command == commands.Capa()
