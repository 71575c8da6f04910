"""Throughput of the core: one full transaction (EHLO, MAIL, RCPT, DATA with 2 KB, QUIT).

Run ``pytest -s`` to see the figure. The bound is loose on purpose (shared CI machines); the point
is to catch an accidental per-byte loop, which costs far more than this.
"""

from __future__ import annotations

import timeit

from mailstead.protocols.smtp import NEED_DATA, PAUSED, ServerCore, ServerSettings

SETTINGS = ServerSettings(hostname="mx.example.org")
BODY = (
    b"Subject: benchmark\r\n\r\n"
    + b"The quick brown fox jumps over the lazy dog 0123456789\r\n" * 37
)[:2048]
CLIENT = [
    b"EHLO client.example\r\n",
    b"MAIL FROM:<alice@sender.example> SIZE=2048\r\n",
    b"RCPT TO:<bob@mx.example.org>\r\n",
    b"DATA\r\n",
    BODY + b".\r\n",
    b"QUIT\r\n",
]


def transaction() -> int:
    core = ServerCore(SETTINGS)
    core.start()
    sent = len(core.data_to_send())
    for piece in CLIENT:
        core.receive_data(piece)
        while True:
            ev = core.next_event()
            if ev is NEED_DATA:
                break
            if ev is PAUSED:
                core.accept()
        sent += len(core.data_to_send())
    return sent


def test_transaction_speed():
    assert transaction() > 0
    n = 2000
    best = min(timeit.repeat(transaction, number=n, repeat=3)) / n * 1e6
    print(f"\nSMTP core: {best:.1f} µs per transaction (EHLO, MAIL, RCPT, 2 KB DATA, QUIT)")
    assert best < 2000


def test_large_message_speed():
    core = ServerCore(ServerSettings(hostname="mx.example.org"))
    core.start()
    core.receive_data(
        b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    )
    while (ev := core.next_event()) is not NEED_DATA:
        if ev is PAUSED:
            core.accept()
    line = b".Dot-stuffed line of a big message, 72 characters long, more or less..\r\n"
    chunk = line * (65536 // len(line))
    total = 0

    def feed() -> None:
        nonlocal total
        core.receive_data(chunk)
        while (ev := core.next_event()) is not NEED_DATA:
            total += len(ev.data)

    seconds = timeit.timeit(feed, number=100)
    mb_s = len(chunk) * 100 / seconds / 1e6
    print(f"\nSMTP core DATA throughput: {mb_s:.0f} MB/s")
    assert total == (len(line) - 1) * (65536 // len(line)) * 100
