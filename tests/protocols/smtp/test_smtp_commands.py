"""Golden transcripts, one per command: client bytes in, exact server bytes out.

Every transcript also runs fed one byte at a time and at random split points (see transcript.check).
"""

from __future__ import annotations

from mailstead.protocols.smtp import (
    CloseConnection,
    DataChunk,
    Hello,
    MailFrom,
    MailParams,
    MessageAborted,
    MessageComplete,
    Quit,
    RcptParams,
    RcptTo,
    Reset,
    StartTLS,
)

from .transcript import EHLO_REPLY, check, run

EHLO = "C: EHLO client.example\n" + "".join(
    f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines()
)


def test_greeting_and_quit():
    events = check("""
        C: QUIT
        S: 221 2.0.0 Bye
    """)
    assert events == [Quit()]


def test_ehlo_lists_extensions():
    events = check(EHLO)
    assert events == [Hello("EHLO", "client.example")]


def test_helo():
    events = check("""
        C: HELO client.example
        S: 250 mx.example.org
    """)
    assert events == [Hello("HELO", "client.example")]


def test_helo_address_literal():
    events = check(
        """
        C: helo [192.0.2.1]
        S: 250 mx.example.org
        C: EHLO [IPv6:2001:db8::7]
        S: 250-mx.example.org
    """
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines()[1:])
    )
    assert events == [Hello("HELO", "[192.0.2.1]"), Hello("EHLO", "[IPv6:2001:db8::7]")]


def test_helo_syntax():
    check("""
        C: EHLO
        S: 501 5.5.4 Syntax: EHLO/HELO domain
        C: HELO
        S: 501 5.5.4 Syntax: EHLO/HELO domain
        C: EHLO bad..domain
        S: 501 5.5.4 Syntax: EHLO/HELO domain
        C: EHLO [300.1.1.1]
        S: 501 5.5.4 Syntax: EHLO/HELO domain
    """)


def test_full_transaction():
    events = check(
        EHLO
        + """
        C: MAIL FROM:<alice@sender.example> SIZE=20
        S: 250 2.1.0 Ok
        C: RCPT TO:<bob@mx.example.org>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: hi
        C:
        C: hello
        C: .
        S: 250 2.0.0 Ok: queued as TEST
        C: QUIT
        S: 221 2.0.0 Bye
    """
    )
    assert events == [
        Hello("EHLO", "client.example"),
        MailFrom("alice@sender.example", MailParams(size=20, raw=(("SIZE", "20"),))),
        RcptTo("bob@mx.example.org", RcptParams()),
        DataChunk(b"Subject: hi\r\n\r\nhello\r\n"),
        MessageComplete(22, "DATA"),
        Quit(),
    ]


def test_null_sender_and_postmaster():
    events = check(
        EHLO
        + """
        C: MAIL FROM:<>
        S: 250 2.1.0 Ok
        C: RCPT TO:<Postmaster>
        S: 250 2.1.5 Ok
    """
    )
    assert events[1:] == [MailFrom("", MailParams()), RcptTo("postmaster", RcptParams())]


def test_source_route_dropped_and_space_after_colon():
    events = check(
        EHLO
        + """
        C: MAIL FROM: <@a.example,@b.example:u@d.example>
        S: 250 2.1.0 Ok
        C: RCPT TO: <@a.example:v@d.example>
        S: 250 2.1.5 Ok
    """
    )
    assert events[1:] == [MailFrom("u@d.example"), RcptTo("v@d.example")]


def test_mail_syntax_errors():
    check(
        EHLO
        + """
        C: MAIL
        S: 501 5.1.7 Bad sender address syntax
        C: MAIL TO:<a@b.example>
        S: 501 5.1.7 Bad sender address syntax
        C: MAIL FROM:a@b.example
        S: 501 5.1.7 Bad sender address syntax
        C: MAIL FROM:<a@b.example> FOO=BAR
        S: 555 5.5.4 Unsupported parameter
        C: MAIL FROM:<a@b.example> BODY=BINARYMIME
        S: 555 5.5.4 Unsupported parameter
        C: MAIL FROM:<a@b.example> SIZE=x
        S: 501 5.5.4 Syntax error in parameters or arguments
    """
    )


def test_mail_refused_by_shell_then_retried():
    check(
        EHLO
        + """
        C: MAIL FROM:<spammer@bad.example>
        S: 550 5.7.1 Sender rejected
        C: RCPT TO:<bob@mx.example.org>
        S: 503 5.5.1 Need MAIL command
        C: MAIL FROM:<alice@sender.example>
        S: 250 2.1.0 Ok
    """
    )


def test_rcpt_refused_then_data_without_recipients():
    check(
        EHLO
        + """
        C: MAIL FROM:<alice@sender.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<unknown@mx.example.org>
        S: 550 5.1.1 User unknown
        C: DATA
        S: 554 5.5.1 No valid recipients
        C: RCPT TO:<>
        S: 501 5.1.3 Bad recipient address syntax
        C: RCPT TO:<bob@mx.example.org> SIZE=1
        S: 555 5.5.4 Unsupported parameter
        C: RCPT TO:<bob@mx.example.org>
        S: 250 2.1.5 Ok
    """
    )


def test_bad_sequence():
    check(
        """
        C: MAIL FROM:<a@b.example>
        S: 503 5.5.1 Send HELO/EHLO first
        C: RCPT TO:<a@b.example>
        S: 503 5.5.1 Send HELO/EHLO first
        C: DATA
        S: 503 5.5.1 Send HELO/EHLO first
        C: EHLO client.example
    """
        + "".join(f"S: {line}\n" for line in EHLO_REPLY.decode().splitlines())
        + """
        C: RCPT TO:<a@b.example>
        S: 503 5.5.1 Need MAIL command
        C: DATA
        S: 503 5.5.1 Need MAIL command
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: MAIL FROM:<a@b.example>
        S: 503 5.5.1 Nested MAIL command
    """
    )


def test_unknown_and_case_insensitive():
    check("""
        C: XYZZY
        S: 500 5.5.2 Command not recognized
        C: nOoP
        S: 250 2.0.0 Ok
        C: noop with arguments
        S: 250 2.0.0 Ok
        C:
        S: 500 5.5.2 Command not recognized
        C: EXPN staff
        S: 502 5.5.1 EXPN not available
        C: EXPN
        S: 501 5.5.4 Syntax error in parameters or arguments
        C: VRFY bob
        S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
        C: VRFY
        S: 501 5.5.4 Syntax error in parameters or arguments
        C: HELP
        S: 214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS
        S: 214 2.0.0 See RFC 5321
        C: HELP MAIL
        S: 214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS
        S: 214 2.0.0 See RFC 5321
        C: QUIT now
        S: 501 5.5.4 Syntax error in parameters or arguments
    """)


def test_rset():
    events = check(
        EHLO
        + """
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C: RSET
        S: 250 2.0.0 Ok
        C: RCPT TO:<c@d.example>
        S: 503 5.5.1 Need MAIL command
        C: RSET x
        S: 501 5.5.4 Syntax error in parameters or arguments
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
    """
    )
    assert events[1:] == [
        MailFrom("a@b.example"),
        RcptTo("c@d.example"),
        Reset(),
        MailFrom("a@b.example"),
    ]


def test_rset_before_helo_keeps_needing_helo():
    check("""
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<a@b.example>
        S: 503 5.5.1 Send HELO/EHLO first
    """)


def test_ehlo_in_transaction_resets():
    events = check(
        EHLO
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: HELO again.example
        S: 250 mx.example.org
        C: RCPT TO:<c@d.example>
        S: 503 5.5.1 Need MAIL command
    """
    )
    assert events[1:] == [MailFrom("a@b.example"), Reset(), Hello("HELO", "again.example")]


def test_data_with_arguments():
    check(
        EHLO
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C: DATA now
        S: 501 5.5.4 Syntax error in parameters or arguments
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok: queued as TEST
    """
    )


def test_message_refused_by_shell_ends_transaction():
    def decide(ev):
        from mailstead.protocols.smtp import replies

        return replies.CONTENT_REJECTED if isinstance(ev, MessageComplete) else None

    check(
        EHLO
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: spam
        C: .
        S: 554 5.7.1 Message content rejected
        C: RCPT TO:<c@d.example>
        S: 503 5.5.1 Need MAIL command
    """,
        decide=decide,
    )


def test_accept_without_text_and_custom_text():
    def decide(ev):
        if isinstance(ev, MailFrom):
            return "Sender looks fine"
        return None

    check(
        EHLO
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Sender looks fine
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: .
        S: 250 2.0.0 Ok
    """,
        decide=decide,
    )


def test_shell_421_closes():
    from mailstead.protocols.smtp import replies

    def decide(ev):
        return replies.SHUTTING_DOWN if isinstance(ev, RcptTo) else None

    out, events, core = run(
        [b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nNOOP\r\n"],
        decide=decide,
    )
    assert out.endswith(b"250 2.1.0 Ok\r\n421 4.3.2 Service shutting down\r\n")
    assert events[-1] == CloseConnection("421 reply")
    assert core.closed


def test_eof():
    events = check(
        EHLO + "C= NOOP",
        eof=True,
    )
    assert events[-1] == CloseConnection("eof")


def test_eof_during_data_aborts_message():
    events = check(
        EHLO
        + """
        C: MAIL FROM:<a@b.example>
        S: 250 2.1.0 Ok
        C: RCPT TO:<c@d.example>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: half a message
    """,
        eof=True,
    )
    assert events[-2:] == [
        MessageAborted("*"),  # see transcript.comparable
        CloseConnection("eof"),
    ]


def test_quit_ignores_the_rest():
    out, events, core = run([b"QUIT\r\nNOOP\r\n"])
    assert out.endswith(b"221 2.0.0 Bye\r\n")
    assert events == [Quit()]
    core.receive_data(b"NOOP\r\n")
    assert core.data_to_send() == b""


def test_starttls_event_and_reset():
    out, events, core = run([b"EHLO c.example\r\nSTARTTLS\r\n", b"EHLO c.example\r\n"])
    assert events == [Hello("EHLO", "c.example"), StartTLS(), Hello("EHLO", "c.example")]
    assert out.count(b"250-STARTTLS") == 1
    assert b"220 2.0.0 Ready to start TLS\r\n" in out
    assert core.settings.tls_active
    assert not core.settings.starttls
