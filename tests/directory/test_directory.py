"""Recipient resolution: accounts, aliases, catch-all, plus-addressing, loops, IDNA, case."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.directory import Directory, DirectoryError, RecipientStatus, verify_password
from mailstead.directory.service import _LookupCache
from mailstead.store import AddressRecords, open_sqlite


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def directory_factory(tmp_path):
    """Yields an async context that builds a Directory over a fresh store."""

    counter = iter(range(1000))

    class _Ctx:
        def __init__(self, **options):
            self.options = options

        async def __aenter__(self) -> Directory:
            self.store = open_sqlite(tmp_path / f"mail{next(counter)}.db")
            await self.store.open()
            directory = Directory(self.store, **self.options)
            await directory.add_domain("Example.ORG")
            await directory.add_account("alice@example.org", "pw-alice")
            await directory.add_account("Bob@example.org", "pw-bob")
            return directory

        async def __aexit__(self, *exc):
            await self.store.close()

    return _Ctx


def addresses(resolution):
    return sorted(a.address for a in resolution.accounts)


def test_accounts_are_found_case_insensitively(directory_factory):
    async def body():
        async with directory_factory() as d:
            for address in ("alice@example.org", "ALICE@EXAMPLE.ORG", "bob@Example.Org"):
                r = await d.resolve(address)
                assert r.status is RecipientStatus.LOCAL, address
            assert addresses(await d.resolve("BOB@example.org")) == ["Bob@example.org"]
            assert (await d.resolve("carol@example.org")).status is RecipientStatus.UNKNOWN
            assert (await d.resolve("alice@example.net")).status is RecipientStatus.NOT_LOCAL
            assert (await d.resolve("alice@[127.0.0.1]")).status is RecipientStatus.NOT_LOCAL

    run(body())


def test_plus_addressing_and_custom_delimiters(directory_factory):
    async def body():
        async with directory_factory() as d:
            assert addresses(await d.resolve("alice+lists@example.org")) == ["alice@example.org"]
            assert (await d.resolve("alice-lists@example.org")).status is RecipientStatus.UNKNOWN
            assert (await d.resolve("+x@example.org")).status is RecipientStatus.UNKNOWN
        async with directory_factory(recipient_delimiter="+-") as d:
            assert addresses(await d.resolve("alice-lists@example.org")) == ["alice@example.org"]
        async with directory_factory(recipient_delimiter="") as d:
            assert (await d.resolve("alice+x@example.org")).status is RecipientStatus.UNKNOWN

    run(body())


def test_aliases_chains_catch_all_and_loops(directory_factory):
    async def body():
        async with directory_factory(max_alias_depth=3) as d:
            await d.add_alias("postmaster@example.org", "alice@example.org")
            await d.add_alias("team@example.org", "alice@example.org")
            await d.add_alias("team@example.org", "bob@example.org")
            await d.add_alias("all@example.org", "team@example.org")
            assert addresses(await d.resolve("postmaster@example.org")) == ["alice@example.org"]
            assert addresses(await d.resolve("all@example.org")) == [
                "Bob@example.org",
                "alice@example.org",
            ]
            # the plus-address of an alias expands the alias
            assert addresses(await d.resolve("team+x@example.org")) == [
                "Bob@example.org",
                "alice@example.org",
            ]
            # a loop with no account in it is refused
            await d.add_alias("ping@example.org", "pong@example.org")
            await d.add_alias("pong@example.org", "ping@example.org")
            assert (await d.resolve("ping@example.org")).status is RecipientStatus.LOOP
            # too deep
            for a, b in (("l1", "l2"), ("l2", "l3"), ("l3", "l4"), ("l4", "l5")):
                await d.add_alias(f"{a}@example.org", f"{b}@example.org")
            await d.add_alias("l5@example.org", "alice@example.org")
            assert (await d.resolve("l1@example.org")).status is RecipientStatus.LOOP
            # catch-all catches only unknown names
            assert (await d.resolve("nobody@example.org")).status is RecipientStatus.UNKNOWN
            await d.add_alias("@example.org", "bob@example.org")
            assert addresses(await d.resolve("nobody@example.org")) == ["Bob@example.org"]
            assert addresses(await d.resolve("alice@example.org")) == ["alice@example.org"]
            # remote targets are kept for forwarding
            await d.add_alias("fwd@example.org", "someone@elsewhere.test")
            r = await d.resolve("fwd@example.org")
            assert r.status is RecipientStatus.LOCAL and r.remote == ("someone@elsewhere.test",)
            # an alias cannot shadow an account, nor live in a foreign domain
            with pytest.raises(DirectoryError):
                await d.add_alias("alice@example.org", "bob@example.org")
            with pytest.raises(DirectoryError):
                await d.add_alias("x@example.net", "bob@example.org")

    run(body())


def test_alias_to_self_delivers_to_the_account(directory_factory):
    async def body():
        async with directory_factory() as d:
            await d.add_alias("shared@example.org", "alice@example.org")
            await d.add_alias("shared@example.org", "shared@example.org")
            r = await d.resolve("shared@example.org")
            assert addresses(r) == ["alice@example.org"]

    run(body())


def test_disabled_accounts_receive_nothing(directory_factory):
    async def body():
        async with directory_factory() as d:
            await d.set_enabled("alice@example.org", False)
            assert (await d.resolve("alice@example.org")).status is RecipientStatus.DISABLED
            assert await d.authenticate("alice@example.org", "pw-alice") is None
            await d.set_enabled("alice@example.org", True)
            assert await d.authenticate("alice@example.org", "pw-alice") is not None

    run(body())


def test_idna_and_unicode_addresses(directory_factory):
    async def body():
        async with directory_factory() as d:
            await d.add_domain("xn--bcher-kva.example")
            await d.add_account("jürgen@bücher.example", "pw")
            for address in (
                "jürgen@bücher.example",
                "JÜRGEN@BÜCHER.example",
                "jürgen@xn--bcher-kva.example",
            ):
                assert addresses(await d.resolve(address)) == ["jürgen@bücher.example"], address
            assert [x.name for x in await d.list_domains()] == ["bücher.example", "example.org"]

    run(body())


def test_passwords_are_argon2id_and_verified(directory_factory):
    async def body():
        async with directory_factory() as d:
            account = await d.get_account("alice@example.org")
            assert account is not None and account.password_hash.startswith("$argon2id$")
            assert verify_password(account.password_hash, "pw-alice")
            assert await d.authenticate("alice@example.org", "wrong") is None
            await d.set_password("alice@example.org", "new")
            assert await d.authenticate("ALICE@example.org", "new") is not None

    run(body())


def test_postmaster_without_domain(directory_factory):
    async def body():
        async with directory_factory(postmaster_domain="example.org") as d:
            await d.add_alias("postmaster@example.org", "alice@example.org")
            assert addresses(await d.resolve("Postmaster")) == ["alice@example.org"]

    run(body())


def test_lookup_cache_is_invalidated_by_changes_and_bounded(directory_factory):
    async def body():
        async with directory_factory(cache_ttl=60) as d:
            assert (await d.resolve("dora@example.org")).status is RecipientStatus.UNKNOWN
            await d.add_account("dora@example.org", "pw")  # through the same directory
            assert addresses(await d.resolve("dora@example.org")) == ["dora@example.org"]
            await d.set_enabled("dora@example.org", False)
            assert (await d.resolve("dora@example.org")).status is RecipientStatus.DISABLED
            # another process's change (the CLI) is not seen until the entry expires
            await d.store.update_account((await d.get_account("dora@example.org")).id, enabled=True)
            assert (await d.resolve("dora@example.org")).status is RecipientStatus.DISABLED
            d._cache.ttl = 0  # expiry, without waiting for it
            d._cache.clear()
            assert (await d.resolve("dora@example.org")).status is RecipientStatus.LOCAL
        cache = _LookupCache(ttl=60, size=3)
        for n in range(5):
            cache.put(("d", (str(n),)), AddressRecords(True, {}, {}))
        assert [cache.get(("d", (str(n),))) is not None for n in range(5)] == [
            False, False, True, True, True,
        ]  # fmt: skip

    run(body())
