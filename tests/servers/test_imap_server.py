"""IMAP end to end through Python's imaplib against a real `mailstead serve`."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import time
import zlib

import pytest

from mailstead.testing.server import Account

ACCOUNTS = [Account("alice@example.org", "alice-pw"), Account("bob@example.org", "bob-pw")]


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def deliver(server, rcpt: str, subject: str, body: str = "hello") -> None:
    with smtplib.SMTP(*server.smtp_address) as client:
        client.sendmail(
            "x@example.net",
            [rcpt],
            f"From: X <x@example.net>\r\nSubject: {subject}\r\n\r\n{body}\r\n",
        )


@pytest.fixture
def imap_server(mail_server):
    return mail_server(accounts=ACCOUNTS)


@pytest.fixture
def connect(imap_server):
    opened: list[imaplib.IMAP4] = []

    def _connect(login: str | None = "alice@example.org", password: str = "alice-pw"):
        client = imaplib.IMAP4(*imap_server.imap_address, timeout=10)
        opened.append(client)
        if login:
            client.login(login, password)
        return client

    yield _connect
    for client in opened:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            client.shutdown()


def test_plaintext_login_needs_tls_unless_loopback_is_allowed(mail_server):
    server = mail_server({"auth": {"allow_plaintext_on_loopback": False}}, accounts=ACCOUNTS)
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    try:
        assert "LOGINDISABLED" in client.capabilities
        assert "STARTTLS" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.login("alice@example.org", "alice-pw")
        client.starttls(ssl_context=insecure_context())
        assert "LOGINDISABLED" not in client.capabilities
        assert client.login("alice@example.org", "alice-pw")[0] == "OK"
    finally:
        client.logout()
    implicit = imaplib.IMAP4_SSL(*server.imaps_address, ssl_context=insecure_context(), timeout=10)
    try:
        assert implicit.login("bob@example.org", "bob-pw")[0] == "OK"
    finally:
        implicit.logout()


def test_failed_login_does_not_reveal_whether_the_account_exists(connect):
    client = connect(login=None)
    with pytest.raises(imaplib.IMAP4.error) as wrong_password:
        client.login("alice@example.org", "nope")
    with pytest.raises(imaplib.IMAP4.error) as no_account:
        client.login("nobody@example.org", "nope")
    assert str(wrong_password.value) == str(no_account.value)
    assert "AUTHENTICATIONFAILED" in str(no_account.value)


def test_authenticate_plain_with_and_without_initial_response(connect):
    client = connect(login=None)
    assert client.authenticate("PLAIN", lambda _: b"\0alice@example.org\0alice-pw")[0] == "OK"
    raw = socket.create_connection((client.host, client.port), timeout=10)
    try:
        raw.recv(4096)
        raw.sendall(b"a AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLm9yZwBib2ItcHc=\r\n")
        assert raw.recv(4096).startswith(b"a OK")
    finally:
        raw.close()


def test_mail_delivered_over_smtp_is_read_over_imap(imap_server, connect):
    deliver(imap_server, "alice@example.org", "first")
    deliver(imap_server, "alice@example.org", "second", "the body text")
    client = connect()
    status, data = client.select("INBOX")
    assert (status, data) == ("OK", [b"2"])
    _, data = client.fetch("1:2", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [part[1] for part in data if isinstance(part, tuple)]
    assert subjects == [b"Subject: first\r\n\r\n", b"Subject: second\r\n\r\n"]
    _, data = client.fetch("2", "(BODY[TEXT])")
    assert data[0][1] == b"the body text\r\n"
    _, data = client.fetch("2", "(FLAGS)")
    assert b"\\Seen" in data[0]  # BODY[] (not PEEK) set \Seen
    assert client.search(None, "BODY", '"body text"') == ("OK", [b"2"])
    assert client.search(None, "UNSEEN") == ("OK", [b"1"])


def test_idle_hears_of_a_delivery_within_a_second(imap_server, connect):
    client = connect()
    client.select("INBOX")
    tag = client._new_tag().decode()
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+ ")
    sent = time.monotonic()
    deliver(imap_server, "alice@example.org", "wake up")
    client.sock.settimeout(5)
    line = client.readline()
    latency = time.monotonic() - sent
    assert line == b"* 1 EXISTS\r\n"
    assert latency < 1.0
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag.encode()):
        pass
    assert b"OK" in line


def test_sessions_see_each_others_changes(connect):
    first, second = connect(), connect()
    first.select("INBOX")
    first.append("INBOX", None, None, b"Subject: a\r\n\r\na\r\n")
    first.append("INBOX", None, None, b"Subject: b\r\n\r\nb\r\n")
    second.select("INBOX")
    first.store("1", "+FLAGS", "(\\Flagged)")
    first.store("2", "+FLAGS", "(\\Deleted)")
    first.expunge()
    typ, _ = second.noop()
    assert typ == "OK"
    responses = second.untagged_responses
    assert responses.get("EXPUNGE") == [b"2"]
    assert any(b"\\Flagged" in item for item in responses.get("FETCH", []))


def test_accounts_are_isolated(connect):
    alice, bob = connect(), connect("bob@example.org", "bob-pw")
    alice.create("Private")
    alice.append("Private", None, None, b"Subject: secret\r\n\r\nsecret\r\n")
    names = b" ".join(line for line in bob.list()[1] if line)
    assert b"Private" not in names
    typ, data = bob.select("Private")
    assert typ == "NO"
    assert b"NONEXISTENT" in data[0]
    assert bob.status("Private", "(MESSAGES)")[0] == "NO"


@pytest.mark.parametrize(
    "name", ["a//b", "../etc", "x/..", "/abs", "a\x01b", "wild*", "per%cent", "a/./b"]
)
def test_mailbox_names_cannot_escape_the_account(connect, name):
    client = connect()
    typ, data = client.create(client._quote(name))
    assert typ == "NO", (name, data)
    assert b"[CANNOT]" in data[0]


def test_literal_over_the_limit_is_refused_before_it_is_read(mail_server):
    server = mail_server({"imap": {"append_limit": 2048}}, accounts=ACCOUNTS)
    sock = socket.create_connection(server.imap_address, timeout=10)
    try:
        sock.recv(4096)
        sock.sendall(b"a LOGIN alice@example.org alice-pw\r\n")
        assert b"a OK" in sock.recv(4096)
        sock.sendall(b"b APPEND INBOX {100000}\r\n")
        reply = sock.recv(4096)
        assert reply.startswith(b"b NO [TOOBIG]")  # no "+" continuation: nothing uploaded
        sock.sendall(b"c NOOP\r\n")
        assert sock.recv(4096).startswith(b"c OK")
    finally:
        sock.close()


def test_malformed_commands_get_bad_and_the_session_goes_on(connect):
    client = connect()
    for line in (b"x FETCH", b"y SELECT", b"z UID FROB 1", b"w FETCH 1:* (FLAGS", b"\x00\xff"):
        client.send(line + b"\r\n")
        reply = client.readline()
        assert b"BAD" in reply, (line, reply)
    assert client.noop()[0] == "OK"


def test_mailbox_management_and_special_use(connect):
    client = connect()
    listing = b"\n".join(client.list()[1])
    for special in (b"\\Sent", b"\\Drafts", b"\\Junk", b"\\Trash", b"\\Archive"):
        assert special in listing
    assert client.create("Projects/2026")[0] == "OK"
    assert b"\\HasChildren" in client.list('""', "Projects")[1][0]
    typ, data = client.delete("Projects")
    assert typ == "NO"
    assert b"HASCHILDREN" in data[0]
    assert client.rename("Projects", "Work")[0] == "OK"
    assert client.select("Work/2026")[0] == "OK"
    assert client.delete("INBOX")[0] == "NO"
    typ, data = client.status("Work/2026", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert typ == "OK"
    assert b"MESSAGES 0" in data[0]


def test_copy_move_and_uidplus(connect):
    client = connect()
    client.append("INBOX", "(\\Seen)", None, b"Subject: one\r\n\r\n1\r\n")
    client.append("INBOX", None, None, b"Subject: two\r\n\r\n2\r\n")
    client.select("INBOX")
    typ, data = client.uid("COPY", "1:2", "Archive")
    assert typ == "OK"
    assert b"COPYUID" in client.response("COPYUID")[1][0] or data
    typ, _ = client.uid("MOVE", "2", "Trash")
    assert typ == "OK"
    assert client.select("INBOX") == ("OK", [b"1"])
    assert client.select("Archive") == ("OK", [b"2"])
    assert client.select("Trash") == ("OK", [b"1"])
    typ, data = client.uid("COPY", "1", "Nowhere")
    assert typ == "NO"
    assert b"TRYCREATE" in data[0]


def test_search_gives_the_same_answer_before_and_after_indexing(imap_server, connect):
    client = connect()
    bodies = ["alpha bravo charlie", "bravo delta", "echo foxtrot", "Charlie Golf"]
    for i, text in enumerate(bodies):
        client.append("INBOX", None, None, f"Subject: s{i} {text}\r\n\r\n{text}\r\n".encode())
    client.select("INBOX")
    queries = [("BODY", "bravo"), ("BODY", "CHARLIE"), ("TEXT", "s2"), ("SUBJECT", "golf")]
    before = [client.search(None, key, f'"{value}"')[1] for key, value in queries]
    deadline = time.monotonic() + 30  # the indexer runs once deliveries pause
    while time.monotonic() < deadline:
        db = __import__("sqlite3").connect(imap_server.data_dir / "mailstead.db")
        pending = db.execute("SELECT count(*) FROM blobs WHERE indexed = 0").fetchone()[0]
        db.close()
        if pending == 0:
            break
    assert pending == 0
    after = [client.search(None, key, f'"{value}"')[1] for key, value in queries]
    assert before == after == [[b"1 2"], [b"1 4"], [b"3"], [b"4"]]


def test_qresync_reports_what_a_client_missed(connect):
    first = connect()
    for i in range(4):
        first.append("INBOX", None, None, f"Subject: m{i}\r\n\r\n{i}\r\n".encode())
    first.select("INBOX")
    typ, data = first.status("INBOX", "(UIDVALIDITY HIGHESTMODSEQ)")
    fields = data[0].decode().split("(")[1].rstrip(")").split()
    state = dict(zip(fields[::2], fields[1::2], strict=True))
    # meanwhile another session changes a flag and expunges a message
    other = connect()
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Flagged)")
    other.store("3", "+FLAGS", "(\\Deleted)")
    other.expunge()
    client = connect()
    typ, _ = client._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    tag = client._new_tag().decode()
    client.send(
        f"{tag} SELECT INBOX (QRESYNC ({state['UIDVALIDITY']} {state['HIGHESTMODSEQ']}))\r\n"
        .encode()
    )
    lines = []
    while not (line := client.readline()).startswith(tag.encode()):
        lines.append(line)
    assert b"* VANISHED (EARLIER) 3\r\n" in lines
    assert any(b"UID 2 FLAGS (\\Flagged) MODSEQ" in line for line in lines)
    # and UID FETCH (CHANGEDSINCE ... VANISHED) answers the same question
    tag = client._new_tag().decode()
    client.send(
        f"{tag} UID FETCH 1:* (FLAGS) (CHANGEDSINCE {state['HIGHESTMODSEQ']} VANISHED)\r\n"
        .encode()
    )
    lines = []
    while not (line := client.readline()).startswith(tag.encode()):
        lines.append(line)
    assert line.startswith(f"{tag} OK".encode())
    assert lines[0] == b"* VANISHED (EARLIER) 3\r\n"
    assert any(b"UID 2" in x and b"\\Flagged" in x for x in lines[1:])


def _command(sock, reader, line: bytes) -> list[bytes]:
    sock.sendall(line + b"\r\n")
    out = []
    tag = line.split()[0] + b" "
    while not (reply := reader.readline()).startswith(tag):
        out.append(reply)
    out.append(reply)
    return out


def test_internationalised_mail_reads_correctly_with_utf8_accept(mail_server):
    server = mail_server(accounts=[Account("jürgen@bücher.example", "pw")])
    with smtplib.SMTP(*server.smtp_address) as client:
        client.sendmail(
            "ü@example.net",
            ["jürgen@bücher.example"],
            "From: Ü <ü@example.net>\r\nSubject: Grüße\r\n\r\nHallo\r\n".encode(),
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    sock = socket.create_connection(server.imap_address, timeout=10)
    reader = sock.makefile("rb")
    try:
        reader.readline()
        login = _command(sock, reader, 'a LOGIN "jürgen@bücher.example" pw'.encode())
        assert login[-1].startswith(b"a OK")
        assert _command(sock, reader, b"b ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
        _command(sock, reader, b"c SELECT INBOX")
        envelope = b"".join(_command(sock, reader, b"d FETCH 1 (ENVELOPE)"))
        assert "Grüße".encode() in envelope  # RFC 6855: UTF-8 as it arrived, not mangled
        assert "ü".encode() in envelope
    finally:
        sock.close()


def test_compress_deflate(connect):
    client = connect()
    sock = client.sock
    sock.sendall(b"z COMPRESS DEFLATE\r\n")
    assert client.readline().startswith(b"z OK")
    deflate, inflate = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    sock.sendall(deflate.compress(b"y NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    data = b""
    while b"y OK" not in data:
        data += inflate.decompress(sock.recv(4096))
    assert data.endswith(b"y OK NOOP completed\r\n")


def test_connections_per_client_limit(mail_server):
    server = mail_server({"imap": {"max_connections_per_ip": 2}}, accounts=ACCOUNTS)
    held = [socket.create_connection(server.imap_address, timeout=10) for _ in range(2)]
    try:
        for sock in held:
            assert sock.recv(4096).startswith(b"* OK")
        extra = socket.create_connection(server.imap_address, timeout=10)
        try:
            assert extra.recv(4096).startswith(b"* BYE [UNAVAILABLE] Too many connections")
            assert extra.recv(4096) == b""  # and closed
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()


def test_bulk_flag_answers_follow_every_change(connect):
    """FETCH 1:* (FLAGS) answers are remembered (shared by sessions that selected the same
    state); a change by any session, or a new message, must show in the next answer."""
    first, second = connect(), connect()
    first.select("INBOX")
    for n in range(3):
        first.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % n)
    first.select("INBOX")
    second.select("INBOX")

    def flags(client) -> list[bytes]:
        typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        return [line for line in data if line]

    before = flags(first)
    assert flags(second) == before and len(before) == 3  # the shared answer
    second.store("2", "+FLAGS", "(\\Flagged)")
    assert any(b"\\Flagged" in line for line in flags(second))
    assert any(b"\\Flagged" in line for line in flags(first))  # heard of it, answer renewed
    third = connect()
    third.select("INBOX")
    assert any(b"\\Flagged" in line for line in flags(third))
    first.append("INBOX", None, None, b"Subject: new\r\n\r\nx\r\n")
    second.noop()  # EXISTS comes with a sync; the next answer includes the new message
    third.noop()
    assert len(flags(second)) == 4
    assert len(flags(third)) == 4


def test_several_header_sections_in_one_fetch(connect):
    client = connect()
    client.select("INBOX")
    message = b"Subject: s\r\nFrom: f@example.org\r\nX-A: 1\r\n\r\nbody\r\n"
    client.append("INBOX", None, None, message)
    items = ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[HEADER]", "RFC822.HEADER",
             "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]<2.5>"]  # fmt: skip
    alone = []
    for item in items:
        typ, data = client.uid("FETCH", "1", f"(UID {item})")
        assert typ == "OK"
        alone.append(data[0][1])
    typ, data = client.uid("FETCH", "1", f"(UID {' '.join(items)})")
    assert typ == "OK"
    together = [part[1] for part in data if isinstance(part, tuple)]
    assert together == alone
    assert alone[0] == b"Subject: s\r\n\r\n"
    assert alone[3] == b"om: f"


def test_header_searches_answered_by_the_index_match_the_scan(imap_server, connect):
    """SUBJECT/FROM/TO/CC/BCC are answered by the index's own columns once a message is
    indexed: the answers must equal those of the scan (encoded words, several fields, display
    names, addresses, NOT and OR around them)."""
    client = connect()
    messages = [
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
        b"From: =?utf-8?q?J=C3=BCrgen?= Meier <jm@example.net>\r\n"
        b"To: team: a@x.org, b@y.org;\r\n\r\nx\r\n",
        b"Subject: first line\r\nSubject: second line\r\nFrom: plain@example.com\r\n"
        b"Cc: Carol Copy <carol@example.org>\r\nBcc: hidden@example.org\r\n\r\ny\r\n",
        b"Subject: nothing here\r\nFrom: other@example.com\r\nX-Note: second line\r\n\r\n"
        b"subject line\r\n",
    ]  # fmt: skip
    for raw in messages:
        client.append("INBOX", None, None, raw)
    client.select("INBOX")
    queries = [
        'SUBJECT "GRÜSSE aus"', 'SUBJECT "grüße"', 'FROM "jürgen meier"', 'FROM "jm@example"',
        'TO "team"', 'TO "b@y.org"', 'SUBJECT "second line"', 'SUBJECT "first"', 'CC "carol copy"',
        'BCC "hidden@"', 'HEADER "subject" "line"', 'NOT SUBJECT "line"',
        'OR SUBJECT "köln" FROM "other@"', 'FROM "example.com" SUBJECT "line"', 'SUBJECT "zzz"',
    ]  # fmt: skip

    def answers() -> list[bytes]:
        out = []
        for query in queries:
            typ, data = client.uid("SEARCH", "CHARSET", "UTF-8", query.encode())
            assert typ == "OK", query
            out.append(data[0])
        return out

    before = answers()
    deadline = time.monotonic() + 30  # the indexer runs once deliveries pause
    while time.monotonic() < deadline:
        db = __import__("sqlite3").connect(imap_server.data_dir / "mailstead.db")
        pending = db.execute("SELECT count(*) FROM blobs WHERE indexed = 0").fetchone()[0]
        db.close()
        if pending == 0:
            break
    assert pending == 0
    assert answers() == before == [
        b"1", b"1", b"1", b"1", b"1", b"1", b"2", b"2", b"2", b"2", b"2", b"1 3", b"1 3",
        b"2", b"",
    ]  # fmt: skip


def test_search_contexts_past_the_limit_are_answered_but_not_updated(imap_server, connect):
    """RFC 5267 §4.2: a server may refuse to keep a context: NO [NOUPDATE "tag"], the search is
    still answered. Mailstead keeps MAX_CONTEXTS per session."""
    from mailstead.imap.context import MAX_CONTEXTS

    connect().append("INBOX", None, None, b"Subject: s\r\n\r\nbody\r\n")
    sock = socket.create_connection(imap_server.imap_address, timeout=10)
    reader = sock.makefile("rb")
    try:
        reader.readline()
        assert _command(sock, reader, b"a LOGIN alice@example.org alice-pw")[-1].startswith(b"a OK")
        _command(sock, reader, b"b SELECT INBOX")
        for n in range(MAX_CONTEXTS):
            kept = _command(sock, reader, b"s%d SEARCH RETURN (UPDATE ALL) ALL" % n)
            expected = [b'* ESEARCH (TAG "s%d") ALL 1\r\n' % n, b"s%d OK Search completed\r\n" % n]
            assert kept == expected
        over = _command(sock, reader, b"x SEARCH RETURN (UPDATE ALL) ALL")
        assert over[0] == b'* ESEARCH (TAG "x") ALL 1\r\n'
        assert over[1].startswith(b'* NO [NOUPDATE "x"] ')
        assert over[-1] == b"x OK Search completed\r\n"
        # a cancelled context frees its place
        assert _command(sock, reader, b'c CANCELUPDATE "s0"')[-1].startswith(b"c OK")
        again = _command(sock, reader, b"y SEARCH RETURN (UPDATE ALL) ALL")
        assert not any(b"NOUPDATE" in line for line in again)
    finally:
        sock.close()
