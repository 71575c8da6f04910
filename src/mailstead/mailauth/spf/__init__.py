"""SPF (RFC 7208): may this client send mail for this domain?

``check_host()`` is the RFC's function: one identity, one result (``SpfCheck``), every
mechanism, modifier and macro, with the processing limits of §4.6.4. ``check_sender()`` is what
the SMTP server calls at MAIL FROM: it checks the HELO and MAIL FROM identities and says which
result stands (``SpfVerdict``); ``received_spf()`` writes the Received-SPF field (§9.1).

All DNS goes through a ``mailstead.dns.Resolver`` (async, cached); nothing here blocks, reads
the clock or keeps state between calls. Our own implementation rather than pyspf, which is
synchronous and does its own DNS (docs/decisions.md)."""

from mailstead.mailauth.spf._check import (
    LOOKUP_LIMIT,
    VOID_LIMIT,
    SpfCheck,
    SpfResult,
    check_host,
)
from mailstead.mailauth.spf._record import SpfSyntaxError, parse_record
from mailstead.mailauth.spf._sender import SpfVerdict, check_sender, is_host_name, received_spf

__all__ = [
    "LOOKUP_LIMIT",
    "VOID_LIMIT",
    "SpfCheck",
    "SpfResult",
    "SpfSyntaxError",
    "SpfVerdict",
    "check_host",
    "check_sender",
    "is_host_name",
    "parse_record",
    "received_spf",
]
