"""The POP3 server core (line receiver, command grammar, state table, AUTH and STLS modes) on
arbitrary client bytes.

Input: one octet choosing settings, one seeding the split, then the client's bytes; a fake
session logs in ``user``/``secret`` and answers everything else.
Properties: no exception; every reply line ``+OK``, ``-ERR`` or ``+ `` and CRLF-terminated
(at most 512 octets, RFC 2449 §4); unread input and the line buffer within their limits; the
same replies and events whether the bytes come whole or in pieces.
"""

from __future__ import annotations

import re

from fuzz.harness import check_split, instrument, lines, run, split

with instrument(__name__ == "__main__"):
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

_LINE = re.compile(rb"(\+OK|-ERR)( [^\r\n]*)?\r\n|\+ [^\r\n]*\r\n")


def settings_for(flags: int) -> Settings:
    return Settings(
        max_line=255 + (flags & 3) * 100,
        max_auth_line=512,
        max_errors=3 + (flags >> 2) % 8,
        max_buffered_input=1 << 20,
    )


def _answer(core: ServerCore, cmd: commands.Command, user: list[str]) -> None:
    if isinstance(cmd, commands.User):
        user[:] = [cmd.name]
        core.send(replies.ok("send PASS"))
        core.set_state(State.USER)
    elif isinstance(cmd, commands.Pass) or (
        isinstance(cmd, commands.Auth) and cmd.initial_response is not None
    ):
        secret = cmd.password if isinstance(cmd, commands.Pass) else cmd.initial_response
        if secret in ("secret", b"secret"):
            core.send(replies.ok("logged in"))
            core.set_state(State.TRANSACTION)
        else:
            core.send(replies.err("failed", "AUTH"))
            core.set_state(State.AUTHORIZATION)
            core.count_error()
    elif isinstance(cmd, commands.Auth) and cmd.mechanism is not None:
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


def drive(pieces: list[bytes], config: Settings) -> tuple[bytes, list[Event]]:
    core = ServerCore(config)
    core.greet("ready")
    out = bytearray(core.data_to_send())
    events: list[Event] = []
    user: list[str] = []
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
                _answer(core, ev.command, user)
            elif isinstance(ev, AuthResponse):
                if ev.data == b"more":
                    core.send(replies.challenge(b"again"))
                else:
                    core.send(replies.err("failed", "AUTH"))
                    core.count_error()
                    core.command_done()
        out += core.data_to_send()
        rx = core._rx
        assert rx.unread <= max(config.max_line, config.max_auth_line), rx.unread
        assert len(rx._buf) <= 8192 + 2 * max(config.max_line, config.max_auth_line) + len(piece)
    assert core.closed, "EOF must close the connection"
    return bytes(out), events


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    config = settings_for(data[0])
    body = data[2:]
    whole_out, whole_events = drive([body], config)
    for line in lines(whole_out):
        assert _LINE.fullmatch(line) is not None, f"malformed reply line: {line!r}"
        assert len(line) <= 512, f"reply line of {len(line)} octets"
    out, events = drive(split(body, data[1]), config)
    tls = next(
        (
            i
            for i, e in enumerate(whole_events)
            if isinstance(e, CommandReceived) and isinstance(e.command, commands.Stls)
        ),
        None,
    )
    check_split((whole_out, list(whole_events)), (out, list(events)), tls)


if __name__ == "__main__":
    run(check)
