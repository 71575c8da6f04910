"""The directory: who lives here. Domains, accounts, aliases, catch-alls and plus-addressing.

Addresses are normalised once, here: the domain to its lower-case Unicode form (IDNA A-labels are
decoded), the local part to a case-folded lookup key (the local part as first written is kept for
display). Resolution follows Postfix's virtual alias semantics: an alias wins over an account of
the same name, expansion is recursive (bounded), a loop back to an address already expanded ends
that branch there, ``user+tag`` falls back to ``user``, and the catch-all (``@domain``) is tried
last.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from mailstead.directory.credentials import (
    AuthResult,
    CredentialError,
    check_app_password_name,
    check_password,
    generate_app_password,
    hash_both,
    scram_credentials_of,
    scram_parameters,
)
from mailstead.message.addresses import (
    AddressError,
    normalize_domain,
    normalize_localpart,
    split_address,
)
from mailstead.sasl import scram
from mailstead.sasl.scram import ScramCredentials
from mailstead.store import (
    Account,
    AccountRole,
    AddressRecords,
    Alias,
    Domain,
    Store,
    StoreError,
    StoreErrorCode,
)
from mailstead.store.api import AppPassword, AuthRecords

CATCH_ALL_KEY = ""


P = ParamSpec("P")
R = TypeVar("R")


class RecipientStatus(enum.Enum):
    """The verdict for one RCPT TO address."""

    LOCAL = "local"  # deliver to ``accounts`` (and forward to ``remote``)
    UNKNOWN = "unknown"  # local domain, nobody by that name
    NOT_LOCAL = "not_local"  # not one of our domains: relaying is refused
    DISABLED = "disabled"  # the account exists but is disabled
    LOOP = "loop"  # alias expansion loops or is too deep
    INVALID = "invalid"  # not a usable address


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for one address goes."""

    status: RecipientStatus
    accounts: tuple[Account, ...] = ()
    remote: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NormalizedAddress:
    """An address split and normalised for lookups."""

    localpart: str  # as written (quotes removed)
    local_key: str  # case-folded lookup key ('' for a catch-all source)
    domain: str  # lower-case U-label

    @property
    def address(self) -> str:
        return f"{self.localpart}@{self.domain}"


class DirectoryError(Exception):
    """A user-facing directory failure (bad address, unknown domain...)."""


_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"$', re.S)


def normalize_address(address: str, *, allow_catch_all: bool = False) -> NormalizedAddress:
    """Split and normalise ``local@domain`` (or ``@domain`` when ``allow_catch_all``)."""
    address = address.strip()
    if allow_catch_all and address.startswith("@"):
        try:
            return NormalizedAddress("", CATCH_ALL_KEY, normalize_domain(address[1:]))
        except AddressError as exc:
            raise DirectoryError(f"bad domain in {address!r}: {exc}") from None
    try:
        local, domain = split_address(address)
        domain = normalize_domain(domain)
    except AddressError as exc:
        raise DirectoryError(f"bad address {address!r}: {exc}") from None
    quoted = _QUOTED.match(local)
    if quoted:
        local = re.sub(r"\\(.)", r"\1", quoted.group(1))
    if not local:
        raise DirectoryError(f"bad address {address!r}: empty local part")
    return NormalizedAddress(local, normalize_localpart(local), domain)


@dataclass(slots=True)
class _Expansion:
    accounts: dict[int, Account] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)
    disabled: bool = False


class _LoopError(Exception):
    pass


class _LookupCache:
    """Recent address lookups, for ``ttl`` seconds, at most ``size`` of them (oldest dropped).

    RCPT bursts ask for the same few addresses again and again; changes made by another process
    (the CLI) are seen within ``ttl``. Quota figures read from here are only a first check: the
    delivery itself checks the quota again inside its transaction.
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, AddressRecords]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, tuple[str, ...]]) -> AddressRecords | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: tuple[str, tuple[str, ...]], records: AddressRecords) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + self.ttl, records)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _invalidates_cache(
    method: Callable[Concatenate[Directory, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Directory, P], Coroutine[Any, Any, R]]:
    """Forget cached lookups once ``method`` has changed the directory."""

    async def wrapper(directory: Directory, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(directory, *args, **kwargs)
        finally:
            directory._cache.clear()

    return functools.update_wrapper(wrapper, method)


class Directory:
    """Directory operations over a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        recipient_delimiter: str = "+",
        max_alias_depth: int = 10,
        postmaster_domain: str | None = None,
        cache_ttl: float = 0.0,
    ) -> None:
        self.store = store
        self.recipient_delimiter = recipient_delimiter
        self.max_alias_depth = max_alias_depth
        self.postmaster_domain = postmaster_domain
        self._cache = _LookupCache(cache_ttl)

    def forget_lookups(self) -> None:
        """Drop cached lookups (e.g. after a delivery changed an account's quota usage)."""
        self._cache.clear()

    async def _lookup(self, domain: str, keys: list[str]) -> AddressRecords:
        cache_key = (domain, tuple(keys))
        records = self._cache.get(cache_key)
        if records is None:
            records = await self.store.lookup_addresses(domain, keys)
            self._cache.put(cache_key, records)
        return records

    # -- administration ----------------------------------------------------------------------
    @_invalidates_cache
    async def add_domain(self, name: str) -> Domain:
        return await self.store.add_domain(_domain(name))

    @_invalidates_cache
    async def remove_domain(self, name: str) -> None:
        await self.store.remove_domain(_domain(name))

    async def list_domains(self) -> list[Domain]:
        return await self.store.list_domains()

    @_invalidates_cache
    async def add_account(
        self,
        address: str,
        password: str,
        *,
        quota: int = 0,
        role: AccountRole = AccountRole.USER,
    ) -> Account:
        addr = normalize_address(address)
        if not password:
            raise DirectoryError("the password must not be empty")
        existing_alias = await self.store.get_alias_targets(addr.domain, addr.local_key)
        if existing_alias:
            raise DirectoryError(f"{addr.address} is already an alias")
        password_hash, secret = await asyncio.to_thread(
            hash_both, password, scram.new_salt(), scram.DEFAULT_ITERATIONS
        )
        return await self.store.add_account(
            addr.domain, addr.localpart, addr.local_key, password_hash,
            quota=quota, role=role, scram=secret,
        )  # fmt: skip

    async def get_account(self, address: str) -> Account | None:
        addr = normalize_address(address)
        return await self.store.get_account(addr.domain, addr.local_key)

    async def require_account(self, address: str) -> Account:
        account = await self.get_account(address)
        if account is None:
            raise DirectoryError(f"no account {address}")
        return account

    @_invalidates_cache
    async def remove_account(self, address: str) -> None:
        addr = normalize_address(address)
        await self.store.remove_account(addr.domain, addr.local_key)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        return await self.store.list_accounts(_domain(domain) if domain else None)

    @_invalidates_cache
    async def set_password(self, address: str, password: str) -> None:
        """Set the main password (argon2 hash and SCRAM secret). The account's SCRAM salt and
        iteration count are kept, so its app passwords' SCRAM secrets stay valid."""
        if not password:
            raise DirectoryError("the password must not be empty")
        records = await self._require_auth_records(address)
        salt, iterations = scram_parameters(records)
        password_hash, secret = await asyncio.to_thread(hash_both, password, salt, iterations)
        await self.store.update_account(
            records.account.id, password_hash=password_hash, scram=secret
        )

    @_invalidates_cache
    async def set_quota(self, address: str, quota: int) -> None:
        account = await self.require_account(address)
        await self.store.update_account(account.id, quota=quota)

    @_invalidates_cache
    async def set_enabled(self, address: str, enabled: bool) -> None:
        account = await self.require_account(address)
        await self.store.update_account(account.id, enabled=enabled)

    async def authenticate(self, address: str, password: str) -> Account | None:
        """The enabled account whose password (main or app password) this is, else None."""
        result = await self.authenticate_detailed(address, password)
        return result.account if result else None

    async def authenticate_detailed(self, address: str, password: str) -> AuthResult | None:
        """Like :meth:`authenticate`, also saying which password matched: ``"password"`` for
        the main one, ``"app-password:NAME"`` for an app password.

        Every failure costs about the same (one argon2 verification and one PBKDF2 derivation),
        whether the account exists or not, so timing does not tell who exists.
        """
        records = await self._auth_records(address)
        # argon2id is deliberately slow (tens of ms, 64 MiB): never on the event loop
        credential = await asyncio.to_thread(check_password, records, password)
        if records is None or credential is None:
            return None
        return AuthResult(records.account, credential)

    async def scram_credentials(self, address: str) -> ScramCredentials | None:
        """The SCRAM-SHA-256 salt, iteration count and keys (main password first, then every
        app password) of an enabled account; None if it does not exist, is disabled, or has no
        SCRAM secret yet (its password was set before they were stored)."""
        found = await self.scram_lookup(address)
        return found[1] if found else None

    async def scram_lookup(self, address: str) -> tuple[Account, ScramCredentials] | None:
        """:meth:`scram_credentials` with the account (for the SASL server's Success)."""
        records = await self._auth_records(address)
        if records is None:
            return None
        creds = scram_credentials_of(records)
        return (records.account, creds) if creds else None

    async def _require_auth_records(self, address: str) -> AuthRecords:
        addr = normalize_address(address)
        records = await self.store.get_auth_records(addr.domain, addr.local_key)
        if records is None:
            raise DirectoryError(f"no account {address}")
        return records

    async def _auth_records(self, address: str) -> AuthRecords | None:
        """The enabled account's authentication records, or None."""
        try:
            addr = normalize_address(address)
        except DirectoryError:
            return None
        records = await self.store.get_auth_records(addr.domain, addr.local_key)
        if records is None or not records.account.enabled:
            return None
        return records

    # -- app passwords -----------------------------------------------------------------------
    async def add_app_password(
        self, address: str, name: str, password: str | None = None
    ) -> tuple[AppPassword, str]:
        """A new app password ``name`` for the account: (its record, the password). The
        password is generated unless given; it is shown once and never stored in clear."""
        try:
            name = check_app_password_name(name)
        except CredentialError as exc:
            raise DirectoryError(str(exc)) from None
        if password is None:
            password = generate_app_password()
        elif not password:
            raise DirectoryError("the password must not be empty")
        records = await self._require_auth_records(address)
        salt, iterations = scram_parameters(records)
        password_hash, secret = await asyncio.to_thread(hash_both, password, salt, iterations)
        record = await self.store.add_app_password(records.account.id, name, password_hash, secret)
        return record, password

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        account = await self.require_account(address)
        return await self.store.list_app_passwords(account.id)

    async def remove_app_password(self, address: str, name: str) -> None:
        account = await self.require_account(address)
        await self.store.remove_app_password(account.id, name)

    @_invalidates_cache
    async def add_alias(self, source: str, target: str) -> Alias:
        src = normalize_address(source, allow_catch_all=True)
        if await self.store.get_domain(src.domain) is None:
            raise DirectoryError(f"{src.domain} is not a local domain (add it first)")
        if src.local_key != CATCH_ALL_KEY and await self.store.get_account(
            src.domain, src.local_key
        ):
            raise DirectoryError(f"{src.address} is an account; an alias cannot shadow it")
        dst = normalize_address(target)
        await self.store.add_alias(src.domain, src.local_key, src.localpart, dst.address)
        return Alias(f"{src.localpart}@{src.domain}", dst.address)

    @_invalidates_cache
    async def remove_alias(self, source: str, target: str | None = None) -> int:
        src = normalize_address(source, allow_catch_all=True)
        dst = normalize_address(target).address if target else None
        return await self.store.remove_alias(src.domain, src.local_key, dst)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return await self.store.list_aliases(_domain(domain) if domain else None)

    # -- recipient resolution ----------------------------------------------------------------
    async def is_local_domain(self, domain: str) -> bool:
        try:
            return await self.store.get_domain(normalize_domain(domain)) is not None
        except AddressError:
            return False

    async def resolve(self, address: str) -> Resolution:
        """Where mail to ``address`` goes (RCPT TO time)."""
        if address.lower() == "postmaster" and self.postmaster_domain:
            # RFC 5321 §4.5.1: "postmaster" without a domain must be accepted.
            address = f"postmaster@{self.postmaster_domain}"
        if "@" in address and address.rsplit("@", 1)[1].startswith("["):
            return Resolution(RecipientStatus.NOT_LOCAL, detail="address literal")
        try:
            addr = normalize_address(address)
        except DirectoryError as exc:
            return Resolution(RecipientStatus.INVALID, detail=str(exc))
        found = _Expansion()
        try:
            matched = await self._expand(addr.domain, addr.local_key, 0, set(), found, True)
        except _LoopError as exc:
            return Resolution(RecipientStatus.LOOP, detail=str(exc))
        if matched is None:
            return Resolution(RecipientStatus.NOT_LOCAL)
        if found.accounts or found.remote:
            return Resolution(
                RecipientStatus.LOCAL, tuple(found.accounts.values()), tuple(found.remote)
            )
        if found.disabled:
            return Resolution(RecipientStatus.DISABLED)
        if matched:  # an alias whose every branch looped back
            return Resolution(RecipientStatus.LOOP, detail="alias expands to nothing")
        return Resolution(RecipientStatus.UNKNOWN)

    async def _expand(
        self,
        domain: str,
        local_key: str,
        depth: int,
        seen: set[tuple[str, str]],
        found: _Expansion,
        top: bool,
    ) -> bool | None:
        """Add where ``local_key@domain`` goes to ``found``: False if nothing matched, None if
        the domain is not local. One store round trip per address."""
        if depth > self.max_alias_depth:
            raise _LoopError(f"alias expansion deeper than {self.max_alias_depth}")
        base = self._base_key(local_key)
        candidates = [local_key] if base is None else [local_key, base]
        keys = [*candidates, CATCH_ALL_KEY] if top else candidates
        records = await self._lookup(domain, keys)
        if not records.domain_exists:
            return None
        key = (domain, local_key)
        if key in seen:
            # Postfix: an alias that names itself (directly or not) delivers to the account
            # of that name if there is one, and otherwise that branch ends.
            account = records.accounts.get(local_key)
            if account is not None:
                self._add_account(found, account)
            return True
        seen.add(key)
        for candidate in candidates:
            targets = records.aliases.get(candidate)
            if targets:
                await self._expand_targets(targets, depth, seen, found)
                return True
            account = records.accounts.get(candidate)
            if account is not None:
                self._add_account(found, account)
                return True
        if top and CATCH_ALL_KEY in records.aliases:
            await self._expand_targets(records.aliases[CATCH_ALL_KEY], depth, seen, found)
            return True
        return False

    async def _expand_targets(
        self, targets: list[str], depth: int, seen: set[tuple[str, str]], found: _Expansion
    ) -> None:
        for target in targets:
            addr = normalize_address(target)
            local = await self._expand(addr.domain, addr.local_key, depth + 1, seen, found, False)
            if local is None and addr.address not in found.remote:
                found.remote.append(addr.address)

    @staticmethod
    def _add_account(found: _Expansion, account: Account) -> None:
        if account.enabled:
            found.accounts.setdefault(account.id, account)
        else:
            found.disabled = True

    def _base_key(self, local_key: str) -> str | None:
        """``alice+tag`` → ``alice`` (the first of any delimiter characters splits)."""
        if not self.recipient_delimiter:
            return None
        positions = [local_key.find(c) for c in self.recipient_delimiter if c in local_key]
        if not positions:
            return None
        cut = min(positions)
        return local_key[:cut] if cut > 0 else None


def _domain(name: str) -> str:
    try:
        return normalize_domain(name.strip())
    except AddressError as exc:
        raise DirectoryError(f"bad domain {name!r}: {exc}") from None


__all__ = [
    "CATCH_ALL_KEY",
    "AuthResult",
    "Directory",
    "DirectoryError",
    "NormalizedAddress",
    "RecipientStatus",
    "Resolution",
    "StoreError",
    "StoreErrorCode",
    "normalize_address",
]
