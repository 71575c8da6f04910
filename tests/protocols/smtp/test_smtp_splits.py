"""Property-style: however the client's bytes are split, server bytes and events are the same."""

from __future__ import annotations

import random

import pytest

from .transcript import comparable, run, settings, split_at

SESSIONS = [
    b"EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=100\r\nRCPT TO:<c@d.example>\r\n"
    b"RCPT TO:<unknown@d.example>\r\nDATA\r\nSubject: s\r\n\r\n..dots\r\n.\r\nline\n.\n"
    b"x\r\n\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 7\r\nab\r\ncd\r"
    b"BDAT 3 LAST\r\n\nefRSET\r\nNOOP\r\nHELP\r\nQUIT\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    + b"0123456789" * 40
    + b"\r\n"
    + b"a\rb\r\n.\r\nNOOP "
    + b"z" * 600
    + b"\r\nNOOP\r\n",
    b"EHLO c.example\r\nEHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
    b"RCPT TO:<c@d.example>\r\nBDAT 5000\r\n" + b"y" * 5000 + b"BDAT 0 LAST\r\nQUIT\r\n",
]


@pytest.mark.parametrize("session", range(len(SESSIONS)))
@pytest.mark.parametrize("seed", range(25))
def test_random_splits(session, seed):
    data = SESSIONS[session]
    cfg = settings(max_message_size=2000, max_data_line=300)
    whole_out, whole_events, _ = run([data], config=cfg)
    rng = random.Random(seed)
    points = [rng.randrange(1, len(data)) for _ in range(rng.randint(1, 60))]
    out, events, _ = run(split_at(data, points), config=cfg)
    assert out == whole_out
    assert comparable(events) == comparable(whole_events)


@pytest.mark.parametrize("session", range(len(SESSIONS)))
def test_byte_at_a_time(session):
    data = SESSIONS[session]
    cfg = settings(max_message_size=2000, max_data_line=300)
    whole_out, whole_events, _ = run([data], config=cfg)
    out, events, _ = run([data[i : i + 1] for i in range(len(data))], config=cfg)
    assert out == whole_out
    assert comparable(events) == comparable(whole_events)


def test_sessions_do_what_they_say():
    out, _, _ = run([SESSIONS[0]], config=settings(max_message_size=2000))
    assert out.count(b"Ok: queued as TEST") == 2
    out, _, _ = run([SESSIONS[1]], config=settings(max_data_line=300))
    assert b"554 5.6.0 Bare CR not allowed\r\n500 5.5.2 Line too long\r\n" in out
    out, _, _ = run([SESSIONS[2]], config=settings(max_message_size=2000))
    assert b"552 5.3.4 Message too big\r\n552 5.3.4 Message too big\r\n221" in out
