"""Property (hypothesis): however a client's bytes are split into reads, the IMAP core sends the
same responses and reports the same events. Literals are where a split matters: the core must
count literal octets, not lines, so a command hidden inside a literal (or a literal announced
across a read boundary) reads the same whole, in pieces and byte by byte.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstead.protocols.imap import State

from ..smtp.transcript import split_at
from .helpers import make, run

LIMITS = {"max_line": 1024, "max_literal": 1024, "max_append_size": 2048}
LINES = [
    b"a NOOP",
    b"b LOGIN user secret",
    b"c SELECT INBOX",
    b"d FETCH 1:* (FLAGS BODY.PEEK[HEADER])",
    b"e SEARCH OR SUBJECT x FROM y",
    b"f STORE 1 +FLAGS (\\Seen)",
    b'g LIST "" *',
    b"h IDLE",
    b"DONE",
    b"i BADCOMMAND",
    b"* NOOP",
    b"j NOOP " + b"x" * 1100,
    b"k UID SEARCH 1:5,7",
]
ENDINGS = [b"\r\n", b"\n", b"\r", b""]


@st.composite
def literal(draw: st.DrawFn) -> bytes:
    """A command with a literal: announced size and what follows may disagree; ``+`` or not."""
    body = draw(st.one_of(st.binary(max_size=20), st.sampled_from([b"x\r\nz NOOP\r\n", b"}"])))
    size = len(body) + draw(st.sampled_from([0, 0, 0, -1, 2, 3000]))
    head = draw(st.sampled_from([b"l LOGIN ", b"m APPEND INBOX ", b"n SELECT ", b"o SEARCH TEXT "]))
    plus = b"+" if draw(st.booleans()) else b""
    tail = draw(st.sampled_from([b"", b" p", b" {0}\r\n"]))
    return head + b"{%d%s}\r\n" % (max(size, 0), plus) + body + tail + b"\r\n"


@st.composite
def sessions(draw: st.DrawFn) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        if kind <= 1:
            out += draw(literal())
        elif kind == 2:
            out += draw(st.sampled_from(LINES)) + draw(st.sampled_from(ENDINGS))
        else:
            out += draw(st.binary(max_size=10))
    return bytes(out)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    data=sessions(),
    cuts=st.lists(st.integers(1, 5000), max_size=30),
    state=st.sampled_from([State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED]),
)
def test_responses_and_events_do_not_depend_on_the_split(data, cuts, state):
    whole_events, whole_out = run(make(state, **LIMITS), [data, b""])
    pieces = split_at(data, [c % (len(data) + 1) for c in cuts])
    events, out = run(make(state, **LIMITS), [*pieces, b""])
    assert out == whole_out
    assert events == whole_events


@settings(max_examples=60, deadline=None, database=None)
@given(data=sessions())
def test_byte_at_a_time_is_the_same_as_whole(data):
    whole_events, whole_out = run(make(State.SELECTED, **LIMITS), [data, b""])
    pieces = [data[i : i + 1] for i in range(len(data))]
    events, out = run(make(State.SELECTED, **LIMITS), [*pieces, b""])
    assert out == whole_out
    assert events == whole_events
