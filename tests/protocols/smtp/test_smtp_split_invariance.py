"""Property (hypothesis): however a client's bytes are split into reads, the SMTP core sends the
same replies and reports the same events. A receiver whose idea of the end of data, of a line or
of a BDAT chunk depends on where a read ended is how a second message gets smuggled past one
hop and not the next; the sessions here mix commands, line endings of every kind, dots, BDAT
chunks and stray bytes so that such a difference shows.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .transcript import comparable, run, split_at
from .transcript import settings as smtp_settings

CONFIG = smtp_settings(max_message_size=600, max_data_line=80, auth_mechanisms=("PLAIN",))
COMMANDS = [
    b"EHLO c.example",
    b"HELO c.example",
    b"MAIL FROM:<a@b.example>",
    b"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME",
    b"MAIL FROM:<spammer@b.example>",
    b"RCPT TO:<c@d.example>",
    b"RCPT TO:<unknown@d.example>",
    b"DATA",
    b"BDAT 0 LAST",
    b"RSET",
    b"NOOP",
    b"VRFY x",
    b"AUTH PLAIN",
    b"AUTH PLAIN AHUAcA==",
    b"NOOP " + b"x" * 600,
    b"QUIT",
]
ENDINGS = [b"\r\n", b"\n", b"\r", b""]
CONTENT = [
    b"line",
    b".",
    b"..",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\n.\r\n",
    b"x" * 90,
]


ENDS = [b"\r\n.\r\n", b".\r\n", b"\n.\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]
ENVELOPE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"


@st.composite
def sessions(draw: st.DrawFn) -> bytes:
    """Mostly well-formed transactions (DATA or BDAT) with hostile content, between stray
    commands and bytes."""
    out = bytearray(b"EHLO c.example\r\n" if draw(st.booleans()) else b"")
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 4))
        if kind <= 1:  # DATA with content pieces and an end of data (real or a look-alike)
            out += ENVELOPE + b"DATA" + draw(st.sampled_from(ENDINGS[:2]))
            for _ in range(draw(st.integers(0, 6))):
                piece = draw(st.one_of(st.sampled_from(CONTENT), st.binary(max_size=8)))
                out += piece + draw(st.sampled_from(ENDINGS))
            out += draw(st.sampled_from(ENDS))
        elif kind == 2:  # BDAT chunks whose announced size may or may not match what follows
            out += ENVELOPE
            for _ in range(draw(st.integers(1, 3))):
                body = draw(st.one_of(st.sampled_from(CONTENT), st.binary(max_size=30)))
                size = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1, 5]))
                out += b"BDAT %d%s\r\n" % (max(size, 0), b" LAST" if draw(st.booleans()) else b"")
                out += body
        elif kind == 3:
            out += draw(st.sampled_from(COMMANDS)) + draw(st.sampled_from(ENDINGS))
        else:
            out += draw(st.binary(max_size=12))
    return bytes(out)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=sessions(), cuts=st.lists(st.integers(1, 2000), max_size=30))
@example(
    data=b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nx\r\n.\r\n",
    cuts=[63, 64, 65, 66, 67],
)
@example(
    data=b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 3\r\nab\r"
    b"BDAT 1 LAST\r\n\nQUIT\r\n",
    cuts=[62, 63],
)
def test_replies_and_events_do_not_depend_on_the_split(data: bytes, cuts: list[int]) -> None:
    whole_out, whole_events, _ = run([data], config=CONFIG, eof=True)
    out, events, _ = run(
        split_at(data, [c % (len(data) + 1) for c in cuts]), config=CONFIG, eof=True
    )
    assert out == whole_out
    assert comparable(events) == comparable(whole_events)


@settings(max_examples=60, deadline=None, database=None)
@given(data=sessions())
def test_byte_at_a_time_is_the_same_as_whole(data: bytes) -> None:
    whole_out, whole_events, _ = run([data], config=CONFIG, eof=True)
    out, events, _ = run([data[i : i + 1] for i in range(len(data))], config=CONFIG, eof=True)
    assert out == whole_out
    assert comparable(events) == comparable(whole_events)
