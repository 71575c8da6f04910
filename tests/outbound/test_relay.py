"""Relays: which relay a domain gets, its TLS policy, whose credentials, and the [queue] keys."""

from __future__ import annotations

import logging

import pytest

from mailstead.config import ConfigError, load_config
from mailstead.outbound.relay import Relays, RelayTls, load_relays
from mailstead.outbound.routing import Smarthost, parse_smarthost
from mailstead.outbound.sender import SmtpAuth, TlsMode
from mailstead.testing.server import write_config

GLOBAL = parse_smarthost("[smtp.example.net]:587")
INTERNAL = parse_smarthost("[10.0.0.5]:25")
AUTH = SmtpAuth("u", "p")


def relays(**kw) -> Relays:
    kw.setdefault("default", GLOBAL)
    kw.setdefault("domains", {"example.org": INTERNAL, ".corp.example": INTERNAL})
    return Relays(**kw)


def test_domain_table_wins_then_subdomains_then_the_global_relay():
    r = relays()
    assert r.for_domain("example.org") == INTERNAL
    assert r.for_domain("Example.ORG.") == INTERNAL
    assert r.for_domain("sub.example.org") == GLOBAL  # "example.org" is that domain only
    assert r.for_domain("a.b.corp.example") == INTERNAL
    assert r.for_domain("corp.example") == GLOBAL  # ".corp.example" is the domains below it
    assert r.for_domain("elsewhere.test") == GLOBAL
    assert Relays(domains={"example.org": INTERNAL}).for_domain("elsewhere.test") is None


def test_credentials_go_to_the_global_relay_only():
    r = relays(auth=AUTH, domains={"a.test": INTERNAL, "b.test": Smarthost(GLOBAL.host, 587)})
    assert r.auth_for(GLOBAL) is AUTH
    assert r.auth_for(r.for_domain("b.test")) is AUTH  # the same host and port
    assert r.auth_for(INTERNAL) is None


def test_auto_tls_is_required_with_credentials():
    r = relays(auth=AUTH)
    required = r.tls_policy(GLOBAL, "smtp.example.net")
    assert (required.mode, required.hostname, required.implicit) == (
        TlsMode.REQUIRED, "smtp.example.net", False)  # fmt: skip
    assert r.tls_policy(INTERNAL, "10.0.0.5").mode is TlsMode.OPPORTUNISTIC
    implicit = relays(tls=RelayTls.IMPLICIT).tls_policy(GLOBAL, "smtp.example.net")
    assert implicit.implicit and implicit.mode is TlsMode.REQUIRED
    assert relays(tls=RelayTls.NONE, auth=AUTH).tls_policy(GLOBAL, "x").mode is TlsMode.NONE


def config_with(tmp_path, text: str):
    path = write_config(tmp_path / "conf")
    body = path.read_text("utf-8").replace("[queue]\n", "[queue]\n" + text + "\n", 1)
    path.write_text(body, "utf-8")
    return load_config(path)


def test_load_relays_reads_the_password_file_and_warns_when_others_may_read_it(tmp_path, caplog):
    secret = tmp_path / "conf" / "relay.pw"
    secret.parent.mkdir(parents=True)
    secret.write_text("s3cret\nignored\n")
    secret.chmod(0o644)
    config = config_with(
        tmp_path,
        'relay_host = "[smtp.example.net]:587"\nrelay_username = "me@example.org"\n'
        'relay_password_file = "relay.pw"\n'
        'relay_domains = { "example.org" = "[10.0.0.5]:25", ".corp.example" = "corp.example" }',
    )
    with caplog.at_level(logging.WARNING):
        loaded = load_relays(config)
    assert loaded.auth == SmtpAuth("me@example.org", "s3cret")
    assert "s3cret" not in repr(loaded)
    assert loaded.domains == {
        "example.org": INTERNAL,
        ".corp.example": Smarthost("corp.example", 25, mx=True),
    }
    assert any("relay.password_file_readable" in r.getMessage() for r in caplog.records)
    secret.chmod(0o600)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_relays(config)
    assert not caplog.records


def test_load_relays_refuses_what_cannot_work(tmp_path):
    missing = config_with(
        tmp_path,
        'relay_host = "[smtp.example.net]:587"\nrelay_username = "me"\n'
        'relay_password_file = "nowhere"',
    )
    with pytest.raises(ConfigError, match="cannot read"):
        load_relays(missing)


@pytest.mark.parametrize(
    "line",
    [
        'relay_host = "smtp.example.net:99999"',
        'relay_host = "[a..b]:25"',
        'relay_domains = { "example.org" = "::1:25" }',
        'relay_domains = { "bad..domain" = "[10.0.0.5]" }',
        'relay_domains = ["example.org"]',
        'relay_tls = "sometimes"',
    ],
)
def test_relay_keys_are_checked_when_the_file_is_loaded(tmp_path, line):
    with pytest.raises(ConfigError, match=r"queue\.relay_"):
        config_with(tmp_path, line)
