"""Real IMAP clients sync a 500-message mailbox both ways against a real `mailstead serve`.

Each test runs the same cycle: load the mailbox, download it all, change things on the client
side (flags, deletions, uploads) and sync, then change things on the server (flags, expunges,
APPEND, SMTP delivery) and sync again. After every sync both sides are compared: the server
through imaplib and straight from the store (``RunningServer.messages``), the client through
its own files (Maildir, curl's downloads) or, for the libraries, their in-memory copy. Messages
are matched by Message-ID; bodies are compared byte for byte (LF line ends in a Maildir).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.testing.server import Account

pytestmark = [pytest.mark.interop, pytest.mark.slow]

USER, PASSWORD = "alice@example.org", "alice-pw"
ACCOUNTS = [Account(USER, PASSWORD)]
COUNT = 520
CLIENT_TIMEOUT = 60

# Maildir info flags (https://cr.yp.to/proto/maildir.html) and their IMAP names.
MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
IMAP_TO_MAILDIR = {v: k for k, v in MAILDIR_FLAGS.items()}
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>@]+)@interop.test>", re.IGNORECASE | re.MULTILINE)


def needs(binary: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which(binary) is None,
        reason=f"{binary} is not installed (scripts/install-test-deps installs it)",
    )


# -- the mailbox -------------------------------------------------------------------------------
def message(key: str, n: int) -> bytes:
    """A varied message: from a few lines to ~5 KB, some 8-bit, some multipart with base64."""
    lines = [
        f"Message-ID: <{key}@interop.test>",
        "From: Sender <sender@example.net>",
        f"To: {USER}",
        f"Subject: {key} number {n}",
        "Date: Mon, 01 Jan 2024 12:00:00 +0000",
        "MIME-Version: 1.0",
    ]
    if n % 7 == 0:
        lines += [
            'Content-Type: multipart/mixed; boundary="b"',
            "",
            "--b",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            f"Grüße, Nachricht {n}",
            "--b",
            "Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64",
            "",
            # never empty: offlineimap re-serialises with Python's email package, which adds a
            # blank line to an empty part
            *["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" for _ in range(1 + n % 50)],
            "--b--",
        ]
    elif n % 3 == 0:
        lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        lines += ["", *[f"Zeile {i}: äöü € {n}" for i in range(n % 40)]]
    else:
        lines += ["Content-Type: text/plain", "", *[f"line {i} of {n}" for i in range(n % 300)]]
    return ("\r\n".join(lines) + "\r\n").encode()


def message_id(raw: bytes) -> str:
    found = MESSAGE_ID.search(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    assert found is not None, raw[:200]
    return found.group(1).decode()


def initial_mailbox() -> dict[str, tuple[set[str], bytes]]:
    """Message-ID -> (flags, body) for the COUNT messages loaded first; every 4th is seen."""
    return {
        f"m{n:04d}": ({"\\Seen"} if n % 4 == 0 else set(), message(f"m{n:04d}", n))
        for n in range(COUNT)
    }


def multiappend(server, messages: list[tuple[set[str], bytes]], mailbox: str = "INBOX") -> None:
    """Load messages with one MULTIAPPEND of LITERAL+ literals: one round trip for them all."""
    with socket.create_connection(server.imap_address, timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"a LOGIN {USER} {PASSWORD}\r\n".encode())
        assert reader.readline().startswith(b"a OK")
        parts = [f"b APPEND {mailbox}".encode()]
        for flags, raw in messages:
            parts.append(f" ({' '.join(flags)}) {{{len(raw)}+}}\r\n".encode() + raw)
        sock.sendall(b"".join(parts) + b"\r\n")
        while not (line := reader.readline()).startswith(b"b "):
            assert line, "connection closed during APPEND"
        assert line.startswith(b"b OK"), line


def deliver(server, raw: bytes) -> None:
    with smtplib.SMTP(*server.smtp_address, timeout=30) as client:
        client.sendmail("sender@example.net", [USER], raw)


@contextlib.contextmanager
def imap(server, mailbox: str = "INBOX") -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4(*server.imap_address, timeout=30)
    try:
        client.login(USER, PASSWORD)
        assert client.select(mailbox)[0] == "OK"
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


FETCH_ITEM = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")


def server_flags(server, mailbox: str = "INBOX") -> dict[str, set[str]]:
    """Message-ID -> flags (without \\Recent), as imaplib sees them."""
    with imap(server, mailbox) as client:
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", data
    result: dict[str, set[str]] = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        found = FETCH_ITEM.search(item[0])
        assert found is not None, item[0]
        flags = {f for f in found.group(2).decode().split() if f != "\\Recent"}
        result[message_id(item[1])] = flags
    return result


def server_bodies(server, mailbox: str = "INBOX") -> dict[str, bytes]:
    """Message-ID -> raw message, straight from the store."""
    return {message_id(raw): raw for raw in server.messages(USER, mailbox)}


def uids_by_id(client: imaplib.IMAP4) -> dict[str, bytes]:
    typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", data
    result = {}
    for item in data:
        if isinstance(item, tuple):
            found = re.search(rb"UID (\d+)", item[0])
            assert found is not None, item[0]
            result[message_id(item[1])] = found.group(1)
    return result


def modify_on_server(server, expected: dict[str, set[str]]) -> tuple[set[str], dict[str, bytes]]:
    """Flag, unflag, expunge through imaplib, APPEND one and deliver one over SMTP.

    ``expected`` (Message-ID -> flags) is updated to match; returns (expunged, new id -> body).
    """
    ids = sorted(expected)
    flag = ids[100:110]
    unseen = [key for key in ids if "\\Seen" in expected[key]][:5]
    doomed = set(ids[120:126])
    with imap(server) as client:
        uid = uids_by_id(client)
        assert uid.keys() == expected.keys()
        client.uid("STORE", b",".join(uid[k] for k in flag), "+FLAGS", "(\\Flagged \\Answered)")
        client.uid("STORE", b",".join(uid[k] for k in unseen), "-FLAGS", "(\\Seen)")
        client.uid("STORE", b",".join(uid[k] for k in doomed), "+FLAGS", "(\\Deleted)")
        assert client.expunge()[0] == "OK"
        appended = message("server-append", 1001)
        assert client.append("INBOX", "(\\Seen)", None, appended)[0] == "OK"
    deliver(server, message("server-smtp", 1002))
    for key in flag:
        expected[key] |= {"\\Flagged", "\\Answered"}
    for key in unseen:
        expected[key] -= {"\\Seen"}
    for key in doomed:
        del expected[key]
    expected["server-append"] = {"\\Seen"}
    expected["server-smtp"] = set()
    stored = server_bodies(server)
    assert stored["server-append"] == appended
    assert stored["server-smtp"].endswith(message("server-smtp", 1002))  # after a Received:
    return doomed, {key: stored[key] for key in ("server-append", "server-smtp")}


# -- Maildir ------------------------------------------------------------------------------------
def maildir(path: Path) -> dict[str, tuple[Path, set[str]]]:
    """Message-ID -> (file, IMAP flags) for every message in a Maildir folder."""
    result = {}
    for sub in ("cur", "new"):
        for file in (path / sub).iterdir():
            info = file.name.split(":2,", 1)[1] if ":2," in file.name else ""
            flags = {MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS}
            key = message_id(file.read_bytes())
            assert key not in result, f"{key} twice in {path}"
            result[key] = (file, flags)
    return result


def set_maildir_flags(file: Path, flags: set[str]) -> Path:
    base = file.name.split(":2,", 1)[0]
    info = "".join(sorted(IMAP_TO_MAILDIR[f] for f in flags))
    target = file.parent.parent / "cur" / f"{base}:2,{info}"
    file.rename(target)
    return target


def modify_maildir(folder: Path) -> tuple[dict[str, set[str]], set[str], dict[str, bytes]]:
    """Flag, delete and add messages in a Maildir; return (id -> flags, deleted, new id -> body)."""
    local = maildir(folder)
    ids = sorted(local)
    changed: dict[str, set[str]] = {}
    for key in ids[:40]:  # seen
        changed[key] = local[key][1] | {"\\Seen"}
    for key in ids[40:50]:  # flagged and answered
        changed[key] = local[key][1] | {"\\Flagged", "\\Answered"}
    for key, flags in changed.items():
        set_maildir_flags(local[key][0], flags)
    deleted = set(ids[50:62])
    for key in deleted:
        local[key][0].unlink()
    added = {f"local-{n}": message(f"local-{n}", n) for n in range(1, 8)}
    for n, raw in enumerate(added.values()):
        (folder / "new" / f"{int(time.time())}.interop{n}.localhost").write_bytes(lf(raw))
    return changed, deleted, added


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


# -- checks on both sides ------------------------------------------------------------------------
def without(header: bytes, raw: bytes) -> bytes:
    """``raw`` without its first ``header`` field (one a client added: mbsync's X-TUID)."""
    if not header:
        return raw
    return re.sub(rb"(?m)^" + re.escape(header) + rb":[^\n]*\n", b"", raw, count=1)


def check_server(
    server, flags: dict[str, set[str]], bodies: dict[str, bytes], strip: bytes = b""
) -> None:
    """The server holds exactly these messages, with these flags and these bytes.

    ``strip``: a header the client adds to what it uploads (mbsync's X-TUID), taken out first.
    """
    assert server_flags(server) == flags
    stored = {key: without(strip, raw) for key, raw in server_bodies(server).items()}
    assert stored.keys() == flags.keys()
    differing = [key for key in stored if stored[key] != bodies[key]]
    assert not differing, [(key, stored[key][:300]) for key in differing[:3]]


def check_maildir(
    folder: Path, flags: dict[str, set[str]], bodies: dict[str, bytes], strip: bytes = b""
) -> None:
    """The Maildir holds exactly these messages, flags and bodies (with LF line ends).

    ``strip``: a header the client adds to its copies (mbsync's X-TUID), taken out first.
    """
    local = maildir(folder)
    assert {key: f for key, (_, f) in local.items()} == flags
    differing = []
    for key, (file, _) in local.items():
        if without(strip, file.read_bytes()) != lf(bodies[key]):
            differing.append(key)
    assert not differing, differing[:10]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False, **kwargs
    )
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


class Mailbox:
    """What both sides should hold: Message-ID -> flags and Message-ID -> body."""

    def __init__(self, server) -> None:
        loaded = initial_mailbox()
        multiappend(server, list(loaded.values()))
        self.flags = {key: flags for key, (flags, _) in loaded.items()}
        self.bodies = {key: raw for key, (_, raw) in loaded.items()}

    def client_changed(self, changed, deleted, added) -> None:
        self.flags.update(changed)
        for key in deleted:
            del self.flags[key]
        for key, raw in added.items():
            self.flags[key] = set()
            self.bodies[key] = raw

    def server_changed(self, server) -> None:
        _, added = modify_on_server(server, self.flags)
        self.bodies.update(added)


# -- mbsync (isync) -----------------------------------------------------------------------------
MBSYNCRC = """\
IMAPAccount remote
Host {host}
Port {port}
User {user}
Pass {password}
SSLType IMAPS
CertificateFile {cert}

IMAPStore remote
Account remote

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel interop
Far :remote:
Near :local:
Patterns INBOX
Sync All
Create Both
Expunge Both
SyncState *
"""


@needs("mbsync")
def test_mbsync(mail_server, tmp_path):
    server = mail_server(accounts=ACCOUNTS)
    expected = Mailbox(server)
    host, port = server.imaps_address
    local = tmp_path / "Mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        MBSYNCRC.format(
            host=host,
            port=port,
            user=USER,
            password=PASSWORD,
            maildir=local,
            cert=server.data_dir / "tls" / "cert.pem",
        )
    )

    def sync() -> None:
        run(["mbsync", "--config", str(config), "--all"])

    sync()  # download
    check_maildir(local / "INBOX", expected.flags, expected.bodies, strip=b"X-TUID")
    check_server(server, expected.flags, expected.bodies, strip=b"X-TUID")

    expected.client_changed(*modify_maildir(local / "INBOX"))
    sync()  # upload flags, deletions and new messages
    check_server(server, expected.flags, expected.bodies, strip=b"X-TUID")
    check_maildir(local / "INBOX", expected.flags, expected.bodies, strip=b"X-TUID")

    expected.server_changed(server)
    sync()  # download the server's changes
    check_maildir(local / "INBOX", expected.flags, expected.bodies, strip=b"X-TUID")
    check_server(server, expected.flags, expected.bodies, strip=b"X-TUID")


# -- offlineimap3 ---------------------------------------------------------------------------------
OFFLINEIMAPRC = """\
[general]
accounts = interop
metadata = {metadata}

[Account interop]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {port}
remoteuser = {user}
remotepass = {password}
ssl = yes
sslcacertfile = {cert}
readonly = False
folderfilter = lambda folder: folder == "INBOX"
"""


@needs("offlineimap")
def test_offlineimap(mail_server, tmp_path):
    server = mail_server(accounts=ACCOUNTS)
    expected = Mailbox(server)
    # imaplib2 matches the certificate against DNS names only: connect as "localhost"
    _, port = server.imaps_address
    local = tmp_path / "Mail"
    config = tmp_path / "offlineimaprc"
    config.write_text(
        OFFLINEIMAPRC.format(
            port=port,
            user=USER,
            password=PASSWORD,
            maildir=local,
            metadata=tmp_path / "metadata",
            cert=server.data_dir / "tls" / "cert.pem",
        )
    )

    def sync() -> None:
        result = run(
            ["offlineimap", "-c", str(config), "-o", "-u", "basic"],
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert "ERROR" not in result.stdout + result.stderr, result.stdout + result.stderr

    sync()  # download
    check_maildir(local / "INBOX", expected.flags, expected.bodies)
    check_server(server, expected.flags, expected.bodies)

    expected.client_changed(*modify_maildir(local / "INBOX"))
    sync()  # upload flags, deletions and new messages
    check_server(server, expected.flags, expected.bodies)
    check_maildir(local / "INBOX", expected.flags, expected.bodies)

    expected.server_changed(server)
    sync()  # download the server's changes
    check_maildir(local / "INBOX", expected.flags, expected.bodies)
    check_server(server, expected.flags, expected.bodies)


# -- curl ---------------------------------------------------------------------------------------
def curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Curl:
    """curl as a (minimal) sync client: a folder of ``<uid>.eml`` files and their flags.

    Downloads go over imaps:// (checking our certificate), changes over imap:// on loopback.
    Each step is one curl process whose transfers share one connection (one login: the
    server's password hashing makes logins the slow part).
    """

    def __init__(self, server, folder: Path) -> None:
        self.server = server
        self.folder = folder
        folder.mkdir()
        self.cert = server.data_dir / "tls" / "cert.pem"
        self.flags: dict[int, set[str]] = {}
        self.steps = 0

    def url(self, path: str = "INBOX", *, tls: bool = True) -> str:
        host, port = self.server.imaps_address if tls else self.server.imap_address
        return f"{'imaps' if tls else 'imap'}://{host}:{port}/{path}"

    def transfers(self, *transfers: dict[str, str]) -> str:
        """Run transfers (curl options without dashes) in one process; return what curl printed."""
        self.steps += 1
        config = self.folder.parent / f"curl-{self.steps}.conf"
        common = {"user": f"{USER}:{PASSWORD}", "cacert": str(self.cert), "silent": "",
                  "show-error": ""}  # fmt: skip
        blocks = [
            "".join(f"{k} = {curl_quote(v)}\n" if v else f"{k}\n" for k, v in (common | t).items())
            for t in transfers
        ]
        config.write_text("next\n".join(blocks))
        return run(["curl", "--config", str(config)]).stdout

    def command(self, command: str) -> dict[str, str]:
        """A command in INBOX (curl SELECTs it first and prints the untagged responses)."""
        return {"url": self.url(tls=False), "request": command}

    def sync(self) -> None:
        """Download new messages (by UID), drop vanished ones, refresh every flag."""
        listing = self.transfers(self.command("UID SEARCH ALL"))
        found = re.search(r"^\* SEARCH([\d ]*)\r?$", listing, re.M)
        assert found is not None, listing
        uids = sorted(int(u) for u in found.group(1).split())
        for uid in set(self.flags) - set(uids):
            (self.folder / f"{uid}.eml").unlink()
            del self.flags[uid]
        new = [uid for uid in uids if uid not in self.flags]
        downloads = [
            {"url": self.url(f"INBOX;UID={uid}"), "output": str(self.folder / f"{uid}.eml")}
            for uid in new
        ]
        # curl 7.88 counts a response's lines as headers, quadratically when they arrive in one
        # read, and gives up past 300 KB ("Too large response headers") at ~150 FETCH lines:
        # ask for the flags 50 UIDs a transfer.
        chunks = [uids[i : i + 50] for i in range(0, len(uids), 50)]
        flag_fetches = [
            self.command(f"UID FETCH {','.join(map(str, chunk))} (FLAGS)") for chunk in chunks
        ]
        listing = self.transfers(*downloads, *flag_fetches)
        self.flags = {}
        for line in listing.splitlines():
            uid = re.search(r"\bUID (\d+)", line)
            flags = re.search(r"\bFLAGS \(([^)]*)\)", line)
            assert uid is not None and flags is not None, line
            self.flags[int(uid.group(1))] = set(flags.group(1).split()) - {"\\Recent"}
        assert sorted(self.flags) == uids, listing[:500]

    def local(self) -> dict[str, tuple[int, set[str], bytes]]:
        """Message-ID -> (UID, flags, bytes) as curl holds them."""
        result = {}
        for uid, flags in self.flags.items():
            raw = (self.folder / f"{uid}.eml").read_bytes()
            result[message_id(raw)] = (uid, flags, raw)
        assert len(result) == len(self.flags)
        return result

    def check(self, expected: Mailbox) -> None:
        local = self.local()
        assert {key: flags for key, (_, flags, _) in local.items()} == expected.flags
        differing = [key for key, (_, _, raw) in local.items() if raw != expected.bodies[key]]
        assert not differing, differing[:10]


@needs("curl")
def test_curl(mail_server, tmp_path):
    server = mail_server(accounts=ACCOUNTS)
    expected = Mailbox(server)
    client = Curl(server, tmp_path / "curl")

    client.sync()  # download: FETCH BODY[] (not PEEK) sets \Seen on every message
    expected.flags = {key: flags | {"\\Seen"} for key, flags in expected.flags.items()}
    client.check(expected)
    check_server(server, expected.flags, expected.bodies)

    local = client.local()
    ids = sorted(local)

    def uids(keys: list[str]) -> str:
        return ",".join(str(local[key][0]) for key in keys)

    deleted = ids[50:62]
    added = {f"local-{n}": message(f"local-{n}", n) for n in range(1, 8)}
    uploads = []
    for n, (key, raw) in enumerate(added.items()):
        (tmp_path / f"{key}.eml").write_bytes(raw)
        uploads.append(
            {"upload-file": str(tmp_path / f"{key}.eml"), "url": client.url(tls=n % 2 == 0)}
        )
    client.transfers(
        client.command(f"UID STORE {uids(ids[:40])} -FLAGS (\\Seen)"),
        client.command(f"UID STORE {uids(ids[40:50])} +FLAGS (\\Flagged \\Answered)"),
        client.command(f"UID STORE {uids(deleted)} +FLAGS (\\Deleted)"),
        client.command("EXPUNGE"),
        *uploads,
    )
    changed = {key: expected.flags[key] - {"\\Seen"} for key in ids[:40]}
    changed |= {key: expected.flags[key] | {"\\Flagged", "\\Answered"} for key in ids[40:50]}
    expected.client_changed(changed, set(deleted), added)
    for key in added:  # curl APPENDs with (\Seen)
        expected.flags[key] = {"\\Seen"}
    check_server(server, expected.flags, expected.bodies)
    client.sync()
    client.check(expected)

    expected.server_changed(server)
    client.sync()  # the delivered message is downloaded, so now seen
    expected.flags["server-smtp"] = {"\\Seen"}
    client.check(expected)
    check_server(server, expected.flags, expected.bodies)


# -- imapclient ---------------------------------------------------------------------------------
def tls_context(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))


class Mirror:
    """A library-driven client's local copy: UID -> (flags, bytes)."""

    def __init__(self) -> None:
        self.messages: dict[int, tuple[set[str], bytes]] = {}

    def check(self, expected: Mailbox) -> None:
        local = {message_id(raw): (flags, raw) for flags, raw in self.messages.values()}
        assert len(local) == len(self.messages)
        assert {key: flags for key, (flags, _) in local.items()} == expected.flags
        differing = [key for key, (_, raw) in local.items() if raw != expected.bodies[key]]
        assert not differing, differing[:10]

    def ids(self) -> dict[str, int]:
        return {message_id(raw): uid for uid, (_, raw) in self.messages.items()}


def flag_names(flags) -> set[str]:
    return {f.decode() if isinstance(f, bytes) else f for f in flags} - {"\\Recent"}


def test_imapclient(mail_server):
    imapclient = pytest.importorskip("imapclient")
    server = mail_server(accounts=ACCOUNTS)
    expected = Mailbox(server)
    host, port = server.imaps_address
    client = imapclient.IMAPClient(
        host, port, ssl=True, ssl_context=tls_context(server), timeout=30
    )
    mirror = Mirror()
    try:
        client.login(USER, PASSWORD)
        assert client.has_capability("UIDPLUS") and client.has_capability("CONDSTORE")
        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == COUNT

        # download in batches of 100
        uids = client.search("ALL")
        assert len(uids) == COUNT
        for i in range(0, len(uids), 100):
            batch = client.fetch(uids[i : i + 100], ["FLAGS", "RFC822.SIZE", "BODY.PEEK[]"])
            for uid, data in batch.items():
                assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
                mirror.messages[uid] = (flag_names(data[b"FLAGS"]), data[b"BODY[]"])
        mirror.check(expected)
        check_server(server, expected.flags, expected.bodies)

        # change things from the client: flags, deletions (UID EXPUNGE), uploads (APPENDUID)
        ids = sorted(mirror.ids())
        by_id = mirror.ids()
        client.add_flags([by_id[k] for k in ids[:40]], [imapclient.SEEN])
        client.set_flags([by_id[k] for k in ids[40:50]], [imapclient.FLAGGED, imapclient.ANSWERED])
        deleted = ids[50:62]
        client.delete_messages([by_id[k] for k in deleted])
        client.expunge([by_id[k] for k in deleted])
        added = {f"local-{n}": message(f"local-{n}", n) for n in range(1, 8)}
        for raw in added.values():
            reply = client.append("INBOX", raw, flags=[imapclient.DRAFT])
            found = re.search(rb"\[APPENDUID \d+ (\d+)\]", reply)
            assert found is not None, reply
            mirror.messages[int(found.group(1))] = ({"\\Draft"}, raw)
        changed = {k: expected.flags[k] | {"\\Seen"} for k in ids[:40]}
        changed |= {k: {"\\Flagged", "\\Answered"} for k in ids[40:50]}
        expected.client_changed(changed, set(deleted), added)
        expected.flags |= {key: {"\\Draft"} for key in added}
        for key, flags in changed.items():
            mirror.messages[by_id[key]] = (flags, mirror.messages[by_id[key]][1])
        for key in deleted:
            del mirror.messages[by_id[key]]
        check_server(server, expected.flags, expected.bodies)
        mirror.check(expected)
        modseq = client.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]

        # change things on the server while the client IDLEs; it hears of each change
        client.idle()
        expected.server_changed(server)
        heard: list[tuple] = []
        deadline = time.monotonic() + 10
        while not any(r[1] == b"EXISTS" and r[0] == len(expected.flags) for r in heard):
            assert time.monotonic() < deadline, heard
            heard += client.idle_check(timeout=1)
        client.idle_done()
        assert sum(1 for r in heard if r[1] == b"EXPUNGE") == 6, heard

        # resync: CONDSTORE for the flags, a UID SEARCH for what came and went
        now = set(client.search("ALL"))
        for uid in set(mirror.messages) - now:
            del mirror.messages[uid]
        changes = client.fetch(sorted(now), ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
        for uid, data in changes.items():
            if uid in mirror.messages:
                mirror.messages[uid] = (flag_names(data[b"FLAGS"]), mirror.messages[uid][1])
        new = sorted(now - set(mirror.messages))
        assert len(new) == 2
        assert set(new) <= set(changes)  # new messages count as changed
        assert len(changes) == 10 + 5 + 2  # and only what changed is reported
        for uid, data in client.fetch(new, ["FLAGS", "BODY.PEEK[]"]).items():
            mirror.messages[uid] = (flag_names(data[b"FLAGS"]), data[b"BODY[]"])
        mirror.check(expected)
        check_server(server, expected.flags, expected.bodies)
    finally:
        with contextlib.suppress(Exception):
            client.logout()


# -- imaplib --------------------------------------------------------------------------------------
class SequenceMirror(Mirror):
    """A Mirror that also keeps the session's sequence numbers, from the server's responses."""

    def __init__(self) -> None:
        super().__init__()
        self.uids: list[int] = []  # message sequence number n is self.uids[n - 1]

    def fetch(self, client: imaplib.IMAP4, sequence: str) -> None:
        typ, data = client.fetch(sequence, "(UID FLAGS BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if isinstance(item, tuple):
                seq, uid, flags = parse_fetch(item[0])
                assert seq == len(self.uids) + 1 and uid is not None, (seq, len(self.uids))
                self.uids.append(uid)
                self.messages[uid] = (flags, item[1])

    def apply(self, client: imaplib.IMAP4) -> None:
        """Unsolicited responses collected by imaplib: flag FETCHes (sequence numbers from before
        the expunges that follow them), EXPUNGEs in order, then EXISTS; fetch what is new."""
        responses = client.untagged_responses
        for line in responses.pop("FETCH", []):
            seq, uid, flags = parse_fetch(line)
            assert uid in (None, self.uids[seq - 1]), (seq, uid)
            uid = self.uids[seq - 1]
            self.messages[uid] = (flags, self.messages[uid][1])
        for seq in responses.pop("EXPUNGE", []):
            del self.messages[self.uids.pop(int(seq) - 1)]
        exists = responses.pop("EXISTS", [])
        responses.pop("RECENT", None)
        if exists and int(exists[-1]) > len(self.uids):
            self.fetch(client, f"{len(self.uids) + 1}:*")
        if exists:
            assert int(exists[-1]) == len(self.uids)

    def seqs(self, keys: list[str]) -> str:
        by_id = self.ids()
        return ",".join(str(self.uids.index(by_id[key]) + 1) for key in keys)


def parse_fetch(line: bytes) -> tuple[int, int | None, set[str]]:
    """(sequence number, UID if given, flags) from an imaplib FETCH line."""
    found = re.match(rb"(\d+) \(", line)
    uid = re.search(rb"\bUID (\d+)", line)
    flags = re.search(rb"\bFLAGS \(([^)]*)\)", line)
    assert found is not None and flags is not None, line
    return (
        int(found.group(1)),
        None if uid is None else int(uid.group(1)),
        flag_names(flags.group(1).split()),
    )


def test_imaplib(mail_server):
    server = mail_server(accounts=ACCOUNTS)
    expected = Mailbox(server)
    client = imaplib.IMAP4(*server.imap_address, timeout=30)
    mirror = SequenceMirror()
    try:
        client.login(USER, PASSWORD)  # plaintext on loopback: see test_imaplib_starttls
        assert client.select("INBOX") == ("OK", [str(COUNT).encode()])

        for first in range(1, COUNT + 1, 100):  # download in batches of 100, by sequence number
            mirror.fetch(client, f"{first}:{min(first + 99, COUNT)}")
        mirror.check(expected)
        check_server(server, expected.flags, expected.bodies)

        # change things from the client, by sequence number
        ids = sorted(mirror.ids())
        client.untagged_responses.clear()
        assert client.store(mirror.seqs(ids[:40]), "+FLAGS.SILENT", "(\\Seen)")[0] == "OK"
        assert "FETCH" not in client.untagged_responses  # .SILENT
        typ, data = client.store(mirror.seqs(ids[40:50]), "FLAGS", "(\\Flagged \\Answered)")
        assert typ == "OK"
        assert {parse_fetch(line)[2] == {"\\Flagged", "\\Answered"} for line in data} == {True}
        deleted = ids[50:62]
        assert client.store(mirror.seqs(deleted), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
        typ, data = client.expunge()
        assert typ == "OK" and len(data) == len(deleted)
        client.untagged_responses["EXPUNGE"] = data
        added = {f"local-{n}": message(f"local-{n}", n) for n in range(1, 8)}
        for raw in added.values():
            typ, data = client.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(0), raw)
            assert typ == "OK" and b"[APPENDUID " in data[0], data
        client.untagged_responses.pop("FETCH", None)  # flags we set ourselves
        changed = {k: expected.flags[k] | {"\\Seen"} for k in ids[:40]}
        changed |= {k: {"\\Flagged", "\\Answered"} for k in ids[40:50]}
        for key, flags in changed.items():
            uid = mirror.ids()[key]
            mirror.messages[uid] = (flags, mirror.messages[uid][1])
        mirror.apply(client)  # our expunges, then EXISTS for the appended messages
        expected.client_changed(changed, set(deleted), added)
        expected.flags |= {key: {"\\Flagged"} for key in added}
        mirror.check(expected)
        check_server(server, expected.flags, expected.bodies)

        # change things on the server; a NOOP tells this session all about it
        expected.server_changed(server)
        client.untagged_responses.clear()
        assert client.noop()[0] == "OK"
        assert len(client.untagged_responses["EXPUNGE"]) == 6
        mirror.apply(client)
        mirror.check(expected)
        check_server(server, expected.flags, expected.bodies)
        typ, data = client.uid("SEARCH", None, "ALL")
        assert [int(u) for u in data[0].split()] == mirror.uids
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def test_imaplib_starttls(mail_server):
    """imaplib starts the TLS handshake the moment it reads the OK, as most clients do."""
    server = mail_server(accounts=ACCOUNTS)
    for _ in range(5):
        client = imaplib.IMAP4(*server.imap_address, timeout=2)
        try:
            client.starttls(ssl_context=tls_context(server))
            assert client.login(USER, PASSWORD)[0] == "OK"
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
