from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailstead.message import parse_message
from mailstead.message.parse import from_json, to_json

from .cases import CASES, crlf


def test_accessors():
    m = parse_message(CASES["encoded-words"])
    assert m.subject == "café au lait"
    assert [(a.name, a.addr_spec) for a in m.from_addresses] == [
        ("Keld Jørn Simonsen", "keld@dkuug.dk")
    ]
    assert m.message_id is None and m.date is None


def test_last_of_repeated_fields_wins_and_addresses_merge():
    m = parse_message(CASES["multiple-headers"])
    assert m.subject == "second"
    assert m.message_id == "<2@x>"
    assert [a.addr_spec for a in m.from_addresses] == ["a@x.example", "b@x.example"]
    assert m.date == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            b"Mon, 1 Jan 2024 10:00:00 +0200",
            datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
        (b"1 Jan 2024 10:00 -0000", datetime(2024, 1, 1, 10)),  # obsolete: no seconds, -0000
        (
            b"Mon, 1 Jan 24 10:00:00 EST",
            datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=-5))),
        ),
        (b"Mon,\r\n 1 Jan 2024 10:00:00 GMT", datetime(2024, 1, 1, 10, tzinfo=UTC)),
        (b"not a date", None),
        (b"", None),
    ],
)
def test_date(value, expected):
    m = parse_message(b"Date: " + value + b"\r\n\r\n")
    assert m.date == expected


def test_envelope_raw_values_and_defaults():
    m = parse_message(CASES["folded-subject"])
    env = m.envelope
    assert env.subject == b"a\n  b\n\tc"  # Dovecot keeps the folding, minus CR
    assert m.subject == "a  b\tc"
    assert env.sender == [] and env.imap_sender == env.from_ and env.imap_reply_to == env.from_
    assert parse_message(crlf("Subject:   \n\n")).envelope.subject == b"  "
    assert parse_message(crlf("X: y\n\n")).envelope.subject is None


def test_several_date_fields_envelope_shows_the_last_search_uses_the_first():
    raw = b"Date: Mon, 1 Jan 1990 00:00:00 +0000\r\nDate: Tue, 2 Jan 2024 00:00:00 +0000\r\n\r\nx"
    m = parse_message(raw)
    assert m.date == datetime(2024, 1, 2, tzinfo=UTC)
    assert m.sent_date == datetime(1990, 1, 1, tzinfo=UTC)
    again = from_json(to_json(m))
    assert again.sent_date == m.sent_date and again.date == m.date
    single = parse_message(b"Date: Tue, 2 Jan 2024 00:00:00 +0000\r\n\r\nx")
    assert single.first_date is None and single.sent_date == single.date
