"""Modified UTF-7, the mailbox-name encoding of IMAP (RFC 3501 §5.1.3, kept by RFC 9051 §5.1.3).

Printable US-ASCII (0x20-0x7e) stands for itself except "&", written "&-". Every other run of
characters is UTF-16BE in modified BASE64 ("," instead of "/", no padding) between "&" and "-".

`decode` is strict: it accepts only the one canonical encoding of a name (what `encode` produces),
so two spellings can never name the same mailbox. That rejects raw 8-bit or control octets, an
unterminated shift, a shift that encodes printable ASCII or is empty, two adjacent shifts, padding
bits that are not zero, and unpaired UTF-16 surrogates.
"""

from __future__ import annotations

import binascii
from typing import Final

__all__ = ["MUTF7Error", "decode", "encode"]


class MUTF7Error(ValueError):
    """A name is not valid modified UTF-7."""


_B64: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_SET: Final = frozenset(_B64)


def _printable(c: str) -> bool:
    return " " <= c <= "~"


def _encode_run(run: str) -> str:
    raw = run.encode("utf-16-be", "surrogatepass")
    b64 = binascii.b2a_base64(raw, newline=False).decode("ascii")
    return "&" + b64.rstrip("=").replace("/", ",") + "-"


def encode(name: str) -> str:
    """The modified UTF-7 form of ``name`` (always pure printable ASCII)."""
    if name.isascii() and name.isprintable() and "&" not in name:
        return name  # the common case: nothing to do
    out: list[str] = []
    run_start = -1
    for i, c in enumerate(name):
        if _printable(c):
            if run_start >= 0:
                out.append(_encode_run(name[run_start:i]))
                run_start = -1
            out.append("&-" if c == "&" else c)
        elif run_start < 0:
            run_start = i
    if run_start >= 0:
        out.append(_encode_run(name[run_start:]))
    return "".join(out)


def _decode_run(b64: str) -> str:
    if not b64:
        raise MUTF7Error("empty modified BASE64 shift")
    if any(c not in _B64_SET for c in b64):
        raise MUTF7Error("invalid character in modified BASE64")
    bits = len(b64) * 6
    if bits % 16 >= 6:  # a whole BASE64 character beyond the last UTF-16 unit
        raise MUTF7Error("modified BASE64 has a superfluous character")
    padded = b64.replace(",", "/") + "=" * (-len(b64) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as e:
        raise MUTF7Error(f"invalid modified BASE64: {e}") from None
    if len(raw) % 2:
        raise MUTF7Error("modified BASE64 does not encode whole UTF-16 units")
    try:
        text = raw.decode("utf-16-be")  # strict: unpaired surrogates fail
    except UnicodeDecodeError:
        raise MUTF7Error("invalid UTF-16 in modified BASE64") from None
    return text


def decode(name: str | bytes) -> str:
    """The Unicode name ``name`` encodes; raises `MUTF7Error` unless it is canonical mUTF-7."""
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            raise MUTF7Error("8-bit octet in a modified UTF-7 name") from None
    if "&" not in name:
        if not (name.isascii() and name.isprintable()):
            raise MUTF7Error("control or 8-bit character in a modified UTF-7 name")
        return name
    out: list[str] = []
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c != "&":
            if not _printable(c):
                raise MUTF7Error("control or 8-bit character in a modified UTF-7 name")
            out.append(c)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end == -1:
            raise MUTF7Error("unterminated modified BASE64 shift")
        if end == i + 1:
            out.append("&")
        else:
            out.append(_decode_run(name[i + 1 : end]))
        i = end + 1
    text = "".join(out)
    if encode(text) != name:  # printable ASCII in BASE64, adjacent shifts, non-zero padding bits
        raise MUTF7Error("not the canonical modified UTF-7 encoding")
    return text
