"""The sans-IO SMTP client core: golden transcripts (server bytes in, client bytes out, compared
exactly at every point where the client must wait), table tests for the EHLO keywords and the
content encoding, and round trips through the server core."""

from __future__ import annotations

import base64
import dataclasses
from collections import deque
from collections.abc import Callable, Iterable

import pytest

from mailstead.protocols.smtp import (
    NEED_DATA,
    PAUSED,
    DataChunk,
    MailFrom,
    MessageComplete,
    ProtocolError,
    RcptTo,
    Reply,
    ServerCore,
    ServerSettings,
    replies,
)
from mailstead.protocols.smtp.client import (
    SEND_MORE,
    AuthChallenge,
    Authenticated,
    ClientCore,
    ClientEvent,
    ClientSettings,
    ClientState,
    Extensions,
    FailureKind,
    OutboundMessage,
    OutboundRecipient,
    Phase,
    Ready,
    RecipientResult,
    RecipientStatus,
    SessionClosed,
    SessionFailed,
    TlsHandshake,
    TlsMode,
    TransactionDone,
    parse_ehlo,
)

SETTINGS = ClientSettings(helo_name="client.example", tls=TlsMode.NONE)
GREETING = "S: 220 mx.example.net ESMTP\n"
EHLO_FULL = (
    "S: 250-mx.example.net\n"
    "S: 250-PIPELINING\n"
    "S: 250-SIZE 10240\n"
    "S: 250-8BITMIME\n"
    "S: 250-SMTPUTF8\n"
    "S: 250-ENHANCEDSTATUSCODES\n"
    "S: 250-DSN\n"
    "S: 250 CHUNKING\n"
)
BODY = b"Subject: test\r\n\r\nHello.\r\n"


def msg(*rcpts: str, body: bytes = BODY, sender: str = "s@client.example", **kw) -> OutboundMessage:
    recipients = tuple(OutboundRecipient(r) for r in rcpts) or (OutboundRecipient("a@example.net"),)
    return OutboundMessage(sender, recipients, body, **kw)


def settings(**changes) -> ClientSettings:
    return dataclasses.replace(SETTINGS, **changes)


# --- the transcript runner ------------------------------------------------------------------------
Auth = Callable[[ClientCore, ClientEvent], None]


class Driver:
    """Plays the caller: starts the queued messages when the core is ready, QUITs at the end,
    answers TLS and AUTH events, and records every event and every client byte."""

    def __init__(
        self,
        config: ClientSettings = SETTINGS,
        messages: Iterable[OutboundMessage] = (),
        *,
        auth: Auth | None = None,
        quit_at_end: bool = True,
    ) -> None:
        self.core = ClientCore(config)
        self.messages = deque(messages)
        self.auth = auth
        self.quit_at_end = quit_at_end
        self.out = bytearray()
        self.events: list[ClientEvent] = []
        self.authenticated = auth is None

    @property
    def done(self) -> list[TransactionDone]:
        return [e for e in self.events if isinstance(e, TransactionDone)]

    @property
    def failure(self) -> SessionFailed | None:
        return next((e for e in self.events if isinstance(e, SessionFailed)), None)

    def flush(self) -> None:
        while chunk := self.core.data_to_send():
            self.out += chunk

    def pump(self) -> None:
        try:
            self._pump()
        finally:
            self.flush()

    def _pump(self) -> None:
        core = self.core
        while True:
            self.flush()
            ev = core.next_event()
            if ev is NEED_DATA:
                return
            if ev is SEND_MORE:
                continue
            if ev is PAUSED:
                if core.state is ClientState.READY and not self.authenticated:
                    return
                if core.state is ClientState.READY and self.messages:
                    core.start_transaction(self.messages.popleft())
                    continue
                if core.can_quit and self.quit_at_end:
                    core.quit()
                    continue
                return
            assert isinstance(ev, ClientEvent)
            self.events.append(ev)
            if isinstance(ev, TlsHandshake):
                core.tls_started()
            elif isinstance(ev, Ready | AuthChallenge) and self.auth is not None:
                if not self.authenticated:
                    self.auth(core, ev)
            elif isinstance(ev, Authenticated):
                self.authenticated = True

    def feed(self, data: bytes) -> None:
        self.core.receive_data(data)
        self.pump()

    def replies(self, *lines: bytes) -> None:
        """Each reply fed after the client has acted on the previous one, as a server does."""
        for line in lines:
            self.feed(line)


def parse(transcript: str) -> list[tuple[str, bytes]]:
    """``C: line`` / ``S: line`` (CRLF added); ``C= text`` is raw client bytes (escapes allowed,
    no CRLF added). Consecutive lines of one side form one segment."""
    out: list[tuple[str, bytes]] = []
    for line in transcript.strip("\n").split("\n"):
        side, mark, text = line[0], line[1], line[3:]
        data = (
            text.encode("utf-8").decode("unicode_escape").encode("latin-1")
            if mark == "="
            else text.encode("utf-8") + b"\r\n"
        )
        if out and out[-1][0] == side:
            out[-1] = (side, out[-1][1] + data)
        else:
            out.append((side, data))
    return out


def check(
    transcript: str,
    messages: Iterable[OutboundMessage] = (),
    *,
    config: ClientSettings = SETTINGS,
    auth: Auth | None = None,
    eof: bool = False,
) -> Driver:
    """Run the transcript with the server's bytes fed whole and one byte at a time. Before each
    server segment the client must have sent exactly the ``C:`` bytes written above it (so a
    pipelined group shows as commands written before their replies), and nothing more at the
    end. Returns the driver of the whole-segment run; both runs must give the same events."""
    segments = parse(transcript)
    runs: list[Driver] = []
    for bytewise in (False, True):
        driver = Driver(config, list(messages), auth=auth)
        driver.pump()
        expected = b""
        for side, data in segments:
            if side == "C":
                expected += data
                continue
            assert bytes(driver.out).decode("utf-8", "replace") == expected.decode(
                "utf-8", "replace"
            )
            assert bytes(driver.out) == expected
            pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
            for piece in pieces:
                driver.feed(piece)
        if eof:
            driver.feed(b"")
        assert bytes(driver.out).decode("utf-8", "replace") == expected.decode("utf-8", "replace")
        assert bytes(driver.out) == expected
        runs.append(driver)
    assert runs[0].events == runs[1].events
    return runs[0]


def statuses(done: TransactionDone) -> list[tuple[str, RecipientStatus, int]]:
    return [(r.address, r.status, r.reply.code) for r in done.results]


# --- sessions and transactions --------------------------------------------------------------------
def test_pipelined_data_transaction_with_a_refused_recipient():
    body = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\nbare\nLF\r\n.\r\nlast line"
    d = check(
        GREETING
        + "C: EHLO client.example\n"
        + EHLO_FULL
        + f"C: MAIL FROM:<s@client.example> SIZE={len(body)}\n"
        "C: RCPT TO:<alice@example.net>\n"
        "C: RCPT TO:<nobody@example.net>\n"
        "C: DATA\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        "S: 550 5.1.1 User unknown\n"
        "S: 354 End data with <CR><LF>.<CR><LF>\n"
        "C: Subject: dots\n"
        "C: \n"
        "C: ..starts with a dot\n"
        "C: ...two\n"
        "C: bare\n"
        "C: LF\n"
        "C: ..\n"
        "C: last line\n"
        "C: .\n"
        "S: 250 2.0.0 Ok: queued as 12345\n"
        "C: QUIT\n"
        "S: 221 2.0.0 Bye\n",
        [msg("alice@example.net", "nobody@example.net", body=body)],
        config=settings(use_chunking=False),
    )
    [done] = d.done
    assert statuses(done) == [
        ("alice@example.net", RecipientStatus.ACCEPTED, 250),
        ("nobody@example.net", RecipientStatus.PERMANENT, 550),
    ]
    assert done.results[1].reply == Reply(550, "5.1.1", "User unknown")
    assert done.results[1].remote
    assert done.reply == Reply(250, "2.0.0", "Ok: queued as 12345")
    assert isinstance(d.events[0], Ready)
    assert d.events[0].extensions.max_size == 10240
    assert d.events[-1] == SessionClosed(Reply(221, "2.0.0", "Bye"))
    assert d.core.state is ClientState.CLOSED


def test_lock_step_without_pipelining():
    check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 8BITMIME\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<b@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go ahead\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net", "b@example.net")],
    )


def test_lock_step_no_data_when_every_recipient_is_refused():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 450 4.2.0 try later\n"
        "C: RCPT TO:<b@example.net>\n"
        "S: 550 5.1.1 no\n"
        "C: RSET\n"
        "S: 250 Ok\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 550 5.7.1 sender refused\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net", "b@example.net"), msg("c@example.net")],
    )
    first, second = d.done
    assert statuses(first) == [
        ("a@example.net", RecipientStatus.TEMPORARY, 450),
        ("b@example.net", RecipientStatus.PERMANENT, 550),
    ]
    assert first.reply is None
    assert statuses(second) == [("c@example.net", RecipientStatus.PERMANENT, 550)]
    assert second.results[0].reply.text == "sender refused"


def test_pipelined_refusals_consume_every_reply():
    """MAIL refused in a pipelined group: the RCPT and DATA replies still come and are read;
    a 354 without accepted recipients gets a lone dot (RFC 2920 §3.1)."""
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 PIPELINING\n"
        "C: MAIL FROM:<s@client.example>\n"
        "C: RCPT TO:<a@example.net>\n"
        "C: DATA\n"
        "S: 451 4.3.0 sender check failed\n"
        "S: 503 5.5.1 need MAIL\n"
        "S: 503 5.5.1 need RCPT\n"
        "C: RSET\n"
        "C: MAIL FROM:<s@client.example>\n"
        "C: RCPT TO:<b@example.net>\n"
        "C: DATA\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 550 5.1.1 unknown\n"
        "S: 354 broken server says go ahead\n"
        "C: .\n"
        "S: 554 5.5.1 no valid recipients\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net"), msg("b@example.net")],
    )
    first, second = d.done
    assert statuses(first) == [("a@example.net", RecipientStatus.TEMPORARY, 451)]
    assert statuses(second) == [("b@example.net", RecipientStatus.PERMANENT, 550)]
    assert second.reply is None


def test_data_refused_after_accepted_recipients():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 PIPELINING\n"
        "C: MAIL FROM:<s@client.example>\n"
        "C: RCPT TO:<a@example.net>\n"
        "C: DATA\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 452 4.3.1 Insufficient system storage\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net")],
    )
    assert statuses(d.done[0]) == [("a@example.net", RecipientStatus.TEMPORARY, 452)]


def test_end_of_data_refused():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 554 5.7.1 Message content rejected\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net", sender="")],
    )
    assert statuses(d.done[0]) == [("a@example.net", RecipientStatus.PERMANENT, 554)]
    assert d.done[0].reply is None


def test_connection_reuse_rset_is_pipelined_before_the_next_mail():
    d = check(
        GREETING
        + "C: EHLO client.example\n"
        + EHLO_FULL
        + "C: MAIL FROM:<s@client.example> SIZE=25\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        "C: BDAT 25 LAST\n"
        "C= Subject: test\\r\\n\\r\\nHello.\\r\\n\n"
        "S: 250 2.0.0 Ok: queued as A\n"
        "C: RSET\n"
        "C: MAIL FROM:<s@client.example> SIZE=25\n"
        "C: RCPT TO:<b@example.net>\n"
        "S: 250 2.0.0 Ok\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        "C: BDAT 25 LAST\n"
        "C= Subject: test\\r\\n\\r\\nHello.\\r\\n\n"
        "S: 250 2.0.0 Ok: queued as B\n"
        "C: QUIT\n"
        "S: 221 2.0.0 Bye\n",
        [msg("a@example.net"), msg("b@example.net")],
    )
    assert [done.reply.text for done in d.done if done.reply] == [
        "Ok: queued as A",
        "Ok: queued as B",
    ]
    assert all(r.status is RecipientStatus.ACCEPTED for done in d.done for r in done.results)


def test_bdat_chunks_are_pipelined_in_a_window_and_not_dot_stuffed():
    body = b".x\r\n" + b"a" * 1100 + b"\r\n.\r\n"
    config = settings(content_block=512, bdat_window=2)
    c1, c2, c3 = body[:512], body[512:1024], body[1024:]
    text = (
        GREETING
        + "C: EHLO client.example\n"
        + EHLO_FULL
        + f"C: MAIL FROM:<s@client.example> SIZE={len(body)}\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        "C: BDAT 512\n"
        f"C= {c1.decode()}\n"
        "C: BDAT 512\n"
        f"C= {c2.decode()}\n"
        "S: 250 2.0.0 512 octets received\n"
        f"C: BDAT {len(c3)} LAST\n"
        f"C= {c3.decode()}\n"
        "S: 250 2.0.0 512 octets received\n"
        "S: 250 2.0.0 Ok: queued\n"
        "C: QUIT\n"
        "S: 221 Bye\n"
    ).replace("\r\n", "\\r\\n")
    d = check(text, [msg("a@example.net", body=body)], config=config)
    assert d.done[0].results[0].status is RecipientStatus.ACCEPTED


def test_bdat_refused_chunk_stops_the_content():
    body = b"a" * 1500
    config = settings(content_block=512, bdat_window=2)
    text = (
        GREETING
        + "C: EHLO client.example\n"
        + EHLO_FULL
        + "C: MAIL FROM:<s@client.example> SIZE=1500\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        "C: BDAT 512\n"
        f"C= {'a' * 512}\n"
        "C: BDAT 512\n"
        f"C= {'a' * 512}\n"
        "S: 552 5.3.4 Message too big\n"
        "S: 503 5.5.1 Bad sequence of commands\n"
        "C: QUIT\n"
        "S: 221 Bye\n"
    )
    d = check(text, [msg("a@example.net", body=body)], config=config)
    assert statuses(d.done[0]) == [("a@example.net", RecipientStatus.PERMANENT, 552)]


def test_bdat_lock_step_without_pipelining():
    check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 CHUNKING\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: BDAT 512\n"
        f"C= {'a' * 512}\n"
        "S: 250 Ok\n"
        "C: BDAT 3 LAST\n"
        "C= a\\r\\n\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net", body=b"a" * 513)],
        config=settings(content_block=512),
    )


def test_empty_content():
    check(
        GREETING + "C: EHLO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net", body=b"")],
    )


# --- EHLO, HELO and greetings ---------------------------------------------------------------------
def test_helo_fallback_after_ehlo_5xx_and_8bit_refused_before_sending():
    eightbit = msg("a@example.net", body="Subject: é\r\n\r\nkäse\r\n".encode())
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 502 5.5.1 Command not implemented\n"
        "C: HELO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<b@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [eightbit, msg("b@example.net")],
    )
    refused, sent = d.done
    [result] = refused.results
    assert result == RecipientResult(
        "a@example.net",
        RecipientStatus.PERMANENT,
        Reply(
            554, "5.6.3", "8-bit content but the remote server does not support 8BITMIME (RFC 6152)"
        ),
        remote=False,
    )
    assert sent.results[0].status is RecipientStatus.ACCEPTED
    ready = d.events[0]
    assert isinstance(ready, Ready)
    assert ready.extensions == Extensions(False, "mx.example.net", {})


def test_ehlo_and_helo_refused():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 500 what\n"
        "C: HELO client.example\n"
        "S: 501 5.5.4 go away\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg()],
    )
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.HELO
    assert d.done == []  # no transaction was started: the caller keeps its messages


def test_ehlo_4xx_is_not_a_reason_to_try_helo():
    d = check(
        GREETING + "C: EHLO client.example\nS: 451 4.3.0 later\nC: QUIT\nS: 221 Bye\n",
    )
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.HELO


@pytest.mark.parametrize(
    ("greeting", "kind", "quits"),
    [
        ("554 5.7.1 No SMTP service here", FailureKind.GREETING_PERMANENT, True),
        ("450 4.3.2 busy", FailureKind.GREETING_TEMPORARY, True),
        ("421 4.3.2 Service not available, closing", FailureKind.GREETING_TEMPORARY, False),
    ],
)
def test_greeting_refused(greeting, kind, quits):
    text = f"S: {greeting}\n" + ("C: QUIT\nS: 221 Bye\n" if quits else "")
    d = check(text, [msg()])
    assert d.failure is not None
    failure = d.failure.failure
    assert failure.kind is kind
    assert failure.reply is not None
    assert f"{failure.reply.code}" == greeting[:3]
    assert failure.recipient_reply().code // 100 == 4  # the caller tries the next host
    assert d.core.state is (ClientState.CLOSED if quits else ClientState.FAILED)


def test_multiline_greeting_and_bare_reply_codes():
    d = check(
        "S: 220-mx.example.net ESMTP\n"
        "S: 220-no UCE\n"
        "S: 220\n"
        "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250-PIPELINING\n"
        "S: 250\n"
        "C: QUIT\n"
        "S: 221\n",
    )
    ready = d.events[0]
    assert isinstance(ready, Ready)
    assert ready.extensions.pipelining
    assert d.events[-1] == SessionClosed(Reply(221, None, ""))


# --- refusals decided before sending --------------------------------------------------------------
def test_size_over_the_remote_limit_is_refused_before_sending():
    big = msg("a@example.net", "b@example.net", body=b"x" * 10241)
    d = check(
        GREETING + "C: EHLO client.example\n" + EHLO_FULL + "C: QUIT\nS: 221 Bye\n",
        [big],
    )
    [done] = d.done
    assert [r.status for r in done.results] == [RecipientStatus.PERMANENT] * 2
    reply = done.results[0].reply
    assert (reply.code, reply.enhanced) == (552, "5.3.4")
    assert reply.text.startswith("message size exceeds the remote limit")
    assert not done.results[0].remote


def test_size_limit_zero_or_absent_means_no_limit():
    assert parse_ehlo(Reply(250, None, "mx\nSIZE 0")).max_size is None
    assert parse_ehlo(Reply(250, None, "mx\nSIZE 0")).size
    assert parse_ehlo(Reply(250, None, "mx\nSIZE")).max_size is None
    assert parse_ehlo(Reply(250, None, "mx\nSIZE 1000")).max_size == 1000
    assert not parse_ehlo(Reply(250, None, "mx\n8BITMIME")).size


def test_smtputf8_message_to_a_server_without_smtputf8_bounces_clearly():
    utf8 = OutboundMessage(
        "jürgen@bücher.example",
        (OutboundRecipient("a@example.net"),),
        "From: jürgen@bücher.example\r\n\r\nhi\r\n".encode(),
        smtputf8=True,
    )
    flagged_ascii = msg("b@example.net", smtputf8=True)
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250-8BITMIME\n"
        "S: 250 PIPELINING\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [utf8, flagged_ascii],
    )
    for done in d.done:
        [result] = done.results
        assert result.status is RecipientStatus.PERMANENT
        assert result.reply == Reply(
            553, "5.6.7", "the remote server cannot take internationalised mail (RFC 6531)"
        )


def test_smtputf8_and_8bitmime_parameters_when_offered():
    content = "From: jürgen@bücher.example\r\n\r\nhi\r\n".encode()
    utf8 = OutboundMessage(
        "jürgen@bücher.example", (OutboundRecipient("andré@example.net"),), content
    )
    check(
        GREETING
        + "C: EHLO client.example\n"
        + EHLO_FULL
        + f"C: MAIL FROM:<jürgen@bücher.example> SIZE={len(content)}"
        " BODY=8BITMIME SMTPUTF8\n"
        "C: RCPT TO:<andré@example.net>\n"
        "S: 250 2.1.0 Ok\n"
        "S: 250 2.1.5 Ok\n"
        f"C: BDAT {len(content)} LAST\n"
        "C= From: jürgen@bücher.example\\r\\n\\r\\nhi\\r\\n\n"
        "S: 250 2.0.0 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [utf8],
    )


def test_command_injection_through_addresses_is_refused_before_sending():
    evil_rcpt = OutboundMessage(
        "s@client.example",
        (
            OutboundRecipient("a@example.net>\r\nRCPT TO:<evil@example.com"),
            OutboundRecipient("b@example.net"),
            OutboundRecipient("c d@example.net"),
        ),
        BODY,
    )
    evil_sender = msg("x@example.net", sender="s@client.example> NOTIFY=NEVER")
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<b@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [evil_rcpt, evil_sender],
    )
    first, second = d.done
    assert [(r.status, r.reply.enhanced, r.remote) for r in first.results] == [
        (RecipientStatus.PERMANENT, "5.1.3", False),
        (RecipientStatus.ACCEPTED, None, True),
        (RecipientStatus.PERMANENT, "5.1.3", False),
    ]
    assert [(r.status, r.reply.enhanced) for r in second.results] == [
        (RecipientStatus.PERMANENT, "5.1.7")
    ]


# --- DSN (RFC 3461) -------------------------------------------------------------------------------
def dsn_message() -> OutboundMessage:
    return OutboundMessage(
        "s@client.example",
        (
            OutboundRecipient(
                "a@example.net", ("SUCCESS", "FAILURE"), ("rfc822", "a+x=y@example.net")
            ),
            OutboundRecipient("b@example.net", ("NEVER",)),
        ),
        BODY,
        ret="HDRS",
        envid="queue id+1",
    )


def test_dsn_parameters_passed_on_when_offered():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250-DSN\n"
        "S: 250 PIPELINING\n"
        "C: MAIL FROM:<s@client.example> RET=HDRS ENVID=queue+20id+2B1\n"
        "C: RCPT TO:<a@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx+3Dy@example.net\n"
        "C: RCPT TO:<b@example.net> NOTIFY=NEVER\n"
        "C: DATA\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [dsn_message()],
    )
    assert d.done[0].dsn


def test_dsn_parameters_dropped_when_not_offered():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 PIPELINING\n"
        "C: MAIL FROM:<s@client.example>\n"
        "C: RCPT TO:<a@example.net>\n"
        "C: RCPT TO:<b@example.net>\n"
        "C: DATA\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 250 Ok\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [dsn_message()],
    )
    assert not d.done[0].dsn  # the caller owes a "relayed" notice for NOTIFY=SUCCESS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notify": ("NEVER", "SUCCESS")},
        {"notify": ("SUCCESS", "SUCCESS")},
        {"notify": ("SOMETIMES",)},
        {"orcpt": ("rfc 822", "a@b")},
        {"orcpt": ("rfc822", "")},
    ],
)
def test_bad_dsn_parameters_are_the_callers_error(kwargs):
    with pytest.raises(ValueError, match=r"NOTIFY|ORCPT"):
        OutboundRecipient("a@example.net", **kwargs)


# --- STARTTLS -------------------------------------------------------------------------------------
STARTTLS_EHLO = "S: 250-mx.example.net\nS: 250-STARTTLS\nS: 250 PIPELINING\n"


def test_opportunistic_starttls_then_ehlo_again():
    d = check(
        GREETING + "C: EHLO client.example\n" + STARTTLS_EHLO + "C: STARTTLS\n"
        "S: 220 2.0.0 Ready to start TLS\n"
        "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250-AUTH PLAIN\n"
        "S: 250 PIPELINING\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        config=settings(tls=TlsMode.OPPORTUNISTIC),
    )
    assert isinstance(d.events[0], TlsHandshake)
    ready = d.events[1]
    assert isinstance(ready, Ready)
    assert ready.tls
    assert ready.extensions.auth == ("PLAIN",)
    assert not ready.extensions.starttls


def test_starttls_response_injection_is_discarded():
    """A man in the middle appends plaintext replies to the 220 (CVE-2011-0411 turned round):
    they must not be read as replies to what is sent over TLS, whether they came with the 220
    or after it, before the handshake."""
    ehlo = b"250-mx.example.net\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
    evil = b"250-evil.example\r\n250 AUTH PLAIN\r\n"
    for pieces in ([b"220 go\r\n" + evil], [b"220 go\r\n", evil]):
        core = ClientCore(settings(tls=TlsMode.OPPORTUNISTIC))
        core.receive_data(b"220 mx\r\n")
        assert core.next_event() is SEND_MORE
        assert core.data_to_send() == b"EHLO client.example\r\n"
        assert core.next_event() is NEED_DATA
        core.receive_data(ehlo)
        assert core.next_event() is SEND_MORE
        assert core.data_to_send() == b"STARTTLS\r\n"
        assert core.next_event() is NEED_DATA
        events = []
        for piece in pieces:
            core.receive_data(piece)
            while (ev := core.next_event()) is not PAUSED:
                events.append(ev)
        assert events == [TlsHandshake()]
        core.tls_started()
        assert core.next_event() is SEND_MORE
        assert core.data_to_send() == b"EHLO client.example\r\n"
        assert core.next_event() is NEED_DATA
        core.receive_data(b"250 mx.example.net\r\n")
        ready = core.next_event()
        assert isinstance(ready, Ready)
        assert ready.extensions.hostname == "mx.example.net"
        assert ready.extensions.auth == ()


def test_opportunistic_goes_on_in_plaintext_when_starttls_is_refused_or_absent():
    d = check(
        GREETING + "C: EHLO client.example\n" + STARTTLS_EHLO + "C: STARTTLS\n"
        "S: 454 4.7.0 TLS not available\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        config=settings(tls=TlsMode.OPPORTUNISTIC),
    )
    assert isinstance(d.events[0], Ready)
    assert not d.events[0].tls
    d = check(
        GREETING + "C: EHLO client.example\nS: 250 mx.example.net\nC: QUIT\nS: 221 Bye\n",
        config=settings(tls=TlsMode.OPPORTUNISTIC),
    )
    assert isinstance(d.events[0], Ready)


def test_tls_none_never_starts_tls():
    check(GREETING + "C: EHLO client.example\n" + STARTTLS_EHLO + "C: QUIT\nS: 221 Bye\n")


@pytest.mark.parametrize(
    ("ehlo", "starttls_reply"),
    [
        ("S: 250-mx.example.net\nS: 250 PIPELINING\n", ""),
        (STARTTLS_EHLO, "C: STARTTLS\nS: 454 4.7.0 TLS not available\n"),
    ],
)
def test_required_tls_fails_without_starttls(ehlo, starttls_reply):
    d = check(
        GREETING + "C: EHLO client.example\n" + ehlo + starttls_reply + "C: QUIT\nS: 221 Bye\n",
        [msg()],
        config=settings(tls=TlsMode.REQUIRED),
    )
    assert d.failure is not None
    failure = d.failure.failure
    assert failure.kind is FailureKind.TLS_UNAVAILABLE
    assert failure.recipient_reply().enhanced in ("4.7.4", "4.7.0")
    assert d.done == []


def test_required_tls_after_helo_fallback_fails():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 502 no\n"
        "C: HELO client.example\n"
        "S: 250 mx.example.net\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        config=settings(tls=TlsMode.REQUIRED),
    )
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.TLS_UNAVAILABLE


def test_ehlo_refused_after_starttls_is_a_failure_not_a_helo():
    d = check(
        GREETING + "C: EHLO client.example\n" + STARTTLS_EHLO + "C: STARTTLS\n"
        "S: 220 go\n"
        "C: EHLO client.example\n"
        "S: 554 5.7.1 no\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        config=settings(tls=TlsMode.OPPORTUNISTIC),
    )
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.HELO


# --- AUTH (RFC 4954) ------------------------------------------------------------------------------
AUTH_EHLO = "S: 250-mx.example.net\nS: 250-AUTH=LOGIN\nS: 250 AUTH PLAIN LOGIN XOAUTH2\n"


def plain(core: ClientCore, event: ClientEvent) -> None:
    if isinstance(event, Ready):
        core.authenticate("plain", b"\0user\0secret")
    else:
        raise AssertionError(event)


def login(core: ClientCore, event: ClientEvent) -> None:
    if isinstance(event, Ready):
        core.authenticate("LOGIN")
    elif isinstance(event, AuthChallenge):
        core.auth_respond(b"user" if event.data == b"Username:" else b"secret")


def test_auth_plain_with_initial_response():
    d = check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH PLAIN AHVzZXIAc2VjcmV0\n"
        "S: 235 2.7.0 Authentication successful\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n"
        "S: 250 Ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg("a@example.net")],
        auth=plain,
    )
    ready = d.events[0]
    assert isinstance(ready, Ready)
    assert ready.extensions.auth == ("LOGIN", "PLAIN", "XOAUTH2")
    assert Authenticated(Reply(235, "2.7.0", "Authentication successful")) in d.events


def test_auth_login_challenges():
    check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH LOGIN\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: dXNlcg==\n"
        "S: 334 UGFzc3dvcmQ6\n"
        "C: c2VjcmV0\n"
        "S: 235 2.7.0 ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        auth=login,
    )


def test_auth_failure_ends_the_session_with_quit():
    d = check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH PLAIN AHVzZXIAc2VjcmV0\n"
        "S: 535 5.7.8 Authentication credentials invalid\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        [msg()],
        auth=plain,
    )
    assert d.failure is not None
    failure = d.failure.failure
    assert failure.kind is FailureKind.AUTH
    assert failure.reply == Reply(535, "5.7.8", "Authentication credentials invalid")
    assert d.done == []


def test_auth_initial_response_too_long_for_the_line_waits_for_a_challenge():
    token = b"x" * 400  # 536 base64 octets: over 512 with "AUTH XOAUTH2 "
    encoded = base64.b64encode(token).decode()

    def xoauth(core: ClientCore, event: ClientEvent) -> None:
        if isinstance(event, Ready):
            core.authenticate("XOAUTH2", token)

    check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH XOAUTH2\n"
        "S: 334 \n"
        f"C: {encoded}\n"
        "S: 235 ok\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        auth=xoauth,
    )


def test_auth_empty_initial_response_and_bad_challenge():
    def empty(core: ClientCore, event: ClientEvent) -> None:
        if isinstance(event, Ready):
            core.authenticate("PLAIN", b"")

    d = check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH PLAIN =\n"
        "S: 334 not*base64\n"
        "C: *\n"
        "S: 501 5.0.0 Authentication cancelled\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        auth=empty,
    )
    assert d.failure is not None
    assert d.failure.failure.detail == "the server's challenge is not base64"


def test_auth_cancel_by_the_caller():
    def cancel(core: ClientCore, event: ClientEvent) -> None:
        if isinstance(event, Ready):
            core.authenticate("LOGIN")
        elif isinstance(event, AuthChallenge):
            core.auth_cancel("the mechanism failed")

    d = check(
        GREETING + "C: EHLO client.example\n" + AUTH_EHLO + "C: AUTH LOGIN\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: *\n"
        "S: 501 5.0.0 cancelled\n"
        "C: QUIT\n"
        "S: 221 Bye\n",
        auth=cancel,
    )
    assert d.failure is not None
    assert d.failure.failure.detail == "the mechanism failed"


def test_authenticate_only_with_an_offered_mechanism():
    d = Driver(quit_at_end=False)
    d.replies(b"220 mx\r\n", b"250-mx\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(ProtocolError, match="does not offer"):
        d.core.authenticate("CRAM-MD5")


# --- the server ends the session ------------------------------------------------------------------
def test_421_during_a_transaction():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250-mx.example.net\n"
        "S: 250 PIPELINING\n"
        "C: MAIL FROM:<s@client.example>\n"
        "C: RCPT TO:<a@example.net>\n"
        "C: RCPT TO:<b@example.net>\n"
        "C: DATA\n"
        "S: 250 Ok\n"
        "S: 550 5.1.1 unknown\n"
        "S: 421 4.7.0 Too many errors, closing connection\n",
        [msg("a@example.net", "b@example.net"), msg("c@example.net")],
    )
    [done] = d.done
    assert statuses(done) == [
        ("a@example.net", RecipientStatus.PERMANENT, 550),
        ("b@example.net", RecipientStatus.TEMPORARY, 421),
    ]
    assert done.failure is not None
    assert done.failure.kind is FailureKind.CLOSED_BY_SERVER
    assert d.failure is not None
    assert d.events[-1] == d.failure
    assert not d.core.can_quit


def test_421_while_idle_between_transactions():
    d = Driver(quit_at_end=False)
    d.replies(b"220 mx\r\n", b"250 mx\r\n")
    assert d.core.state is ClientState.READY
    d.feed(b"421 4.4.2 Idle timeout\r\n")
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.CLOSED_BY_SERVER


def test_connection_lost_after_the_final_dot_is_a_temporary_failure():
    d = check(
        GREETING + "C: EHLO client.example\n"
        "S: 250 mx.example.net\n"
        "C: MAIL FROM:<s@client.example>\n"
        "S: 250 Ok\n"
        "C: RCPT TO:<a@example.net>\n"
        "S: 250 Ok\n"
        "C: DATA\n"
        "S: 354 go\n"
        "C: Subject: test\n"
        "C: \n"
        "C: Hello.\n"
        "C: .\n",
        [msg("a@example.net")],
        eof=True,
    )
    [done] = d.done
    [result] = done.results
    assert result.status is RecipientStatus.TEMPORARY
    assert not result.remote
    assert result.reply.enhanced == "4.4.2"
    assert "data-end reply" in result.reply.text
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.CONNECTION_LOST


def test_eof_after_quit_is_a_close():
    d = check(GREETING + "C: EHLO client.example\nS: 250 mx\nC: QUIT\n", eof=True)
    assert d.events[-1] == SessionClosed(None)


@pytest.mark.parametrize(
    ("server", "detail"),
    [
        (b"hello there\r\n", "malformed reply line"),
        (b"220-a\r\n230 b\r\n", "reply code changes"),
        (b"220 " + b"x" * 20000, "reply line too long"),
        (b"220 " + b"x" * 13000 + b"\r\n", "reply line too long"),
        (b"".join(b"220-x\r\n" for _ in range(300)), "too many lines"),
        (b"220 ok\r\n250 mx\r\n250 more\r\n", "unexpected reply 250"),
        (b"250 hi\r\n", "unexpected greeting 250"),
    ],
)
def test_malformed_replies_end_the_session(server, detail):
    d = Driver()
    d.feed(server)
    assert d.failure is not None
    assert d.failure.failure.kind is FailureKind.PROTOCOL
    assert detail in d.failure.failure.detail
    assert d.core.next_event() is PAUSED


def test_input_is_bounded():
    d = Driver(settings(max_input=65536))
    d.feed(b"220 mx\r\n")
    d.core.receive_data(b"250-x\r\n" * 10000)  # not parsed yet: too much at once
    d.pump()
    assert d.failure is not None
    assert d.failure.failure.detail == "too much input from the server"


# --- the caller's mistakes ------------------------------------------------------------------------
def test_state_table_refuses_calls_out_of_order():
    core = ClientCore(SETTINGS)
    with pytest.raises(ProtocolError):
        core.start_transaction(msg())
    with pytest.raises(ProtocolError):
        core.tls_started()
    with pytest.raises(ProtocolError):
        core.quit()
    assert core.waiting_for is Phase.GREETING
    assert core.next_event() is NEED_DATA


@pytest.mark.parametrize("name", ["bücher.example", "a b", "", "[1.2.3]"])
def test_helo_name_must_be_ascii_and_valid(name):
    with pytest.raises(ValueError, match="helo_name"):
        ClientSettings(helo_name=name)


def test_waiting_for_follows_the_oldest_command():
    d = Driver(settings(use_chunking=False), [msg()], quit_at_end=False)
    d.feed(b"220 mx\r\n")
    assert d.core.waiting_for is Phase.COMMAND
    d.feed(b"250-mx\r\n250 PIPELINING\r\n")
    assert d.core.waiting_for is Phase.MAIL
    d.feed(b"250 ok\r\n")
    assert d.core.waiting_for is Phase.RCPT
    d.feed(b"250 ok\r\n")
    assert d.core.waiting_for is Phase.DATA_INIT
    d.feed(b"354 go\r\n")
    assert d.core.waiting_for is Phase.DATA_END
    d.feed(b"250 ok\r\n")
    assert d.core.waiting_for is None


def test_trace_leaves_out_secrets_and_content():
    config = settings(trace=True)
    d = Driver(config, [msg()], auth=plain)
    ehlo = AUTH_EHLO.replace("S: ", "").replace("\n", "\r\n").encode()
    d.replies(b"220 mx\r\n", ehlo, b"235 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n")
    d.replies(b"250 ok\r\n", b"221 bye\r\n")
    trace = "\n".join(d.core.take_trace())
    assert "AHVzZXIAc2VjcmV0" not in trace
    assert "C: AUTH PLAIN <initial response>" in trace
    assert "Hello." not in trace
    assert "C: <28 octets>\nC: ." in trace  # the content and its final dot
    assert "S: 250-AUTH=LOGIN" in trace


# --- EHLO keywords --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "check_ext"),
    [
        ("mx.example.net", lambda e: e.keywords == {} and e.hostname == "mx.example.net"),
        ("mx says hi\nsize 1000\n8bitmime", lambda e: e.max_size == 1000 and e.eightbitmime),
        ("mx\nAUTH=PLAIN\nAUTH PLAIN cram-md5", lambda e: e.auth == ("PLAIN", "CRAM-MD5")),
        ("mx\nSTARTTLS\nENHANCEDSTATUSCODES", lambda e: e.starttls and e.enhanced_status_codes),
        ("mx\nCHUNKING\nDSN\nSMTPUTF8", lambda e: e.chunking and e.dsn and e.smtputf8),
        ("mx\nSIZE abc", lambda e: e.size and e.max_size is None),
        ("mx\n\nPIPELINING", lambda e: e.pipelining),
        ("mx\nSIZE 10\nSIZE 20", lambda e: e.max_size == 10),
    ],
)
def test_parse_ehlo(lines, check_ext):
    ext = parse_ehlo(Reply(250, None, lines))
    assert ext.esmtp
    assert check_ext(ext)


# --- content encoding -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "data"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # bare LF: no end of data hides in content
        (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),  # bare CR likewise
        (b"a\r\n.\n", b"a\r\n..\r\n.\r\n"),
        (b"\r\n..\r\n", b"\r\n...\r\n.\r\n"),
    ],
)
def test_data_content_encoding(content, data):
    d = Driver(settings(use_chunking=False), [msg(body=content)], quit_at_end=False)
    d.replies(b"220 mx\r\n", b"250 mx\r\n", b"250 ok\r\n", b"250 ok\r\n")
    start = len(d.out)
    d.feed(b"354 go\r\n")
    assert bytes(d.out[start:]) == data


@pytest.mark.parametrize("block", [512, 513, 600, 1000])
def test_content_blocks_split_anywhere(block):
    """Block edges fall between CR and LF and before dots; the bytes sent do not change."""
    content = (b"x" * 510 + b"\r\n.a\r\n" + b"y" * 505 + b"\r" + b"\n..\r\n" + b"z\r" * 300) * 3
    whole = Driver(
        settings(use_chunking=False, content_block=len(content) + 10), [msg(body=content)]
    )
    parts = Driver(settings(use_chunking=False, content_block=block), [msg(body=content)])
    for d in (whole, parts):
        d.replies(b"220 mx\r\n", b"250 mx\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n")
    assert parts.out == whole.out
    assert b"\r\n..a\r\n" in whole.out
    assert b"\r\n...\r\n" in whole.out
    assert b"z\r\nz\r\n" in whole.out


# --- against the server core ----------------------------------------------------------------------
def talk(
    messages: list[OutboundMessage],
    client_settings: ClientSettings,
    server_settings: ServerSettings,
    refuse: tuple[str, ...] = (),
) -> tuple[list[TransactionDone], list[bytes]]:
    """The client core and the server core in memory, each driving the other."""
    server = ServerCore(server_settings)
    server.start()
    client = Driver(client_settings, messages)
    stored: list[bytes] = []
    content = bytearray()
    for _ in range(100000):
        to_client = server.data_to_send()
        if to_client:
            client.feed(to_client)
        client.flush()
        to_server = bytes(client.out)
        client.out.clear()
        if to_server:
            server.receive_data(to_server)
        while (ev := server.next_event()) not in (NEED_DATA, PAUSED):
            if isinstance(ev, RcptTo) and ev.forward_path in refuse:
                server.reply(replies.USER_UNKNOWN)
            elif isinstance(ev, MailFrom | RcptTo):
                server.accept()
            elif isinstance(ev, DataChunk):
                content += ev.data
            elif isinstance(ev, MessageComplete):
                stored.append(bytes(content))
                content.clear()
                server.accept()
        if client.core.state is ClientState.CLOSED:
            return client.done, stored
        if not to_client and not to_server:
            break
    raise AssertionError(f"stuck in {client.core.state}")


@pytest.mark.parametrize("chunking", [True, False])
@pytest.mark.parametrize("pipelining", [True, False])
def test_round_trip_through_the_server_core(chunking, pipelining):
    contents = [
        b"Subject: one\r\n\r\n.\r\n..\r\n. \r\nend\r\n",
        b"Subject: two\r\n\r\n" + (b"long line " * 500 + b"\r\n.\r\n") * 100,
        b"Subject: three\r\n\r\nno final newline",
        "Subject: vier\r\n\r\nGrüße\r\n".encode(),
    ]
    messages = [
        OutboundMessage(
            "s@client.example",
            (OutboundRecipient("a@example.org"), OutboundRecipient("bad@example.org")),
            c,
        )
        for c in contents
    ]
    done, stored = talk(
        messages,
        settings(use_chunking=chunking, content_block=4096),
        ServerSettings(hostname="mx.example.org", pipelining=pipelining, starttls=False),
        refuse=("bad@example.org",),
    )
    expected = [c if c.endswith(b"\r\n") else c + b"\r\n" for c in contents]
    assert stored == expected
    assert [statuses(d) for d in done] == [
        [
            ("a@example.org", RecipientStatus.ACCEPTED, 250),
            ("bad@example.org", RecipientStatus.PERMANENT, 550),
        ]
    ] * 4


def test_round_trip_size_limit_of_the_server_core():
    small = ServerSettings(hostname="mx.example.org", max_message_size=2000, starttls=False)
    done, stored = talk([msg(body=b"x" * 3000), msg(body=b"y" * 100)], SETTINGS, small)
    assert done[0].results[0].reply.enhanced == "5.3.4"
    assert not done[0].results[0].remote
    assert stored == [b"y" * 100 + b"\r\n"]
