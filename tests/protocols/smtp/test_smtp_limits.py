"""Every limit, with the exact reply past it."""

from __future__ import annotations

from mailstead.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    MailFrom,
    MessageAborted,
    MessageComplete,
    RcptTo,
    ServerCore,
)

from .transcript import run, settings, splittings

TX = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"


def test_command_line_limit_exact():
    ok = b"NOOP " + b"x" * (512 - 7) + b"\r\n"  # 512 octets with CRLF
    too_long = b"NOOP " + b"x" * (512 - 6) + b"\r\n"  # 513
    for pieces in splittings(ok + too_long + b"NOOP\r\n", seeds=range(3)):
        out, _, _ = run(pieces)
        assert out.endswith(b"250 2.0.0 Ok\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n")


def test_long_line_is_not_buffered():
    core = ServerCore(settings())
    core.start()
    core.receive_data(b"NOOP ")
    for _ in range(100):
        core.receive_data(b"y" * 10000)
        assert core.next_event() is NEED_DATA
        assert len(core._buf) < 10000  # discarded as it streams
    core.receive_data(b"\r\nNOOP\r\n")
    assert core.next_event() is NEED_DATA
    assert core.data_to_send().endswith(b"500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n")


def test_max_recipients():
    cfg = settings(max_recipients=100)
    rcpts = b"".join(b"RCPT TO:<r%d@d.example>\r\n" % i for i in range(101))
    out, events, _ = run([b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n" + rcpts], config=cfg)
    assert sum(isinstance(e, RcptTo) for e in events) == 100
    assert out.endswith(b"250 2.1.5 Ok\r\n452 4.5.3 Too many recipients\r\n")
    # refused recipients do not count
    rcpts = b"RCPT TO:<unknown@d.example>\r\n" * 3 + b"RCPT TO:<a@d.example>\r\n" * 2
    out, _, _ = run(
        [b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n" + rcpts],
        config=settings(max_recipients=2),
    )
    assert out.endswith(b"550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n")


def test_size_parameter_over_limit():
    out, events, _ = run(
        [
            b"EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n"
            b"MAIL FROM:<a@b.example> SIZE=1000\r\n"
        ],
        config=settings(max_message_size=1000),
    )
    assert b"250-SIZE 1000\r\n" in out
    assert out.endswith(b"552 5.3.4 Message too big\r\n250 2.1.0 Ok\r\n")
    assert next(e for e in events if isinstance(e, MailFrom)).params.size == 1000


def test_data_too_big_discarded_then_552():
    cfg = settings(max_message_size=20)
    body = b"0123456789\r\n" * 10
    data = TX + b"DATA\r\n" + body + b".\r\nNOOP\r\n"
    for pieces in splittings(data):
        out, events, _core = run(pieces, config=cfg)
        assert out.endswith(
            b"354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Message too big\r\n250 2.0.0 Ok\r\n"
        )
        assert events.count(MessageAborted("Message too big")) == 1
        assert not any(isinstance(e, MessageComplete) for e in events)


def test_data_size_exactly_at_limit():
    body = b"0123456789\r\n"  # 12 octets
    _out, events, _ = run(
        [TX + b"DATA\r\n" + body + b".\r\n"], config=settings(max_message_size=12)
    )
    assert events[-1] == MessageComplete(12, "DATA")


def test_data_line_limit():
    cfg = settings(max_data_line=10)
    ok = TX + b"DATA\r\n0123456789\r\n..23456789\r\n.\r\n"
    out, events, _ = run([ok], config=cfg)
    assert events[-1] == MessageComplete(23, "DATA")
    for pieces in splittings(TX + b"DATA\r\nab\r\n01234567890\r\n.\r\nNOOP\r\n", seeds=range(3)):
        out, events, _ = run(pieces, config=cfg)
        assert out.endswith(b"554 5.6.0 Line too long in message content\r\n250 2.0.0 Ok\r\n")
        assert MessageAborted("Line too long in message content") in events


def test_max_commands():
    out, events, core = run([b"NOOP\r\n" * 6], config=settings(max_commands=5))
    assert out.endswith(b"250 2.0.0 Ok\r\n421 4.7.0 Too many commands, closing connection\r\n")
    assert out.count(b"250 2.0.0 Ok") == 5
    assert events == [CloseConnection("too many commands")]
    assert core.closed


def test_max_errors():
    out, events, _core = run([b"BOGUS\r\n" * 4], config=settings(max_errors=2))
    assert out.endswith(
        b"500 5.5.2 Command not recognized\r\n" * 3
        + b"421 4.7.0 Too many errors, closing connection\r\n"
    )
    assert events == [CloseConnection("too many errors")]


def test_max_errors_counts_shell_refusals():
    rcpts = b"RCPT TO:<unknown@d.example>\r\n" * 3
    out, events, _ = run(
        [b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n" + rcpts], config=settings(max_errors=2)
    )
    assert out.endswith(
        b"550 5.1.1 User unknown\r\n421 4.7.0 Too many errors, closing connection\r\n"
    )
    assert events[-1] == CloseConnection("too many errors")


def test_pipeline_buffer_overflow_while_paused():
    core = ServerCore(settings(max_pipeline_buffer=1024))
    core.start()
    core.receive_data(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n")
    assert core.next_event().verb == "EHLO"
    assert isinstance(core.next_event(), MailFrom)
    assert core.next_event() is PAUSED
    core.receive_data(b"NOOP\r\n" * 100)  # 600 octets: fine
    core.receive_data(b"NOOP\r\n" * 100)  # 1200: past the cap
    assert core.next_event() is PAUSED
    core.accept()
    assert core.next_event() == CloseConnection("pipeline overflow")
    assert core.data_to_send().endswith(
        b"250 2.1.0 Ok\r\n421 4.7.0 Too much pipelined input, closing connection\r\n"
    )


def test_shell_close_with_timeout():
    from mailstead.protocols.smtp import replies

    core = ServerCore(settings())
    core.start()
    core.receive_data(TX + b"DATA\r\npartial")
    while core.next_event() not in (NEED_DATA, PAUSED):
        pass
    core.accept()
    while core.next_event() not in (NEED_DATA, PAUSED):
        pass
    core.accept()
    while core.next_event() is not NEED_DATA:
        pass
    core.close(replies.TIMEOUT, "timeout")
    assert core.next_event() == MessageAborted("connection closed")
    assert core.next_event() == CloseConnection("timeout")
    assert core.data_to_send().endswith(b"421 4.4.2 Idle timeout\r\n")
