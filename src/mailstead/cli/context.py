"""Opening the configured store and directory for one CLI command."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from mailstead.cli.common import CommandError, config_path
from mailstead.config import Config, ConfigError, load_config
from mailstead.directory import Directory, DirectoryError
from mailstead.servers.app import make_directory, open_store
from mailstead.store import Store, StoreError

T = TypeVar("T")


@dataclass(slots=True)
class Services:
    config: Config
    store: Store
    directory: Directory


def load(args: argparse.Namespace) -> Config:
    path = config_path(args)
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError("invalid configuration:\n  " + "\n  ".join(exc.problems)) from None


@asynccontextmanager
async def services(config: Config) -> AsyncIterator[Services]:
    store = open_store(config)
    await store.open()
    try:
        yield Services(config, store, make_directory(config, store))
    finally:
        await store.close()


def run_command(
    args: argparse.Namespace, body: Callable[[Services], Awaitable[int]]
) -> int:
    """Load the config, open the store, run ``body``; user errors become messages."""
    config = load(args)

    async def main() -> int:
        async with services(config) as svc:
            return await body(svc)

    try:
        return asyncio.run(main())
    except (DirectoryError, StoreError) as exc:
        raise CommandError(str(exc)) from None
