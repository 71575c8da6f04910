"""Every limit of the core, with the exact reply past it."""

from __future__ import annotations

import pytest

from mailstead.protocols.pop3 import (
    NEED_DATA,
    ConnectionClosed,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
)

from .transcript import check, run


def test_command_line_limit_is_255_octets_with_crlf():
    # RFC 2449 §4: 255 octets including CRLF; past it -ERR and the session goes on
    fits = "USER " + "a" * (255 - 7)
    too_long = "USER " + "a" * (255 - 6)
    events = check(f"""
        C: {fits}
        S: +OK send PASS
        C: {too_long}
        S: -ERR Line too long
        C: CAPA
        S: +OK CAPA
    """)
    assert ProtocolErrorEvent("Line too long") in events


def test_long_line_is_dropped_as_it_streams():
    core = ServerCore()
    core.receive_data(b"NOOP ")
    for _ in range(200):
        core.receive_data(b"y" * 10000)
        assert core.next_event() is NEED_DATA
        assert core._rx.unread < 10000
    core.receive_data(b"y\r\nCAPA\r\n")
    assert core.next_event() == ProtocolErrorEvent("Line too long")
    assert core.data_to_send() == b"-ERR Line too long\r\n"


@pytest.mark.parametrize("line", [b"XYZZY", b"RETR", b"STAT", b"x" * 300])
def test_too_many_errors_close_the_connection(line):
    out, events, core = run([(line + b"\r\n") * 12], settings=Settings(max_errors=3))
    reply = out.split(b"\r\n")[1]
    assert out == b"+OK ready\r\n" + (reply + b"\r\n") * 3 + (
        b"-ERR Too many errors, closing connection\r\n"
    )
    assert events[-1] == ConnectionClosed("errors")
    assert core.closed


def test_failed_logins_count_as_errors():
    out, events, _ = run([b"USER a\r\nPASS x\r\n" * 3], settings=Settings(max_errors=3))
    assert out.endswith(
        b"+OK send PASS\r\n-ERR [AUTH] failed\r\n-ERR Too many errors, closing connection\r\n"
    )
    assert out.count(b"[AUTH]") == 3
    assert events[-1] == ConnectionClosed("errors")


def test_default_error_limit_is_ten():
    out, _, _ = run([b"XYZZY\r\n" * 20])
    assert out.count(b"-ERR Unknown command\r\n") == 10
    assert out.endswith(b"-ERR Too many errors, closing connection\r\n")


def test_too_much_pipelined_input():
    core = ServerCore(Settings(max_buffered_input=16384))
    core.receive_data(b"CAPA\r\n")
    core.next_event()  # outstanding: nothing more is read
    core.receive_data(b"NOOP\r\n" * 2731)
    assert core.data_to_send() == b"-ERR Too much pipelined input\r\n"
    assert core.next_event() == ConnectionClosed("input")


def test_settings_bounds():
    with pytest.raises(ValueError, match="255"):
        Settings(max_line=100)
    with pytest.raises(ValueError, match="max_errors"):
        Settings(max_errors=0)
