"""Literals through the core: synchronising, LITERAL+, LITERAL-, literal8, limits refused before
the octets are read, non-synchronising overflow discarded as it streams, and splitting."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from mailstead.protocols.imap import (
    NEED_DATA,
    CommandReceived,
    ConnectionClosed,
    ProtocolErrorEvent,
    State,
)
from mailstead.protocols.imap import commands as c

from .helpers import bytewise, make, run

READY = b"+ Ready for literal data\r\n"


def test_synchronising_literal_gets_a_continuation():
    core = make(State.NOT_AUTHENTICATED)
    events, out = run(core, [b"a1 LOGIN {4}\r\n"])
    assert events == [] and out == READY
    events, out = run(core, [b"fred {6}\r\n"])
    assert events == [] and out == READY
    events, out = run(core, [b"secret\r\n"])
    assert events == [CommandReceived("a1", c.Login("fred", "secret"))]
    assert out == b"a1 OK LOGIN done\r\n"


def test_non_synchronising_literals_get_no_continuation():
    core = make(State.NOT_AUTHENTICATED)
    events, out = run(core, [b"a1 LOGIN {4+}\r\nfred {6+}\r\nsecret\r\n"])
    assert events == [CommandReceived("a1", c.Login("fred", "secret"))]
    assert out == b"a1 OK LOGIN done\r\n"


def test_zero_length_literal():
    core = make(State.NOT_AUTHENTICATED)
    events, out = run(core, [b"a1 LOGIN {0}\r\n", b" {0+}\r\n\r\n"])
    assert events == [CommandReceived("a1", c.Login("", ""))]
    assert out == READY + b"a1 OK LOGIN done\r\n"


def test_literal8_in_append():
    core = make()
    events, out = run(core, [b"a1 APPEND INBOX ~{5}\r\n", b"a\x00b\r\n\r\n"])
    assert events == [
        CommandReceived("a1", c.Append("INBOX", (c.AppendMessage(b"a\x00b\r\n", binary=True),)))
    ]
    assert out == READY + b"a1 OK APPEND done\r\n"


def test_a_large_literal_is_held_once():
    """An 8 MiB APPEND literal, arriving in 64 KiB pieces, is kept in one buffer that grows in
    place and handed to the command as it is: the core never holds two copies of it (it did:
    the receiver copied its buffer when the command ended, and the parser sliced the literal
    out of that copy)."""
    size = 8 << 20
    literal = (b"x" * 76 + b"\r\n") * (size // 78) + b"end\r\n"
    core = make(max_append_size=16 << 20, max_command_literals=16 << 20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        core.receive_data(b"a1 APPEND INBOX {%d+}\r\n" % len(literal))
        assert core.next_event() is NEED_DATA
        for start in range(0, len(literal), 64 << 10):
            core.receive_data(literal[start : start + (64 << 10)])
            assert core.next_event() is NEED_DATA
        core.receive_data(b"\r\n")
        event = core.next_event()
        held, peak = (n - before for n in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert isinstance(event, CommandReceived) and isinstance(event.command, c.Append)
    assert event.command.messages[0].data == literal
    assert held < 1.1 * len(literal)
    assert peak < 1.2 * len(literal), f"peak {peak / len(literal):.2f}x the literal"


def test_literal_content_is_never_parsed_as_commands():
    core = make()
    body = b"a2 LOGOUT\r\n{5}\r\n* BYE\r\n"
    events, _ = run(core, [b"a1 APPEND INBOX {%d+}\r\n%b\r\na3 NOOP\r\n" % (len(body), body)])
    assert events == [
        CommandReceived("a1", c.Append("INBOX", (c.AppendMessage(body),))),
        CommandReceived("a3", c.Noop()),
    ]


def test_multiappend_with_mixed_literals():
    core = make()
    events, out = run(
        core, [b"a1 APPEND INBOX (\\Seen) {3}\r\n", b"abc {2+}\r\nde ~{1}\r\n", b"f\r\n"]
    )
    assert events == [
        CommandReceived(
            "a1",
            c.Append(
                "INBOX",
                (
                    c.AppendMessage(b"abc", ("\\Seen",)),
                    c.AppendMessage(b"de"),
                    c.AppendMessage(b"f", binary=True),
                ),
            ),
        )
    ]
    assert out == READY + READY + b"a1 OK APPEND done\r\n"


# --- limits ---------------------------------------------------------------------------------------
def test_append_over_limit_is_refused_before_reading():
    core = make(max_append_size=2048)
    events, out = run(core, [b"a1 APPEND INBOX {2049}\r\n"])
    assert out == b"a1 NO [TOOBIG] Message too large\r\n"  # RFC 7889 §4
    assert events == [ProtocolErrorEvent("a1", "Message too large")]
    # the client does not send the literal; the next command is read normally
    events, out = run(core, [b"a2 APPEND INBOX {2048}\r\n"])
    assert out == READY


def test_other_literal_over_limit_is_bad_before_reading():
    core = make(State.NOT_AUTHENTICATED, max_literal=1024)
    _, out = run(core, [b"a1 LOGIN {1025}\r\n"])
    assert out == b"a1 BAD [TOOBIG] Literal too large\r\n"
    _, out = run(core, [b"a2 LOGIN {3}\r\n"])
    assert out == READY


def test_append_limit_applies_only_to_append():
    core = make(State.AUTHENTICATED, max_literal=1024, max_append_size=4096)
    _, out = run(core, [b"a1 CREATE {2000}\r\n"])
    assert out == b"a1 BAD [TOOBIG] Literal too large\r\n"
    _, out = run(core, [b"a2 APPEND {2000}\r\n"])
    assert out == READY  # the mailbox name literal of APPEND is bounded by the APPEND limit


def test_multiappend_total_is_bounded():
    core = make(max_append_size=4096, max_command_literals=5000)
    m = b"x" * 3000
    _, out = run(core, [b"a1 APPEND INBOX {3000}\r\n", m + b" {3000}\r\n"])
    assert out == READY + b"a1 NO [TOOBIG] Message too large\r\n"


def test_literal_for_unknown_or_illegal_command_is_refused_before_reading():
    core = make(State.NOT_AUTHENTICATED)
    _, out = run(core, [b"a1 APPEND INBOX {10}\r\n"])
    assert out == b"a1 BAD Not authenticated\r\n"  # never upload before login
    _, out = run(core, [b"a2 XYZZY {10}\r\n"])
    assert out == b"a2 BAD Unknown command\r\n"
    _, out = run(core, [b"{10}\r\n"])
    assert out == b"* BAD Invalid tag\r\n"


def test_non_synchronising_over_limit_is_discarded_as_it_streams():
    core = make(max_append_size=2048)
    big = b"x" * 5000
    events, out = run(
        core, [b"a1 APPEND INBOX {5000+}\r\n", big[:2500], big[2500:] + b"\r\na2 NOOP\r\n"]
    )
    assert out == b"a1 NO [TOOBIG] Message too large\r\na2 OK NOOP done\r\n"
    assert events == [
        ProtocolErrorEvent("a1", "Message too large"),
        CommandReceived("a2", c.Noop()),
    ]
    assert core._rx._cmd == b""  # nothing of it was kept


def test_discarded_command_rest_is_skipped_including_further_literals():
    core = make(max_append_size=2048)
    events, out = run(
        core,
        [b"a1 APPEND INBOX {3000+}\r\n" + b"y" * 3000 + b" {4+}\r\nNOOP {5}\r\n", b"a2 NOOP\r\n"],
    )
    assert out == b"a1 NO [TOOBIG] Message too large\r\na2 OK NOOP done\r\n"
    assert [type(e) for e in events] == [ProtocolErrorEvent, CommandReceived]


def test_absurd_non_synchronising_literal_closes():
    core = make(max_append_size=2048)
    events, out = run(core, [b"a1 APPEND INBOX {20481+}\r\n"])
    assert out == b"* BYE Literal too large\r\n"
    assert events == [ConnectionClosed("bye")]


def test_literal_minus_limits_non_synchronising_literals():
    core = make(literal_plus=False)
    _events, out = run(core, [b"a1 APPEND INBOX {4096+}\r\n" + b"z" * 4096 + b"\r\n"])
    assert out == b"a1 OK APPEND done\r\n"
    _, out = run(core, [b"a2 APPEND INBOX {4097+}\r\n" + b"z" * 4097 + b"\r\n"])
    assert out == b"a2 BAD [TOOBIG] Non-synchronizing literal over 4096 octets\r\n"  # RFC 7888 §4
    _, out = run(core, [b"a3 APPEND INBOX {4097}\r\n"])
    assert out == READY


def test_command_line_too_long():
    core = make(max_line=1024, max_buffered_input=4096)
    events, out = run(core, [b"a1 SEARCH " + b"SEEN " * 300, b"SEEN\r\na2 NOOP\r\n"])
    assert out == b"a1 BAD Command line too long\r\na2 OK NOOP done\r\n"
    assert events[0] == ProtocolErrorEvent("a1", "Command line too long")


def test_command_line_limit_counts_all_lines_but_not_literals():
    core = make(max_line=1024, max_buffered_input=4096)
    _events, out = run(core, [b"a1 APPEND INBOX {2000+}\r\n" + b"x" * 2000 + b"\r\n"])
    assert out == b"a1 OK APPEND done\r\n"
    parts = b"a2 LOGIN " + b"a" * 600 + b" {3+}\r\nabc" + b" " + b"b" * 500 + b"\r\n"
    _, out = run(make(State.NOT_AUTHENTICATED, max_line=1024, max_buffered_input=4096), [parts])
    assert out == b"a2 BAD Command line too long\r\n"


def test_long_line_ending_in_a_literal_skips_the_literal():
    core = make(max_line=1024, max_buffered_input=8192)
    line = b"a1 SEARCH TEXT " + b"x" * 2000 + b" {5+}\r\nhello\r\na2 NOOP\r\n"
    _, out = run(core, bytewise(line))
    assert out == b"a1 BAD Command line too long\r\na2 OK NOOP done\r\n"


def test_long_line_without_tag_is_untagged():
    core = make(max_line=1024, max_buffered_input=4096)
    _, out = run(core, [b" " * 2000 + b"\r\na2 NOOP\r\n"])
    assert out == b"* BAD Command line too long\r\na2 OK NOOP done\r\n"


# --- splitting ------------------------------------------------------------------------------------
TRANSCRIPT = (
    b"a1 LOGIN {4}\r\nfred {6+}\r\nsecret\r\n"
    b"a2 SELECT INBOX\r\n"
    b"a3 APPEND INBOX (\\Seen) {12}\r\nHello\r\nworld ~{3+}\r\na\x00b\r\n"
    b"a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])\r\n"
    b"a5 SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncaf\xc3\xa9\r\n"
    b"a6 FOO\r\n"
    b"a7 APPEND INBOX {999999999}\r\n"
    b"a8 LOGOUT\r\n"
)


def transcript(pieces):
    core = make(State.NOT_AUTHENTICATED)

    def answer(core, ev):
        if isinstance(ev.command, c.Login):
            core.set_state(State.AUTHENTICATED)
        elif isinstance(ev.command, c.Select):
            core.set_state(State.SELECTED)
        core.send(b"%b OK done\r\n" % ev.tag.encode())
        core.command_done()

    return run(core, pieces, answer)


def test_split_at_every_byte_boundary_gives_identical_events():
    whole = transcript([TRANSCRIPT])
    assert len([e for e in whole[0] if isinstance(e, CommandReceived)]) == 6
    assert transcript(bytewise(TRANSCRIPT)) == whole
    for i in range(1, len(TRANSCRIPT)):
        assert transcript([TRANSCRIPT[:i], TRANSCRIPT[i:]]) == whole, i


@pytest.mark.parametrize("seed", range(20))
def test_random_splits_give_identical_events(seed):
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(TRANSCRIPT)), 12))
    pieces = [TRANSCRIPT[a:b] for a, b in zip([0, *cuts], [*cuts, len(TRANSCRIPT)], strict=True)]
    assert transcript(pieces) == transcript([TRANSCRIPT])
