"""The store's DKIM keys: add, list, the active key per algorithm, rotation, migration 8."""

from __future__ import annotations

import asyncio
import sqlite3
import stat

import pytest

from mailstead.store import DkimKey, StoreError, StoreErrorCode, open_sqlite
from mailstead.store.sqlite.schema import MIGRATIONS, _statements

PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"


def run(coro):
    return asyncio.run(coro)


async def _store(tmp_path):
    store = open_sqlite(tmp_path / "mail.db")
    await store.open()
    await store.add_domain("example.org")
    await store.add_domain("example.net")
    return store


def _code(exc_info) -> StoreErrorCode:
    return exc_info.value.code


def test_add_and_list_keys(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            rsa = await store.add_dkim_key("example.org", "MS202501", "rsa", PEM, "cHVi")
            assert isinstance(rsa, DkimKey)
            assert (rsa.domain, rsa.selector, rsa.algorithm, rsa.active) == (
                "example.org", "ms202501", "rsa", True
            )  # fmt: skip
            assert (rsa.private_key, rsa.public_key) == (PEM, "cHVi")
            assert "PRIVATE" not in repr(rsa)  # never in a log line by accident
            ed = await store.add_dkim_key("example.org", "ed1", "ed25519", PEM, "ZWQ=")
            net = await store.add_dkim_key("example.net", "ms202501", "rsa", PEM, "bmV0")
            assert await store.list_dkim_keys("example.org") == [rsa, ed]
            assert await store.list_dkim_keys() == [net, rsa, ed]  # by domain name
            assert await store.list_dkim_keys("example.com") == []
            assert await store.active_dkim_keys("example.org") == [rsa, ed]  # RSA first
            assert await store.active_dkim_keys("example.com") == []
        finally:
            await store.close()

    run(body())


def test_add_refuses_unknown_domain_taken_selector_and_bad_algorithm(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            await store.add_dkim_key("example.org", "s1", "rsa", PEM, "a")
            with pytest.raises(StoreError) as exc:
                await store.add_dkim_key("example.com", "s1", "rsa", PEM, "a")
            assert _code(exc) is StoreErrorCode.NONEXISTENT
            with pytest.raises(StoreError) as exc:  # selectors are per domain, any algorithm
                await store.add_dkim_key("example.org", "S1", "ed25519", PEM, "a")
            assert _code(exc) is StoreErrorCode.ALREADYEXISTS
            with pytest.raises(StoreError) as exc:
                await store.add_dkim_key("example.org", "s2", "dsa", PEM, "a")
            assert _code(exc) is StoreErrorCode.INVALID
            # the refused additions changed nothing: the first key is still the active one
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == ["s1"]
        finally:
            await store.close()

    run(body())


def test_a_new_key_replaces_the_active_one_of_its_algorithm_only(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            old = await store.add_dkim_key("example.org", "old", "rsa", PEM, "a")
            ed = await store.add_dkim_key("example.org", "ed", "ed25519", PEM, "b")
            new = await store.add_dkim_key("example.org", "new", "rsa", PEM, "c")
            active = await store.active_dkim_keys("example.org")
            assert [k.selector for k in active] == ["new", "ed"]
            listed = {k.selector: k.active for k in await store.list_dkim_keys("example.org")}
            assert listed == {"old": False, "ed": True, "new": True}  # the old key is kept
            assert new.active and ed.active and old.active

            # a key stored inactive waits for its DNS record; activating it swaps
            staged = await store.add_dkim_key("example.org", "next", "rsa", PEM, "d", active=False)
            assert not staged.active
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == [
                "new", "ed"
            ]  # fmt: skip
            activated = await store.activate_dkim_key("example.org", "NEXT")
            assert activated.active and activated.selector == "next"
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == [
                "next", "ed"
            ]  # fmt: skip
            await store.activate_dkim_key("example.org", "old")  # rollback to an older key
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == [
                "old", "ed"
            ]  # fmt: skip
            with pytest.raises(StoreError) as exc:
                await store.activate_dkim_key("example.org", "nope")
            assert _code(exc) is StoreErrorCode.NONEXISTENT
            with pytest.raises(StoreError) as exc:
                await store.activate_dkim_key("example.net", "old")  # another domain's
            assert _code(exc) is StoreErrorCode.NONEXISTENT
        finally:
            await store.close()

    run(body())


def test_remove_key(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            await store.add_dkim_key("example.org", "r", "rsa", PEM, "a")
            await store.add_dkim_key("example.org", "e", "ed25519", PEM, "b")
            removed = await store.remove_dkim_key("example.org", "r")
            assert removed.selector == "r" and removed.active
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == ["e"]
            with pytest.raises(StoreError) as exc:
                await store.remove_dkim_key("example.org", "r")
            assert _code(exc) is StoreErrorCode.NONEXISTENT
            await store.add_dkim_key("example.org", "r", "rsa", PEM, "c")  # the name is free
        finally:
            await store.close()

    run(body())


def test_removing_a_domain_removes_its_keys(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            await store.add_dkim_key("example.org", "r", "rsa", PEM, "a")
            await store.add_dkim_key("example.net", "r", "rsa", PEM, "a")
            await store.remove_domain("example.org")
            await store.add_domain("example.org")
            assert await store.list_dkim_keys("example.org") == []
            assert len(await store.list_dkim_keys()) == 1
            assert await store.check_integrity() == []
        finally:
            await store.close()

    run(body())


def test_one_active_key_per_algorithm_is_enforced_by_the_schema(tmp_path):
    async def create():
        await (await _store(tmp_path)).close()

    run(create())
    with sqlite3.connect(tmp_path / "mail.db") as conn:
        conn.execute(
            "INSERT INTO dkim_keys(domain_id, selector, algorithm, private_key, public_key,"
            " created, active) VALUES (1, 'a', 'rsa', 'k', 'p', 0, 1)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO dkim_keys(domain_id, selector, algorithm, private_key, public_key,"
                " created, active) VALUES (1, 'b', 'rsa', 'k', 'p', 0, 1)"
            )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO dkim_keys(domain_id, selector, algorithm, private_key, public_key,"
                " created, active) VALUES (1, 'c', 'dsa', 'k', 'p', 0, 0)"
            )
    conn.close()


def test_a_new_database_is_readable_by_its_owner_only(tmp_path):
    async def body():
        store = await _store(tmp_path)
        try:
            await store.add_dkim_key("example.org", "r", "rsa", PEM, "a")
        finally:
            await store.close()

    run(body())
    for path in tmp_path.iterdir():
        if path.name.startswith("mail.db"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_migration_8_adds_the_key_table_to_a_version_7_database(tmp_path):
    """A database made before migration 8: its domains get keys, nothing else changes."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:7]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 7")
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
            assert await store.list_dkim_keys() == []
            assert await store.active_dkim_keys("example.org") == []
            key = await store.add_dkim_key("example.org", "ms202501", "rsa", PEM, "a")
            assert await store.active_dkim_keys("example.org") == [key]
            assert (await store.get_account("example.org", "old")).password_hash == "argon-old"
        finally:
            await store.close()

    run(body())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert len(MIGRATIONS) >= 8
    conn.close()


def test_activating_a_key_whose_selector_sorts_first(tmp_path):
    """The swap is never seen half done by the one-active-key index, whatever the row order."""

    async def body():
        store = await _store(tmp_path)
        try:
            await store.add_dkim_key("example.org", "a", "rsa", PEM, "a")
            await store.add_dkim_key("example.org", "z", "rsa", PEM, "z")
            await store.activate_dkim_key("example.org", "a")
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == ["a"]
            await store.activate_dkim_key("example.org", "z")
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == ["z"]
            await store.activate_dkim_key("example.org", "z")  # already active: no change
            assert [k.selector for k in await store.active_dkim_keys("example.org")] == ["z"]
        finally:
            await store.close()

    run(body())
