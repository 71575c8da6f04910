"""What the fuzz targets share: instrumentation, the atheris entry point, input splitting, and
checks of the wire form of replies.

A target module defines ``check(data: bytes) -> None``, which raises (an exception or a failed
assert) when a property does not hold, and ends with ``if __name__ == "__main__": run(check)``.
It imports Mailstead inside ``with instrument(__name__ == "__main__"):`` so that coverage
feedback reaches libFuzzer when it runs as a fuzzer, and nothing changes when a test imports it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Final


def instrument(enabled: bool) -> AbstractContextManager[object]:
    """Instrument Mailstead's modules imported inside the block (only when fuzzing)."""
    if not enabled:
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["mailstead"])  # type: ignore[no-any-return]


def run(check: Callable[[bytes], None]) -> None:
    """The atheris entry point: libFuzzer options come from ``sys.argv``."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def split(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut into pieces of 1 to 16 octets, the sizes drawn from ``seed`` (an LCG): the
    same input always gives the same pieces, and a different seed other pieces."""
    pieces = []
    state = seed * 2654435761 + 1
    pos = 0
    while pos < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        n = 1 + (state >> 16) % 16
        pieces.append(data[pos : pos + n])
        pos += n
    return pieces


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def lines(out: bytes) -> Iterator[bytes]:
    """The CRLF-terminated lines of ``out``; asserts there is no bare CR or LF and no
    unterminated last line."""
    assert out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n"), f"bare CR or LF: {out!r}"
    assert not out or out.endswith(b"\r\n"), f"unterminated output: {out[-80:]!r}"
    for line in out.split(b"\r\n")[:-1]:
        yield line + b"\r\n"


_SMTP_LINE: Final = re.compile(rb"([2-5][0-9][0-9])([ -][^\r\n]*)?\r\n")


def check_smtp_replies(out: bytes, *, max_line: int = 512) -> None:
    """Every line is ``code[SP|-]text CRLF`` of at most ``max_line`` octets (RFC 5321
    §4.5.3.1.5), and a multi-line reply keeps one code (§4.2.1)."""
    code: bytes | None = None
    for line in lines(out):
        m = _SMTP_LINE.fullmatch(line)
        assert m is not None, f"malformed reply line: {line!r}"
        assert len(line) <= max_line, f"reply line of {len(line)} octets"
        if code is not None:
            assert m.group(1) == code, f"code changes inside a reply: {line!r}"
        code = m.group(1) if (m.group(2) or b" ").startswith(b"-") else None
    assert code is None, "multi-line reply without its last line"


def pairwise_cuts(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (offsets; duplicates and out-of-range ones ignored)."""
    cuts = [0, *sorted({p for p in points if 0 < p < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def check_split(
    whole: tuple[bytes, list[object]],
    pieces: tuple[bytes, list[object]],
    tls_index: int | None,
) -> None:
    """The split run must give what the whole run gave. Past a STARTTLS (event ``tls_index``
    of the whole run) input in the same read is discarded by design (CVE-2011-0411), so only
    what came up to it must agree."""
    (whole_out, whole_events), (out, events) = whole, pieces
    if tls_index is None:
        assert out == whole_out, "replies depend on how the input was split"
        assert events == whole_events, "events depend on how the input was split"
        return
    assert out.startswith(whole_out), "replies before STARTTLS depend on the split"
    assert events[: tls_index + 1] == whole_events[: tls_index + 1], "events before STARTTLS"
