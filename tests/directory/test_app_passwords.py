"""Logging in with the main password or an app password, by argon2 (PLAIN) or SCRAM."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import pytest

from mailstead.directory import AuthResult, Directory, DirectoryError, generate_app_password
from mailstead.directory import credentials as creds_module
from mailstead.sasl import (
    Challenge,
    NeedScram,
    SaslClient,
    SaslServer,
    Success,
    scram,
)
from mailstead.store import StoreError, StoreErrorCode, open_sqlite

ALICE = "alice@example.org"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def directory(tmp_path):
    """An async context giving a Directory with alice (password "main-pw") and bob."""

    class _Ctx:
        async def __aenter__(self) -> Directory:
            self.store = open_sqlite(tmp_path / "mail.db")
            await self.store.open()
            d = Directory(self.store)
            await d.add_domain("example.org")
            await d.add_account(ALICE, "main-pw")
            await d.add_account("bob@example.org", "bob-pw")
            return d

        async def __aexit__(self, *exc):
            await self.store.close()

    return _Ctx()


def sql(tmp_path, statement):
    with sqlite3.connect(tmp_path / "mail.db") as conn:
        conn.execute(statement)
    conn.close()


async def scram_login(d: Directory, address: str, password: str):
    """A SCRAM-SHA-256 exchange against the directory, as a protocol shell runs it."""
    client = SaslClient("SCRAM-SHA-256", authcid=address, password=password)
    server = SaslServer("SCRAM-SHA-256")
    step = server.start(client.initial_response())
    assert isinstance(step, NeedScram)
    found = await d.scram_lookup(step.authcid)
    step = server.scram_credentials(*(reversed(found) if found else (None,)))
    assert isinstance(step, Challenge)
    step = server.respond(client.respond(step.data))
    if isinstance(step, Success):
        client.verify_final(step.final_data)
        assert client.server_verified
    return step


def test_main_password_and_app_passwords_authenticate(directory):
    async def body():
        async with directory as d:
            record, phone_pw = await d.add_app_password(ALICE, "phone")
            _, laptop_pw = await d.add_app_password(ALICE, " laptop ")  # stripped
            alice = await d.get_account(ALICE)
            assert record.name == "phone"
            assert await d.authenticate_detailed(ALICE, "main-pw") == AuthResult(alice, "password")
            assert await d.authenticate_detailed("ALICE@Example.org", phone_pw) == AuthResult(
                alice, "app-password:phone"
            )
            result = await d.authenticate_detailed(ALICE, laptop_pw)
            assert result.credential == "app-password:laptop"
            assert await d.authenticate(ALICE, phone_pw) == alice  # the old API too
            assert await d.authenticate_detailed(ALICE, "wrong") is None
            # an app password belongs to its account only
            assert await d.authenticate("bob@example.org", phone_pw) is None
            assert await d.authenticate("nobody@example.org", phone_pw) is None
            assert await d.authenticate("not an address", "x") is None

    run(body())


def test_scram_credentials_hold_every_password_with_one_salt(directory):
    async def body():
        async with directory as d:
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            _, laptop_pw = await d.add_app_password(ALICE, "laptop")
            creds = await d.scram_credentials(ALICE)
            assert [k.label for k in creds.keys] == [
                "password", "app-password:phone", "app-password:laptop"
            ]  # fmt: skip
            assert creds.iterations == scram.DEFAULT_ITERATIONS
            for password, label in (("main-pw", "password"), (phone_pw, "app-password:phone"),
                                    (laptop_pw, "app-password:laptop")):  # fmt: skip
                step = await scram_login(d, ALICE, password)
                assert isinstance(step, Success), label
                assert step.credential == label
                assert step.account == await d.get_account(ALICE)
            step = await scram_login(d, ALICE, "wrong")
            assert not isinstance(step, Success)
            assert await d.scram_credentials("nobody@example.org") is None
            assert not isinstance(await scram_login(d, "nobody@example.org", "x"), Success)

    run(body())


def test_password_change_keeps_the_salt_so_app_passwords_keep_working(directory):
    async def body():
        async with directory as d:
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            before = await d.scram_credentials(ALICE)
            await d.set_password(ALICE, "new-pw")
            after = await d.scram_credentials(ALICE)
            assert (after.salt, after.iterations) == (before.salt, before.iterations)
            assert after.keys[0] != before.keys[0]
            assert isinstance(await scram_login(d, ALICE, "new-pw"), Success)
            assert not isinstance(await scram_login(d, ALICE, "main-pw"), Success)
            assert (await scram_login(d, ALICE, phone_pw)).credential == "app-password:phone"
            assert await d.authenticate(ALICE, "main-pw") is None
            assert (await d.authenticate_detailed(ALICE, "new-pw")).credential == "password"
            # each account has its own salt
            assert (await d.scram_credentials("bob@example.org")).salt != after.salt

    run(body())


def test_accounts_from_before_scram_storage(directory, tmp_path):
    """Accounts made before migration 6 have no SCRAM secret: no SCRAM until the password is
    set again. An app password added meanwhile chooses the salt the main password then reuses."""

    async def body():
        async with directory as d:
            sql(tmp_path, "UPDATE accounts SET scram = NULL")
            assert await d.scram_credentials(ALICE) is None
            assert (await d.authenticate_detailed(ALICE, "main-pw")).credential == "password"
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            creds = await d.scram_credentials(ALICE)
            assert [k.label for k in creds.keys] == ["app-password:phone"]
            await d.set_password(ALICE, "main-pw")
            again = await d.scram_credentials(ALICE)
            assert again.salt == creds.salt
            assert [k.label for k in again.keys] == ["password", "app-password:phone"]
            assert isinstance(await scram_login(d, ALICE, "main-pw"), Success)
            assert isinstance(await scram_login(d, ALICE, phone_pw), Success)

    run(body())


def test_an_app_password_without_scram_secret_is_checked_by_argon2(directory, tmp_path):
    async def body():
        async with directory as d:
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            sql(tmp_path, "UPDATE app_passwords SET scram = NULL")
            assert (await d.authenticate_detailed(ALICE, phone_pw)).credential == (
                "app-password:phone"
            )
            assert [k.label for k in (await d.scram_credentials(ALICE)).keys] == ["password"]

    run(body())


def test_disabled_accounts_never_authenticate(directory):
    async def body():
        async with directory as d:
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            await d.set_enabled(ALICE, False)
            assert await d.authenticate(ALICE, "main-pw") is None
            assert await d.authenticate_detailed(ALICE, phone_pw) is None
            assert await d.scram_credentials(ALICE) is None
            assert not isinstance(await scram_login(d, ALICE, "main-pw"), Success)
            await d.set_enabled(ALICE, True)
            assert await d.authenticate(ALICE, phone_pw) is not None

    run(body())


def test_removed_app_passwords_stop_working(directory):
    async def body():
        async with directory as d:
            _, phone_pw = await d.add_app_password(ALICE, "phone")
            await d.add_app_password(ALICE, "laptop")
            await d.remove_app_password(ALICE, "phone")
            assert [a.name for a in await d.list_app_passwords(ALICE)] == ["laptop"]
            assert await d.authenticate(ALICE, phone_pw) is None
            assert not isinstance(await scram_login(d, ALICE, phone_pw), Success)
            with pytest.raises(StoreError) as exc:
                await d.remove_app_password(ALICE, "phone")
            assert exc.value.code is StoreErrorCode.NONEXISTENT

    run(body())


def test_app_password_names_and_errors(directory):
    async def body():
        async with directory as d:
            await d.add_app_password(ALICE, "Thunderbird on the laptop")
            with pytest.raises(StoreError) as exc:
                await d.add_app_password(ALICE, "Thunderbird on the laptop")
            assert exc.value.code is StoreErrorCode.ALREADYEXISTS
            for bad in ("", "   ", "a\nb", "x" * 65):
                with pytest.raises(DirectoryError, match="name"):
                    await d.add_app_password(ALICE, bad)
            with pytest.raises(DirectoryError, match="no account"):
                await d.add_app_password("nobody@example.org", "phone")
            with pytest.raises(DirectoryError, match="no account"):
                await d.list_app_passwords("nobody@example.org")
            record, chosen = await d.add_app_password(ALICE, "given", "my-own-app-pw")
            assert chosen == "my-own-app-pw"
            assert (await d.authenticate_detailed(ALICE, chosen)).credential == "app-password:given"
            assert record.password_hash.startswith("$argon2id$")
            assert "my-own-app-pw" not in record.password_hash + (record.scram or "")

    run(body())


def test_generated_app_passwords():
    passwords = {generate_app_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", password)


def test_failures_cost_the_same_whether_the_account_exists(directory, monkeypatch):
    """One argon2 verification and one PBKDF2 derivation for every failure: unknown user, an
    account without app passwords, an account with several."""
    calls = []
    real_verify, real_derive = creds_module.verify_password, creds_module.scram.derive_keys
    monkeypatch.setattr(creds_module, "verify_password",
                        lambda *a: calls.append("argon2") or real_verify(*a))  # fmt: skip
    monkeypatch.setattr(creds_module.scram, "derive_keys",
                        lambda *a, **k: calls.append("pbkdf2") or real_derive(*a, **k))  # fmt: skip

    async def body():
        async with directory as d:
            await d.add_app_password(ALICE, "phone")
            await d.add_app_password(ALICE, "laptop")
            seen = {}
            for address in ("nobody@example.org", "bob@example.org", ALICE):
                calls.clear()
                assert await d.authenticate(address, "wrong") is None
                seen[address] = sorted(calls)
            assert set(map(tuple, seen.values())) == {("argon2", "pbkdf2")}

    run(body())
