"""The IMAP server core: greeting, pipelining contract, state table, IDLE, AUTHENTICATE,
STARTTLS, COMPRESS, errors and EOF — client bytes in, events and server bytes out."""

from __future__ import annotations

import zlib

import pytest

from mailstead.protocols.imap import (
    NEED_DATA,
    PAUSED,
    AuthenticateLine,
    CommandReceived,
    ConnectionClosed,
    IdleDone,
    ProtocolError,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
    State,
)
from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import response as r
from mailstead.protocols.imap.state import TABLE, check

from .helpers import make, run


def test_greeting():
    core = ServerCore()
    core.greet("Mailstead ready", ["IMAP4rev2", "IMAP4rev1", "LITERAL+", "AUTH=PLAIN"])
    assert (
        core.data_to_send()
        == b"* OK [CAPABILITY IMAP4rev2 IMAP4rev1 LITERAL+ AUTH=PLAIN] Mailstead ready\r\n"
    )
    pre = ServerCore()
    pre.greet("welcome", preauth=True)
    assert pre.data_to_send() == b"* PREAUTH welcome\r\n"
    assert pre.state is State.AUTHENTICATED


def test_commands_are_handed_out_one_at_a_time():
    core = make()
    core.receive_data(b"a1 NOOP\r\na2 CHECK\r\na3 FETCH 1 FLAGS\r\n")
    assert core.next_event() == CommandReceived("a1", c.Noop())
    assert core.next_event() is PAUSED
    assert core.outstanding == "a1"
    core.send(b"a1 OK\r\n")
    core.command_done()
    assert core.next_event() == CommandReceived("a2", c.Check())
    core.command_done()
    assert isinstance(core.next_event(), CommandReceived)
    core.command_done()
    assert core.next_event() is NEED_DATA
    with pytest.raises(ProtocolError):
        core.command_done()


def test_no_continuation_while_a_command_is_outstanding():
    core = make()
    core.receive_data(b"a1 NOOP\r\na2 APPEND INBOX {3}\r\n")
    assert core.next_event() == CommandReceived("a1", c.Noop())
    assert core.next_event() is PAUSED
    assert core.data_to_send() == b""  # "+" only once a2 is reached
    core.command_done()
    assert core.next_event() is NEED_DATA
    assert core.data_to_send() == b"+ Ready for literal data\r\n"


def test_continuation_text_is_a_setting():
    core = make(continuation_text="go ahead")
    _, out = run(core, [b"a1 APPEND INBOX {3}\r\n"])
    assert out == b"+ go ahead\r\n"


def test_pipelined_input_is_bounded():
    core = make(max_line=1024, max_buffered_input=2048)
    core.receive_data(b"a1 NOOP\r\n")
    assert isinstance(core.next_event(), CommandReceived)
    core.receive_data(b"a2 NOOP\r\n" * 300)  # the shell should not read while PAUSED
    assert core.next_event() == ConnectionClosed("bye")
    assert core.data_to_send() == b"* BYE Too much pipelined input\r\n"


# --- the state table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "line", "reply"),
    [
        (State.NOT_AUTHENTICATED, b"a1 SELECT INBOX", b"a1 BAD Not authenticated\r\n"),
        (State.NOT_AUTHENTICATED, b"a1 FETCH 1 FLAGS", b"a1 BAD Not authenticated\r\n"),
        (State.NOT_AUTHENTICATED, b"a1 UID FETCH 1 FLAGS", b"a1 BAD Not authenticated\r\n"),
        (State.AUTHENTICATED, b"a1 LOGIN a b", b"a1 BAD Already authenticated\r\n"),
        (State.AUTHENTICATED, b"a1 STARTTLS", b"a1 BAD Already authenticated\r\n"),
        (State.AUTHENTICATED, b"a1 FETCH 1 FLAGS", b"a1 BAD No mailbox selected\r\n"),
        (State.AUTHENTICATED, b"a1 UID EXPUNGE 1", b"a1 BAD No mailbox selected\r\n"),
        (State.AUTHENTICATED, b"a1 CLOSE", b"a1 BAD No mailbox selected\r\n"),
        (
            State.SELECTED,
            b"a1 ENABLE CONDSTORE",
            b"a1 BAD ENABLE is not allowed while a mailbox is selected\r\n",
        ),
        (State.SELECTED, b"a1 AUTHENTICATE PLAIN", b"a1 BAD Already authenticated\r\n"),
        # a syntax error in an illegal command: the state refusal comes first
        (State.NOT_AUTHENTICATED, b"a1 FETCH x", b"a1 BAD Not authenticated\r\n"),
    ],
)
def test_illegal_commands_are_refused_by_the_table(state, line, reply):
    core = make(state)
    events, out = run(core, [line + b"\r\n"])
    assert out == reply
    assert isinstance(events[0], ProtocolErrorEvent)


@pytest.mark.parametrize(
    ("state", "line"),
    [
        (State.NOT_AUTHENTICATED, b"a1 CAPABILITY"),
        (State.NOT_AUTHENTICATED, b"a1 ID NIL"),
        (State.NOT_AUTHENTICATED, b"a1 LOGIN a b"),
        (State.AUTHENTICATED, b"a1 ENABLE UTF8=ACCEPT"),
        (State.AUTHENTICATED, b"a1 SELECT INBOX"),
        (State.SELECTED, b"a1 SELECT INBOX"),
        (State.SELECTED, b'a1 LIST "" *'),
        (State.SELECTED, b"a1 UID MOVE 1 x"),
        (State.SELECTED, b"a1 NOOP"),
    ],
)
def test_legal_commands_pass(state, line):
    events, _ = run(make(state), [line + b"\r\n"])
    assert isinstance(events[0], CommandReceived)


def test_every_command_the_grammar_knows_is_in_the_table():
    from mailstead.protocols.imap.grammar import COMMAND_NAMES

    assert set(TABLE) == set(COMMAND_NAMES)
    assert check(State.SELECTED, "UID FETCH") is None
    assert check(State.LOGOUT, "NOOP") == "Command not allowed in this state"


def test_logout_state_closes():
    core = make()
    core.receive_data(b"a1 LOGOUT\r\na2 NOOP\r\n")
    ev = core.next_event()
    assert ev == CommandReceived("a1", c.Logout())
    core.send(r.untagged("BYE", "logging out") + r.tagged("a1", "OK", "LOGOUT completed"))
    core.set_state(State.LOGOUT)
    core.command_done()
    assert core.next_event() == ConnectionClosed("logout")
    assert core.next_event() is NEED_DATA
    assert core.data_to_send() == b"* BYE logging out\r\na1 OK LOGOUT completed\r\n"
    assert core.closed


# --- errors ---------------------------------------------------------------------------------------
def test_parse_errors_are_answered_and_the_session_goes_on():
    events, out = run(
        make(), [b"a1 FETCH 1 FOO\r\n* NOOP\r\n\r\na2 SEARCH CHARSET KOI8-R ALL\r\na3 NOOP\r\n"]
    )
    assert out == (
        b"a1 BAD FETCH: Unknown fetch item FOO\r\n"
        b"* BAD Invalid tag\r\n"
        b"* BAD Empty command\r\n"
        b"a2 NO [BADCHARSET (US-ASCII UTF-8)] SEARCH: Unsupported charset KOI8-R\r\n"
        b"a3 OK NOOP done\r\n"
    )
    assert events[:2] == [
        ProtocolErrorEvent("a1", "FETCH: Unknown fetch item FOO"),
        ProtocolErrorEvent(None, "Invalid tag"),
    ]


def test_too_many_consecutive_errors_close():
    core = make(max_errors=3)
    events, out = run(core, [b"a1 FOO\r\n" * 5])
    assert out.endswith(b"* BYE Too many invalid commands\r\n")
    assert out.count(b"BAD") == 4
    assert events[-1] == ConnectionClosed("bye")


def test_errors_counter_resets_on_a_valid_command():
    core = make(max_errors=2)
    events, _ = run(core, [b"a1 FOO\r\na2 FOO\r\na3 NOOP\r\na4 FOO\r\na5 FOO\r\na6 NOOP\r\n"])
    assert not any(isinstance(e, ConnectionClosed) for e in events)


def test_bare_lf_ends_a_line_too():
    events, _ = run(make(), [b"a1 NOOP\na2 NOOP\r\n"])
    assert [e.tag for e in events if isinstance(e, CommandReceived)] == ["a1", "a2"]


def test_eof():
    core = make()
    events, _ = run(core, [b"a1 NOOP\r\na2 NO", b""])
    assert events == [CommandReceived("a1", c.Noop()), ConnectionClosed("eof")]


def test_eof_waits_for_the_outstanding_command():
    core = make()
    core.receive_data(b"a1 NOOP\r\n")
    core.receive_data(b"")
    assert isinstance(core.next_event(), CommandReceived)
    assert core.next_event() is PAUSED
    core.command_done()
    assert core.next_event() == ConnectionClosed("eof")


def test_shell_close_sends_bye():
    core = make()
    core.close("Autologout; idle for too long")
    assert core.next_event() == ConnectionClosed("bye")
    assert core.data_to_send() == b"* BYE Autologout; idle for too long\r\n"
    core.receive_data(b"a1 NOOP\r\n")
    assert core.next_event() is NEED_DATA


# --- IDLE -----------------------------------------------------------------------------------------
def test_idle():
    core = make()
    core.receive_data(b"a1 IDLE\r\n")
    assert core.next_event() == CommandReceived("a1", c.Idle())
    core.begin_idle()
    assert core.data_to_send() == b"+ idling\r\n"
    assert core.next_event() is NEED_DATA
    core.send(b"* 4 EXISTS\r\n")
    core.receive_data(b"do")
    assert core.next_event() is NEED_DATA
    core.receive_data(b"ne\r\na2 NOOP\r\n")
    assert core.next_event() == IdleDone(True)
    assert core.next_event() is PAUSED
    core.send(b"a1 OK IDLE terminated\r\n")
    core.command_done()
    assert core.next_event() == CommandReceived("a2", c.Noop())
    assert core.data_to_send() == b"* 4 EXISTS\r\na1 OK IDLE terminated\r\n"


def test_idle_ended_by_something_else():
    core = make()
    core.receive_data(b"a1 IDLE\r\n")
    core.next_event()
    core.begin_idle("waiting")
    core.receive_data(b"a2 NOOP\r\n")
    assert core.next_event() == IdleDone(False)


def test_begin_idle_needs_an_outstanding_idle():
    core = make()
    core.receive_data(b"a1 NOOP\r\n")
    core.next_event()
    with pytest.raises(ProtocolError):
        core.begin_idle()


# --- AUTHENTICATE ---------------------------------------------------------------------------------
def test_authenticate_lines():
    core = make(State.NOT_AUTHENTICATED, max_line=1024)
    core.receive_data(b"a1 AUTHENTICATE PLAIN\r\nAGZyZWQAc2VjcmV0\r\n")
    assert core.next_event() == CommandReceived("a1", c.Authenticate("PLAIN"))
    core.begin_authenticate()
    core.send(b"+ \r\n")
    ev = core.next_event()
    assert ev == AuthenticateLine(b"AGZyZWQAc2VjcmV0")
    assert "AGZy" not in repr(ev)
    core.send(b"a1 OK done\r\n")
    core.set_state(State.AUTHENTICATED)
    core.command_done()
    assert core.next_event() is NEED_DATA
    core.receive_data(b"a2 AUTHENTICATE PLAIN\r\n")
    assert core.next_event() == ProtocolErrorEvent("a2", "Already authenticated")


def test_authenticate_cancel_and_long_line():
    core = make(State.NOT_AUTHENTICATED, max_line=1024, max_buffered_input=4096)
    core.receive_data(b"a1 AUTHENTICATE PLAIN\r\n*\r\n")
    core.next_event()
    core.begin_authenticate()
    ev = core.next_event()
    assert isinstance(ev, AuthenticateLine) and ev.cancelled
    core.receive_data(b"x" * 2000 + b"\r\n")
    assert core.next_event() == AuthenticateLine(b"", too_long=True)
    assert core.next_event() is NEED_DATA
    core.command_done()
    core.receive_data(b"a2 NOOP\r\n")
    assert core.next_event() == CommandReceived("a2", c.Noop())


# --- STARTTLS -------------------------------------------------------------------------------------
def test_starttls_discards_injected_commands():
    core = make(State.NOT_AUTHENTICATED)
    core.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil evil\r\n")
    assert core.next_event() == CommandReceived("a1", c.StartTLS())
    core.receive_data(b"a3 LOGIN more evil\r\n")
    core.send(b"a1 OK Begin TLS negotiation now\r\n")
    assert core.next_event() is PAUSED
    core.tls_started()
    assert core.next_event() is NEED_DATA  # CVE-2011-0411: nothing survives the handshake
    core.receive_data(b"a4 CAPABILITY\r\n")
    assert core.next_event() == CommandReceived("a4", c.Capability())


def test_starttls_refused():
    core = make(State.NOT_AUTHENTICATED)
    core.receive_data(b"a1 STARTTLS\r\n")
    core.next_event()
    core.send(b"a1 NO TLS not available\r\n")
    core.command_done()
    core.receive_data(b"a2 NOOP\r\n")
    assert core.next_event() == CommandReceived("a2", c.Noop())
    with pytest.raises(ProtocolError):
        core.tls_started()


# --- COMPRESS -------------------------------------------------------------------------------------
def test_compress_deflate():
    core = make(State.AUTHENTICATED)
    client_z = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = client_z.compress(b"a2 NOOP\r\n") + client_z.flush(zlib.Z_SYNC_FLUSH)
    # the client may send compressed data right behind the command (pipelined)
    core.receive_data(b"a1 COMPRESS DEFLATE\r\n" + first)
    assert core.next_event() == CommandReceived("a1", c.Compress("DEFLATE"))
    core.send(b"a1 OK DEFLATE active\r\n")
    core.start_compression()
    core.command_done()
    assert core.data_to_send() == b"a1 OK DEFLATE active\r\n"  # sent before compression starts
    assert core.next_event() == CommandReceived("a2", c.Noop())
    core.send(b"a2 OK NOOP completed\r\n")
    core.command_done()
    inflate = zlib.decompressobj(-15)
    assert inflate.decompress(core.data_to_send()) == b"a2 OK NOOP completed\r\n"
    more = client_z.compress(b"a3 APPEND INBOX {3}\r\n") + client_z.flush(zlib.Z_SYNC_FLUSH)
    for i in range(len(more)):
        core.receive_data(more[i : i + 1])
        assert core.next_event() is NEED_DATA
    assert inflate.decompress(core.data_to_send()) == b"+ Ready for literal data\r\n"
    assert core.compressing


def test_compress_bomb_is_inflated_in_bounded_steps():
    core = make(State.AUTHENTICATED, max_line=1024, max_buffered_input=4096)
    core.receive_data(b"a1 COMPRESS DEFLATE\r\n")
    core.next_event()
    core.start_compression()
    core.command_done()
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = b"a2 APPEND INBOX {9000000+}\r\n" + b"x" * 9_000_000 + b"\r\na3 NOOP\r\n"
    bomb = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 20000
    events = []
    largest = 0
    for i in range(0, len(bomb), 1024):
        core.receive_data(bomb[i : i + 1024])
        assert core._rx.unread == 0  # inflated only when next_event asks, 4 KiB at a time
        while (ev := core.next_event()) is not NEED_DATA:
            largest = max(largest, core._rx.unread)
            events.append(ev)
            if ev is PAUSED:
                core.command_done()
    assert largest <= 4096
    assert [e for e in events if e is not PAUSED] == [
        CommandReceived("a2", c.Append("INBOX", (c.AppendMessage(b"x" * 9_000_000),))),
        CommandReceived("a3", c.Noop()),
    ]
    core.receive_data(bomb)  # more unread compressed input than max_buffered_input
    assert core.next_event() == ConnectionClosed("bye")


def test_invalid_compressed_data_closes():
    core = make(State.AUTHENTICATED)
    core.receive_data(b"a1 COMPRESS DEFLATE\r\n")
    core.next_event()
    core.start_compression()
    core.command_done()
    core.receive_data(b"\xff\xff\xff\xff garbage")
    assert core.next_event() == ConnectionClosed("bye")


# --- UTF8=ACCEPT ----------------------------------------------------------------------------------
def test_enable_utf8_switches_mailbox_names():
    core = make(State.AUTHENTICATED)
    events, out = run(core, [b'a1 SELECT "Entw\xc3\xbcrfe"\r\n'])
    assert out.startswith(b"a1 NO [CANNOT]")
    core.enable_utf8()
    events, _ = run(core, [b'a2 SELECT "Entw\xc3\xbcrfe"\r\n'])
    assert events == [CommandReceived("a2", c.Select("Entwürfe"))]
    assert core.utf8


def test_settings_are_validated():
    with pytest.raises(ValueError, match="at least 1024"):
        Settings(max_line=10)
    with pytest.raises(ValueError, match="one command line"):
        Settings(max_line=65536, max_buffered_input=1000)
