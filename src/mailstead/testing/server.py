"""A real ``mailstead serve`` process on loopback, for tests and benchmarks.

The server runs in its own process (as users run it), listens on free ports (port 0), and
reports where it listens through ``--ready-fd``; nothing here sleeps to wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mailstead.config import render_config_file
from mailstead.directory import Directory
from mailstead.message.addresses import normalize_domain, normalize_localpart
from mailstead.security.tls import generate_self_signed
from mailstead.store import AccountRole, open_sqlite
from mailstead.store.sqlite.backend import read_blob_row

READY_TIMEOUT = 30.0


def write_config(
    data_dir: Path,
    *,
    hostname: str = "mx.example.org",
    overrides: dict[str, dict[str, object]] | None = None,
) -> Path:
    """A dev configuration in ``data_dir`` with SMTP (MX and submission), IMAP and POP3 on
    127.0.0.1:0 and a self-signed cert."""
    data_dir.mkdir(parents=True, exist_ok=True)
    text = render_config_file(dev=True, hostname=hostname, data_dir=".")
    sections: dict[str, dict[str, object]] = {
        "listen": {
            "smtp": ["127.0.0.1:0"],
            "submission": ["127.0.0.1:0"],
            "submissions": ["127.0.0.1:0"],
            "imap": ["127.0.0.1:0"],
            "imaps": ["127.0.0.1:0"],
            "pop3": ["127.0.0.1:0"],
            "pop3s": ["127.0.0.1:0"],
            "managesieve": [],
            "http": [],
        },
        "log": {"format": "json", "file": "mailstead.log"},
        "auth": {"allow_plaintext_on_loopback": True},
        # SPF/DKIM/DMARC would ask the machine's resolver, beyond loopback: the tests of mail
        # authentication turn this on with [dns] nameservers pointing at their own NSD
        "mailauth": {"verify": False},
    }
    for section, values in (overrides or {}).items():
        sections.setdefault(section, {}).update(values)
    text = _override(text, sections)
    path = data_dir / "mailstead.toml"
    path.write_text(text, encoding="utf-8")
    tls = data_dir / "tls"
    if not (tls / "cert.pem").exists():
        generate_self_signed(
            hostname, tls / "cert.pem", tls / "key.pem", extra_names=("localhost", "127.0.0.1")
        )
    return path


def _override(text: str, sections: dict[str, dict[str, object]]) -> str:
    """Set ``[section] key = value`` in a rendered file (replacing the line if present)."""
    lines = text.splitlines()
    for section, values in sections.items():
        header = f"[{section}]"
        if header not in lines:
            lines += ["", header]
        start = lines.index(header) + 1
        end = start
        while end < len(lines) and not lines[end].startswith("["):
            end += 1
        for key, value in values.items():
            rendered = f"{key} = {json.dumps(value, ensure_ascii=False)}"
            for i in range(start, end):
                if lines[i].split("=", 1)[0].strip() == key:
                    lines[i] = rendered
                    break
            else:
                lines.insert(end, rendered)
                end += 1
    return "\n".join(lines) + "\n"


@dataclass
class Account:
    address: str
    password: str
    quota: int = 0


@dataclass
class RunningServer:
    """A started server: where it listens, its files, and how to stop it."""

    config_path: Path
    process: subprocess.Popen[bytes]
    smtp: list[tuple[str, int]] = field(default_factory=list)
    imap: list[tuple[str, int]] = field(default_factory=list)
    imaps: list[tuple[str, int]] = field(default_factory=list)
    pop3: list[tuple[str, int]] = field(default_factory=list)
    pop3s: list[tuple[str, int]] = field(default_factory=list)
    submission: list[tuple[str, int]] = field(default_factory=list)
    submissions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def smtp_address(self) -> tuple[str, int]:
        return self.smtp[0]

    @property
    def imap_address(self) -> tuple[str, int]:
        return self.imap[0]

    @property
    def imaps_address(self) -> tuple[str, int]:
        return self.imaps[0]

    @property
    def pop3_address(self) -> tuple[str, int]:
        return self.pop3[0]

    @property
    def pop3s_address(self) -> tuple[str, int]:
        return self.pop3s[0]

    @property
    def submission_address(self) -> tuple[str, int]:
        """Submission with STARTTLS (port 587's role)."""
        return self.submission[0]

    @property
    def submissions_address(self) -> tuple[str, int]:
        """Submission over implicit TLS (port 465's role)."""
        return self.submissions[0]

    @property
    def data_dir(self) -> Path:
        return self.config_path.parent

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def messages(self, address: str, mailbox: str = "INBOX") -> list[bytes]:
        """Raw messages in ``address``'s mailbox (UID order), read straight from the database."""
        local, domain = address.rsplit("@", 1)
        db = sqlite3.connect(self.data_dir / "mailstead.db")
        try:
            rows = db.execute(
                "SELECT b.id, b.codec, b.size, b.data FROM messages m"
                " JOIN blobs b ON b.id = m.blob_id"
                " JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id"
                " JOIN domains d ON d.id = a.domain_id"
                " WHERE a.local_key = ? AND d.name = ? AND x.name = ? ORDER BY m.uid",
                (normalize_localpart(local), normalize_domain(domain), mailbox),
            ).fetchall()
            return [read_blob_row(db, row) for row in rows]
        finally:
            db.close()

    def log_lines(self) -> list[dict[str, object]]:
        path = self.data_dir / "mailstead.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def populate(
    config_path: Path,
    domains: Sequence[str],
    accounts: Sequence[Account] = (),
    aliases: Sequence[tuple[str, str]] = (),
) -> None:
    """Create domains, accounts and aliases directly through the directory API."""
    from mailstead.config import load_config
    from mailstead.servers.app import make_directory

    config = load_config(config_path)

    async def main() -> None:
        store = open_sqlite(config.storage.path)
        await store.open()
        try:
            directory: Directory = make_directory(config, store)
            for domain in domains:
                await directory.add_domain(domain)
            for account in accounts:
                await directory.add_account(
                    account.address, account.password, quota=account.quota, role=AccountRole.USER
                )
            for source, target in aliases:
                await directory.add_alias(source, target)
        finally:
            await store.close()

    asyncio.run(main())


def start_server(config_path: Path, *, extra_env: dict[str, str] | None = None) -> RunningServer:
    """Start ``mailstead serve`` and wait (bounded) until it reports its listening addresses."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, **(extra_env or {}))
    with open(config_path.parent / "stderr.log", "ab") as stderr:
        process = _spawn(config_path, write_fd, env, stderr)
    os.close(write_fd)
    return _await_ready(config_path, process, read_fd)


def _spawn(
    config_path: Path, write_fd: int, env: dict[str, str], stderr: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailstead.cli.main",
            "serve",
            "--config",
            str(config_path),
            "--ready-fd",
            str(write_fd),
        ],
        pass_fds=(write_fd,),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _await_ready(
    config_path: Path, process: subprocess.Popen[bytes], read_fd: int
) -> RunningServer:
    deadline = time.monotonic() + READY_TIMEOUT
    buffer = b""
    try:
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise RuntimeError(
                    "mailstead serve did not become ready: "
                    + (config_path.parent / "stderr.log").read_text(errors="replace")[-2000:]
                )
            ready, _, _ = select.select([read_fd], [], [], min(remaining, 0.5))
            if ready:
                chunk = os.read(read_fd, 4096)
                if not chunk:
                    continue
                buffer += chunk
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        os.close(read_fd)
    info = json.loads(buffer.split(b"\n", 1)[0])
    def addresses(name: str) -> list[tuple[str, int]]:
        return [(str(h), int(p)) for h, p in info.get(name, [])]

    return RunningServer(
        config_path,
        process,
        smtp=addresses("smtp"),
        imap=addresses("imap"),
        imaps=addresses("imaps"),
        pop3=addresses("pop3"),
        pop3s=addresses("pop3s"),
        submission=addresses("submission"),
        submissions=addresses("submissions"),
    )
