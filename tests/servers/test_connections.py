"""The connection table shared by the IMAP and POP3 shells: counts, limits, idle."""

from __future__ import annotations

from mailstead.servers.stream import Connections, StreamSession


def test_counts_per_client_and_limits():
    table: Connections[StreamSession] = Connections()
    a, b, c = StreamSession(), StreamSession(), StreamSession()
    table.add(a, "10.0.0.1")
    table.add(b, "10.0.0.1")
    table.add(c, "10.0.0.2")
    assert len(table) == 3
    assert table.refused(a, max_connections=3, max_per_client=2) is None
    assert table.refused(b, max_connections=3, max_per_client=1) == "Too many connections"
    assert table.refused(c, max_connections=2, max_per_client=5) == "Too many connections"
    table.remove(a)
    table.remove(a)  # twice: counted once
    assert table.refused(b, max_connections=3, max_per_client=1) is None
    table.shutting_down = True
    assert table.refused(c, max_connections=9, max_per_client=9) == "Server shutting down"
    table.remove(b)
    table.remove(c)
    assert len(table) == 0 and list(table) == []
