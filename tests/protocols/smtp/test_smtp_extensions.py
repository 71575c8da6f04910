"""Extensions: what EHLO advertises, the parameters each allows, the replies when off."""

from __future__ import annotations

from mailstead.protocols.smtp import MailFrom, MailParams, RcptParams, RcptTo

from .transcript import run, settings

TX = b"EHLO c.example\r\n"


def ehlo_lines(**changes):
    out, _, _ = run([TX], config=settings(**changes))
    return out.split(b"\r\n", 1)[1]


def test_advertised_extensions_follow_settings():
    assert (
        ehlo_lines(
            pipelining=False,
            eightbitmime=False,
            smtputf8=False,
            enhanced_status_codes=False,
            starttls=False,
            chunking=False,
            dsn=False,
        )
        == b"250-mx.example.org\r\n250-SIZE 52428800\r\n250 HELP\r\n"
    )
    assert b"250-STARTTLS" not in ehlo_lines(tls_active=True)


def test_enhanced_status_codes_off():
    out, _, _ = run([TX + b"NOOP\r\nBOGUS\r\n"], config=settings(enhanced_status_codes=False))
    assert out.endswith(b"250 Ok\r\n500 Command not recognized\r\n")


def test_smtputf8():
    _out, events, _ = run(
        [
            TX
            + "MAIL FROM:<jösé@bücher.example> SMTPUTF8\r\n"
            "RCPT TO:<δοκιμή@παράδειγμα.example>\r\n".encode()
        ]
    )
    assert events[1:] == [
        MailFrom("jösé@bücher.example", MailParams(smtputf8=True, raw=(("SMTPUTF8", None),))),
        RcptTo("δοκιμή@παράδειγμα.example", RcptParams()),
    ]


def test_non_ascii_without_smtputf8():
    out, _, _ = run(
        [
            TX
            + "MAIL FROM:<jösé@b.example>\r\nMAIL FROM:<a@b.example>\r\n"
            "RCPT TO:<δ@d.example>\r\n".encode()
        ]
    )
    assert out.endswith(
        b"553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n250 2.1.0 Ok\r\n"
        b"553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"
    )


def test_invalid_utf8_path():
    out, _, _ = run([TX + b"MAIL FROM:<j\xc3@b.example> SMTPUTF8\r\n"])
    assert out.endswith(b"501 5.1.7 Bad sender address syntax\r\n")


def test_smtputf8_off():
    out, _, _ = run([TX + b"MAIL FROM:<a@b.example> SMTPUTF8\r\n"], config=settings(smtputf8=False))
    assert out.endswith(b"555 5.5.4 Unsupported parameter\r\n")


def test_8bitmime_and_off():
    out, events, _ = run([TX + b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n"])
    assert events[-1].params.body == "8BITMIME"
    out, _, _ = run(
        [TX + b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n"], config=settings(eightbitmime=False)
    )
    assert out.endswith(b"555 5.5.4 Unsupported parameter\r\n")


def test_dsn_parameters_and_off():
    data = TX + b"MAIL FROM:<a@b.example> RET=FULL ENVID=id+2B1\r\n"
    data += b"RCPT TO:<c@d.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;c+40d.example\r\n"
    out, events, _ = run([data])
    assert events[1].params.ret == "FULL"
    assert events[1].params.envid == "id+1"
    assert events[2].params.notify == ("FAILURE", "DELAY")
    assert events[2].params.orcpt == ("rfc822", "c@d.example")
    out, _, _ = run([data], config=settings(dsn=False))
    assert out.endswith(b"555 5.5.4 Unsupported parameter\r\n503 5.5.1 Need MAIL command\r\n")


def test_helo_disables_parameters_and_bdat():
    out, _, _ = run(
        [
            b"HELO c.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\nMAIL FROM:<a@b.example>\r\n"
            b"RCPT TO:<c@d.example>\r\nBDAT 2 LAST\r\nxyNOOP\r\n"
        ]
    )
    assert out.endswith(
        b"250 mx.example.org\r\n555 5.5.4 Unsupported parameter\r\n250 2.1.0 Ok\r\n"
        b"250 2.1.5 Ok\r\n503 5.5.1 Send EHLO first\r\n250 2.0.0 Ok\r\n"
    )


def test_pipelining_replies_in_order():
    data = (
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<unknown@d.example>\r\n"
        b"RCPT TO:<ok@d.example>\r\nNOOP\r\nDATA\r\nhello\r\n.\r\nMAIL FROM:<spammer@x.example>\r\n"
        b"RSET\r\nQUIT\r\n"
    )
    out, _, _ = run([data])
    assert out.split(b"250 HELP\r\n")[1] == (
        b"250 2.1.0 Ok\r\n550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as TEST\r\n"
        b"550 5.7.1 Sender rejected\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"
    )


def test_update_settings_between_commands():
    from mailstead.protocols.smtp import ServerCore

    core = ServerCore(settings())
    core.start()
    core.update_settings(max_message_size=1234, hostname="other.example")
    core.receive_data(TX)
    core.next_event()
    assert b"250-other.example\r\n" in core.data_to_send()
    assert core.settings.max_message_size == 1234
