"""``run(scenario)``: run ``async def scenario(harness)`` against a fresh copy of a store that
holds alice and bob.

The accounts are made once per test session; their argon2 hashes are then replaced by cheap
ones (the parameters travel in the hash), so a login costs milliseconds instead of the
deliberate half second of the real parameters.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from argon2 import PasswordHasher

from mailstead.directory import Directory
from mailstead.store import open_sqlite

from .harness import ALICE, ALICE_PW, BOB, BOB_PW, Harness

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("pop3-template") / "mailstead.db"

    async def build():
        store = open_sqlite(path)
        await store.open()
        try:
            directory = Directory(store)
            await directory.add_domain("example.org")
            for address, password in ((ALICE, ALICE_PW), (BOB, BOB_PW)):
                account = await directory.add_account(address, password)
                await store.update_account(account.id, password_hash=CHEAP.hash(password))
        finally:
            await store.close()

    asyncio.run(build())
    return path


@pytest.fixture
def run(tmp_path, template_db):
    def _run(scenario):
        path = tmp_path / "mailstead.db"
        for suffix in ("", "-wal", "-shm"):
            source = template_db.with_name(template_db.name + suffix)
            if source.exists():
                shutil.copyfile(source, path.with_name(path.name + suffix))

        async def main():
            async with Harness(path) as harness:
                await scenario(harness)

        asyncio.run(main())

    return _run
