"""The SMTP client's reply reader and core on arbitrary server bytes.

Input: one octet choosing the client settings, one seeding the split, then the server's bytes.
The client greets, sends one message and quits as far as the server's replies let it.
Properties: ``parse_reply`` either returns a reply that used at most its input or raises
ValueError; the client core never raises on any bytes, only writes CRLF-terminated command lines
and content (no line a server could read as an end of data it did not mean), keeps its input
bounded, whatever the reads. The bytes go in a reply line per read (a server answering each
command), in arbitrary pieces and whole. (Its events may depend on the reads: a reply that
arrives before its command was sent is an unexpected reply, which only a broken server sends.)
"""

from __future__ import annotations

from fuzz.harness import instrument, run, split

with instrument(__name__ == "__main__"):
    from mailstead.protocols.smtp import NEED_DATA, PAUSED, ClientCore, ClientSettings, parse_reply
    from mailstead.protocols.smtp.client import (
        SEND_MORE,
        AuthChallenge,
        ClientEvent,
        ClientState,
        FailureKind,
        OutboundMessage,
        OutboundRecipient,
        TlsHandshake,
        TlsMode,
    )

MESSAGE = OutboundMessage(
    "a@example.org",
    (OutboundRecipient("b@example.net", notify=("FAILURE",)), OutboundRecipient("c@example.net")),
    b"Subject: hi\r\n\r\nline\r\n.dot\r\n" + b"x" * 600 + b"\r\n",
    envid="id+1",
)


def _settings(flags: int) -> ClientSettings:
    return ClientSettings(
        helo_name="client.example.org",
        tls=TlsMode.REQUIRED if flags & 1 else TlsMode.OPPORTUNISTIC,
        use_pipelining=not flags & 2,
        use_chunking=not flags & 4,
        content_block=512,
        bdat_window=1 + (flags >> 3) % 4,
        max_input=65536,
    )


def drive(pieces: list[bytes], config: ClientSettings) -> tuple[bytes, list[ClientEvent], str]:
    core = ClientCore(config)
    sent = bytearray()
    events: list[ClientEvent] = []
    started = quit_sent = False

    def pump() -> None:
        nonlocal started, quit_sent
        while True:
            ev = core.next_event()
            if ev is SEND_MORE:
                sent.extend(core.data_to_send())
                continue
            if ev is NEED_DATA:
                return
            if ev is PAUSED:
                if core.state is ClientState.READY and not started:
                    started = True
                    core.start_transaction(MESSAGE)
                    continue
                if core.can_quit and not quit_sent:
                    quit_sent = True
                    core.quit()
                    continue
                return
            assert isinstance(ev, ClientEvent)
            events.append(ev)
            if isinstance(ev, TlsHandshake):
                core.abandon(FailureKind.TLS_FAILED, "no TLS in the fuzzer", can_quit=True)
            elif isinstance(ev, AuthChallenge):
                core.auth_cancel("fuzz")

    for piece in [*pieces, b""]:
        core.receive_data(piece)
        pump()
        assert core._reader.unread <= config.max_input + config.max_reply_line
    sent.extend(core.data_to_send())
    return bytes(sent), events, core.state.value


# RFC 5321 §4.5.2: a line starting with "." gets another one
_STUFFED = (b"." if MESSAGE.content.startswith(b".") else b"") + MESSAGE.content.replace(
    b"\r\n.", b"\r\n.."
)


def check_sent(sent: bytes) -> None:
    """Only CRLF lines; DATA content, once complete, is exactly the dot-stuffed message (RFC 5321
    §4.5.2), so the end of data the server reads is the one the client meant."""
    assert sent.count(b"\r") == sent.count(b"\n") == sent.count(b"\r\n"), "bare CR or LF sent"
    _check_bdat(sent)
    start = sent.find(b"\r\nDATA\r\n")
    if start == -1:
        return
    start += len(b"\r\nDATA\r\n")
    if sent.startswith(b".\r\n", start):
        return  # no recipient accepted: only the final dot is sent
    end = sent.find(b"\r\n.\r\n", start)
    if end != -1:
        assert sent[start : end + 2] == _STUFFED, "DATA content is not the dot-stuffed message"


def _check_bdat(sent: bytes) -> None:
    """BDAT chunks (RFC 3030) announce their exact size, and up to LAST carry the message."""
    pos = sent.find(b"BDAT ")
    chunks = bytearray()
    while pos != -1:
        eol = sent.index(b"\r\n", pos)
        words = sent[pos:eol].split(b" ")
        size = int(words[1])
        chunks += sent[eol + 2 : eol + 2 + size]
        if words[2:] == [b"LAST"]:
            assert bytes(chunks) == MESSAGE.content, "BDAT chunks are not the message"
            return
        pos = eol + 2 + size
        if not sent.startswith(b"BDAT ", pos):
            return


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    body = data[2:]
    end = body.find(b"\n\n")
    one = body if end == -1 else body[: end + 1]
    try:
        parsed = parse_reply(one)
    except ValueError:
        parsed = None
    if parsed is not None:
        assert 0 < parsed[1] <= len(one)
    config = _settings(data[0])
    # one reply line per read, as a server answering each command; then arbitrary pieces
    check_sent(drive(body.splitlines(keepends=True), config)[0])
    check_sent(drive(split(body, data[1]), config)[0])
    check_sent(drive([body], config)[0])


if __name__ == "__main__":
    run(check)
