"""Header fields, encoded words, addresses and the envelope, on arbitrary header bytes.

Input: one octet choosing what to exercise, then the bytes. Properties: header fields are in
order, within the input, and end where the next begins; ``decode_header_value`` returns a str
for any bytes (RFC 2047 words with any charset name); ``parse_address_list`` never raises and
local parts, domains and routes hold no LF; the envelope is built from any fields; domain
normalisation raises only `AddressError`; the strict From parser (DMARC, submission) raises
only `AuthorError` and gives non-empty domains without line breaks; the authserv-id reader of
Authentication-Results never raises.
"""

from __future__ import annotations

import contextlib

from fuzz.harness import instrument, run

with instrument(__name__ == "__main__"):
    from mailstead.mailauth.author import AuthorError, parse_mailbox_list
    from mailstead.mailauth.results import parse_authserv_id
    from mailstead.message import (
        AddressError,
        decode_header_value,
        normalize_domain,
        parse_address_list,
        split_address,
    )
    from mailstead.message.envelope import build_envelope, dovecot_value
    from mailstead.message.headers import parse_header_fields, split_header_body, unfold


def check(data: bytes) -> None:
    if not data:
        return
    which, raw = data[0] % 5, data[1:]
    if which == 0:
        fields = parse_header_fields(raw)
        end = split_header_body(raw)
        assert 0 <= end <= len(raw)
        pos = 0
        for f in fields:
            assert f.start == pos and f.start < f.end <= end, (f, pos, end)
            assert raw[f.start : f.end].find(f.value) != -1
            pos = f.end
        env = build_envelope(fields)
        for addresses in (env.from_, env.sender, env.to, env.cc, env.bcc, env.reply_to):
            for a in addresses:
                assert "\n" not in a.local and "\n" not in (a.domain or ""), a
    elif which == 1:
        text = decode_header_value(raw)
        assert isinstance(text, str)
        assert b"\r\n " not in unfold(raw), "unfold left a fold"
    elif which == 2:
        for a in parse_address_list(raw):
            for part in (a.local, a.domain, a.route):
                # LF never survives (folding); a bare CR inside quotes does, as in Dovecot
                assert part is None or "\n" not in part, a
        dovecot_value(raw)
    elif which == 3:
        with contextlib.suppress(AuthorError):
            for mailbox in parse_mailbox_list(raw):
                assert mailbox.domain and "\n" not in mailbox.addr_spec, mailbox
        found = parse_authserv_id(raw)
        assert found is None or isinstance(found, str)
    else:
        text = raw.decode("utf-8", "replace")
        with contextlib.suppress(AddressError):
            normalize_domain(text)
        with contextlib.suppress(AddressError):
            split_address(text)


if __name__ == "__main__":
    run(check)
