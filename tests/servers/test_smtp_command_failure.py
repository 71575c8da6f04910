"""A command that fails inside the SMTP server (issue 11) answers 451 4.3.0 and the session
lives on; mail that was not committed is never acknowledged. A corrupted account row (a quota
that is not a number) stands in for any bug or bad data a command may meet."""

from __future__ import annotations

import smtplib
import sqlite3

from mailstead.testing.server import Account

ACCOUNTS = [Account("alice@example.org", "alice-pw"), Account("bob@example.org", "bob-pw")]


def test_failing_rcpt_answers_451_and_the_session_goes_on(mail_server) -> None:
    server = mail_server(accounts=ACCOUNTS)
    with sqlite3.connect(server.data_dir / "mailstead.db", timeout=30) as conn:
        conn.execute("UPDATE accounts SET quota = 'lots' WHERE local_key = 'bob'")
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        client.ehlo("client.example")
        assert client.mail("x@example.net")[0] == 250
        assert client.rcpt("bob@example.org") == (451, b"4.3.0 Temporary failure, try again later")
        assert client.rcpt("alice@example.org")[0] == 250  # the session goes on
        assert client.data(b"Subject: hi\r\n\r\nhello\r\n")[0] == 250
        assert client.noop()[0] == 250
    assert len(server.messages("alice@example.org")) == 1
    assert server.messages("bob@example.org") == []
    failed = [line for line in server.log_lines() if line.get("msg") == "smtp.command_failed"]
    assert len(failed) == 1 and "TypeError" in str(failed[0]["exc"])
