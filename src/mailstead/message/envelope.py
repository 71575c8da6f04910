"""The IMAP ENVELOPE of a message, as Dovecot builds it (RFC 3501 §7.4.2 / RFC 9051).

Values are kept as Dovecot keeps them, so IMAP can render them without re-reading the
header: strings are the field's value with leading whitespace skipped, CR of folded lines
dropped (``"a\\n b"``) and NUL replaced by U+FFFD; for Date, Subject, In-Reply-To and
Message-ID the *last* field wins; address fields of the same name are concatenated.
Sender and Reply-To are not defaulted here: Dovecot substitutes From when it writes the
ENVELOPE, and so should IMAP (``imap_sender`` / ``imap_reply_to``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailstead.message._rfc822 import NUL_REPLACEMENT
from mailstead.message.addresses import Address, parse_address_list
from mailstead.message.headers import HeaderField

__all__ = ["Envelope", "build_envelope", "dovecot_value"]


@dataclass(slots=True)
class Envelope:
    date: bytes | None = None
    subject: bytes | None = None
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    in_reply_to: bytes | None = None
    message_id: bytes | None = None

    @property
    def imap_sender(self) -> list[Address]:
        """Sender as ENVELOPE shows it: From when there is no (usable) Sender."""
        return self.sender or self.from_

    @property
    def imap_reply_to(self) -> list[Address]:
        """Reply-To as ENVELOPE shows it: From when there is no (usable) Reply-To."""
        return self.reply_to or self.from_


_LWSP = (0x20, 0x09)


def dovecot_value(value: bytes) -> bytes:
    """A raw field value the way Dovecot's header parser hands it over for IMAP.

    Leading SP/HTAB of the first line are skipped (only one if the line is nothing but
    whitespace), and the CR of every CRLF is dropped.
    """
    nl = value.find(b"\n")
    first_len = len(value) if nl < 0 else (nl - 1 if nl > 0 and value[nl - 1] == 0x0D else nl)
    pos = 0
    while pos < first_len and value[pos] in _LWSP:
        pos += 1
    if pos == first_len:
        pos = 1 if first_len > 0 and value[0] in _LWSP else 0
    out = value[pos:] if pos else value
    if b"\r\n" in out:
        out = out.replace(b"\r\n", b"\n")
    return out


_STRINGS = {
    "date": "date",
    "subject": "subject",
    "in-reply-to": "in_reply_to",
    "message-id": "message_id",
}
_ADDRS = {
    "from": "from_",
    "sender": "sender",
    "reply-to": "reply_to",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
}


def build_envelope(fields: Iterable[HeaderField]) -> Envelope:
    env = Envelope()
    for f in fields:
        lname = f.name.lower()
        attr = _STRINGS.get(lname)
        if attr is not None:
            v = dovecot_value(f.value)
            if b"\0" in v:
                v = v.replace(b"\0", NUL_REPLACEMENT)
            setattr(env, attr, v)
            continue
        attr = _ADDRS.get(lname)
        if attr is not None:
            lst: list[Address] = getattr(env, attr)
            lst.extend(parse_address_list(dovecot_value(f.value)))
    return env
