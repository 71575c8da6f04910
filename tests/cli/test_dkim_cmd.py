"""`mailstead dkim generate|list|record|activate|remove` through the real console script, on a
data directory made by `mailstead init`; the printed record verifies mail signed with the stored
key (dkimpy judges)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dkim as dkimpy
import dns.zone
import pytest

from mailstead.cli.dkim_cmd import default_selector, dkim_dns_records
from mailstead.config import load_config
from mailstead.mailauth.dkim import SigningKey, sign
from mailstead.store import open_sqlite


def mailstead_command() -> list[str]:
    script = Path(sys.executable).with_name("mailstead")
    if script.exists():
        return [str(script)]
    found = shutil.which("mailstead")
    return [found] if found else [sys.executable, "-m", "mailstead.cli.main"]


def make_cli(data: Path):
    """Runs `mailstead ARGS` against a data directory made by `mailstead init` (example.org)."""
    config = data / "mailstead.toml"

    def run(*args: str, check: bool = True, config_env: bool = True):
        env = {**os.environ, "MAILSTEAD_CONFIG": str(config)}
        if not config_env:
            env.pop("MAILSTEAD_CONFIG")
        result = subprocess.run(
            [*mailstead_command(), *args],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"mailstead {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    run("init", "--dev", "--data", str(data), "--domain", "example.org", config_env=False)
    run.config = config
    return run


@pytest.fixture
def cli(tmp_path):
    return make_cli(tmp_path / "data")


@pytest.fixture(scope="module")
def keyless_cli(tmp_path_factory):
    """One installation without keys, for the commands that change nothing (a CLI run costs
    about a second)."""
    return make_cli(tmp_path_factory.mktemp("keyless") / "data")


def parse_record(zone_text: str) -> tuple[str, str]:
    """(name, value) of the one TXT record in ``zone_text``, read by dnspython's zone parser."""
    zone = dns.zone.from_text(
        "$TTL 3600\n" + zone_text, origin="example.org.", relativize=False, check_origin=False
    )
    ((name, _ttl, rdata),) = list(zone.iterate_rdatas("TXT"))
    return name.to_text(), b"".join(rdata.strings).decode("ascii")


def stored_keys(config: Path, domain: str):
    async def read():
        store = open_sqlite(load_config(config).storage.path)
        await store.open()
        try:
            return await store.list_dkim_keys(domain)
        finally:
            await store.close()

    return asyncio.run(read())


def dkimpy_verify(signed: bytes, records: dict[str, str], index: int = 0) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode("ascii"), "").encode("ascii")

    try:
        return bool(dkimpy.DKIM(signed).verify(idx=index, dnsfunc=dnsfunc))
    except dkimpy.DKIMException:
        return False


def month_selectors() -> set[str]:
    # the month is read twice, before and after, so a test crossing midnight of the 1st passes
    return {f"ms{datetime.datetime.now(datetime.UTC):%Y%m}"}


def test_generate_prints_the_record_of_the_stored_key(cli):
    before = month_selectors()
    result = cli("dkim", "generate", "example.org")
    selector = result.stdout.split("._domainkey.", 1)[0]
    assert selector in before | month_selectors()
    name, value = parse_record(result.stdout)
    assert name == f"{selector}._domainkey.example.org."
    assert value.startswith("v=DKIM1; k=rsa; p=MIIB")
    # a zone file's strings: none longer than 255 octets, the key split over several
    strings = re.findall(r'"([^"]*)"', result.stdout)
    assert strings[0] == "v=DKIM1; k=rsa; " and len(strings) == 3
    assert all(len(s) <= 255 for s in strings)
    assert f"selector {selector}" in result.stderr and "now signs" in result.stderr

    # mail signed with the stored private key verifies against the printed record
    (key,) = stored_keys(cli.config, "example.org")
    assert (key.selector, key.algorithm, key.active) == (selector, "rsa", True)
    message = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nhello\r\n"
    signing_key = SigningKey.from_pem(key.selector, key.private_key)
    header = sign(message, "example.org", [signing_key], timestamp=int(time.time()))
    assert dkimpy_verify(header + message, {name: value})
    assert not dkimpy_verify(header + message.replace(b"hello", b"hullo"), {name: value})


@pytest.mark.slow
def test_ed25519_and_rotation(cli):
    rsa1 = cli("dkim", "generate", "example.org").stdout.split(".", 1)[0]
    ed = cli("dkim", "generate", "example.org", "--algorithm", "ed25519")
    ed_selector = ed.stdout.split(".", 1)[0]
    assert ed_selector == rsa1 + "e"
    _name, value = parse_record(ed.stdout)
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", value)

    rsa2 = cli("dkim", "generate", "example.org")  # same month: the default gets -2
    assert rsa2.stdout.startswith(f"{rsa1}-2._domainkey.example.org. IN TXT (")
    assert f"instead of {rsa1} (kept, inactive)" in rsa2.stderr

    listing = cli("dkim", "list", "example.org").stdout.splitlines()
    rows = [line.split("\t") for line in listing]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (rsa1, "rsa", "inactive"),
        (ed_selector, "ed25519", "active"),
        (f"{rsa1}-2", "rsa", "active"),
    ]
    records = [json.loads(line) for line in cli("dkim", "list", "--json").stdout.splitlines()]
    assert set(records[0]) == {
        "domain", "selector", "algorithm", "active", "created", "dns_name", "dns_value"
    }  # fmt: skip
    assert [(r["domain"], r["selector"], r["active"]) for r in records] == [
        ("example.org", rsa1, False),
        ("example.org", ed_selector, True),
        ("example.org", f"{rsa1}-2", True),
    ]
    assert records[1]["dns_value"] == value
    assert records[0]["created"].endswith("+00:00")
    assert "PRIVATE" not in json.dumps(records)

    # `record` prints what to publish now: the active keys, RSA first
    published = cli("dkim", "record", "example.org").stdout
    assert published.startswith(f"{rsa1}-2._domainkey.example.org. IN TXT (")
    assert f"\n{ed_selector}._domainkey.example.org. IN TXT (" in published
    one = cli("dkim", "record", "example.org", rsa1).stdout
    assert one.startswith(f"{rsa1}._domainkey.example.org. IN TXT (")

    # rollback to the older key, then remove the newer one
    cli("dkim", "activate", "example.org", rsa1.upper())
    active = {k.selector for k in stored_keys(cli.config, "example.org") if k.active}
    assert active == {rsa1, ed_selector}
    removed = cli("dkim", "remove", "example.org", f"{rsa1}-2")
    assert "removed" in removed.stderr
    removed = cli("dkim", "remove", "example.org", ed_selector)
    assert "no active ed25519 key" in removed.stderr
    assert [k.selector for k in stored_keys(cli.config, "example.org")] == [rsa1]


def test_chosen_selector_and_inactive_key(cli):
    cli("domain", "add", "example.net")
    result = cli("dkim", "generate", "example.net", "--selector", "Mail2025", "--inactive")
    assert result.stdout.startswith("mail2025._domainkey.example.net. IN TXT (")
    assert "mailstead dkim activate example.net mail2025" in result.stderr
    (key,) = stored_keys(cli.config, "example.net")
    assert not key.active
    none = cli("dkim", "record", "example.net", check=False)
    assert none.returncode == 1 and "no active DKIM key" in none.stderr
    cli("dkim", "activate", "example.net", "mail2025")
    (key,) = stored_keys(cli.config, "example.net")
    assert key.active

    taken = cli("dkim", "generate", "example.net", "--selector", "MAIL2025", check=False)
    assert taken.returncode == 1 and taken.stdout == ""
    assert "already has a DKIM key 'mail2025'" in taken.stderr
    assert len(stored_keys(cli.config, "example.net")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("generate", "example.com"), "example.com is not one of this server's domains"),
        (("generate", "bad..domain"), "bad domain"),
        (("generate", "example.org", "--selector", "a_b"), "bad selector"),
        (("list", "example.com"), "example.com is not one of this server's domains"),
        (("record", "example.org"), "example.org has no active DKIM key"),
        (("record", "example.org", "nope"), "example.org has no DKIM key 'nope'"),
        (("activate", "example.org", "nope"), "example.org has no DKIM key 'nope'"),
        (("remove", "example.org", "nope"), "example.org has no DKIM key 'nope'"),
    ],
)
def test_refusals_exit_1_with_a_message(keyless_cli, args, message):
    result = keyless_cli("dkim", *args, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("mailstead: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_config_option_and_bad_algorithm(keyless_cli):
    cli = keyless_cli
    result = cli("dkim", "list", "--config", str(cli.config), config_env=False)
    assert result.returncode == 0 and result.stdout == ""
    bad = cli("dkim", "generate", "example.org", "--algorithm", "dsa", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_dns_records_of_the_active_keys(cli):
    """What `mailstead dns records` prints for DKIM: (selector, name, value) per active key."""
    rsa = parse_record(cli("dkim", "generate", "example.org", "--selector", "r").stdout)
    ed = cli("dkim", "generate", "example.org", "--selector", "e", "--algorithm", "ed25519")
    cli("dkim", "generate", "example.org", "--selector", "later", "--inactive")

    async def read():
        store = open_sqlite(load_config(cli.config).storage.path)
        await store.open()
        try:
            return await dkim_dns_records(store, "example.org")
        finally:
            await store.close()

    records = asyncio.run(read())
    assert [(r.selector, r.name, r.value) for r in records] == [
        ("r", *rsa),
        ("e", *parse_record(ed.stdout)),
    ]


def test_default_selector():
    now = datetime.datetime(2025, 1, 31, tzinfo=datetime.UTC)
    assert default_selector("rsa", now, set()) == "ms202501"
    assert default_selector("ed25519", now, {"ms202501"}) == "ms202501e"
    assert default_selector("rsa", now, {"ms202501", "ms202501-2"}) == "ms202501-3"
