"""Parsing speed: the commands a client sends most. Run ``pytest -s`` to see the figures; the
bounds are loose (shared CI machines) and only catch an accidental per-byte loop."""

from __future__ import annotations

import timeit

from mailstead.protocols.imap import NEED_DATA, PAUSED, ServerCore, State, parse_command

UID_FETCH = b"a1 UID FETCH 1:* (FLAGS)"
FETCH5 = (
    b"a2 UID FETCH 100:200 "
    b"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])"
)
SEARCH = b"a3 UID SEARCH RETURN (ALL) CHARSET UTF-8 OR (FROM alice SINCE 1-Feb-2024) NOT SEEN"


def per_call_us(fn, n=20000) -> float:
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def test_parse_speed():
    figures = {
        "UID FETCH 1:* (FLAGS)": per_call_us(lambda: parse_command(UID_FETCH)),
        "UID FETCH of 5 items": per_call_us(lambda: parse_command(FETCH5)),
        "UID SEARCH (7 keys)": per_call_us(lambda: parse_command(SEARCH)),
    }
    for name, us in figures.items():
        print(f"\nIMAP grammar: {name}: {us:.1f} µs")
    assert all(us < 500 for us in figures.values())


def test_core_round_trip_speed():
    core = ServerCore()
    core.set_state(State.SELECTED)
    line = UID_FETCH + b"\r\n"

    def one() -> None:
        core.receive_data(line)
        while (ev := core.next_event()) is not NEED_DATA:
            if ev is PAUSED:
                core.command_done()
        core.data_to_send()

    us = per_call_us(one)
    print(f"\nIMAP core: receive + parse + hand out UID FETCH 1:* (FLAGS): {us:.1f} µs")
    assert us < 1000


def test_append_throughput():
    core = ServerCore()
    core.set_state(State.SELECTED)
    message = b"x" * (10 * 1024 * 1024)
    wire = b"a1 APPEND INBOX {%d+}\r\n%b\r\n" % (len(message), message)
    chunks = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]

    def feed() -> None:
        for chunk in chunks:
            core.receive_data(chunk)
            while (ev := core.next_event()) is not NEED_DATA:
                if ev is PAUSED:
                    core.command_done()

    seconds = min(timeit.repeat(feed, number=1, repeat=3))
    print(f"\nIMAP core: APPEND of 10 MiB in 64 KiB reads: {len(wire) / seconds / 1e6:.0f} MB/s")
