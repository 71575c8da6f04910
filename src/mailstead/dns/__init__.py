"""DNS for Mailstead: one async ``Resolver`` interface, its dnspython implementation with a TTL
cache, and the answer types.

Every lookup returns an ``Answer`` whose ``status`` says what happened (``FOUND``,
``NXDOMAIN``, ``NO_DATA``, ``TEMPORARY``, ``INVALID``); no DNS library exception reaches a
caller, and a timeout or SERVFAIL is always ``TEMPORARY``, never a permanent result. Names may be
given as U-labels (``bücher.example``) and are asked as A-labels. ``StubResolver`` is the real
thing (``[dns]`` in the configuration); ``mailstead.testing.dns.FakeResolver`` answers from a
record map for unit tests; ``mailstead.testing.nsd`` runs a real authoritative server on
loopback for the tests that want the wire.

This package imports nothing else of Mailstead."""

from mailstead.dns._answers import (
    MX,
    SRV,
    TLSA,
    Answer,
    IPAddress,
    Status,
    combine_addresses,
)
from mailstead.dns._cache import AnswerCache
from mailstead.dns._names import InvalidName, normalize_name
from mailstead.dns._protocol import Resolver
from mailstead.dns._stub import StubResolver, parse_nameserver

__all__ = [
    "MX",
    "SRV",
    "TLSA",
    "Answer",
    "AnswerCache",
    "IPAddress",
    "InvalidName",
    "Resolver",
    "Status",
    "StubResolver",
    "combine_addresses",
    "normalize_name",
    "parse_nameserver",
]
