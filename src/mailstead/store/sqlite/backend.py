"""The embedded backend: one SQLite database in WAL mode holding metadata and zstd blobs.

Blobs live in the same database as the metadata so that a batch of deliveries costs one fsync
(the WAL at COMMIT), whatever the number of messages and recipients in it (docs/decisions.md).
Writes go through the group-commit writer thread; reads run on a small pool of reader threads,
each with its own connection (WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import zstandard

from mailstead.message import ParsedMessage, parse_message, to_json
from mailstead.message.text import Searchable, searchable
from mailstead.store.api import (
    DEFAULT_MAILBOXES,
    Account,
    AccountRole,
    AddressRecords,
    Alias,
    AppPassword,
    AuthRecords,
    CopyResult,
    DeliveryOutcome,
    DeliveryRequest,
    DkimKey,
    DkimKeyAlgorithm,
    Domain,
    ExpungeResult,
    FlagOp,
    FlagUpdate,
    MailboxChanges,
    MailboxInfo,
    MessageFlags,
    MessageInfo,
    QueueItem,
    QueueRecipient,
    QueueRequest,
    QueueState,
    QueueUpdate,
    TextScope,
)
from mailstead.store.errors import StoreError, StoreErrorCode
from mailstead.store.feed import ChangeFeed
from mailstead.store.sqlite.schema import migrate
from mailstead.store.sqlite.writer import GroupCommitWriter

T = TypeVar("T")

log = logging.getLogger("mailstead.store")

CODEC_RAW = 0
CODEC_ZSTD = 1
CHUNKED = 2  # added to the codec: the stored bytes are rows of blob_chunks, blobs.data is empty

# Messages up to this size are parsed and compressed on the caller's thread: that takes tens of
# microseconds, less than handing the work to a thread (which, under the GIL, buys no parallelism).
# Larger ones go to a reader thread so the event loop never stalls on them.
INLINE_PREPARE_LIMIT = 64 * 1024
# Contents larger than this never exist compressed in memory: they are compressed in pieces into
# a temporary file, stored as 1 MiB rows of blob_chunks and read back piece by piece,
# decompressed as they stream, so a large message costs about its size in memory, once.
LARGE_BLOB = 1 << 20
_CHUNK = 1 << 20

# A message the indexer cannot extract text from is retried after this, doubling up to a day.
INDEX_RETRY_FIRST = 300  # seconds
INDEX_RETRY_MAX = 86400

_ACCOUNT_COLUMNS = (
    "a.id, d.name, a.localpart, a.password_hash, a.quota, a.used, a.role, a.enabled, a.created"
)
_MAILBOX_COLUMNS = (
    "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq,"
    " EXISTS(SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id"
    " AND s.name = mailboxes.name), messages, unseen, size, deleted, first_recent_uid"
)
SEEN = "\\Seen"
# blobs.indexed: 0 waits for the full-text indexer, 1 indexed, QUEUE_ONLY held by the queue alone,
# SEARCH_READS too much text to index (SEARCH reads the message, as one not indexed yet)
QUEUE_ONLY = 2
SEARCH_READS = 3
# Full-text indexing runs in the one writer thread, where every delivery waits its turn: FTS5
# trigram indexing costs about a second per MiB of text, so one message's text and one write
# job's are bounded (an attacker's 12 MiB of words held every delivery for 40 s).
MAX_INDEXED_TEXT = 1 << 20  # characters of one message (headers and body columns together)
INDEX_WRITE_TEXT = 1 << 20  # characters indexed by one write job
_MAILBOX_ROWS_KEPT = 10_000  # get_mailbox's cache: cleared when it reaches this many rows
DELETED = "\\Deleted"
_DKIM_COLUMNS = (
    "k.id, d.name, k.selector, k.algorithm, k.private_key, k.public_key, k.created, k.active"
)
_DKIM_ALGORITHMS = ("rsa", "ed25519")
_MESSAGE_COLUMNS = (
    "mailbox_id, uid, modseq, flags, internal_date, size, blob_id, subject, from_, to_, date,"
    " message_id, structure"
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message made ready for storage off the event loop: digest, compressed bytes, summary."""

    digest: bytes
    size: int
    codec: int
    data: bytes  # empty when ``spill`` holds the stored bytes
    structure: bytes
    subject: str
    from_: str
    to: str
    date: int | None
    message_id: str | None
    spill: BinaryIO | None = None


class SQLiteStore:
    """:class:`mailstead.store.api.Store` on SQLite (WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: Path,
        *,
        compression_level: int = 3,
        group_commit_max_batch: int = 512,
        group_commit_max_delay: float = 0.0,
        readers: int = 4,
    ) -> None:
        self.path = Path(path)
        self._compression_level = compression_level
        self._writer = GroupCommitWriter(
            self._connect,
            max_batch=group_commit_max_batch,
            max_delay=group_commit_max_delay,
        )
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._opened = False
        self.feed = ChangeFeed()
        # Mailbox rows by (account, name), each with the data version it was read under.
        self._mailbox_rows: dict[tuple[int, str], tuple[int, MailboxInfo]] = {}
        self._probe: sqlite3.Connection | None = None
        self._version_now: int | None = None  # data_version in this turn of the loop
        # How the indexer turns a message into searchable text (replaceable, e.g. by a test
        # that needs a message whose extraction fails).
        self.extract_text: Callable[[bytes], Searchable] = _searchable_text

    # -- lifecycle ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsync'd at every COMMIT, so a committed delivery survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    def open_sync(self) -> None:
        """Create or migrate the database and start the writer (callable without a loop)."""
        if self._opened:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(self.path)
        conn = self._connect()
        try:
            migrate(conn)
        finally:
            conn.close()
        self._writer.start()
        self._opened = True

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._readers, self.open_sync)

    def close_sync(self) -> None:
        if not self._opened:
            return
        self._writer.stop()
        self._readers.shutdown(wait=True)
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        self._mailbox_rows.clear()
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._opened = False

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    @property
    def commit_count(self) -> int:
        """COMMITs (WAL fsyncs) so far: the group-commit benchmark divides jobs by this."""
        return self._writer.commits

    # -- plumbing ----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _data_version(self) -> int:
        """A number that changes whenever any connection, of this process or another, commits
        (``PRAGMA data_version`` on a connection that never writes; it reads the WAL index in
        shared memory, no database page, so it is cheap enough for the event loop).

        Not the WAL-index header read through our own mapping of the ``-shm`` file: opening and
        closing a descriptor of that file would drop every POSIX lock this process holds on it
        (fcntl locks are per process), SQLite's included, and another process would then take
        itself for the last user of the database and checkpoint and delete the WAL under us."""
        if self._version_now is not None:
            return self._version_now
        if self._probe is None:
            self._probe = self._connect()
        rows = self._probe.execute("PRAGMA data_version").fetchall()  # all: ends the read
        version = int(rows[0][0])
        # Asked once per turn of the event loop: a commit this loop hears of (a writer-thread
        # result, another session's reply) arrives in a later turn, when it is asked again;
        # one from elsewhere during this turn is concurrent with it anyway.
        self._version_now = version
        asyncio.get_running_loop().call_soon(self._forget_version)
        return version

    def _forget_version(self) -> None:
        self._version_now = None

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        result: T = await self._writer.submit(fn, durable=durable)
        return result

    # -- directory ---------------------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        now = int(time.time())

        def job(conn: sqlite3.Connection) -> Domain:
            try:
                cur = conn.execute("INSERT INTO domains(name, created) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError:
                raise StoreError(StoreErrorCode.ALREADYEXISTS, f"domain {name} exists") from None
            assert cur.lastrowid is not None
            return Domain(cur.lastrowid, name, now)

        return await self._write(job)

    async def remove_domain(self, name: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            domain_id = _domain_id(conn, name)
            (accounts,) = conn.execute(
                "SELECT count(*) FROM accounts WHERE domain_id = ?", (domain_id,)
            ).fetchone()
            if accounts:
                raise StoreError(
                    StoreErrorCode.INUSE, f"domain {name} still has {accounts} account(s)"
                )
            conn.execute("DELETE FROM aliases WHERE domain_id = ?", (domain_id,))
            conn.execute("DELETE FROM domains WHERE id = ?", (domain_id,))

        await self._write(job)

    async def get_domain(self, name: str) -> Domain | None:
        def job(conn: sqlite3.Connection) -> Domain | None:
            row = conn.execute(
                "SELECT id, name, created FROM domains WHERE name = ?", (name,)
            ).fetchone()
            return Domain(*row) if row else None

        return await self._read(job)

    async def list_domains(self) -> list[Domain]:
        def job(conn: sqlite3.Connection) -> list[Domain]:
            rows = conn.execute("SELECT id, name, created FROM domains ORDER BY name")
            return [Domain(*row) for row in rows]

        return await self._read(job)

    async def add_account(
        self,
        domain: str,
        localpart: str,
        local_key: str,
        password_hash: str,
        *,
        quota: int = 0,
        role: AccountRole = AccountRole.USER,
        scram: str | None = None,
    ) -> Account:
        now = int(time.time())

        def job(conn: sqlite3.Connection) -> Account:
            domain_id = _domain_id(conn, domain)
            try:
                cur = conn.execute(
                    "INSERT INTO accounts(domain_id, localpart, local_key, password_hash, quota,"
                    " role, created, scram) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (domain_id, localpart, local_key, password_hash, quota, role.value, now,
                     scram),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                raise StoreError(
                    StoreErrorCode.ALREADYEXISTS, f"account {localpart}@{domain} exists"
                ) from None
            account_id = cur.lastrowid
            assert account_id is not None
            for name, special_use in DEFAULT_MAILBOXES:
                _insert_mailbox(conn, account_id, name, special_use)
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            return Account(
                account_id, domain, localpart, password_hash, quota, 0, role, True, now
            )

        return await self._write(job)

    async def remove_account(self, domain: str, local_key: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            account_id = _account_id(conn, domain, local_key)
            mailbox_ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM mailboxes WHERE account_id = ?", (account_id,)
                )
            ]
            for mailbox_id in mailbox_ids:
                _drop_messages(conn, mailbox_id)
                conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM app_passwords WHERE account_id = ?", (account_id,))
            conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

        await self._write(job)

    async def get_account(self, domain: str, local_key: str) -> Account | None:
        def job(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a JOIN domains d ON d.id = a.domain_id"
                " WHERE d.name = ? AND a.local_key = ?",
                (domain, local_key),
            ).fetchone()
            return _account(row) if row else None

        return await self._read(job)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def job(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a JOIN domains d ON d.id = a.domain_id"
                " WHERE a.id = ?",
                (account_id,),
            ).fetchone()
            return _account(row) if row else None

        return await self._read(job)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def job(conn: sqlite3.Connection) -> list[Account]:
            sql = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a JOIN domains d ON d.id = a.domain_id"
            params: tuple[Any, ...] = ()
            if domain is not None:
                sql += " WHERE d.name = ?"
                params = (domain,)
            sql += " ORDER BY d.name, a.local_key"
            return [_account(row) for row in conn.execute(sql, params)]

        return await self._read(job)

    async def update_account(
        self,
        account_id: int,
        *,
        password_hash: str | None = None,
        quota: int | None = None,
        enabled: bool | None = None,
        role: AccountRole | None = None,
        scram: str | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if quota is not None:
            changes["quota"] = quota
        if enabled is not None:
            changes["enabled"] = int(enabled)
        if role is not None:
            changes["role"] = role.value
        if scram is not None:
            changes["scram"] = scram
        if not changes:
            return

        def job(conn: sqlite3.Connection) -> None:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            cur = conn.execute(
                f"UPDATE accounts SET {assignments} WHERE id = ?", (*changes.values(), account_id)
            )
            if cur.rowcount == 0:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no account {account_id}")

        await self._write(job)

    async def get_auth_records(self, domain: str, local_key: str) -> AuthRecords | None:
        def job(conn: sqlite3.Connection) -> AuthRecords | None:
            row = conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS}, a.scram FROM accounts a"
                " JOIN domains d ON d.id = a.domain_id WHERE d.name = ? AND a.local_key = ?",
                (domain, local_key),
            ).fetchone()
            if row is None:
                return None
            account = _account(row[:-1])
            return AuthRecords(account, row[-1], tuple(_app_passwords(conn, account.id)))

        return await self._read(job)

    async def add_app_password(
        self, account_id: int, name: str, password_hash: str, scram: str | None
    ) -> AppPassword:
        now = int(time.time())

        def job(conn: sqlite3.Connection) -> AppPassword:
            exists = conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if exists is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no account {account_id}")
            try:
                cur = conn.execute(
                    "INSERT INTO app_passwords(account_id, name, password_hash, scram, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (account_id, name, password_hash, scram, now),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    StoreErrorCode.ALREADYEXISTS, f"app password {name!r} exists"
                ) from None
            assert cur.lastrowid is not None
            return AppPassword(cur.lastrowid, account_id, name, password_hash, scram, now)

        return await self._write(job)

    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        return await self._read(lambda conn: _app_passwords(conn, account_id))

    async def remove_app_password(self, account_id: int, name: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "DELETE FROM app_passwords WHERE account_id = ? AND name = ?", (account_id, name)
            )
            if cur.rowcount == 0:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no app password {name!r}")

        await self._write(job)

    async def add_dkim_key(
        self,
        domain: str,
        selector: str,
        algorithm: DkimKeyAlgorithm,
        private_key: str,
        public_key: str,
        *,
        active: bool = True,
    ) -> DkimKey:
        if algorithm not in _DKIM_ALGORITHMS:
            raise StoreError(StoreErrorCode.INVALID, f"unknown DKIM algorithm {algorithm!r}")
        selector = selector.lower()
        now = int(time.time())

        def job(conn: sqlite3.Connection) -> DkimKey:
            domain_id = _domain_id(conn, domain)
            if active:
                conn.execute(
                    "UPDATE dkim_keys SET active = 0 WHERE domain_id = ? AND algorithm = ?",
                    (domain_id, algorithm),
                )
            try:
                cur = conn.execute(
                    "INSERT INTO dkim_keys(domain_id, selector, algorithm, private_key,"
                    " public_key, created, active) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (domain_id, selector, algorithm, private_key, public_key, now, int(active)),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    StoreErrorCode.ALREADYEXISTS, f"{domain} has a DKIM key {selector!r}"
                ) from None
            assert cur.lastrowid is not None
            return DkimKey(
                cur.lastrowid, domain, selector, algorithm, private_key, public_key, now, active
            )

        return await self._write(job)

    async def list_dkim_keys(self, domain: str | None = None) -> list[DkimKey]:
        def job(conn: sqlite3.Connection) -> list[DkimKey]:
            sql = f"SELECT {_DKIM_COLUMNS} FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
            params: tuple[Any, ...] = ()
            if domain is not None:
                sql += " WHERE d.name = ?"
                params = (domain,)
            sql += " ORDER BY d.name, k.created, k.id"
            return [_dkim_key(row) for row in conn.execute(sql, params)]

        return await self._read(job)

    async def active_dkim_keys(self, domain: str) -> list[DkimKey]:
        def job(conn: sqlite3.Connection) -> list[DkimKey]:
            rows = conn.execute(
                f"SELECT {_DKIM_COLUMNS} FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
                " WHERE d.name = ? AND k.active ORDER BY k.algorithm = 'ed25519', k.id",
                (domain,),
            )
            return [_dkim_key(row) for row in rows]

        return await self._read(job)

    async def activate_dkim_key(self, domain: str, selector: str) -> DkimKey:
        selector = selector.lower()

        def job(conn: sqlite3.Connection) -> DkimKey:
            key = _dkim_key_named(conn, domain, selector)
            # two statements: the unique index is checked row by row during an UPDATE
            conn.execute(
                "UPDATE dkim_keys SET active = 0 WHERE active AND algorithm = ? AND domain_id ="
                " (SELECT domain_id FROM dkim_keys WHERE id = ?)",
                (key.algorithm, key.id),
            )
            conn.execute("UPDATE dkim_keys SET active = 1 WHERE id = ?", (key.id,))
            return _dkim_key_named(conn, domain, selector)

        return await self._write(job)

    async def remove_dkim_key(self, domain: str, selector: str) -> DkimKey:
        selector = selector.lower()

        def job(conn: sqlite3.Connection) -> DkimKey:
            key = _dkim_key_named(conn, domain, selector)
            conn.execute("DELETE FROM dkim_keys WHERE id = ?", (key.id,))
            return key

        return await self._write(job)

    async def add_alias(self, domain: str, local_key: str, localpart: str, target: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            domain_id = _domain_id(conn, domain)
            try:
                conn.execute(
                    "INSERT INTO aliases(domain_id, local_key, localpart, target)"
                    " VALUES (?, ?, ?, ?)",
                    (domain_id, local_key, localpart, target),
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    StoreErrorCode.ALREADYEXISTS, f"alias {localpart}@{domain} -> {target} exists"
                ) from None

        await self._write(job)

    async def remove_alias(self, domain: str, local_key: str, target: str | None = None) -> int:
        def job(conn: sqlite3.Connection) -> int:
            domain_id = _domain_id(conn, domain)
            if target is None:
                cur = conn.execute(
                    "DELETE FROM aliases WHERE domain_id = ? AND local_key = ?",
                    (domain_id, local_key),
                )
            else:
                cur = conn.execute(
                    "DELETE FROM aliases WHERE domain_id = ? AND local_key = ? AND target = ?",
                    (domain_id, local_key, target),
                )
            if cur.rowcount == 0:
                raise StoreError(StoreErrorCode.NONEXISTENT, "no such alias")
            return cur.rowcount

        return await self._write(job)

    async def get_alias_targets(self, domain: str, local_key: str) -> list[str]:
        def job(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT target FROM aliases a JOIN domains d ON d.id = a.domain_id"
                " WHERE d.name = ? AND a.local_key = ? ORDER BY a.id",
                (domain, local_key),
            )
            return [row[0] for row in rows]

        return await self._read(job)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def job(conn: sqlite3.Connection) -> list[Alias]:
            sql = (
                "SELECT a.localpart, d.name, a.target FROM aliases a"
                " JOIN domains d ON d.id = a.domain_id"
            )
            params: tuple[Any, ...] = ()
            if domain is not None:
                sql += " WHERE d.name = ?"
                params = (domain,)
            sql += " ORDER BY d.name, a.local_key, a.id"
            rows = conn.execute(sql, params)
            return [Alias(f"{local}@{dom}", target) for local, dom, target in rows]

        return await self._read(job)

    async def lookup_addresses(self, domain: str, local_keys: Sequence[str]) -> AddressRecords:
        keys = list(dict.fromkeys(local_keys))

        def job(conn: sqlite3.Connection) -> AddressRecords:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if row is None:
                return AddressRecords(False, {}, {})
            marks = ",".join("?" * len(keys))
            aliases: dict[str, list[str]] = {}
            for key, target in conn.execute(
                f"SELECT local_key, target FROM aliases WHERE domain_id = ?"
                f" AND local_key IN ({marks}) ORDER BY id",
                (row[0], *keys),
            ):
                aliases.setdefault(key, []).append(target)
            accounts = {
                found[-1]: _account(found[:-1])
                for found in conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS}, a.local_key FROM accounts a"
                    f" JOIN domains d ON d.id = a.domain_id"
                    f" WHERE a.domain_id = ? AND a.local_key IN ({marks})",
                    (row[0], *keys),
                )
            }
            return AddressRecords(True, aliases, accounts)

        return await self._read(job)

    # -- mailboxes and messages --------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        def job(conn: sqlite3.Connection) -> list[MailboxInfo]:
            rows = conn.execute(
                f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ?"
                " ORDER BY name != 'INBOX', name",
                (account_id,),
            )
            return [_mailbox(row) for row in rows]

        return await self._read(job)

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        """The mailbox's row; a row read earlier is returned again without a round trip to a
        reader thread while no commit happened since (a SELECT of an unchanged mailbox, the
        common case, costs no query: Dovecot's index likewise skips a rescan)."""
        key = (account_id, _mailbox_name(name))
        version = self._data_version()  # before the read: a newer row is never stored as older
        known = self._mailbox_rows.get(key)
        if known is not None and known[0] == version:
            return known[1]

        def job(conn: sqlite3.Connection) -> MailboxInfo | None:
            row = conn.execute(
                f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND name = ?",
                key,
            ).fetchone()
            return _mailbox(row) if row else None

        info = await self._read(job)
        if info is None:
            self._mailbox_rows.pop(key, None)
        else:
            if len(self._mailbox_rows) >= _MAILBOX_ROWS_KEPT:
                self._mailbox_rows.clear()
            self._mailbox_rows[key] = (version, info)
        return info

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> MailboxInfo:
        def job(conn: sqlite3.Connection) -> MailboxInfo:
            mailbox_id = _insert_mailbox(conn, account_id, _mailbox_name(name), special_use)
            row = conn.execute(
                f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            return _mailbox(row)

        return await self._write(job)

    async def list_messages(self, mailbox_id: int) -> list[MessageInfo]:
        def job(conn: sqlite3.Connection) -> list[MessageInfo]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox_id,),
            )
            return [_message(row) for row in rows]

        return await self._read(job)

    async def get_message(self, mailbox_id: int, uid: int) -> MessageInfo | None:
        def job(conn: sqlite3.Connection) -> MessageInfo | None:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?",
                (mailbox_id, uid),
            ).fetchone()
            return _message(row) if row else None

        return await self._read(job)

    async def read_blob(self, blob_id: int) -> bytes:
        def job(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(_BLOB_SELECT + " WHERE id = ?", (blob_id,)).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no blob {blob_id}")
            return read_blob_row(conn, row)

        return await self._read(job)

    async def read_blobs(self, blob_ids: Sequence[int]) -> dict[int, bytes]:
        wanted = json.dumps(sorted(set(blob_ids)))

        def job(conn: sqlite3.Connection) -> dict[int, bytes]:
            rows = conn.execute(
                _BLOB_SELECT + " WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
            ).fetchall()
            return {row[0]: read_blob_row(conn, row) for row in rows}

        return await self._read(job)

    async def read_blob_head(self, blob_id: int, size: int) -> bytes:
        def job(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(_BLOB_SELECT + " WHERE id = ?", (blob_id,)).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no blob {blob_id}")
            return read_blob_row(conn, row, limit=size)

        return await self._read(job)

    async def stream_blob(
        self, blob_id: int, piece: int = 256 << 10
    ) -> AsyncGenerator[bytes, None]:
        def first(conn: sqlite3.Connection) -> tuple[bytes, _BlobStream | None]:
            row = conn.execute(
                "SELECT codec, size, data, digest FROM blobs WHERE id = ?", (blob_id,)
            ).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no blob {blob_id}")
            codec, size, data, digest = row
            if not codec & CHUNKED:  # at most LARGE_BLOB octets (or stored before pieces)
                return decode_blob(codec, data), None
            stream = _BlobStream(blob_id, digest, codec, size)
            return stream.next(conn, piece), stream

        whole, stream = await self._read(first)
        if stream is None:
            if len(whole) <= piece:
                if whole:
                    yield whole
                return
            view = memoryview(whole)
            for start in range(0, len(whole), piece):
                yield bytes(view[start : start + piece])
            return
        if whole:
            yield whole
        del whole
        while stream.left:
            yield await self._read(lambda conn: stream.next(conn, piece))

    async def deliver(self, request: DeliveryRequest) -> DeliveryOutcome:
        if not request.targets:
            return DeliveryOutcome((), ())
        if len(request.raw) <= INLINE_PREPARE_LIMIT:
            prepared = self._prepare(request.raw)
        else:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(self._readers, self._prepare, request.raw)
        envelope = json.dumps(request.envelope, separators=(",", ":"), ensure_ascii=False)
        # the writer may keep its last job until the next one: not with the content in it
        slim = dataclasses.replace(request, raw=b"")
        try:
            outcome, touched = await self._write(
                lambda conn: _deliver(conn, slim, prepared, envelope)
            )
        finally:
            if prepared.spill is not None:
                prepared.spill.close()
        self.feed.publish(touched)
        return outcome

    def _prepare(self, raw: bytes) -> _Prepared:
        """CPU work done outside the event loop and outside the writer: parse, hash, compress."""
        parsed = parse_message(raw)
        codec, data, spill = self._compress(raw)
        return _Prepared(
            digest=hashlib.sha256(raw).digest(),
            size=len(raw),
            codec=codec,
            data=data,
            structure=to_json(parsed),
            **_summary(parsed),
            spill=spill,
        )

    def _compress(self, raw: bytes) -> tuple[int, bytes, BinaryIO | None]:
        """(codec, stored bytes, None), or for content over LARGE_BLOB (codec, b"", a temporary
        file holding the stored bytes): zstd unless that does not make it smaller."""
        compressor = getattr(self._local, "zstd", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self._compression_level)
            self._local.zstd = compressor
        if len(raw) <= LARGE_BLOB:
            compressed = compressor.compress(raw)
            if len(compressed) < len(raw):
                return CODEC_ZSTD, compressed, None
            return CODEC_RAW, raw, None
        spill = tempfile.TemporaryFile(dir=self.path.parent, prefix=".blob-")  # noqa: SIM115
        try:
            stream = compressor.compressobj(size=len(raw))  # the frame records the size
            view = memoryview(raw)
            for start in range(0, len(raw), _CHUNK):
                spill.write(stream.compress(view[start : start + _CHUNK]))
            spill.write(stream.flush())
            codec = CODEC_ZSTD
            if spill.tell() >= len(raw):
                spill.seek(0)
                spill.truncate()
                spill.write(raw)
                codec = CODEC_RAW
            spill.flush()
        except BaseException:
            spill.close()
            raise
        return codec, b"", spill

    async def check_integrity(self) -> list[str]:
        return await self._read(_check_integrity)

    # -- IMAP --------------------------------------------------------------------------------
    async def delete_mailbox(self, account_id: int, name: str) -> None:
        name = _mailbox_name(name)
        if name == "INBOX":
            raise StoreError(StoreErrorCode.CANNOT, "INBOX cannot be deleted")

        def job(conn: sqlite3.Connection) -> int:
            mailbox_id = _mailbox_id(conn, account_id, name)
            size = conn.execute("SELECT size FROM mailboxes WHERE id = ?", (mailbox_id,))
            (freed,) = size.fetchone()
            _drop_messages(conn, mailbox_id)
            conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            conn.execute("UPDATE accounts SET used = used - ? WHERE id = ?", (freed, account_id))
            return mailbox_id

        self.feed.publish([await self._write(job)])

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        old, new = _mailbox_name(old), _mailbox_name(new)

        def job(conn: sqlite3.Connection) -> list[int]:
            source = _mailbox_id(conn, account_id, old)
            if new == "INBOX" or conn.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new)
            ).fetchone():
                raise StoreError(StoreErrorCode.ALREADYEXISTS, f"mailbox {new} exists")
            if old == "INBOX":
                # RFC 9051 §6.3.6: INBOX's messages move to the new name; INBOX stays, empty.
                target = _insert_mailbox(conn, account_id, new, None)
                conn.execute(
                    "UPDATE mailboxes SET (uidnext, highestmodseq, messages, unseen, size,"
                    " deleted) = (SELECT uidnext, highestmodseq, messages, unseen, size, deleted"
                    " FROM mailboxes WHERE id = ?) WHERE id = ?",
                    (source, target),
                )
                conn.execute(
                    "UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ?", (target, source)
                )
                conn.execute(
                    "UPDATE mailboxes SET messages = 0, unseen = 0, size = 0, deleted = 0,"
                    " highestmodseq = highestmodseq + 1 WHERE id = ?",
                    (source,),
                )
                return [source, target]
            renamed = []
            prefix = old + "/"
            for mailbox_id, name in conn.execute(
                "SELECT id, name FROM mailboxes WHERE account_id = ?"
                " AND (name = ? OR substr(name, 1, ?) = ?)",
                (account_id, old, len(prefix), prefix),
            ).fetchall():
                renamed_to = new + name[len(old) :]
                try:
                    conn.execute(
                        "UPDATE mailboxes SET name = ? WHERE id = ?", (renamed_to, mailbox_id)
                    )
                except sqlite3.IntegrityError:
                    raise StoreError(
                        StoreErrorCode.ALREADYEXISTS, f"mailbox {renamed_to} exists"
                    ) from None
                renamed.append(mailbox_id)
            return renamed

        self.feed.publish(await self._write(job))

    async def list_subscriptions(self, account_id: int) -> list[str]:
        def job(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,)
            )
            return [row[0] for row in rows]

        return await self._read(job)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        name = _mailbox_name(name)

        def job(conn: sqlite3.Connection) -> None:
            if subscribed:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
                    (account_id, name),
                )
            else:
                conn.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, name),
                )

        await self._write(job)

    async def message_index(self, mailbox_id: int) -> list[MessageFlags]:
        def job(conn: sqlite3.Connection) -> list[MessageFlags]:
            rows = conn.execute(
                "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox_id,),
            )
            return [MessageFlags(uid, modseq, _flags(flags)) for uid, modseq, flags in rows]

        return await self._read(job)

    async def get_messages(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageInfo]:
        wanted = json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> list[MessageInfo]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ?"
                " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (mailbox_id, wanted),
            )
            return [_message(row) for row in rows]

        return await self._read(job)

    async def store_flags(
        self,
        mailbox_id: int,
        uids: Sequence[int],
        op: FlagOp,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> FlagUpdate:
        wanted = json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> FlagUpdate:
            modseq = _highestmodseq(conn, mailbox_id) + 1
            changed: list[MessageFlags] = []
            modified: list[int] = []
            unseen = deleted = 0
            for uid, old_modseq, text in conn.execute(
                "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ?"
                " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (mailbox_id, wanted),
            ).fetchall():
                if unchanged_since is not None and old_modseq > unchanged_since:
                    modified.append(uid)
                    continue
                old = _flags(text)
                if op is FlagOp.ADD:
                    new = old | flags
                elif op is FlagOp.REMOVE:
                    new = old - flags
                else:
                    new = flags
                if new == old:
                    continue
                conn.execute(
                    "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                    (" ".join(sorted(new)), modseq, mailbox_id, uid),
                )
                unseen += (SEEN in old) - (SEEN in new)
                deleted += (DELETED in new) - (DELETED in old)
                changed.append(MessageFlags(uid, modseq, new))
            if not changed:
                return FlagUpdate((), tuple(modified), modseq - 1)
            conn.execute(
                "UPDATE mailboxes SET highestmodseq = ?, unseen = unseen + ?,"
                " deleted = deleted + ? WHERE id = ?",
                (modseq, unseen, deleted, mailbox_id),
            )
            return FlagUpdate(tuple(changed), tuple(modified), modseq)

        result = await self._write(job, durable=False)  # flags: see GroupCommitWriter.submit
        if result.changed:
            self.feed.publish([mailbox_id])
        return result

    async def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> ExpungeResult:
        wanted = None if uids is None else json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> ExpungeResult:
            sql = (
                "SELECT uid, blob_id, size, flags FROM messages WHERE mailbox_id = ?"
                " AND ' ' || flags || ' ' LIKE '% \\Deleted %'"
            )
            params: tuple[Any, ...] = (mailbox_id,)
            if wanted is not None:
                sql += " AND uid IN (SELECT value FROM json_each(?))"
                params += (wanted,)
            rows = conn.execute(sql + " ORDER BY uid", params).fetchall()
            if not rows:
                return ExpungeResult((), _highestmodseq(conn, mailbox_id))
            modseq = _remove_messages(conn, mailbox_id, rows)
            return ExpungeResult(tuple(row[0] for row in rows), modseq)

        result = await self._write(job)
        if result.uids:
            self.feed.publish([mailbox_id])
        return result

    async def copy_messages(
        self, source_id: int, uids: Sequence[int], target_id: int, *, move: bool = False
    ) -> CopyResult:
        wanted = json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> CopyResult:
            target = conn.execute(
                "SELECT account_id, uidvalidity, uidnext, highestmodseq FROM mailboxes"
                " WHERE id = ?",
                (target_id,),
            ).fetchone()
            source = conn.execute(
                "SELECT account_id FROM mailboxes WHERE id = ?", (source_id,)
            ).fetchone()
            if target is None or source is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, "no such mailbox")
            account_id, uidvalidity, uidnext, highest = target
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS}, envelope FROM messages WHERE mailbox_id = ?"
                " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                (source_id, wanted),
            ).fetchall()
            if not rows:
                return CopyResult(uidvalidity, ())
            total = sum(row[5] for row in rows)
            if not (move and source[0] == account_id):
                quota, used = conn.execute(
                    "SELECT quota, used FROM accounts WHERE id = ?", (account_id,)
                ).fetchone()
                if quota and used + total > quota:
                    raise StoreError(StoreErrorCode.OVERQUOTA, "quota exceeded")
            modseq = highest + 1
            pairs = []
            unseen = deleted = 0
            for offset, row in enumerate(rows):
                new_uid = uidnext + offset
                flags = _flags(row[3])
                conn.execute(
                    f"INSERT INTO messages({_MESSAGE_COLUMNS}, envelope)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (target_id, new_uid, modseq, *row[3:]),
                )
                conn.execute("UPDATE blobs SET refs = refs + 1 WHERE id = ?", (row[6],))
                unseen += SEEN not in flags
                deleted += DELETED in flags
                pairs.append((row[1], new_uid))
            conn.execute(
                "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, messages = messages + ?,"
                " unseen = unseen + ?, deleted = deleted + ?, size = size + ? WHERE id = ?",
                (uidnext + len(rows), modseq, len(rows), unseen, deleted, total, target_id),
            )
            conn.execute("UPDATE accounts SET used = used + ? WHERE id = ?", (total, account_id))
            if move:
                _remove_messages(conn, source_id, [(r[1], r[6], r[5], r[3]) for r in rows])
            return CopyResult(uidvalidity, tuple(pairs))

        result = await self._write(job)
        if result.pairs:
            self.feed.publish([target_id, source_id] if move else [target_id])
        return result

    async def index_pending(self, limit: int = 256) -> int:
        """Index up to ``limit`` blobs. A blob whose text cannot be extracted is logged
        (``store.index_failed``) and set aside until ``index_retry_at``, with a backoff doubling
        from INDEX_RETRY_FIRST to INDEX_RETRY_MAX; the rest of the batch goes on. Until it is
        indexed, SEARCH reads the message itself, as for any message not indexed yet."""
        now = int(time.time())

        def pending(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            # chunked (large) contents are read one at a time by extract
            return conn.execute(
                "SELECT id, codec, size, data, index_failures FROM blobs WHERE indexed = 0"
                " AND index_retry_at <= ? ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()

        extract_text = self.extract_text

        def extract(
            rows: list[tuple[Any, ...]],
        ) -> tuple[list[tuple[int, Searchable]], list[tuple[int, int]]]:
            done, failed = [], []
            for row in rows:
                blob_id, failures = row[0], row[4]
                try:
                    raw = read_blob_row(self._reader(), row[:4])
                    done.append((blob_id, extract_text(raw)))
                    del raw
                except Exception:  # one message must not stop the index for everyone
                    retry = min(INDEX_RETRY_FIRST << min(failures, 20), INDEX_RETRY_MAX)
                    log.warning(
                        "store.index_failed",
                        exc_info=True,
                        extra={"fields": {"blob": blob_id, "failures": failures + 1,
                                          "retry_in": retry}},
                    )  # fmt: skip
                    failed.append((blob_id, now + retry))
            return done, failed

        rows = await self._read(pending)
        if not rows:
            return 0
        loop = asyncio.get_running_loop()
        texts, failed = await loop.run_in_executor(self._readers, extract, rows)

        def job(
            batch: list[tuple[int, Searchable]], too_large: list[int], failed: list[tuple[int, int]]
        ) -> Callable[[sqlite3.Connection], None]:
            def run(conn: sqlite3.Connection) -> None:
                for blob_id, text in batch:
                    marked = conn.execute(
                        "UPDATE blobs SET indexed = 1 WHERE id = ? AND indexed = 0", (blob_id,)
                    )
                    if marked.rowcount:  # not deleted (or indexed) meanwhile
                        conn.execute(
                            "INSERT INTO search_text(rowid, headers, body, subject, from_addr,"
                            " to_addr, cc, bcc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (blob_id, text.headers, text.body, *text.fields),
                        )
                for blob_id in too_large:
                    conn.execute(
                        f"UPDATE blobs SET indexed = {SEARCH_READS} WHERE id = ? AND indexed = 0",
                        (blob_id,),
                    )
                for blob_id, retry_at in failed:
                    conn.execute(
                        "UPDATE blobs SET index_failures = index_failures + 1, index_retry_at = ?"
                        " WHERE id = ? AND indexed = 0",
                        (retry_at, blob_id),
                    )

            return run

        # one write job per INDEX_WRITE_TEXT characters, so deliveries queued meanwhile go first
        too_large = [blob_id for blob_id, text in texts if _text_size(text) > MAX_INDEXED_TEXT]
        if too_large:
            log.info("store.index_skipped", extra={"fields": {"blobs": too_large,
                     "reason": "too much text: SEARCH reads the message"}})  # fmt: skip
        batch: list[tuple[int, Searchable]] = []
        size = 0
        for blob_id, text in texts:
            if _text_size(text) > MAX_INDEXED_TEXT:
                continue
            if batch and size + _text_size(text) > INDEX_WRITE_TEXT:
                await self._write(job(batch, [], []))
                batch, size = [], 0
            batch.append((blob_id, text))
            size += _text_size(text)
        await self._write(job(batch, too_large, failed))
        return len(rows)

    async def text_candidates(
        self, mailbox_id: int, needle: str, scope: TextScope
    ) -> tuple[set[int], set[int]] | None:
        needle = needle.casefold()
        if len(needle) < 3:  # trigrams: shorter strings cannot use the index
            return None
        phrase = '"' + needle.replace('"', '""') + '"'
        query = _SCOPE_COLUMNS[scope] + phrase

        def job(conn: sqlite3.Connection) -> tuple[set[int], set[int]]:
            # Both driven from the small side (the index's matches, the unindexed blobs) with
            # CROSS JOIN fixing the order: the other way walks every message of the mailbox.
            found = {
                row[0]
                for row in conn.execute(
                    "SELECT m.uid FROM (SELECT rowid AS id FROM search_text"
                    " WHERE search_text MATCH ?) f CROSS JOIN messages m ON m.blob_id = f.id"
                    " WHERE m.mailbox_id = ?",
                    (query, mailbox_id),
                )
            }
            unindexed = {
                row[0]
                for row in conn.execute(
                    "SELECT m.uid FROM (SELECT id FROM blobs WHERE indexed = 0 UNION ALL"
                    f" SELECT id FROM blobs WHERE indexed = {SEARCH_READS}) b"
                    " CROSS JOIN messages m ON m.blob_id = b.id WHERE m.mailbox_id = ?",
                    (mailbox_id,),
                )
            }
            return found, unindexed

        return await self._read(job)

    async def claim_recent(self, mailbox_id: int, up_to_uid: int, *, claim: bool) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT first_recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, "no such mailbox")
            first: int = row[0]
            return first

        if not claim:
            return await self._read(read)

        def job(conn: sqlite3.Connection) -> int:
            first = read(conn)
            if up_to_uid > first:
                conn.execute(
                    "UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
                    (up_to_uid, mailbox_id),
                )
            return first

        return await self._write(job, durable=False)  # \Recent bookkeeping

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        def job(conn: sqlite3.Connection) -> MailboxChanges:
            row = conn.execute(
                "SELECT uidvalidity, uidnext, highestmodseq FROM mailboxes WHERE id = ?",
                (mailbox_id,),
            ).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, "no such mailbox")
            if row[2] <= modseq:  # nothing changed: the common case of every command's sync
                return MailboxChanges(row[0], row[1], row[2], (), ())
            # sorted here, not by ORDER BY uid: that makes SQLite walk the whole mailbox in
            # uid order instead of using the (mailbox_id, modseq) index for the few changes
            changed = tuple(
                sorted(
                    MessageFlags(uid, m, _flags(flags))
                    for uid, m, flags in conn.execute(
                        "SELECT uid, modseq, flags FROM messages"
                        " WHERE mailbox_id = ? AND modseq > ?",
                        (mailbox_id, modseq),
                    )
                )
            )
            vanished = tuple(
                sorted(
                    r[0]
                    for r in conn.execute(
                        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?",
                        (mailbox_id, modseq),
                    )
                )
            )
            return MailboxChanges(row[0], row[1], row[2], changed, vanished)

        return await self._read(job)

    # -- outbound queue ----------------------------------------------------------------------
    def _prepare_blob(self, raw: bytes) -> _Blob:
        """Hash and compress content that is not a mailbox message (nothing to parse)."""
        codec, data, spill = self._compress(raw)
        return _Blob(hashlib.sha256(raw).digest(), len(raw), codec, data, spill)

    async def _prepared_blob(self, raw: bytes) -> _Blob:
        if len(raw) <= INLINE_PREPARE_LIMIT:
            return self._prepare_blob(raw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._prepare_blob, raw)

    async def enqueue(
        self, request: QueueRequest, *, local: DeliveryRequest | None = None
    ) -> DeliveryOutcome | None:
        if not request.recipients:
            raise StoreError(StoreErrorCode.INVALID, "a queued message needs recipients")
        blob = await self._prepared_blob(request.raw)
        prepared: _Prepared | None = None
        try:
            envelope = ""
            if local is not None and local.targets:
                if len(local.raw) <= INLINE_PREPARE_LIMIT:
                    prepared = self._prepare(local.raw)
                else:
                    loop = asyncio.get_running_loop()
                    prepared = await loop.run_in_executor(self._readers, self._prepare, local.raw)
                envelope = json.dumps(local.envelope, separators=(",", ":"), ensure_ascii=False)
            ready = prepared
            # the writer may keep its last job until the next one: not with the contents in it
            queued = dataclasses.replace(request, raw=b"")
            slim = None if local is None else dataclasses.replace(local, raw=b"")

            def job(conn: sqlite3.Connection) -> tuple[DeliveryOutcome | None, list[int]]:
                outcome: DeliveryOutcome | None = None
                touched: list[int] = []
                if slim is not None and ready is not None:
                    outcome, touched = _deliver(conn, slim, ready, envelope)
                    if slim.all_or_nothing and not outcome.ok:
                        return outcome, []
                elif slim is not None:
                    outcome = DeliveryOutcome((), ())
                _enqueue(conn, queued, blob)
                return outcome, touched

            outcome, touched = await self._write(job)
        finally:
            for spill in (blob.spill, prepared.spill if prepared is not None else None):
                if spill is not None:
                    spill.close()
        if touched:
            self.feed.publish(touched)
        return outcome

    async def due_queue_items(self, now: float, limit: int = 1000) -> list[QueueItem]:
        def job(conn: sqlite3.Connection) -> list[QueueItem]:
            rows = conn.execute(
                f"SELECT r.message_id, {_QUEUE_RECIPIENT_COLUMNS} FROM queue_recipients r"
                " JOIN queue_messages q ON q.id = r.message_id"
                " WHERE r.state IN ('pending', 'deferred') AND r.next_attempt <= ?"
                " AND NOT q.held ORDER BY r.next_attempt, r.id LIMIT ?",
                (now, limit),
            ).fetchall()
            return _queue_items(conn, rows)

        return await self._read(job)

    async def next_queue_attempt(self) -> float | None:
        def job(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(r.next_attempt) FROM queue_recipients r"
                " JOIN queue_messages q ON q.id = r.message_id"
                " WHERE r.state IN ('pending', 'deferred') AND NOT q.held"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(job)

    async def record_queue_results(self, updates: Sequence[QueueUpdate]) -> None:
        if not updates:
            return

        def job(conn: sqlite3.Connection) -> None:
            messages: set[int] = set()
            for u in updates:
                row = conn.execute(
                    "UPDATE queue_recipients SET state = ?, attempts = ?, next_attempt = ?,"
                    " last_attempt = coalesce(?, last_attempt),"
                    " last_error = coalesce(?, last_error), status = coalesce(?, status),"
                    " remote_mta = coalesce(?, remote_mta), delay_warned = ?,"
                    " report = coalesce(?, report)"
                    " WHERE id = ? AND state IN ('pending', 'deferred') RETURNING message_id",
                    (u.state.value, u.attempts, u.next_attempt, u.last_attempt, u.last_error,
                     u.status, u.remote_mta, int(u.delay_warned), u.report, u.recipient_id),
                ).fetchone()  # fmt: skip
                if row is not None:
                    messages.add(row[0])
            _remove_finished(conn, messages)

        # Committed without an fsync of its own (the next durable commit carries it): a
        # committed result survives the server being killed (WAL, synchronous=NORMAL); only a
        # power loss right after it could forget one, and then the message is sent again, not
        # lost (Postfix does not fsync its delivery status either).
        await self._write(job, durable=False)

    async def owed_reports(self, limit: int = 100) -> list[QueueItem]:
        def job(conn: sqlite3.Connection) -> list[QueueItem]:
            rows = conn.execute(
                f"SELECT r.message_id, {_QUEUE_RECIPIENT_COLUMNS} FROM queue_recipients r"
                " WHERE r.report IS NOT NULL ORDER BY r.message_id, r.id LIMIT ?",
                (limit,),
            ).fetchall()
            return _queue_items(conn, rows)

        return await self._read(job)

    async def settle_reports(
        self, recipient_ids: Sequence[int], dsn: QueueRequest | None = None
    ) -> None:
        blob = await self._prepared_blob(dsn.raw) if dsn is not None else None

        def job(conn: sqlite3.Connection) -> None:
            messages: set[int] = set()
            for recipient_id in recipient_ids:
                row = conn.execute(
                    "UPDATE queue_recipients SET report = NULL WHERE id = ? RETURNING message_id",
                    (recipient_id,),
                ).fetchone()
                if row is not None:
                    messages.add(row[0])
            if dsn is not None and blob is not None:
                _enqueue(conn, dsn, blob)
            _remove_finished(conn, messages)

        await self._write(job)

    async def list_queue(self) -> list[QueueItem]:
        def job(conn: sqlite3.Connection) -> list[QueueItem]:
            rows = conn.execute(
                f"SELECT r.message_id, {_QUEUE_RECIPIENT_COLUMNS} FROM queue_recipients r"
                " ORDER BY r.message_id, r.id"
            ).fetchall()
            return _queue_items(conn, rows)

        return await self._read(job)

    async def get_queue_item(self, queue_id: str) -> QueueItem | None:
        def job(conn: sqlite3.Connection) -> QueueItem | None:
            rows = conn.execute(
                f"SELECT r.message_id, {_QUEUE_RECIPIENT_COLUMNS} FROM queue_recipients r"
                " JOIN queue_messages q ON q.id = r.message_id WHERE q.queue_id = ?"
                " ORDER BY r.id",
                (queue_id,),
            ).fetchall()
            items = _queue_items(conn, rows)
            return items[0] if items else None

        return await self._read(job)

    async def hold_queue_item(self, queue_id: str, held: bool) -> None:
        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE queue_messages SET held = ? WHERE queue_id = ?", (int(held), queue_id)
            )
            if cur.rowcount == 0:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no queued message {queue_id}")

        await self._write(job)

    async def retry_queue(self, queue_id: str | None, now: float) -> int:
        def job(conn: sqlite3.Connection) -> int:
            if queue_id is None:
                cur = conn.execute(
                    "UPDATE queue_recipients SET next_attempt = ?"
                    " WHERE state IN ('pending', 'deferred') AND next_attempt > ?",
                    (now, now),
                )
                return cur.rowcount
            row = conn.execute(
                "SELECT id FROM queue_messages WHERE queue_id = ?", (queue_id,)
            ).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no queued message {queue_id}")
            cur = conn.execute(
                "UPDATE queue_recipients SET next_attempt = ?"
                " WHERE message_id = ? AND state IN ('pending', 'deferred') AND next_attempt > ?",
                (now, row[0], now),
            )
            return cur.rowcount

        return await self._write(job)

    async def delete_queue_item(self, queue_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT id FROM queue_messages WHERE queue_id = ?", (queue_id,)
            ).fetchone()
            if row is None:
                raise StoreError(StoreErrorCode.NONEXISTENT, f"no queued message {queue_id}")
            _drop_queue_message(conn, row[0])

        await self._write(job)


# -- helpers run inside reader or writer threads ---------------------------------------------


def _domain_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM domains WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise StoreError(StoreErrorCode.NONEXISTENT, f"no domain {name}")
    domain_id: int = row[0]
    return domain_id


def _account_id(conn: sqlite3.Connection, domain: str, local_key: str) -> int:
    row = conn.execute(
        "SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id"
        " WHERE d.name = ? AND a.local_key = ?",
        (domain, local_key),
    ).fetchone()
    if row is None:
        raise StoreError(StoreErrorCode.NONEXISTENT, f"no account {local_key}@{domain}")
    account_id: int = row[0]
    return account_id


def _mailbox_name(name: str) -> str:
    # RFC 9051 §5.1: INBOX is case-insensitive; every other name is case-sensitive.
    return "INBOX" if name.upper() == "INBOX" else name


def _next_uidvalidity(conn: sqlite3.Connection) -> int:
    """Strictly increasing across the database, so a re-created name never reuses a value."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'last_uidvalidity'").fetchone()
    last = int(row[0]) if row else 0
    value = max(int(time.time()) & 0xFFFFFFFF, last + 1)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('last_uidvalidity', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def _insert_mailbox(
    conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None
) -> int:
    if not name or len(name) > 1000:
        raise StoreError(StoreErrorCode.INVALID, "bad mailbox name")
    try:
        cur = conn.execute(
            "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity)"
            " VALUES (?, ?, ?, ?)",
            (account_id, name, special_use, _next_uidvalidity(conn)),
        )
    except sqlite3.IntegrityError:
        raise StoreError(StoreErrorCode.ALREADYEXISTS, f"mailbox {name} exists") from None
    assert cur.lastrowid is not None
    return cur.lastrowid


# search_text column filter per scope (FTS5 "column : phrase")
_SCOPE_COLUMNS: dict[str, str] = {
    "HEADER": "headers : ",
    "BODY": "body : ",
    "TEXT": "",
    "SUBJECT": "subject : ",
    "FROM": "from_addr : ",
    "TO": "to_addr : ",
    "CC": "cc : ",
    "BCC": "bcc : ",
}

_FLAG_SETS: dict[str, frozenset[str]] = {}


def _flags(text: str) -> frozenset[str]:
    """Parsed flags; a mailbox holds few distinct flag sets, so they are shared (bounded)."""
    flags = _FLAG_SETS.get(text)
    if flags is None:
        flags = frozenset(text.split()) if text else frozenset()
        if len(_FLAG_SETS) < 4096:
            _FLAG_SETS[text] = flags
    return flags


def _mailbox_id(conn: sqlite3.Connection, account_id: int, name: str) -> int:
    row = conn.execute(
        "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is None:
        raise StoreError(StoreErrorCode.NONEXISTENT, f"no mailbox {name}")
    mailbox_id: int = row[0]
    return mailbox_id


def _highestmodseq(conn: sqlite3.Connection, mailbox_id: int) -> int:
    row = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    if row is None:
        raise StoreError(StoreErrorCode.NONEXISTENT, "no such mailbox")
    value: int = row[0]
    return value


def _remove_messages(
    conn: sqlite3.Connection, mailbox_id: int, rows: Sequence[tuple[int, int, int, str]]
) -> int:
    """Expunge ``rows`` (uid, blob_id, size, flags): log them for QRESYNC, release blobs,
    fix the counters. Returns the mailbox's new HIGHESTMODSEQ."""
    modseq = _highestmodseq(conn, mailbox_id) + 1
    size = unseen = deleted = 0
    for uid, blob_id, msg_size, text in rows:
        flags = _flags(text)
        conn.execute("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid))
        conn.execute(
            "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            (mailbox_id, uid, modseq),
        )
        conn.execute("UPDATE blobs SET refs = refs - 1 WHERE id = ?", (blob_id,))
        size += msg_size
        unseen += SEEN not in flags
        deleted += DELETED in flags
    conn.execute("DELETE FROM blobs WHERE refs <= 0")
    conn.execute(
        "UPDATE mailboxes SET highestmodseq = ?, messages = messages - ?, unseen = unseen - ?,"
        " deleted = deleted - ?, size = size - ? WHERE id = ?",
        (modseq, len(rows), unseen, deleted, size, mailbox_id),
    )
    conn.execute(
        "UPDATE accounts SET used = used - ? WHERE id = (SELECT account_id FROM mailboxes"
        " WHERE id = ?)",
        (size, mailbox_id),
    )
    return modseq


def _drop_messages(conn: sqlite3.Connection, mailbox_id: int) -> None:
    """Delete a mailbox's messages and release their blobs."""
    rows = conn.execute(
        "SELECT blob_id, count(*) FROM messages WHERE mailbox_id = ? GROUP BY blob_id",
        (mailbox_id,),
    ).fetchall()
    conn.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    for blob_id, count in rows:
        conn.execute("UPDATE blobs SET refs = refs - ? WHERE id = ?", (count, blob_id))
    conn.execute("DELETE FROM blobs WHERE refs <= 0")


def _deliver(
    conn: sqlite3.Connection, request: DeliveryRequest, prepared: _Prepared, envelope: str
) -> tuple[DeliveryOutcome, list[int]]:
    size = prepared.size
    errors: list[StoreError | None] = []
    mailboxes: list[tuple[int, int] | None] = []  # (mailbox_id, account_id)
    extra_usage: dict[int, int] = {}
    for target in request.targets:
        account = conn.execute(
            "SELECT quota, used FROM accounts WHERE id = ?", (target.account_id,)
        ).fetchone()
        if account is None:
            errors.append(StoreError(StoreErrorCode.NONEXISTENT, "no such account"))
            mailboxes.append(None)
            continue
        quota, used = account
        used += extra_usage.get(target.account_id, 0)
        if quota and size > quota:
            errors.append(StoreError(StoreErrorCode.TOOBIG, "message larger than the quota"))
            mailboxes.append(None)
            continue
        if quota and used + size > quota:
            errors.append(StoreError(StoreErrorCode.OVERQUOTA, "mailbox full"))
            mailboxes.append(None)
            continue
        row = conn.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND name = ?",
            (target.account_id, _mailbox_name(target.mailbox)),
        ).fetchone()
        if row is None:
            errors.append(StoreError(StoreErrorCode.NONEXISTENT, f"no mailbox {target.mailbox}"))
            mailboxes.append(None)
            continue
        errors.append(None)
        mailboxes.append((row[0], target.account_id))
        extra_usage[target.account_id] = extra_usage.get(target.account_id, 0) + size

    if request.all_or_nothing and any(errors):
        return DeliveryOutcome(tuple(None for _ in errors), tuple(errors)), []

    wanted = sum(1 for m in mailboxes if m is not None)
    if wanted == 0:
        return DeliveryOutcome(tuple(None for _ in errors), tuple(errors)), []

    row = conn.execute("SELECT id FROM blobs WHERE digest = ?", (prepared.digest,)).fetchone()
    if row is None:
        blob_id = _insert_blob(
            conn, prepared.digest, size, prepared.codec, prepared.data, prepared.spill, wanted, 0
        )
    else:
        blob_id = row[0]
        # a blob only the queue held (never indexed) is a mailbox message now: index it
        conn.execute(
            "UPDATE blobs SET refs = refs + ?,"
            f" indexed = CASE indexed WHEN {QUEUE_ONLY} THEN 0 ELSE indexed END WHERE id = ?",
            (wanted, blob_id),
        )

    uids: list[int | None] = []
    for target, where in zip(request.targets, mailboxes, strict=True):
        if where is None:
            uids.append(None)
            continue
        mailbox_id, account_id = where
        uid, modseq = conn.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,"
            " messages = messages + 1, unseen = unseen + ?, deleted = deleted + ?,"
            " size = size + ? WHERE id = ? RETURNING uidnext - 1, highestmodseq",
            (int(SEEN not in target.flags), int(DELETED in target.flags), size, mailbox_id),
        ).fetchone()
        conn.execute(
            f"INSERT INTO messages({_MESSAGE_COLUMNS}, envelope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mailbox_id,
                uid,
                modseq,
                " ".join(sorted(target.flags)),
                request.internal_date,
                size,
                blob_id,
                prepared.subject,
                prepared.from_,
                prepared.to,
                prepared.date,
                prepared.message_id,
                prepared.structure,
                envelope,
            ),
        )
        conn.execute("UPDATE accounts SET used = used + ? WHERE id = ?", (size, account_id))
        uids.append(uid)
    touched = [m[0] for m in mailboxes if m is not None]
    return DeliveryOutcome(tuple(uids), tuple(errors)), touched


def _summary(parsed: ParsedMessage) -> dict[str, Any]:
    date = parsed.date
    return {
        "subject": parsed.subject,
        "from_": _address_text(parsed.envelope.from_),
        "to": _address_text(parsed.envelope.to),
        "date": int(date.timestamp()) if date is not None else None,
        "message_id": parsed.message_id,
    }


def _address_text(addresses: Iterable[Any]) -> str:
    """``Name <local@domain>, ...`` for listings (groups are flattened)."""
    parts = []
    for address in addresses:
        local = getattr(address, "local", None)
        if not local:
            continue
        domain = getattr(address, "domain", None)
        mailbox = f"{local}@{domain}" if domain else local
        name = getattr(address, "name", None)
        parts.append(f"{name} <{mailbox}>" if name else mailbox)
    return ", ".join(parts)


# what read_blob_row takes: id, codec, uncompressed size, stored bytes (empty when chunked)
_BLOB_SELECT = "SELECT id, codec, size, data FROM blobs"


class _Pieces:
    """The rows of blob_chunks of one blob as a file-like ``read`` for zstd's stream reader."""

    def __init__(self, conn: sqlite3.Connection, blob_id: int) -> None:
        self._rows = conn.execute(
            "SELECT data FROM blob_chunks WHERE blob_id = ? ORDER BY seq", (blob_id,)
        )
        self._piece = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if not self._piece:
            row = self._rows.fetchone()
            if row is None:
                return b""
            self._piece = memoryview(row[0])
        out = self._piece if size < 0 else self._piece[:size]
        self._piece = self._piece[len(out) :]
        return bytes(out)


class _BlobStream:
    """One chunked blob read piece by piece, each piece in a read job (and a read transaction)
    of its own, the zstd decompressor's state kept between them. Every row is read with the
    blob's digest: a blob removed meanwhile (its id may then be given to another) ends the
    stream with NONEXISTENT instead of going on with someone else's octets."""

    def __init__(self, blob_id: int, digest: bytes, codec: int, size: int) -> None:
        self._blob_id = blob_id
        self._digest = digest
        self._conn: sqlite3.Connection | None = None  # the connection of the job under way
        self._seq = 0
        self._row = memoryview(b"")
        self.left = size  # octets of content not yet handed out
        self._reader: Any = None
        if codec == CODEC_ZSTD | CHUNKED:
            # stream_reader calls read() only; its output is bounded by what we ask for
            self._reader = zstandard.ZstdDecompressor().stream_reader(
                cast(BinaryIO, self), read_size=_CHUNK, closefd=False
            )
        elif codec != CODEC_RAW | CHUNKED:
            raise StoreError(StoreErrorCode.UNAVAILABLE, f"unknown blob codec {codec}")

    def read(self, size: int = -1) -> bytes:
        """The stored octets, row after row (the decompressor's source)."""
        if not self._row:
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT c.data FROM blob_chunks c JOIN blobs b ON b.id = c.blob_id"
                " WHERE c.blob_id = ? AND c.seq = ? AND b.digest = ?",
                (self._blob_id, self._seq, self._digest),
            ).fetchone()
            if row is None:
                return b""
            self._seq += 1
            self._row = memoryview(row[0])
        out = self._row if size < 0 else self._row[:size]
        self._row = self._row[len(out) :]
        return bytes(out)

    def next(self, conn: sqlite3.Connection, piece: int) -> bytes:
        """The next at most ``piece`` octets of content (not empty while ``left``)."""
        self._conn = conn
        try:
            want = min(piece, self.left)
            out: bytes = self.read(want) if self._reader is None else self._reader.read(want)
        except zstandard.ZstdError as exc:  # a row missing in the middle of the frame
            raise StoreError(StoreErrorCode.NONEXISTENT, "blob removed while read") from exc
        finally:
            self._conn = None
        if not out:
            raise StoreError(StoreErrorCode.NONEXISTENT, "blob removed while read")
        self.left -= len(out)
        return out


def read_blob_row(
    conn: sqlite3.Connection, row: tuple[Any, ...], *, limit: int | None = None
) -> bytes:
    """The content of a ``_BLOB_SELECT`` row (its first ``limit`` octets). A chunked one is
    read piece by piece and decompressed as it streams into one object, so it exists once in
    memory, uncompressed; with ``limit``, only as much of it as that takes is read."""
    blob_id, codec, size, data = row
    if not codec & CHUNKED:
        whole = decode_blob(codec, data)
        return whole if limit is None else whole[:limit]
    if limit is not None:
        size = min(size, limit)
    pieces = _Pieces(conn, blob_id)
    if codec == CODEC_RAW | CHUNKED:
        out = io.BytesIO()  # grows in place; getvalue() hands over its buffer
        while out.tell() < size and (piece := pieces.read(min(_CHUNK, size - out.tell()))):
            out.write(piece)
        return out.getvalue()
    if codec != CODEC_ZSTD | CHUNKED:
        raise StoreError(StoreErrorCode.UNAVAILABLE, f"unknown blob codec {codec}")
    # stream_reader only calls read()
    reader = zstandard.ZstdDecompressor().stream_reader(cast(BinaryIO, pieces), read_size=_CHUNK)
    content: bytes = reader.read(size)
    if len(content) < size:  # the reader may stop short: gather the rest
        parts = [content]
        got = len(content)
        while got < size and (part := reader.read(size - got)):
            parts.append(part)
            got += len(part)
        content = b"".join(parts)
    return content


def _insert_blob(
    conn: sqlite3.Connection,
    digest: bytes,
    size: int,
    codec: int,
    data: bytes,
    spill: BinaryIO | None,
    refs: int,
    indexed: int,
) -> int:
    """Insert a blob row; stored bytes held in ``spill`` go into blob_chunks, 1 MiB a row."""
    cur = conn.execute(
        "INSERT INTO blobs(digest, size, codec, data, refs, indexed) VALUES (?, ?, ?, ?, ?, ?)",
        (digest, size, codec if spill is None else codec | CHUNKED, data, refs, indexed),
    )
    blob_id = cur.lastrowid
    assert blob_id is not None
    if spill is not None:
        spill.seek(0)
        seq = 0
        while piece := spill.read(_CHUNK):
            conn.execute(
                "INSERT INTO blob_chunks(blob_id, seq, data) VALUES (?, ?, ?)",
                (blob_id, seq, piece),
            )
            seq += 1
    return blob_id


def _searchable_text(raw: bytes) -> Searchable:
    return searchable(raw, parse_message(raw))


def _text_size(text: Searchable) -> int:
    return len(text.headers) + len(text.body) + sum(len(f) for f in text.fields)


def decode_blob(codec: int, data: bytes) -> bytes:
    if codec == CODEC_RAW:
        return bytes(data)
    if codec == CODEC_ZSTD:
        decoded: bytes = zstandard.ZstdDecompressor().decompress(data)
        return decoded
    raise StoreError(StoreErrorCode.UNAVAILABLE, f"unknown blob codec {codec}")


def _account(row: tuple[Any, ...]) -> Account:
    account_id, domain, localpart, password_hash, quota, used, role, enabled, created = row
    return Account(
        account_id,
        domain,
        localpart,
        password_hash,
        quota,
        used,
        AccountRole(role),
        bool(enabled),
        created,
    )


def _app_passwords(conn: sqlite3.Connection, account_id: int) -> list[AppPassword]:
    rows = conn.execute(
        "SELECT id, account_id, name, password_hash, scram, created FROM app_passwords"
        " WHERE account_id = ? ORDER BY created, id",
        (account_id,),
    )
    return [AppPassword(*row) for row in rows]


def _dkim_key(row: tuple[Any, ...]) -> DkimKey:
    key_id, domain, selector, algorithm, private_key, public_key, created, active = row
    return DkimKey(
        key_id, domain, selector, algorithm, private_key, public_key, created, bool(active)
    )


def _dkim_key_named(conn: sqlite3.Connection, domain: str, selector: str) -> DkimKey:
    row = conn.execute(
        f"SELECT {_DKIM_COLUMNS} FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
        " WHERE d.name = ? AND k.selector = ?",
        (domain, selector),
    ).fetchone()
    if row is None:
        raise StoreError(StoreErrorCode.NONEXISTENT, f"{domain} has no DKIM key {selector!r}")
    return _dkim_key(row)


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only: it holds password hashes and DKIM
    private keys (SQLite gives its -wal and -shm files the same mode). An existing file keeps
    the mode it has."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _mailbox(row: tuple[Any, ...]) -> MailboxInfo:
    (mid, account_id, name, special_use, uidvalidity, uidnext, modseq, subscribed, count,
     unseen, size, deleted, first_recent) = row  # fmt: skip
    return MailboxInfo(
        mid, account_id, name, special_use, uidvalidity, uidnext, modseq, bool(subscribed),
        count, unseen, size, deleted, first_recent,
    )  # fmt: skip


def _message(row: tuple[Any, ...]) -> MessageInfo:
    (mailbox_id, uid, modseq, flags, internal_date, size, blob_id, subject, from_, to, date,
     message_id, structure) = row  # fmt: skip
    return MessageInfo(
        mailbox_id, uid, modseq, frozenset(flags.split()), internal_date, size, blob_id,
        subject, from_, to, date, message_id, bytes(structure),
    )  # fmt: skip


def _check_integrity(conn: sqlite3.Connection) -> list[str]:
    """Cross-checks a crash must never break: SQLite's own check, blob refs, counters, quotas."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
    for blob_id, refs, actual in conn.execute(
        "SELECT b.id, b.refs, (SELECT count(*) FROM messages m WHERE m.blob_id = b.id)"
        " + (SELECT count(*) FROM queue_messages q WHERE q.blob_id = b.id) FROM blobs b"
    ):
        if refs != actual:
            problems.append(f"blob {blob_id}: refs {refs} but {actual} message(s)")
    for (missing,) in conn.execute(
        "SELECT count(*) FROM queue_messages q LEFT JOIN blobs b ON b.id = q.blob_id"
        " WHERE b.id IS NULL"
    ):
        if missing:
            problems.append(f"{missing} queued message(s) without a blob")
    for (missing,) in conn.execute(
        "SELECT count(*) FROM messages m LEFT JOIN blobs b ON b.id = m.blob_id WHERE b.id IS NULL"
    ):
        if missing:
            problems.append(f"{missing} message(s) without a blob")
    for (mid, name, count, size, unseen, deleted, uidnext, modseq, real_count, real_size,
         real_unseen, real_deleted, max_uid, max_modseq) in conn.execute(
            "SELECT x.id, x.name, x.messages, x.size, x.unseen, x.deleted, x.uidnext,"
            " x.highestmodseq, count(m.uid), coalesce(sum(m.size), 0),"
            " coalesce(sum(' ' || m.flags || ' ' NOT LIKE '% \\Seen %'), 0),"
            " coalesce(sum(' ' || m.flags || ' ' LIKE '% \\Deleted %'), 0),"
            " coalesce(max(m.uid), 0), coalesce(max(m.modseq), 0)"
            " FROM mailboxes x LEFT JOIN messages m ON m.mailbox_id = x.id GROUP BY x.id"
    ):  # fmt: skip
        counters = (count, size, unseen, deleted)
        real = (real_count, real_size, real_unseen, real_deleted)
        if counters != real:
            problems.append(f"mailbox {mid} {name}: counters {counters} but {real}")
        if max_uid >= uidnext or max_modseq > modseq:
            problems.append(f"mailbox {mid} {name}: uidnext/highestmodseq behind its messages")
    for account_id, used, real in conn.execute(
        "SELECT a.id, a.used, coalesce((SELECT sum(x.size) FROM mailboxes x"
        " WHERE x.account_id = a.id), 0) FROM accounts a"
    ):
        if used != real:
            problems.append(f"account {account_id}: used {used} but mailboxes hold {real}")
    return problems


# -- outbound queue helpers -------------------------------------------------------------------

_QUEUE_RECIPIENT_COLUMNS = (
    "r.id, r.address, r.domain, r.state, r.attempts, r.next_attempt, r.last_attempt,"
    " r.last_error, r.status, r.remote_mta, r.notify, r.orcpt, r.delay_warned, r.report"
)


@dataclass(frozen=True, slots=True)
class _Blob:
    """Content made ready for the blobs table: digest, size, codec, stored bytes."""

    digest: bytes
    size: int
    codec: int
    data: bytes  # empty when ``spill`` holds the stored bytes
    spill: BinaryIO | None = None


def _add_blob_ref(conn: sqlite3.Connection, blob: _Blob) -> int:
    """The blob's id for a queued message, inserted or with one more reference. A new blob
    is marked QUEUE_ONLY: the full-text indexer skips it (nobody searches the queue) and
    deleting it after delivery touches no index; a mailbox delivery of the same content
    clears the mark."""
    row = conn.execute("SELECT id FROM blobs WHERE digest = ?", (blob.digest,)).fetchone()
    if row is not None:
        conn.execute("UPDATE blobs SET refs = refs + 1 WHERE id = ?", (row[0],))
        blob_id: int = row[0]
        return blob_id
    return _insert_blob(
        conn, blob.digest, blob.size, blob.codec, blob.data, blob.spill, 1, QUEUE_ONLY
    )


def _recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _enqueue(conn: sqlite3.Connection, request: QueueRequest, blob: _Blob) -> int:
    blob_id = _add_blob_ref(conn, blob)
    try:
        cur = conn.execute(
            "INSERT INTO queue_messages(queue_id, blob_id, size, mail_from, envid, ret,"
            " smtputf8, body, origin, queued_at, held) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request.queue_id, blob_id, blob.size, request.mail_from, request.envid,
             request.ret, int(request.smtputf8), request.body, request.origin,
             request.queued_at, int(request.held)),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise StoreError(
            StoreErrorCode.ALREADYEXISTS, f"queue id {request.queue_id} exists"
        ) from None
    message_id = cur.lastrowid
    assert message_id is not None
    conn.executemany(
        "INSERT INTO queue_recipients(message_id, address, domain, state, next_attempt,"
        " notify, orcpt) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
        [
            (
                message_id,
                r.address,
                _recipient_domain(r.address),
                request.queued_at,
                None if r.notify is None else ",".join(r.notify),
                None if r.orcpt is None else f"{r.orcpt[0]};{r.orcpt[1]}",
            )
            for r in request.recipients
        ],
    )
    return message_id


def _drop_queue_message(conn: sqlite3.Connection, message_id: int) -> None:
    row = conn.execute(
        "DELETE FROM queue_messages WHERE id = ? RETURNING blob_id", (message_id,)
    ).fetchone()
    if row is None:
        return
    # its recipients go with it (ON DELETE CASCADE); the blob goes if this was its last holder
    if not conn.execute("DELETE FROM blobs WHERE id = ? AND refs <= 1", (row[0],)).rowcount:
        conn.execute("UPDATE blobs SET refs = refs - 1 WHERE id = ?", (row[0],))


def _remove_finished(conn: sqlite3.Connection, message_ids: Iterable[int]) -> None:
    """Drop the messages whose recipients are all delivered or failed and owe no report."""
    for message_id in message_ids:
        unfinished = conn.execute(
            "SELECT 1 FROM queue_recipients WHERE message_id = ?"
            " AND (state IN ('pending', 'deferred') OR report IS NOT NULL) LIMIT 1",
            (message_id,),
        ).fetchone()
        if unfinished is None:
            _drop_queue_message(conn, message_id)


def _queue_items(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[QueueItem]:
    """QueueItems for recipient rows (message id first), in the rows' order of messages."""
    by_message: dict[int, list[QueueRecipient]] = {}
    for row in rows:
        by_message.setdefault(row[0], []).append(_queue_recipient(row[1:]))
    if not by_message:
        return []
    wanted = json.dumps(list(by_message))
    messages = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT id, queue_id, blob_id, size, mail_from, envid, ret, smtputf8, body, origin,"
            " queued_at, held FROM queue_messages WHERE id IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
    }
    items = []
    for message_id, recipients in by_message.items():
        m = messages.get(message_id)
        if m is None:
            continue
        queue_id, blob_id, size, mail_from, envid, ret, smtputf8, body, origin, queued, held = m
        item = QueueItem(queue_id, blob_id, size, mail_from, envid, ret, bool(smtputf8), body,
                         origin, float(queued), bool(held), tuple(recipients))  # fmt: skip
        items.append(item)
    return items


def _queue_recipient(row: Sequence[Any]) -> QueueRecipient:
    (rid, address, domain, state, attempts, next_attempt, last_attempt, last_error, status,
     remote_mta, notify, orcpt, delay_warned, report) = row  # fmt: skip
    orcpt_pair: tuple[str, str] | None = None
    if orcpt is not None:
        kind, _, value = orcpt.partition(";")
        orcpt_pair = (kind, value)
    return QueueRecipient(
        id=rid,
        address=address,
        domain=domain,
        state=QueueState(state),
        attempts=attempts,
        next_attempt=float(next_attempt),
        last_attempt=None if last_attempt is None else float(last_attempt),
        last_error=last_error,
        status=status,
        remote_mta=remote_mta,
        notify=None if notify is None else tuple(n for n in notify.split(",") if n),
        orcpt=orcpt_pair,
        delay_warned=bool(delay_warned),
        report=report,
    )
