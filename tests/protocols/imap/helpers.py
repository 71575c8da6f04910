"""Driving the IMAP core in tests: feed pieces, collect events and output, answer commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailstead.protocols.imap import (
    NEED_DATA,
    PAUSED,
    CommandReceived,
    Event,
    ServerCore,
    Settings,
    State,
)
from mailstead.protocols.imap import response as r

Answer = Callable[[ServerCore, CommandReceived], None]


def ok(core: ServerCore, ev: CommandReceived) -> None:
    core.send(r.tagged(ev.tag, "OK", f"{ev.command.NAME} done"))
    core.command_done()


def make(state: State = State.SELECTED, **settings: object) -> ServerCore:
    core = ServerCore(Settings(**settings))  # type: ignore[arg-type]
    core.set_state(state)
    return core


def run(
    core: ServerCore, pieces: Iterable[bytes], answer: Answer | None = ok
) -> tuple[list[Event], bytes]:
    """Feed each piece, draining events after each; answer commands with ``answer`` (None:
    leave them outstanding). Returns the events and every byte the core sent."""
    events: list[Event] = []
    out = bytearray()
    for piece in pieces:
        core.receive_data(piece)
        while True:
            ev = core.next_event()
            if ev is NEED_DATA or ev is PAUSED:
                break
            events.append(ev)
            if isinstance(ev, CommandReceived) and answer is not None:
                answer(core, ev)
        out += core.data_to_send()
    return events, bytes(out)


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]
