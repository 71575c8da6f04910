"""The IMAP command grammar on one complete command (literals inline, as the receiver gives it).

Input: one octet of options (UTF-8 names or not, which round trip to check), then the command.
Properties: only `ParseError` on bad input, with a tag that is the command's own when set; a
parsed mailbox name written back with ``response.mailbox`` (as LIST and STATUS answers do)
parses to the same name, so no name can break a response line; sequence sets parse alone too.
"""

from __future__ import annotations

import contextlib

from fuzz.harness import instrument, run

with instrument(__name__ == "__main__"):
    from mailstead.protocols.imap import ParseError, commands, parse_command, parse_sequence_set
    from mailstead.protocols.imap import response as r


def _names(cmd: commands.Command) -> list[str]:
    out = []
    for attr in ("mailbox", "new_name"):
        value = getattr(cmd, attr, None)
        if isinstance(value, str):
            out.append(value)
    return out


def check(data: bytes) -> None:
    if not data:
        return
    utf8 = bool(data[0] & 1)
    raw = data[1:]
    if data[0] & 2:
        with contextlib.suppress(ParseError):
            parse_sequence_set(raw)
        return
    try:
        tag, cmd = parse_command(raw, utf8=utf8)
    except ParseError as e:
        if e.tag is not None:
            assert raw.startswith(e.tag.encode("ascii") + b" "), e.tag
        assert e.status in ("BAD", "NO"), e.status
        return
    assert raw.startswith(tag.encode("ascii") + b" ")
    for name in _names(cmd):
        wire = r.mailbox(name, utf8=utf8)
        _, again = parse_command(b"t SELECT " + wire, utf8=utf8)
        assert isinstance(again, commands.Select)
        assert again.mailbox == name, (name, again.mailbox, wire)


if __name__ == "__main__":
    run(check)
