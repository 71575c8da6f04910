"""Real POP3 clients download and delete a 220-message maildrop from a real `mailstead serve`.

Each test loads the same mailbox (200 messages by IMAP MULTIAPPEND, 20 over SMTP), lets the
client download everything over one of the ways in (USER/PASS or AUTH, plain on loopback,
STLS, pop3s) and delete what it downloaded, then compares: every message the client wrote
(a Maildir, files, or memory) byte for byte against the store's copy (line ends and the
headers the client adds aside), and what is left in the INBOX, through the store and IMAP.
The messages are chosen to trip byte-stuffing: lines of ".", "..", ".x", a lone "." at the
end, "From " lines, long lines, 8-bit text, an empty body and a header without a body.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from mailstead.testing.server import Account, RunningServer

pytestmark = [pytest.mark.interop, pytest.mark.slow]

USER, PASSWORD = "alice@example.org", "alice-pw"
ACCOUNTS = [Account(USER, PASSWORD)]
APPENDED = 200
DELIVERED = 20
CLIENT_TIMEOUT = 60
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>@]+)@pop3.test>", re.IGNORECASE | re.MULTILINE)


def needs(binary: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which(binary) is None,
        reason=f"{binary} is not installed (scripts/install-test-deps installs it)",
    )


# -- the maildrop -------------------------------------------------------------------------------
def message(key: str, n: int) -> bytes:
    """A varied message; many have lines a POP3 server must byte-stuff."""
    head = [
        f"Message-ID: <{key}@pop3.test>",
        "From: Sender <sender@example.net>",
        f"To: {USER}",
        f"Subject: {key} number {n}",
        "Date: Mon, 01 Jan 2024 12:00:00 +0000",
        "MIME-Version: 1.0",
    ]
    kind = n % 8
    if kind == 0:
        body = [".", "..", ".leading dot", "middle . dot", "..double", "."]
    elif kind == 1:
        body = ["From the start of a line", ">From quoted", f"line {n}"]
    elif kind == 2:
        head.append("Content-Type: text/plain; charset=utf-8")
        head.append("Content-Transfer-Encoding: 8bit")
        body = [f"Grüße, Nachricht {n} — äöü €", "." + "ü" * 10]
    elif kind == 3:
        # RFC 5322 §2.1.1: 998 octets a line at most (poplib refuses more than 2048)
        body = ["x" * 998, "." + "y" * 997, "z" * 998]
    elif kind == 4:
        body = []  # empty body
    elif kind == 5:
        return ("\r\n".join(head) + "\r\n").encode()  # a header and nothing else
    elif kind == 6:
        head.append('Content-Type: multipart/mixed; boundary="b"')
        body = ["--b", "Content-Type: text/plain", "", f"part {n}", ".", "--b",
                "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64",
                "", *["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" for _ in range(1 + n % 40)],
                "--b--"]  # fmt: skip
    else:
        body = [f"line {i} of {n}" for i in range(n % 200)]
    return ("\r\n".join([*head, "", *body]) + "\r\n").encode()


def message_id(raw: bytes) -> str:
    found = MESSAGE_ID.search(raw)
    assert found is not None, raw[:300]
    return found.group(1).decode()


class Maildrop:
    """What was loaded (Message-ID -> bytes as stored) and how to look at what is left."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        appended = {f"a{n:03d}": message(f"a{n:03d}", n) for n in range(APPENDED)}
        multiappend(server, list(appended.values()))
        delivered = {f"s{n:03d}": message(f"s{n:03d}", n) for n in range(DELIVERED)}
        with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
            for raw in delivered.values():
                client.sendmail("sender@example.net", [USER], raw)
        # SMTP adds Return-Path and Received: the store's copies are the reference
        self.stored = {message_id(raw): raw for raw in server.messages(USER)}
        assert len(self.stored) == APPENDED + DELIVERED
        assert all(self.stored[k] == v for k, v in appended.items())

    def left(self) -> set[str]:
        """Message-IDs still in the INBOX, from the store and (the same) from IMAP."""
        in_store = {message_id(raw) for raw in self.server.messages(USER)}
        data = imap_fetch(self.server, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
        over_imap = {message_id(item[1]) for item in data if isinstance(item, tuple)}
        assert over_imap == in_store
        return in_store

    def seen(self) -> set[str]:
        """Message-IDs of the INBOX flagged \\Seen (POP3 marks what RETR sent, at QUIT)."""
        data = imap_fetch(self.server, "FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
        return {
            message_id(item[1])
            for item in data
            if isinstance(item, tuple) and b"\\Seen" in item[0]
        }

    def check(self, downloaded: dict[str, bytes], *, strip: tuple[bytes, ...] = ()) -> None:
        """Every downloaded message equals the stored one (LF line ends; without the header
        fields named in ``strip``, which the client adds; a message without a body may get
        the empty line that ends its header)."""
        assert set(downloaded) <= set(self.stored)

        def comparable(raw: bytes) -> bytes:
            raw = without(strip, lf(raw))
            return raw if b"\n\n" in raw else raw + b"\n"

        differing = [
            key
            for key, raw in downloaded.items()
            if comparable(raw) != comparable(self.stored[key])
        ]
        assert not differing, (differing[:5], downloaded[differing[0]][:400])


def multiappend(server: RunningServer, messages: list[bytes]) -> None:
    """One IMAP MULTIAPPEND of LITERAL+ literals: one round trip for them all."""
    with socket.create_connection(server.imap_address, timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"a LOGIN {USER} {PASSWORD}\r\n".encode())
        assert reader.readline().startswith(b"a OK")
        parts = [b"b APPEND INBOX"]
        for raw in messages:
            parts.append(f" {{{len(raw)}+}}\r\n".encode() + raw)
        sock.sendall(b"".join(parts) + b"\r\n")
        while not (line := reader.readline()).startswith(b"b "):
            assert line, "connection closed during APPEND"
        assert line.startswith(b"b OK"), line
        reader.close()


def imap_fetch(server: RunningServer, items: str) -> list:
    """FETCH ``items`` of every message of the INBOX, through imaplib."""
    client = imaplib.IMAP4(*server.imap_address, timeout=30)
    try:
        client.login(USER, PASSWORD)
        typ, count = client.select("INBOX")
        assert typ == "OK"
        if count == [b"0"]:
            return []
        typ, data = client.fetch("1:*", f"({items})")
        assert typ == "OK"
        return data
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def without(names: tuple[bytes, ...], raw: bytes) -> bytes:
    """``raw`` (LF line ends) without the header fields called ``names`` (and their folded
    continuation lines)."""
    if not names:
        return raw
    head, sep, body = raw.partition(b"\n\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and kept is not None:
            if not dropping:
                kept.append(line)
            continue
        dropping = any(line.lower().startswith(n.lower() + b":") for n in names)
        if not dropping:
            kept.append(line)
    return b"\n".join(kept) + sep + body


def read_maildir(path: Path) -> dict[str, bytes]:
    files = [f for sub in ("new", "cur") for f in (path / sub).iterdir()]
    result = {message_id(f.read_bytes()): f.read_bytes() for f in files}
    assert len(result) == len(files), "a message was delivered twice"
    return result


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"")[-3000:] + b"\n" + (exc.stderr or b"")[-3000:]
        raise AssertionError(f"{argv[0]} timed out:\n{out.decode(errors='replace')}") from None
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def cert(server: RunningServer) -> Path:
    return server.data_dir / "tls" / "cert.pem"


def tls_context(server: RunningServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert(server)))


@pytest.fixture
def maildrop(mail_server) -> Maildrop:
    return Maildrop(mail_server(accounts=ACCOUNTS))


# -- poplib -------------------------------------------------------------------------------------
def test_poplib(maildrop):
    """USER/PASS after STLS: UIDL, TOP, RETR of everything, DELE, RSET (nothing deleted);
    then over pop3s: RETR and DELE of everything but ten, QUIT."""
    server = maildrop.server
    client = poplib.POP3(*server.pop3_address, timeout=30)
    client.stls(tls_context(server))
    client.user(USER)
    assert client.pass_(PASSWORD).startswith(b"+OK Logged in, 220 messages")
    count, size = client.stat()
    assert (count, size) == (220, sum(len(raw) for raw in maildrop.stored.values()))
    _, listing, _ = client.list()
    _, uidl, _ = client.uidl()
    sizes = [int(line.split()[1]) for line in listing]
    ids = [line.split()[1] for line in uidl]
    assert len(set(ids)) == 220
    downloaded: dict[str, bytes] = {}
    for n in range(1, count + 1):
        _, lines, octets = client.retr(n)
        raw = b"\r\n".join(lines) + b"\r\n"
        downloaded[message_id(raw)] = raw
        assert len(raw) == octets == sizes[n - 1]  # LIST's size: what RETR sends, unstuffed
    maildrop.check(downloaded)
    assert downloaded.keys() == maildrop.stored.keys()
    _, top, _ = client.top(1, 0)
    header = maildrop.stored[message_id(b"\r\n".join(top))].split(b"\r\n\r\n")[0]
    assert b"\r\n".join(top) == header + b"\r\n"
    for n in range(1, 101):
        client.dele(n)
    assert client.stat()[0] == 120
    client.rset()  # undoes the DELEs, and the RETRs as far as \Seen goes (as Dovecot)
    assert client.stat() == (count, size)
    read = {message_id(b"\r\n".join(client.retr(n)[1])) for n in range(1, 11)}
    client.quit()
    assert maildrop.left() == set(maildrop.stored)
    assert maildrop.seen() == read  # RETR'd messages are \Seen after QUIT

    client = poplib.POP3_SSL(*server.pop3s_address, context=tls_context(server), timeout=30)
    client.user(USER)
    client.pass_(PASSWORD)
    _, again, _ = client.uidl()
    assert [line.split()[1] for line in again] == ids  # the same unique ids
    kept = set()
    for n in range(1, 221):
        _, lines, _ = client.retr(n)
        key = message_id(b"\r\n".join(lines))
        if n % 22 == 0:
            kept.add(key)
        else:
            client.dele(n)
    client.quit()
    assert maildrop.left() == kept


# -- fetchmail ----------------------------------------------------------------------------------
FETCHMAILRC = """\
set no bouncemail
poll localhost with proto POP3 port {port} uidl
    user "{user}" there with password "{password}" is "nobody" here
    {tls} sslcertck sslcertfile "{cert}"
    mda "/bin/sh -c 'cat > {folder}/msg.$$'"
    norewrite
    nokeep
"""


@needs("fetchmail")
@pytest.mark.parametrize("tls", ["stls", "pop3s"])
def test_fetchmail(maildrop, tmp_path, tls):
    """fetchmail (UIDL, pipelined RETR/DELE) over STLS or pop3s, delivering to an MDA.
    It matches the certificate against DNS names only: it connects as "localhost"."""
    server = maildrop.server
    folder = tmp_path / "fetched"
    folder.mkdir()
    address = server.pop3s_address if tls == "pop3s" else server.pop3_address
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        FETCHMAILRC.format(
            port=address[1], user=USER, password=PASSWORD, cert=cert(server), folder=folder,
            tls="ssl" if tls == "pop3s" else "sslproto tls1.2+",
        )
    )  # fmt: skip
    rc.chmod(0o600)
    env = {"HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = run(["fetchmail", "-f", str(rc), "-v", "--nosyslog"], env=env)
    log = result.stdout + result.stderr
    assert ("STLS" in log) == (tls == "stls"), log[-3000:]
    assert "220 messages for alice@example.org" in log and "normal termination" in log
    downloaded = {message_id(f.read_bytes()): f.read_bytes() for f in folder.iterdir()}
    assert downloaded.keys() == maildrop.stored.keys()
    maildrop.check(downloaded, strip=(b"Received",))
    assert maildrop.left() == set()


# -- getmail6 -----------------------------------------------------------------------------------
GETMAILRC = """\
[retriever]
type = {retriever}
server = localhost
port = {port}
username = {user}
password = {password}
{tls}

[destination]
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat > {folder}/msg.$$$$")
allow_root_commands = true

[options]
delete = true
read_all = true
verbose = 2
"""


@needs("getmail")
@pytest.mark.parametrize("tls", ["plain", "pop3s"])
def test_getmail(maildrop, tmp_path, tls):
    """getmail6 (UIDL, RETR, DELE, an MDA) over pop3s checking the certificate, and over
    plain POP3 on loopback (``[auth] allow_plaintext_on_loopback``, as the test config has)."""
    server = maildrop.server
    folder = tmp_path / "fetched"
    folder.mkdir()
    address = server.pop3s_address if tls == "pop3s" else server.pop3_address
    rc = tmp_path / "getmailrc"
    rc.write_text(
        GETMAILRC.format(
            retriever="SimplePOP3SSLRetriever" if tls == "pop3s" else "SimplePOP3Retriever",
            port=address[1], user=USER, password=PASSWORD, folder=folder,
            tls=f"ca_certs = {cert(server)}" if tls == "pop3s" else "",
        )
    )  # fmt: skip
    result = run(
        ["getmail", "--rcfile", str(rc), "--getmaildir", str(tmp_path)],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert "Retrieved 220 messages" in result.stdout, result.stdout[-3000:]
    downloaded = {message_id(f.read_bytes()): f.read_bytes() for f in folder.iterdir()}
    assert downloaded.keys() == maildrop.stored.keys()
    maildrop.check(downloaded, strip=(b"Delivered-To", b"Return-Path", b"Received"))
    assert maildrop.left() == set()


# -- mpop ---------------------------------------------------------------------------------------
MPOPRC = """\
account default
host localhost
port {port}
user {user}
password {password}
auth {auth}
tls on
tls_starttls {starttls}
tls_trust_file {cert}
delivery maildir {maildir}
uidls_file {uidls}
keep off
"""


@needs("mpop")
@pytest.mark.parametrize(
    ("tls", "auth"), [("stls", "plain"), ("pop3s", "user"), ("pop3s", "scram-sha-256")]
)
def test_mpop(maildrop, tmp_path, tls, auth):
    """mpop (PIPELINING, UIDL, a Maildir) over STLS with AUTH PLAIN, over pop3s with
    USER/PASS and with AUTH SCRAM-SHA-256 (GNU SASL); a second run finds nothing left."""
    server = maildrop.server
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    address = server.pop3s_address if tls == "pop3s" else server.pop3_address
    rc = tmp_path / "mpoprc"
    rc.write_text(
        MPOPRC.format(
            port=address[1], user=USER, password=PASSWORD, auth=auth, cert=cert(server),
            starttls="on" if tls == "stls" else "off", maildir=maildir,
            uidls=tmp_path / "uidls",
        )
    )  # fmt: skip
    rc.chmod(0o600)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = run(["mpop", "-C", str(rc), "--debug"], env=env)
    log = result.stdout + result.stderr
    assert ("STLS" in log) == (tls == "stls")
    assert (f"AUTH {auth.upper()}" in log) == (auth != "user"), log[-3000:]
    assert "PIPELINING" in log
    downloaded = read_maildir(maildir)
    assert downloaded.keys() == maildrop.stored.keys()
    maildrop.check(downloaded, strip=(b"Received",))
    assert maildrop.left() == set()
    again = run(["mpop", "-C", str(rc)], env=env)
    assert "no messages" in again.stdout + again.stderr


# -- curl ---------------------------------------------------------------------------------------
def curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@needs("curl")
@pytest.mark.parametrize("scheme", ["pop3", "pop3s"])
def test_curl(maildrop, tmp_path, scheme):
    """curl over one connection: LIST, RETR of every message, DELE of all but ten; pop3://
    with STLS required (``--ssl-reqd``) and AUTH (SASL, with an initial response), pop3s://."""
    server = maildrop.server
    folder = tmp_path / "curl"
    folder.mkdir()
    _, port = server.pop3s_address if scheme == "pop3s" else server.pop3_address
    base = f"{scheme}://localhost:{port}"
    common = {"user": f"{USER}:{PASSWORD}", "cacert": str(cert(server)), "silent": "",
              "show-error": "", "verbose": "", "sasl-ir": ""}  # fmt: skip
    if scheme == "pop3":
        common["ssl-reqd"] = ""
    kept = set(range(22, 221, 22))
    transfers = [{"url": f"{base}/", "output": str(tmp_path / "list.txt")}]
    transfers += [{"url": f"{base}/{n}", "output": str(folder / f"{n}.eml")} for n in range(1, 221)]
    transfers += [
        {"url": f"{base}/{n}", "request": "DELE", "head": ""}
        for n in range(1, 221)
        if n not in kept
    ]
    blocks = [
        "".join(f"{k} = {curl_quote(v)}\n" if v else f"{k}\n" for k, v in (common | t).items())
        for t in transfers
    ]
    config = tmp_path / "curl.conf"
    config.write_text("next\n".join(blocks))
    result = run(["curl", "--config", str(config)])
    log = result.stderr
    assert log.count("Connected to localhost") == 1, "one connection for every transfer"
    assert ("> STLS" in log) == (scheme == "pop3")
    assert "> AUTH PLAIN " in log or "> AUTH LOGIN " in log, log[:3000]
    listing = (tmp_path / "list.txt").read_text().splitlines()
    assert len(listing) == 220
    downloaded = {}
    kept_ids = set()
    for n in range(1, 221):
        raw = (folder / f"{n}.eml").read_bytes()
        assert len(raw) == int(listing[n - 1].split()[1])  # as LIST said, CRLF and all
        downloaded[message_id(raw)] = raw
        if n in kept:
            kept_ids.add(message_id(raw))
    assert downloaded.keys() == maildrop.stored.keys()
    maildrop.check(downloaded)
    assert maildrop.left() == kept_ids
