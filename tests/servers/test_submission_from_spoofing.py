"""Submission's From check fooled by malformed headers (issue 11): ``From: a@example.org
<b@example.org>`` and ``From: a@example.org; b@example.org`` passed for user a while parsers
show b, and ``Sender`` and ``Resent-From`` were not checked at all. Each is sent here with
smtplib after AUTH, as a mail client would, and refused with 550 5.7.1."""

from __future__ import annotations

import smtplib
import uuid

import pytest

from mailstead.testing.server import (
    Account,
    RunningServer,
    populate,
    start_server,
    write_config,
)

ACCOUNTS = [Account("alice@example.org", "alice-pw"), Account("bob@example.org", "bob-pw")]
ALIASES = [("team@example.org", "alice@example.org")]
NOT_OWNED = "<{0}>: {1}: header address not owned by user alice@example.org"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("from-spoofing"))
    populate(config, ["example.org"], ACCOUNTS, ALIASES)
    running = start_server(config)
    yield running
    running.stop()


def submit(server: RunningServer, head: str) -> tuple[int, str, str]:
    """Send as alice; (code, text, marker)."""
    mark = uuid.uuid4().hex
    raw = f"{head}To: <bob@example.org>\r\nSubject: {mark}\r\n\r\nmarker {mark}\r\n".encode()
    with smtplib.SMTP(*server.submission_address, timeout=30) as client:
        client.login("alice@example.org", "alice-pw")
        try:
            client.sendmail("alice@example.org", ["bob@example.org"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode(), mark
    return 250, "", mark


def delivered(server: RunningServer, mark: str) -> bool:
    return any(f"marker {mark}".encode() in m for m in server.messages("bob@example.org"))


@pytest.mark.parametrize(
    ("head", "text"),
    [
        # what a lenient parser reads as alice, a client as bob
        ("From: alice@example.org <bob@example.org>\r\n", "From: header field cannot be parsed"),
        ("From: alice@example.org; bob@example.org\r\n", "From: header field cannot be parsed"),
        ("From: alice@example.org bob@example.org\r\n", "From: header field cannot be parsed"),
        ("From: <alice@example.org>, bob\r\n", "From: header field cannot be parsed"),
        ('From: "alice@example.org <bob@example.org>\r\n', "From: header field cannot be parsed"),
        ("From: <alice@example.org>\r\nFrom: <bob@example.org>\r\n", "Message has 2 From:"),
        ("From: <alice@example.org>, <bob@example.org>\r\n",
         NOT_OWNED.format("bob@example.org", "From")),
        # the other author fields
        ("From: <alice@example.org>\r\nSender: <bob@example.org>\r\n",
         NOT_OWNED.format("bob@example.org", "Sender")),
        ("From: <alice@example.org>\r\nResent-From: Bob <bob@example.org>\r\n",
         NOT_OWNED.format("bob@example.org", "Resent-From")),
        ("From: <alice@example.org>\r\nResent-Sender: bob@example.org\r\n",
         NOT_OWNED.format("bob@example.org", "Resent-Sender")),
        ("From: <alice@example.org>\r\nSender: alice@example.org <bob@example.org>\r\n",
         "Sender: header field cannot be parsed"),
        ("From: undisclosed:;\r\n", NOT_OWNED.format("", "From")),
    ],
)  # fmt: skip
def test_malformed_or_foreign_author_fields_are_refused(server, head, text):
    code, reply, mark = submit(server, head)
    assert (code, reply[:6]) == (550, "5.7.1 ")
    assert reply[6:].startswith(text), reply
    assert not delivered(server, mark)


def test_well_formed_author_fields_of_the_user_pass(server):
    for head in [
        '"Alice, A." <alice@example.org>\r\n',
        "alice@example.org <alice@example.org>\r\n",  # scripts write this: one address
        "Alice <alice@example.org>, Team <team@example.org>\r\nSender: alice@example.org\r\n",
        "(me) alice @ example.org\r\nResent-From: Team: <team@example.org>;\r\n",
    ]:
        code, reply, mark = submit(server, "From: " + head)
        assert (code, reply) == (250, "")
        assert delivered(server, mark)
