"""The IMAP server core (receiver with literals, grammar, state table, COMPRESS) on arbitrary
client bytes.

Input: one octet choosing settings and the starting state, one seeding the split, then the
client's bytes. A small fake session answers every command (LOGIN and SELECT move states, IDLE
and AUTHENTICATE use their input modes, STARTTLS and COMPRESS do what the shell does).
Properties: no exception; every response line CRLF-terminated with no bare CR or LF, tagged with
the client's tag, ``*`` or ``+``; unread input and kept literal octets within their limits; and
the same responses and events whether the bytes come whole or in pieces.
"""

from __future__ import annotations

import re
import zlib

from fuzz.harness import check_split, instrument, lines, run, split

with instrument(__name__ == "__main__"):
    from mailstead.protocols.imap import (
        NEED_DATA,
        PAUSED,
        AuthenticateLine,
        CommandReceived,
        Event,
        IdleDone,
        ServerCore,
        Settings,
        State,
        commands,
    )
    from mailstead.protocols.imap import response as r

STATES = (State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED, State.NOT_AUTHENTICATED)
_LINE = re.compile(rb"(\*|\+|[\x21-\x7e]+) [^\r\n]*\r\n|\+ \r\n")


def settings_for(flags: int) -> Settings:
    return Settings(
        max_line=1024,
        max_literal=1024,
        max_append_size=4096,
        max_command_literals=8192,
        literal_plus=not flags & 1,
        utf8_accept=bool(flags & 2),
        max_buffered_input=1 << 20,
        max_errors=20,
    )


class Session:
    """Answers commands the way a shell would, without a store."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.inflate: zlib._Decompress | None = None
        self.plain = bytearray()  # everything sent, inflated

    def take(self) -> None:
        data = self.core.data_to_send()
        if self.inflate is not None:
            data = self.inflate.decompress(data)
        self.plain += data

    def command(self, ev: CommandReceived) -> None:
        core, cmd, tag = self.core, ev.command, ev.tag
        if isinstance(cmd, commands.Idle):
            core.begin_idle()
            return
        if isinstance(cmd, commands.Authenticate):
            core.send(r.continuation(b""))
            core.begin_authenticate()
            return
        if isinstance(cmd, commands.StartTLS):
            core.send(r.tagged(tag, "OK", "Begin TLS negotiation now"))
            self.take()
            core.tls_started()
            return
        if isinstance(cmd, commands.Compress):
            if core.compressing:
                core.send(r.tagged(tag, "NO", "Already compressing", r.code("COMPRESSIONACTIVE")))
            elif cmd.mechanism != "DEFLATE":
                core.send(r.tagged(tag, "BAD", "Unknown compression mechanism"))
            else:
                core.send(r.tagged(tag, "OK", "DEFLATE active"))
                self.take()
                core.start_compression()
                self.inflate = zlib.decompressobj(-15)
            core.command_done()
            return
        if isinstance(cmd, commands.Login):
            core.set_state(State.AUTHENTICATED)
        elif isinstance(cmd, (commands.Select, commands.Examine)):
            core.send(r.untagged("FLAGS", r.flag_list(["\\Seen"])))
            core.set_state(State.SELECTED)
        elif isinstance(cmd, commands.Close | commands.Unselect):
            core.set_state(State.AUTHENTICATED)
        elif isinstance(cmd, commands.Enable) and "UTF8=ACCEPT" in cmd.capabilities:
            core.enable_utf8()
        elif isinstance(cmd, commands.Logout):
            core.send(r.untagged("BYE", "bye"))
            core.send(r.tagged(tag, "OK", "LOGOUT done"))
            core.set_state(State.LOGOUT)
            core.command_done()
            return
        core.send(r.tagged(tag, "OK", f"{cmd.NAME} done"))
        core.command_done()

    def idle_done(self, ev: IdleDone) -> None:
        tag = self.core.outstanding
        assert tag is not None
        self.core.send(r.tagged(tag, "OK" if ev.valid else "BAD", "IDLE done"))
        self.core.command_done()

    def auth_line(self, ev: AuthenticateLine) -> None:
        tag = self.core.outstanding
        assert tag is not None
        if ev.data == b"bW9yZQ==":  # "more"
            self.core.send(r.continuation(b"YWdhaW4="))
            return
        self.core.send(r.tagged(tag, "NO", "AUTHENTICATE failed"))
        self.core.command_done()


def drive(pieces: list[bytes], flags: int) -> tuple[bytes, list[Event]]:
    config = settings_for(flags)
    core = ServerCore(config)
    core.set_state(STATES[flags >> 2 & 3])
    core.greet("ready")
    session = Session(core)
    session.take()
    events: list[Event] = []
    for piece in [*pieces, b""]:
        core.receive_data(piece)
        while True:
            ev = core.next_event()
            if ev is NEED_DATA:
                break
            assert ev is not PAUSED, "every command was answered"
            assert isinstance(ev, Event)
            events.append(ev)
            if isinstance(ev, CommandReceived):
                session.command(ev)
            elif isinstance(ev, IdleDone):
                session.idle_done(ev)
            elif isinstance(ev, AuthenticateLine):
                session.auth_line(ev)
        session.take()
        rx = core._rx
        assert rx.unread <= config.max_buffered_input
        assert rx._kept <= config.max_command_literals
        assert len(rx._cmd) <= config.max_line + config.max_command_literals + 64
    assert core.closed, "EOF must close the connection"
    return bytes(session.plain), events


def check_responses(out: bytes) -> None:
    for line in lines(out):
        assert _LINE.fullmatch(line) is not None, f"malformed response line: {line!r}"


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    body = data[2:]
    whole_out, whole_events = drive([body], data[0])
    check_responses(whole_out)
    out, events = drive(split(body, data[1]), data[0])
    # Past STARTTLS, and past COMPRESS when the deflate stream turns out corrupt (an inflater
    # fed in pieces gives what precedes the corruption, fed whole it fails at once), only what
    # came before must agree.
    corrupt = _CORRUPT in whole_out or _CORRUPT in out
    cut = next(
        (
            i
            for i, e in enumerate(whole_events)
            if isinstance(e, CommandReceived)
            and (
                isinstance(e.command, commands.StartTLS)
                or (corrupt and isinstance(e.command, commands.Compress))
            )
        ),
        None,
    )
    at = whole_events[cut] if cut is not None else None
    if isinstance(at, CommandReceived) and isinstance(at.command, commands.Compress):
        marker = b" DEFLATE active\r\n"  # compare up to the tagged OK to COMPRESS
        whole_out = whole_out[: whole_out.index(marker) + len(marker)]
    check_split((whole_out, list(whole_events)), (out, list(events)), cut)


_CORRUPT = b"* BYE Invalid compressed data\r\n"


if __name__ == "__main__":
    run(check)
