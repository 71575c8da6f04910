"""`mailstead queue list|show|retry|hold|release|delete` through the console script, on a data
directory made by `mailstead init`, with messages put in the queue through the store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailstead.config import load_config
from mailstead.store import (
    QueueRecipientRequest,
    QueueRequest,
    QueueState,
    QueueUpdate,
    open_sqlite,
)

MESSAGE = b"From: alice@example.org\r\nSubject: queued\r\n\r\nbody text\r\n"


def mailstead_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstead")
    if script.exists():
        return [str(script)]
    found = shutil.which("mailstead")
    return [found] if found else [sys.executable, "-m", "mailstead.cli.main"]


@pytest.fixture
def cli(tmp_path):
    data = tmp_path / "data"
    config = data / "mailstead.toml"

    def run(*args: str, check: bool = True):
        env = {**os.environ, "MAILSTEAD_CONFIG": str(config)}
        result = subprocess.run(
            [*mailstead_command(), *args],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"mailstead {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    run("init", "--dev", "--data", str(data), "--domain", "example.org")
    run.config = config
    return run


def store_call(config: Path, body):
    async def main():
        store = open_sqlite(load_config(config).storage.path)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def fill(config: Path) -> None:
    async def body(store):
        await store.enqueue(
            QueueRequest("Q1", MESSAGE, "alice@example.org",
                         [QueueRecipientRequest("bob@remote.test"),
                          QueueRecipientRequest("carol@other.test", ("SUCCESS",),
                                                ("rfc822", "c@x.test"))],
                         queued_at=1_700_000_000.0, envid="E1", ret="HDRS",
                         origin="submission")
        )  # fmt: skip
        await store.enqueue(
            QueueRequest("Q2", MESSAGE, "", [QueueRecipientRequest("dave@remote.test")],
                         queued_at=1_700_000_100.0, origin="dsn")
        )  # fmt: skip
        item = await store.get_queue_item("Q1")
        bob = item.recipients[0]
        await store.record_queue_results([
            QueueUpdate(bob.id, QueueState.DEFERRED, 2, 4_000_000_000.0,
                        last_attempt=1_700_000_060.0, last_error="451 4.3.0 Try later",
                        status="4.3.0", remote_mta="mx.remote.test")
        ])  # fmt: skip

    store_call(config, body)


def test_list_and_show(cli):
    fill(cli.config)
    out = cli("queue", "list")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Q1  2023-11-14T22:13:20+00:00")
    assert lines[0].endswith("alice@example.org")
    assert "deferred  bob@remote.test (attempt 2, next in" in out.stdout
    assert "451 4.3.0 Try later" in out.stdout
    assert "pending   carol@other.test" in out.stdout
    assert any(line.startswith("Q2 ") and line.endswith("<>") for line in lines)
    assert "2 message(s), 3 recipient(s)" in out.stderr

    listed = [json.loads(line) for line in cli("queue", "list", "--json").stdout.splitlines()]
    assert [m["id"] for m in listed] == ["Q1", "Q2"]
    q1 = listed[0]
    assert (q1["mail_from"], q1["origin"], q1["held"], q1["envid"], q1["ret"]) == (
        "alice@example.org", "submission", False, "E1", "HDRS"
    )  # fmt: skip
    bob, carol = q1["recipients"]
    assert bob == {
        "address": "bob@remote.test", "state": "deferred", "attempts": 2,
        "next_attempt": "2096-10-02T07:06:40+00:00", "last_attempt": "2023-11-14T22:14:20+00:00",
        "last_reply": "451 4.3.0 Try later", "status": "4.3.0", "remote_mta": "mx.remote.test",
        "notify": None, "orcpt": None, "report_owed": None,
    }  # fmt: skip
    assert (carol["notify"], carol["orcpt"]) == (["SUCCESS"], "rfc822;c@x.test")

    shown = json.loads(cli("queue", "show", "Q1", "--json").stdout)
    assert shown["id"] == "Q1" and shown["header"].startswith("From: alice@example.org\r\n")
    assert "body text" not in shown["header"]
    text = cli("queue", "show", "Q1").stdout
    assert "id:        Q1" in text and "from:      <alice@example.org>" in text
    assert "Subject: queued" in text and "body text" not in text


def test_hold_release_retry_delete(cli):
    fill(cli.config)
    assert "Q1 held" in cli("queue", "hold", "Q1").stderr
    assert json.loads(cli("queue", "show", "Q1", "--json").stdout)["held"] is True
    assert " HELD" in cli("queue", "list").stdout
    cli("queue", "release", "Q1")
    assert json.loads(cli("queue", "show", "Q1", "--json").stdout)["held"] is False

    assert "1 recipient(s) due now" in cli("queue", "retry", "Q1").stderr  # bob was deferred

    async def due(store):
        return [r.address for i in await store.due_queue_items(1_800_000_000.0)
                for r in i.recipients]  # fmt: skip

    assert sorted(store_call(cli.config, due)) == [
        "bob@remote.test", "carol@other.test", "dave@remote.test"
    ]  # fmt: skip
    assert "0 recipient(s) due now" in cli("queue", "retry", "--all").stderr
    assert "Q2 deleted" in cli("queue", "delete", "Q2").stderr
    assert [json.loads(x)["id"] for x in cli("queue", "list", "--json").stdout.splitlines()] == [
        "Q1"
    ]


def test_errors(cli):
    for args in (("show", "nope"), ("hold", "nope"), ("release", "nope"), ("delete", "nope"),
                 ("retry", "nope")):  # fmt: skip
        result = cli("queue", *args, check=False)
        assert result.returncode == 1, args
        assert "no queued message nope" in result.stderr
    result = cli("queue", "retry", check=False)
    assert result.returncode == 2 and "give a queue id or --all" in result.stderr
    assert cli("queue", "retry", "Q1", "--all", check=False).returncode == 2
    assert cli("queue", check=False).returncode == 2
    empty = cli("queue", "list")
    assert empty.stdout == "" and "0 message(s), 0 recipient(s)" in empty.stderr
