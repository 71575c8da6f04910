"""Transcript runner for the SMTP server core: client bytes in, server bytes and events out.

``run`` feeds the core in pieces (whole, byte by byte, or at given split points) and answers
decision events with a small policy (AUTH events with an ``auth`` handler); ``check`` runs a
written transcript (``C:``/``S:`` lines) at several splittings and asserts the server bytes are
exactly the expected ones every time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence

from mailstead.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    AuthStart,
    DataChunk,
    Event,
    MailFrom,
    MessageAborted,
    MessageComplete,
    RcptTo,
    Reply,
    ServerCore,
    ServerSettings,
    StartTLS,
    replies,
)

SETTINGS = ServerSettings(hostname="mx.example.org", banner="ESMTP Mailstead")
GREETING = b"220 mx.example.org ESMTP Mailstead\r\n"
EHLO_REPLY = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
    b"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-CHUNKING\r\n250-DSN\r\n"
    b"250 HELP\r\n"
)

Decide = Callable[[Event], Reply | str | None]
# Answers AuthStart / AuthResponse on the core itself (auth_challenge, accept or reply).
AuthHandler = Callable[[ServerCore, Event], None]


def refuse_auth(core: ServerCore, event: Event) -> None:
    core.reply(replies.AUTH_FAILED)


def default_policy(event: Event) -> Reply | str | None:
    """Refuse senders starting "spammer", recipients starting "unknown"; queue messages as TEST."""
    if isinstance(event, MailFrom) and event.reverse_path.startswith("spammer"):
        return replies.SENDER_REJECTED
    if isinstance(event, RcptTo) and event.forward_path.startswith("unknown"):
        return replies.USER_UNKNOWN
    if isinstance(event, MessageComplete):
        return "Ok: queued as TEST"
    return None


def settings(**changes: object) -> ServerSettings:
    import dataclasses

    return dataclasses.replace(SETTINGS, **changes)  # type: ignore[arg-type]


def run(
    pieces: Iterable[bytes],
    *,
    config: ServerSettings = SETTINGS,
    decide: Decide = default_policy,
    eof: bool = False,
    tls: bool = True,
    auth: AuthHandler = refuse_auth,
) -> tuple[bytes, list[Event], ServerCore]:
    """Feed ``pieces`` one receive_data call each; return server bytes, events, and the core."""
    core = ServerCore(config)
    core.start()
    out = bytearray(core.data_to_send())
    events: list[Event] = []

    def drain() -> None:
        while True:
            ev = core.next_event()
            if ev is NEED_DATA:
                return
            assert ev is not PAUSED, "a decision event was answered, the core cannot be paused"
            assert isinstance(ev, Event)
            events.append(ev)
            if isinstance(ev, (MailFrom, RcptTo, MessageComplete)):
                decision = decide(ev)
                if isinstance(decision, Reply):
                    core.reply(decision)
                else:
                    core.accept(decision)
            elif isinstance(ev, (AuthStart, AuthResponse)):
                auth(core, ev)
            elif isinstance(ev, StartTLS) and tls:
                out.extend(core.data_to_send())
                core.tls_started()

    for piece in pieces:
        core.receive_data(piece)
        drain()
        out += core.data_to_send()
    if eof:
        core.receive_data(b"")
        drain()
        out += core.data_to_send()
    return bytes(out), events, core


def split_at(data: bytes, points: Sequence[int]) -> list[bytes]:
    cuts = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def splittings(data: bytes, seeds: Iterable[int] = range(5)) -> list[list[bytes]]:
    """Whole, one byte at a time, and a few random splittings of ``data``."""
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    for seed in seeds:
        rng = random.Random(seed)
        n = rng.randint(1, max(1, len(data) // 3))
        out.append(split_at(data, [rng.randrange(1, max(2, len(data))) for _ in range(n)]))
    return out


def merged(events: list[Event]) -> list[Event]:
    """Events with consecutive DataChunks joined (chunking depends on how bytes arrived)."""
    result: list[Event] = []
    for ev in events:
        if isinstance(ev, DataChunk) and result and isinstance(result[-1], DataChunk):
            result[-1] = DataChunk(result[-1].data + ev.data)
        elif not (isinstance(ev, DataChunk) and not ev.data):
            result.append(ev)
    return result


def comparable(events: list[Event]) -> list[Event]:
    """What must not depend on how the bytes were split: the merged events, except that the
    content streamed before a MessageAborted is arbitrary (the shell discards it anyway), and so
    is the abort's reason when several problems were found (the final reply is not)."""
    events = merged(events)
    if any(isinstance(e, MessageAborted) for e in events):
        return [
            MessageAborted("*") if isinstance(e, MessageAborted) else e
            for e in events
            if not isinstance(e, DataChunk)
        ]
    return events


def parse_transcript(text: str) -> tuple[bytes, bytes]:
    """``C: line`` is sent by the client, ``S: line`` expected from the server (CRLF added).

    ``C= text`` sends text without CRLF; ``\\r``, ``\\n``, ``\\xNN`` escapes are decoded in both.
    """
    client = bytearray()
    server = bytearray()
    for raw_line in text.strip("\n").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        kind, body = line[:2], line[3:] if len(line) > 2 else ""
        data = body.encode("utf-8").decode("unicode_escape").encode("latin-1")
        if kind == "C:":
            client += data + b"\r\n"
        elif kind == "C=":
            client += data
        elif kind == "S:":
            server += data + b"\r\n"
        else:
            raise ValueError(f"bad transcript line: {raw_line!r}")
    return bytes(client), bytes(server)


def check(
    text: str,
    *,
    config: ServerSettings = SETTINGS,
    decide: Decide = default_policy,
    eof: bool = False,
    greeting: bool = True,
    auth: AuthHandler = refuse_auth,
) -> list[Event]:
    """Run a transcript at several splittings; every run must give exactly the expected bytes
    and the same events. Returns the events (DataChunks merged)."""
    client, expected = parse_transcript(text)
    if greeting:
        expected = GREETING.replace(b"mx.example.org", config.hostname.encode()) + expected
    first: list[Event] | None = None
    for pieces in splittings(client):
        out, events, _ = run(pieces, config=config, decide=decide, eof=eof, auth=auth)
        assert out.decode("utf-8", "replace") == expected.decode("utf-8", "replace")
        assert out == expected
        if first is None:
            first = comparable(events)
        else:
            assert comparable(events) == first
    assert first is not None
    return first
