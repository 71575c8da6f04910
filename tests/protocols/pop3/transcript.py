"""Driving the POP3 core in tests: a small fake session answers commands, so a written
transcript (``C:``/``S:`` lines, see the SMTP runner) can be checked at several splittings."""

from __future__ import annotations

from mailstead.protocols.pop3 import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    CommandReceived,
    Event,
    ServerCore,
    Settings,
    State,
    commands,
    replies,
)

from ..smtp.transcript import parse_transcript, splittings

GREETING = b"+OK ready\r\n"


class FakeSession:
    """Logs in ``user``/``secret`` (PASS or AUTH PLAIN-like: any response "secret"), answers
    every other command with ``+OK NAME``, QUIT with ``+OK bye`` and STLS by "starting" TLS."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.user: str | None = None

    def command(self, cmd: commands.Command) -> None:
        core = self.core
        if isinstance(cmd, commands.User):
            self.user = cmd.name
            core.send(replies.ok("send PASS"))
            core.set_state(State.USER)
        elif isinstance(cmd, commands.Pass):
            self.login(cmd.password == "secret")
            return
        elif isinstance(cmd, commands.Auth) and cmd.mechanism is not None:
            if cmd.initial_response is not None:
                self.login(cmd.initial_response == b"secret")
                return
            core.send(replies.challenge(b""))
            core.begin_auth()
            return
        elif isinstance(cmd, commands.Quit):
            core.send(replies.ok("bye"))
            core.set_state(State.UPDATE)
        elif isinstance(cmd, commands.Stls):
            core.send(replies.ok("begin TLS"))
            core.tls_started()
            return
        else:
            core.send(replies.ok(cmd.NAME))
        core.command_done()

    def auth_response(self, event: AuthResponse) -> None:
        if event.data == b"*":
            self.core.send(replies.err("cancelled"))
            self.core.command_done()
        elif event.data == b"more":
            self.core.send(replies.challenge(b"again"))
        else:
            self.login(event.data == b"secret")

    def login(self, ok: bool) -> None:
        core = self.core
        if ok:
            core.send(replies.ok("logged in"))
            core.set_state(State.TRANSACTION)
        else:
            core.send(replies.err("failed", "AUTH"))
            core.set_state(State.AUTHORIZATION)
            core.count_error()
        core.command_done()


def run(
    pieces: list[bytes], *, settings: Settings | None = None, eof: bool = False
) -> tuple[bytes, list[Event], ServerCore]:
    """Feed each piece, answering with a `FakeSession`; return the bytes sent, the events."""
    core = ServerCore(settings)
    session = FakeSession(core)
    core.greet("ready")
    out = bytearray(core.data_to_send())
    events: list[Event] = []

    def drain() -> None:
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                return
            assert event is not PAUSED, "every command was answered"
            assert isinstance(event, Event)
            events.append(event)
            if isinstance(event, CommandReceived):
                session.command(event.command)
            elif isinstance(event, AuthResponse):
                session.auth_response(event)

    for piece in pieces:
        core.receive_data(piece)
        drain()
        out += core.data_to_send()
    if eof:
        core.receive_data(b"")
        drain()
        out += core.data_to_send()
    return bytes(out), events, core


def check(text: str, *, settings: Settings | None = None, eof: bool = False) -> list[Event]:
    """Run a transcript whole, byte by byte and at random splittings: the server bytes must be
    exactly the expected ones, and the events the same, every time."""
    client, expected = parse_transcript(text)
    expected = GREETING + expected
    first: list[Event] | None = None
    for pieces in splittings(client):
        out, events, _ = run(pieces, settings=settings, eof=eof)
        assert out.decode("utf-8", "replace") == expected.decode("utf-8", "replace")
        assert out == expected
        if first is None:
            first = events
        else:
            assert events == first
    assert first is not None
    return first
