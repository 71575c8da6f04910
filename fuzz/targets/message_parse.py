"""The message parser (RFC 5322 header, MIME tree, embedded messages) and what is computed from
its result at delivery: the envelope, the cache form, the full-text index text.

Input: the raw message. Properties: no exception; every offset lies within the input and every
part within its parent's body, children in order; an embedded message's offsets lie within its
part; the cache form round-trips exactly (``to_json(from_json(to_json(p))) == to_json(p)``);
subject, dates and Message-ID are computable; the searchable text is computable (the indexer
runs it on every message: a raise there stops indexing for everyone).
"""

from __future__ import annotations

from fuzz.harness import instrument, run

with instrument(__name__ == "__main__"):
    from mailstead.message import MimePart, ParsedMessage, from_json, parse_message, to_json
    from mailstead.message.text import searchable



def _check_part(part: MimePart, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi, (part, lo, hi)
    last = part.body_start
    for child in part.children:
        assert child.header_start >= last, "children out of order or overlapping"
        _check_part(child, part.body_start, part.body_end)
        last = child.body_end
    if part.message is not None:
        _check_message(part.message, part.body_start, part.body_end)


def _check_message(msg: ParsedMessage, lo: int, hi: int) -> None:
    assert lo <= msg.header_end <= hi, (msg.header_end, lo, hi)
    for f in msg.fields:
        assert lo <= f.start < f.end <= hi, f
    _check_part(msg.root, lo, hi)


def check(data: bytes) -> None:
    parsed = parse_message(data)
    assert parsed.size == len(data)
    _check_message(parsed, 0, len(data))
    cached = to_json(parsed)
    assert to_json(from_json(cached)) == cached, "the cache form does not round-trip"
    parsed.date, parsed.sent_date, parsed.message_id, parsed.from_addresses  # noqa: B018
    parsed.subject  # noqa: B018
    searchable(data, parsed)  # decoding never raises (issue 11: one header stopped the index)


if __name__ == "__main__":
    run(check)
