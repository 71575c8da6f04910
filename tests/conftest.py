"""Shared fixtures: a real `mailstead serve` process with a populated directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.testing.server import (
    Account,
    RunningServer,
    populate,
    start_server,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

DOMAINS = ["example.org", "xn--bcher-kva.example"]
ACCOUNTS = [
    Account("alice@example.org", "alice-pw"),
    Account("bob@example.org", "bob-pw"),
    Account("carol@example.org", "carol-pw"),
    Account("jürgen@bücher.example", "j-pw"),
]


class ServerFactory:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[RunningServer] = []

    def __call__(
        self,
        overrides: dict[str, dict[str, object]] | None = None,
        *,
        accounts: list[Account] | None = None,
        aliases: list[tuple[str, str]] = (),
        name: str = "server",
    ) -> RunningServer:
        data_dir = self.tmp_path / name
        config = write_config(data_dir, overrides=overrides)
        populate(config, DOMAINS, ACCOUNTS if accounts is None else accounts, aliases)
        server = start_server(config)
        self.servers.append(server)
        return server

    def restart(self, server: RunningServer) -> RunningServer:
        fresh = start_server(server.config_path)
        self.servers.append(fresh)
        return fresh

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def mail_server(tmp_path):
    """Call it to start a server: ``mail_server({"smtp": {"max_recipients": 3}})``."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close()
