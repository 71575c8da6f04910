"""Split an imaptest mbox into (INTERNALDATE string, CRLF message) pairs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FROM = re.compile(rb"^From \S+\s+(.+?)\r?$", re.M)


def read_mbox(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    heads = list(_FROM.finditer(data))
    for i, m in enumerate(heads):
        start = m.end() + 1
        end = heads[i + 1].start() if i + 1 < len(heads) else len(data)
        raw = data[start:end]
        if raw.endswith(b"\n\n"):
            raw = raw[:-1]  # the blank line before the next From_ is the separator
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        text = m.group(1).decode().strip()
        fmt = (
            "%a %b %d %H:%M:%S %Y %z" if re.search(r"[+-]\d{4}$", text) else "%a %b %d %H:%M:%S %Y"
        )
        d = datetime.strptime(text, fmt)
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        out.append((d.strftime("%d-%b-%Y %H:%M:%S %z"), raw))
    return out
