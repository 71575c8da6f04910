"""The IMAP service layer: pure functions that answer FETCH, SORT and THREAD items from a
message's raw octets and its cached structure (``mailstead.message``).

No I/O, no store: bytes in, bytes out. The protocol layer parses commands and calls these;
``render`` writes ENVELOPE/BODY/BODYSTRUCTURE, ``sections`` BODY[...]/BINARY[...],
``subject`` the RFC 5256 base subject, ``sort`` SORT keys and ``thread`` THREAD.
"""
