"""``server.user``: a server started as root parses no mail as root.

Started as root (as the tests run here and in CI) with ``server.user`` set, ``mailstead serve``
binds a privileged port, then every thread of the process runs as that user with no capability;
mail still flows, a reload still reads the certificate, and the data directory is the user's
alone. The attacks: root keeps running the server (before this, ``server.user`` did nothing), a
symbolic or hard link planted in the data directory makes root chown a system file, and a
configuration rewritten by the server's user makes root act on it.
"""

from __future__ import annotations

import errno
import imaplib
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.security.privileges import PrivilegeError
from mailstead.security.tls import generate_self_signed
from mailstead.servers.privileges import prepare_privilege_drop
from mailstead.testing.server import Account, RunningServer, populate, start_server, write_config

USER = "mailstead-test"
ACCOUNT = Account("alice@example.org", "alice-pw")
DEADLINE = 30.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")


@pytest.fixture(scope="module")
def system_user() -> pwd.struct_passwd:
    """The unprivileged user servers switch to (created once; left in place, idempotent)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(USER)


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory the dropped user can traverse (pytest's tmp_path is root's alone, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mailstead-privdrop-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        server.stop()


def free_privileged_port() -> int:
    """A port below 1024 that nothing listens on: only root can bind it."""
    for port in range(1023, 900, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            return port
    pytest.fail("no free port below 1024")


def config_for(base: Path, **server: object) -> Path:
    overrides: dict[str, dict[str, object]] = {"server": dict(server)} if server else {}
    config = write_config(base / "data", overrides=overrides)
    populate(config, ["example.org"], [ACCOUNT])
    return config


def status_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def cert_served(server: RunningServer) -> bytes:
    """The certificate IMAP STARTTLS presents (STARTTLS takes the context of the moment; the
    implicit-TLS listeners keep the one they were bound with)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    try:
        client.starttls(context)
        der = client.sock.getpeercert(binary_form=True)
    finally:
        client.logout()
    assert der is not None
    return der


def pem_to_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def events(server: RunningServer, name: str) -> list[dict[str, object]]:
    return [line for line in server.log_lines() if line.get("msg") == name]


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    """``mailstead serve`` expected to refuse to start (bounded: a server that starts fails)."""
    return subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mail_is_not_parsed_as_root(system_user, base, servers):
    port = free_privileged_port()
    config = config_for(base, user=USER)
    text = config.read_text().replace('smtp = ["127.0.0.1:0"]', f'smtp = ["127.0.0.1:{port}"]')
    config.write_text(text)
    server = start_server(config)
    servers.append(server)
    assert server.smtp_address == ("127.0.0.1", port)  # bound as root

    uid, gid = system_user.pw_uid, system_user.pw_gid
    groups = {str(g) for g in os.getgrouplist(USER, gid)}
    threads = list(Path(f"/proc/{server.process.pid}/task").iterdir())
    assert len(threads) > 1  # the event loop and the resolver's / store's workers
    for thread in threads:
        status = status_fields(thread / "status")
        assert status["Uid"].split() == [str(uid)] * 4, thread
        assert status["Gid"].split() == [str(gid)] * 4, thread
        assert set(status["Groups"].split()) == groups, thread  # root's groups are gone
        assert int(status["CapEff"], 16) == 0, thread
        assert int(status["CapPrm"], 16) == 0, thread

    with smtplib.SMTP(*server.smtp_address, timeout=10) as client:
        client.sendmail(
            "x@example.net", [ACCOUNT.address], "From: x@example.net\r\nSubject: drop\r\n\r\nhi\r\n"
        )
    client = imaplib.IMAP4(*server.imap_address, timeout=10)
    try:
        client.login(ACCOUNT.address, ACCOUNT.password)
        client.select("INBOX")
        typ, data = client.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
    finally:
        client.logout()
    assert typ == "OK"
    assert b"Subject: drop" in data[0][1]
    dropped = events(server, "privileges.dropped")
    assert dropped and dropped[0]["user"] == USER


def test_data_dir_belongs_to_the_user_alone(system_user, base, servers):
    config = config_for(base, user=USER)
    data = config.parent
    data.chmod(0o777)  # as a careless umask would leave it
    spool = data / "spool"
    spool.mkdir()
    leftover = spool / "left-by-a-run-as-root"
    leftover.write_bytes(b"x")
    leftover.chmod(0o644)
    server = start_server(config)
    servers.append(server)
    uid, gid = system_user.pw_uid, system_user.pw_gid

    def owner_mode(path: Path) -> tuple[int, int, int]:
        info = path.lstat()
        return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)

    for directory in (data, data / "tls", spool):
        assert owner_mode(directory) == (uid, gid, 0o700), directory
    # The database holds password hashes and the DKIM private keys; SQLite gives its -wal and
    # -shm files the mode and owner of the database.
    for name in ("mailstead.db", "mailstead.db-wal", "mailstead.db-shm", "tls/key.pem",
                 "tls/cert.pem", "mailstead.log", "spool/left-by-a-run-as-root"):  # fmt: skip
        assert owner_mode(data / name) == (uid, gid, 0o600), name
    # root's, readable by the user's group only: a reload reads it, the user cannot change it
    assert owner_mode(config) == (0, gid, 0o640)


def test_links_planted_in_data_dir_do_not_make_root_chown_system_files(system_user, base, servers):
    config = config_for(base, user=USER)
    data = config.parent
    target = base / "system-file"  # stands for /etc/shadow
    target.write_bytes(b"secret")
    target.chmod(0o600)
    (data / "symlink").symlink_to(target)
    (data / "symlinked-dir").symlink_to(base)
    # root may hard-link (fs.protected_hardlinks stops the user, not every system has it)
    os.link(target, data / "hardlink")
    server = start_server(config)
    servers.append(server)

    info = target.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
    assert base.stat().st_uid == 0
    assert stat.S_IMODE(base.stat().st_mode) == 0o711
    left = {(e["path"], e["reason"]) for e in events(server, "privileges.left_alone")}
    assert (str(data / "hardlink"), "2 hard links") in left
    assert (str(data / "symlink"), "symbolic link") in left


def test_reload_after_the_drop_serves_the_rotated_certificate(system_user, base, servers):
    config = config_for(base, user=USER)
    server = start_server(config)
    servers.append(server)
    cert, key = config.parent / "tls" / "cert.pem", config.parent / "tls" / "key.pem"
    assert cert_served(server) == pem_to_der(cert)

    # A renewal written by root with a key only root can read: the reload keeps the running
    # certificate (and says why) instead of failing the server.
    generate_self_signed("mx.example.org", cert, key, extra_names=("127.0.0.1",))
    assert key.stat().st_uid == 0
    first = pem_to_der(cert)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: events(server, "config.reload_failed"), "config.reload_failed")
    assert cert_served(server) != first
    assert server.process.poll() is None

    # The deploy hook hands the files to the server's user: the reload serves them.
    for path in (cert, key):
        os.chown(path, system_user.pw_uid, system_user.pw_gid)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: events(server, "config.reloaded"), "config.reloaded")
    assert cert_served(server) == first


def test_missing_user_refuses_to_start(base):
    config = config_for(base, user="no-such-user-ms")
    result = serve(config)
    assert result.returncode != 0
    assert "server.user: no such user 'no-such-user-ms'" in result.stderr

    check = subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1
    assert "server.user: no such user 'no-such-user-ms'" in check.stderr


def test_configuration_the_user_could_rewrite_is_refused(system_user, base):
    # A compromised server could rewrite its own configuration (data_dir = "/etc") for root to
    # act on at the next start.
    config = config_for(base, user=USER)
    os.chown(config, system_user.pw_uid, system_user.pw_gid)
    result = serve(config)
    assert result.returncode != 0
    assert f"can be changed by '{USER}'" in result.stderr
    assert (config.parent / "mailstead.db").stat().st_uid == 0  # nothing was handed over


def test_root_without_server_user_logs_a_warning(base, servers):
    server = start_server(config_for(base))
    servers.append(server)
    warnings = events(server, "server.running_as_root")
    assert warnings and warnings[0]["level"] == "warning"
    status = status_fields(Path(f"/proc/{server.process.pid}/status"))
    assert status["Uid"].split()[1] == "0"


def test_server_user_that_is_root_is_a_config_problem(base):
    config = config_for(base, user="root")
    check = subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1
    assert "server.user: 'root' is root" in check.stderr


def test_data_dir_the_user_cannot_reach_stops_the_start(system_user, tmp_path):
    # pytest's tmp_path lies under a directory only root may enter (0700)
    config = config_for(tmp_path, user=USER)
    result = serve(config)
    assert result.returncode != 0
    assert f"{config.parent}: not usable by uid {system_user.pw_uid}" in result.stderr


def test_data_dir_holding_another_users_files_is_not_handed_over(system_user, base):
    # data_dir pointing at someone's home by mistake: nothing of it changes owner
    config = config_for(base, user=USER)
    theirs = config.parent / "notes.txt"
    theirs.write_text("mine")
    os.chown(theirs, 65534, 65534)  # nobody
    result = serve(config)
    assert result.returncode != 0
    assert f"{theirs} belongs to uid 65534" in result.stderr
    assert config.parent.stat().st_uid == 0
    assert (config.parent / "mailstead.db").stat().st_uid == 0


def test_configuration_swapped_after_loading_is_refused(system_user, base):
    # The race: the server's user swaps the file between root's load and root's check. What
    # root acts on must be what the checked file says.
    config = config_for(base, user=USER)
    loaded = load_config(config)
    config.write_text(config.read_text().replace('data_dir = "."', f'data_dir = "{base}"'))
    with pytest.raises(PrivilegeError, match="changed while the server was starting"):
        prepare_privilege_drop(loaded)
    assert config.parent.stat().st_uid == 0
