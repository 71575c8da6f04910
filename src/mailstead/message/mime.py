"""The MIME structure of a message, with byte offsets, shaped for IMAP BODYSTRUCTURE.

Every value of a ``MimePart`` is what Dovecot's BODYSTRUCTURE shows for that part, so
IMAP renders it mechanically:

- ``type``/``subtype`` keep the case written in the message; a part without a usable
  Content-Type is ``text``/``plain`` (``message``/``rfc822`` in a multipart/digest);
  a multipart or message/rfc822 that could not be parsed as such (nesting limits) is
  ``application``/``octet-stream``; message/rfc822 is always written lower-case;
  a broken Content-Type gives ``""``/``""`` (``text/html junk``) or ``text``/``""``
  (``text`` alone), like Dovecot.
- ``params`` are the Content-Type parameters (RFC 2231 pieces merged as Dovecot does);
  text parts get ``("charset", "us-ascii")`` appended when they have no charset.
- ``encoding`` defaults to ``7bit``; ``lines`` is set for text and message/rfc822 parts
  only; ``size`` is the body's size in IMAP octets (bare LF counted as CRLF).
- An empty ``params``/``disposition_params`` list is NIL; ``language`` None is NIL.
- A ``multipart`` part may have no children (no boundary parameter, no boundary line):
  Dovecot then shows one empty text/plain part.

Offsets are into the outermost raw message: ``raw[header_start:body_start]`` is the
header (BODY[n.MIME] / BODY[n.HEADER]), ``raw[body_start:body_end]`` the body.
The CRLF before a boundary line is not part of the preceding body.

Strings taken from the message are decoded as UTF-8 with ``surrogateescape``;
``s.encode("utf-8", "surrogateescape")`` gives back the exact octets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailstead.message.parse import ParsedMessage

__all__ = ["MAX_NESTING", "MAX_PARTS", "MimePart"]

# Dovecot's MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS and _MAX_TOTAL_MIME_PARTS.
# Past MAX_NESTING a multipart or message/rfc822 is not opened: it becomes one
# application/octet-stream leaf. Past MAX_PARTS boundaries are no longer recognised.
MAX_NESTING = 100
MAX_PARTS = 10000


@dataclass(slots=True)
class MimePart:
    header_start: int
    body_start: int
    body_end: int
    type: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    md5: str | None = None
    disposition: str | None = None
    disposition_params: list[tuple[str, str]] = field(default_factory=list)
    language: list[str] | None = None
    location: str | None = None
    lines: int | None = None
    size: int = 0
    children: list[MimePart] = field(default_factory=list)
    message: ParsedMessage | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    def param(self, name: str) -> str | None:
        """The first Content-Type parameter called ``name`` (case-insensitive)."""
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return v
        return None

    def walk(self) -> list[MimePart]:
        """This part and every part below it (into embedded messages), depth first."""
        out: list[MimePart] = []
        stack = [self]
        while stack:
            p = stack.pop()
            out.append(p)
            if p.message is not None:
                stack.append(p.message.root)
            stack.extend(reversed(p.children))
        return out
