"""Property (hypothesis): however a client's bytes are split into reads, the POP3 core sends the
same replies and reports the same events: line ends of every kind, over-long lines (discarded
as they stream), AUTH exchanges and pipelined commands read the same whole, in pieces and byte
by byte.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstead.protocols.pop3 import Settings

from ..smtp.transcript import split_at
from .transcript import run

CONFIG = Settings(max_line=255, max_auth_line=300, max_errors=6)
LINES = [
    b"USER user",
    b"PASS secret",
    b"PASS wrong",
    b"STAT",
    b"LIST 1",
    b"UIDL",
    b"RETR 1",
    b"TOP 1 5",
    b"DELE 1",
    b"NOOP",
    b"RSET",
    b"CAPA",
    b"AUTH PLAIN",
    b"AUTH PLAIN secret",
    b"more",
    b"*",
    b"secret",
    b"XYZZY",
    b"USER " + b"u" * 260,
    b"more" + b"m" * 300,
    b"QUIT",
]
ENDINGS = [b"\r\n", b"\n", b"\r", b""]


@st.composite
def sessions(draw: st.DrawFn) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 3)):
            out += draw(st.sampled_from(LINES)) + draw(st.sampled_from(ENDINGS))
        else:
            out += draw(st.binary(max_size=10))
    return bytes(out)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=sessions(), cuts=st.lists(st.integers(1, 5000), max_size=30))
def test_replies_and_events_do_not_depend_on_the_split(data, cuts):
    whole_out, whole_events, _ = run([data], settings=CONFIG, eof=True)
    pieces = split_at(data, [c % (len(data) + 1) for c in cuts])
    out, events, _ = run(pieces, settings=CONFIG, eof=True)
    assert out == whole_out
    assert events == whole_events


@settings(max_examples=60, deadline=None, database=None)
@given(data=sessions())
def test_byte_at_a_time_is_the_same_as_whole(data):
    whole_out, whole_events, _ = run([data], settings=CONFIG, eof=True)
    out, events, _ = run([data[i : i + 1] for i in range(len(data))], settings=CONFIG, eof=True)
    assert out == whole_out
    assert events == whole_events
