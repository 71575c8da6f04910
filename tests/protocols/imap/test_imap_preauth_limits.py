"""Before login the literals of one command together are at most ``max_preauth_literals``
octets, and its text ``max_line`` as always (issue 11: ``a LOGIN {65536+}`` followed by
hundreds of literals held ~44 MB per unauthenticated connection)."""

from __future__ import annotations

from mailstead.protocols.imap import (
    AuthenticateLine,
    CommandReceived,
    ConnectionClosed,
    ProtocolErrorEvent,
    ServerCore,
    Settings,
    State,
)
from mailstead.protocols.imap import commands as c
from mailstead.protocols.imap import response as r

from .helpers import bytewise, make, run

READY = b"+ Ready for literal data\r\n"

CAP = Settings().max_preauth_literals  # 8 KiB


def test_default_cap_is_a_few_kib() -> None:
    assert CAP == 8192


def test_login_with_short_literals_works() -> None:
    core = make(State.NOT_AUTHENTICATED)
    events, out = run(core, [b"a LOGIN {5}\r\n", b"alice {2+}\r\npw\r\n"])
    assert out == READY + b"a OK LOGIN done\r\n"
    assert events == [CommandReceived("a", c.Login("alice", "pw"))]


def test_synchronising_literal_past_the_cap_is_refused_before_the_continuation() -> None:
    core = make(State.NOT_AUTHENTICATED)
    events, out = run(core, [b"a LOGIN {65536}\r\n", b"b NOOP\r\n"])
    assert out == b"a BAD [TOOBIG] Command too large before login\r\nb OK NOOP done\r\n"
    assert events[0] == ProtocolErrorEvent("a", "Command too large before login")


def test_literals_adding_up_past_the_cap_are_refused() -> None:
    core = make(State.NOT_AUTHENTICATED)
    half = CAP // 2
    _, out = run(core, [b"a LOGIN {%d+}\r\n" % half + b"x" * half + b" {%d}\r\n" % (half + 1)])
    assert out == b"a BAD [TOOBIG] Command too large before login\r\n"
    _, out = run(core, [b"b NOOP\r\n"])
    assert out == b"b OK NOOP done\r\n"


def test_non_synchronising_literal_past_the_cap_closes_the_connection() -> None:
    """RFC 7888 §4: the octets are on their way; the server may close, as Dovecot's login does."""
    core = make(State.NOT_AUTHENTICATED)
    attack = b"a LOGIN {65536+}\r\n" + b"x" * 65536
    events, out = run(core, [*bytewise(attack[:40]), attack[40:] * 3])
    assert out == (b"a BAD [TOOBIG] Command too large before login\r\n* BYE Too much input\r\n")
    assert events == [ConnectionClosed("bye")]
    assert core.closed
    assert len(core._rx._cmd) == 0 and core._rx.unread == 0  # nothing of it is kept


def test_text_and_literals_are_bounded_each() -> None:
    # the text does not count against the literal cap (ImapTest's pre-login ID sends 31 KiB)
    core = make(State.NOT_AUTHENTICATED)
    text = b"a LOGIN " + b"u" * (CAP - 20) + b" {100}\r\n"
    _, out = run(core, [text])
    assert out == READY
    # but the text has its own bound: past it the line is refused and discarded
    core = make(State.NOT_AUTHENTICATED, max_line=16384)
    parts = [b"a LOGIN {4000+}\r\n" + b"x" * 4000 + b" " + b"p" * 17000 + b"\r\nb NOOP\r\n"]
    _, out = run(core, parts)
    assert out == b"a BAD Command line too long\r\nb OK NOOP done\r\n"
    # so a command is at most max_line + the literal cap
    core = make(State.NOT_AUTHENTICATED, max_line=16384)
    parts = [b"a LOGIN " + b"u" * 16000 + b" {%d}\r\n" % (CAP + 1)]
    _, out = run(core, parts)
    assert out == b"a BAD [TOOBIG] Command too large before login\r\n"


def test_after_login_the_ordinary_limits_apply() -> None:
    core = make(State.NOT_AUTHENTICATED)

    def login(core: ServerCore, ev: CommandReceived) -> None:
        core.set_state(State.AUTHENTICATED)
        core.send(r.tagged(ev.tag, "OK", "done"))
        core.command_done()

    run(core, [b"a LOGIN u p\r\n"], answer=login)
    _, out = run(core, [b"b CREATE {20000}\r\n"])
    assert out == READY
    # and a PREAUTH greeting starts authenticated
    pre = ServerCore()
    pre.greet("hi", preauth=True)
    _, out = run(pre, [b"c CREATE {20000}\r\n"])
    assert out.endswith(READY)


def test_authenticate_lines_are_bounded_before_login() -> None:
    core = make(State.NOT_AUTHENTICATED)

    def begin(core: ServerCore, ev: CommandReceived) -> None:
        core.begin_authenticate()

    events, _ = run(core, [b"a AUTHENTICATE PLAIN\r\n", b"A" * (CAP + 10) + b"\r\nQUJD\r\n"], begin)
    assert events[1:] == [AuthenticateLine(b"", too_long=True), AuthenticateLine(b"QUJD")]


def test_literals_up_to_the_cap_are_accepted() -> None:
    core = make(State.NOT_AUTHENTICATED)
    half = CAP // 2
    _, out = run(core, [b"a LOGIN {%d+}\r\n" % half + b"x" * half + b" {%d}\r\n" % half])
    assert out == READY
