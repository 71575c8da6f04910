"""The store's authentication records: SCRAM secrets, app passwords, migration 6."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from mailstead.store import StoreError, StoreErrorCode, open_sqlite
from mailstead.store.api import AuthRecords
from mailstead.store.sqlite.schema import MIGRATIONS, _statements

SCRAM = "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "="


def run(coro):
    return asyncio.run(coro)


async def _store(tmp_path):
    store = open_sqlite(tmp_path / "mail.db")
    await store.open()
    await store.add_domain("example.org")
    return store


def test_accounts_keep_their_scram_secret(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            account = await store.add_account("example.org", "Alice", "alice", "h1", scram=SCRAM)
            records = await store.get_auth_records("example.org", "alice")
            assert records == AuthRecords(account, SCRAM, ())
            await store.update_account(account.id, password_hash="h2", scram=SCRAM + "x")
            records = await store.get_auth_records("example.org", "alice")
            assert (records.account.password_hash, records.scram) == ("h2", SCRAM + "x")
            await store.update_account(account.id, quota=5)  # other changes keep it
            assert (await store.get_auth_records("example.org", "alice")).scram == SCRAM + "x"
            bob = await store.add_account("example.org", "bob", "bob", "h")
            assert (await store.get_auth_records("example.org", "bob")).scram is None
            assert await store.get_auth_records("example.org", "carol") is None
            assert await store.get_auth_records("example.net", "alice") is None
            assert bob.id != account.id
        finally:
            await store.close()

    run(body())


def test_app_passwords_add_list_remove(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            alice = await store.add_account("example.org", "alice", "alice", "h")
            bob = await store.add_account("example.org", "bob", "bob", "h")
            phone = await store.add_app_password(alice.id, "phone", "argon-1", SCRAM)
            laptop = await store.add_app_password(alice.id, "laptop", "argon-2", None)
            await store.add_app_password(bob.id, "phone", "argon-3", SCRAM)  # names per account
            assert (phone.account_id, phone.name, phone.password_hash, phone.scram) == (
                alice.id, "phone", "argon-1", SCRAM
            )  # fmt: skip
            assert await store.list_app_passwords(alice.id) == [phone, laptop]
            records = await store.get_auth_records("example.org", "alice")
            assert records.app_passwords == (phone, laptop)

            with pytest.raises(StoreError) as exc:
                await store.add_app_password(alice.id, "phone", "x", None)
            assert exc.value.code is StoreErrorCode.ALREADYEXISTS
            with pytest.raises(StoreError) as exc:
                await store.add_app_password(9999, "phone", "x", None)
            assert exc.value.code is StoreErrorCode.NONEXISTENT

            await store.remove_app_password(alice.id, "phone")
            assert await store.list_app_passwords(alice.id) == [laptop]
            with pytest.raises(StoreError) as exc:
                await store.remove_app_password(alice.id, "phone")
            assert exc.value.code is StoreErrorCode.NONEXISTENT
            assert len(await store.list_app_passwords(bob.id)) == 1
        finally:
            await store.close()

    run(body())


def test_removing_an_account_removes_its_app_passwords(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            alice = await store.add_account("example.org", "alice", "alice", "h")
            await store.add_app_password(alice.id, "phone", "argon", SCRAM)
            await store.remove_account("example.org", "alice")
            again = await store.add_account("example.org", "alice", "alice", "h")
            assert await store.list_app_passwords(again.id) == []
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())
    with sqlite3.connect(tmp_path / "mail.db") as conn:
        assert conn.execute("SELECT count(*) FROM app_passwords").fetchone() == (0,)


def test_migration_6_keeps_existing_accounts_without_scram(tmp_path):
    """A database made before migration 6: its accounts work, with no SCRAM secret yet."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:5]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 5")
        conn.execute("INSERT INTO domains(name, created) VALUES ('example.org', 0)")
        conn.execute(
            "INSERT INTO accounts(domain_id, localpart, local_key, password_hash, created)"
            " VALUES (1, 'old', 'old', 'argon-old', 0)"
        )
    conn.close()

    async def body():
        store = open_sqlite(path)
        await store.open()
        try:
            records = await store.get_auth_records("example.org", "old")
            assert (records.account.password_hash, records.scram) == ("argon-old", None)
            assert records.app_passwords == ()
            await store.add_app_password(records.account.id, "phone", "argon", SCRAM)
        finally:
            await store.close()

    run(body())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    conn.close()
