"""Mail loops: too many hops, and aliases that forward to each other.

Two defences, both checked at the end of DATA/BDAT before anything is stored:

- **Hop count** (RFC 5321 §6.3): a message carrying more ``Received`` fields than
  ``[smtp] max_received_headers`` has looped (Postfix: ``hopcount_limit``, 50 as well).
- **Delivered-To** (as Postfix does for local and virtual delivery): when an alias forwards a
  message to a remote address, the forwarded copy gets ``Delivered-To: <alias>``; a message
  that comes back for an alias it already names has gone round, and is refused. The local
  copy gets no such field (docs/decisions.md, "Delivered-To marks forwarded copies only").
"""

from __future__ import annotations

from collections.abc import Iterable

from mailstead.directory.service import DirectoryError, normalize_address
from mailstead.message.headers import parse_header_fields

__all__ = [
    "DEFAULT_MAX_RECEIVED",
    "count_received",
    "delivered_to_fields",
    "forwarding_loop",
]

DEFAULT_MAX_RECEIVED = 50  # RFC 5321 §6.3 leaves it to us; Postfix's hopcount_limit


def _header(message: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end >= 0:
            return message[: end + len(separator)]
    return message


def count_received(message: bytes) -> int:
    """The number of ``Received`` fields in the header of ``message``."""
    return sum(1 for f in parse_header_fields(_header(message)) if f.name.lower() == "received")


def _key(address: str) -> str:
    """``address`` as the directory compares it (domain and local part folded)."""
    try:
        addr = normalize_address(address)
    except DirectoryError:
        return address.strip().lower()
    return f"{addr.local_key}@{addr.domain}"


def forwarding_loop(message: bytes, forwarders: Iterable[str]) -> str | None:
    """The first of ``forwarders`` (addresses whose alias expands to remote targets) that a
    ``Delivered-To`` field of ``message`` already names, or None."""
    seen = set()
    for f in parse_header_fields(_header(message)):
        if f.name.lower() == "delivered-to":
            value = f.value.decode("utf-8", "replace").strip().strip("<>").strip()
            seen.add(_key(value))
    if not seen:
        return None
    for address in forwarders:
        if _key(address) in seen:
            return address
    return None


def delivered_to_fields(forwarders: Iterable[str]) -> bytes:
    """One ``Delivered-To`` field per forwarding alias, each once, for the forwarded copy."""
    keys: set[str] = set()
    lines = []
    for address in forwarders:
        key = _key(address)
        if key not in keys:
            keys.add(key)
            lines.append(f"Delivered-To: {address}\r\n")
    return "".join(lines).encode("utf-8")
