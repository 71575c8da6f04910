"""The SMTP server core (with its grammar and DATA/BDAT receivers) on arbitrary client bytes.

Input: one octet choosing settings, one seeding how the rest is split, then the client's bytes.
Properties: no exception; every reply line well-formed and at most 512 octets; the unread input
bounded by the line limits; a message's content is only CRLF lines and within SIZE, its
``MessageComplete.size`` the octets streamed; the same replies and events whether the bytes come
whole or in pieces (the property that catches smuggling: a receiver that reads an end of data
differently depending on where a read ends).
"""

from __future__ import annotations

import dataclasses

from fuzz.harness import check_smtp_replies, check_split, instrument, run, split

with instrument(__name__ == "__main__"):
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

BASE = ServerSettings(
    hostname="mx.example.org",
    max_message_size=2000,
    max_data_line=300,
    max_auth_line=1024,
    auth_mechanisms=("PLAIN", "LOGIN"),
)
_COMPACT_AT = 8192  # ServerCore compacts its buffer past this many consumed octets
CANCELLED = Reply(501, "5.7.0", "AUTH cancelled")


def settings_for(flags: int) -> ServerSettings:
    return dataclasses.replace(
        BASE,
        tls_active=bool(flags & 1),
        auth_plaintext=bool(flags & 2),
        chunking=not flags & 4,
        pipelining=not flags & 8,
        enhanced_status_codes=not flags & 16,
        auth_required=bool(flags & 32),
        require_tls_for_mail=bool(flags & 64),
        smtputf8=not flags & 128,
    )


def _decide(core: ServerCore, ev: Event) -> None:
    """A small deterministic policy, so that every branch of the core gets exercised."""
    if isinstance(ev, MailFrom):
        if ev.reverse_path.startswith("s"):
            core.reply(replies.SENDER_REJECTED)
        else:
            core.accept()
    elif isinstance(ev, RcptTo):
        if ev.forward_path.startswith("u"):
            core.reply(replies.USER_UNKNOWN)
        else:
            core.accept()
    elif isinstance(ev, MessageComplete):
        if ev.size % 7 == 3:
            core.reply(Reply(554, "5.7.1", "refused"))
        else:
            core.accept("queued")
    elif isinstance(ev, AuthStart):
        if ev.initial_response is None:
            core.auth_challenge(b"")
        elif ev.initial_response == b"ok":
            core.accept()
        else:
            core.reply(replies.AUTH_FAILED)
    elif isinstance(ev, AuthResponse):
        if ev.line == b"*":
            core.reply(CANCELLED)
        elif ev.line == b"bW9yZQ==":  # "more"
            core.auth_challenge(b"again")
        elif ev.line == b"b2s=":  # "ok"
            core.accept()
        else:
            core.reply(replies.AUTH_FAILED)


def drive(pieces: list[bytes], config: ServerSettings) -> tuple[bytes, list[Event]]:
    """Feed ``pieces`` one ``receive_data`` each, then EOF; answer every decision; check the
    buffer bound after every step. Returns the server's bytes and the events."""
    core = ServerCore(config)
    core.start()
    out = bytearray(core.data_to_send())
    events: list[Event] = []
    bound = max(config.max_command_line, config.max_auth_line)

    def drain() -> None:
        while True:
            ev = core.next_event()
            if ev is NEED_DATA:
                return
            assert ev is not PAUSED, "every decision was answered"
            assert isinstance(ev, Event)
            events.append(ev)
            if isinstance(ev, StartTLS):
                out.extend(core.data_to_send())
                core.tls_started()
            else:
                _decide(core, ev)

    for piece in [*pieces, b""]:
        core.receive_data(piece)
        drain()
        out += core.data_to_send()
        unread = len(core._buf) - core._pos
        # once closed (QUIT) the core reads nothing more; what it held of the last read stays
        assert unread <= bound or core.closed, f"{unread} unread octets kept"
        assert len(core._buf) <= _COMPACT_AT + bound + len(piece), "buffer not compacted"
    assert core.closed, "EOF must close the session"
    return bytes(out), events


def check_content(events: list[Event], config: ServerSettings) -> None:
    """Accepted content: CRLF lines only, within SIZE, and ``size`` is what was streamed."""
    content = bytearray()
    for ev in events:
        if isinstance(ev, DataChunk):
            content += ev.data
            assert len(content) <= config.max_message_size
        elif isinstance(ev, MessageComplete):
            assert ev.size == len(content), (ev.size, len(content))
            assert content.count(b"\r") == content.count(b"\n") == content.count(b"\r\n")
            content.clear()
        elif isinstance(ev, MessageAborted):
            content.clear()


def comparable(events: list[Event]) -> list[Event]:
    """Events with DataChunks merged; before an abort the streamed content is arbitrary."""
    merged: list[Event] = []
    for ev in events:
        if isinstance(ev, DataChunk):
            if merged and isinstance(merged[-1], DataChunk):
                merged[-1] = DataChunk(merged[-1].data + ev.data)
            elif ev.data:
                merged.append(ev)
        else:
            merged.append(ev)
    if any(isinstance(e, MessageAborted) for e in merged):
        return [
            MessageAborted("*") if isinstance(e, MessageAborted) else e
            for e in merged
            if not isinstance(e, DataChunk)
        ]
    return merged


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    config = settings_for(data[0])
    body = data[2:]
    whole_out, whole_events = drive([body], config)
    check_smtp_replies(whole_out)
    check_content(whole_events, config)
    out, events = drive(split(body, data[1]), config)
    # past a STARTTLS only what came before it must agree (normalised on that part alone: an
    # abort after it must not change how the content before it is compared)
    whole_events, events = _upto_tls(whole_events), _upto_tls(events)
    first, again = comparable(whole_events), comparable(events)
    tls = len(first) - 1 if first and isinstance(first[-1], StartTLS) else None
    check_split((whole_out, list(first)), (out, list(again)), tls)


def _upto_tls(events: list[Event]) -> list[Event]:
    for i, ev in enumerate(events):
        if isinstance(ev, StartTLS):
            return events[: i + 1]
    return events


if __name__ == "__main__":
    run(check)
