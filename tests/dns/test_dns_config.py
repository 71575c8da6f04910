"""The [dns] section: nameservers as "address:port", timeout and attempts."""

from __future__ import annotations

import asyncio

import pytest

from mailstead.config import ConfigError, load_config
from mailstead.dns import Status, StubResolver

MINIMAL = '[server]\nhostname = "mail.example.test"\n'


def load(tmp_path, text):
    path = tmp_path / "mailstead.toml"
    path.write_text(MINIMAL + text, encoding="utf-8")
    return load_config(path)


def test_defaults_use_the_system_nameservers(tmp_path):
    dns = load(tmp_path, "").dns
    assert (dns.nameservers, dns.timeout, dns.attempts) == ((), 5.0, 2)


def test_values(tmp_path):
    dns = load(
        tmp_path,
        '[dns]\nnameservers = ["127.0.0.1:5353", "[::1]:5353", "192.0.2.53", "2001:DB8::53"]\n'
        'timeout = "1500ms"\nattempts = 3\n',
    ).dns
    assert dns.nameservers == ("127.0.0.1:5353", "[::1]:5353", "192.0.2.53:53", "[2001:db8::53]:53")
    assert (dns.timeout, dns.attempts) == (1.5, 3)
    resolver = StubResolver(dns.nameservers, timeout=dns.timeout, attempts=dns.attempts)
    assert resolver.nameservers == list(dns.nameservers)
    assert resolver.lifetime == pytest.approx(1.5 * 3 * 4)


def test_every_problem_is_reported(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            '[dns]\nnameservers = ["dns.example:53", 53, "127.0.0.1:0", "127.0.0.1", '
            '"127.0.0.1:53"]\ntimeout = "0s"\nattempts = 0\n',
        )
    problems = "\n".join(info.value.problems)
    assert "dns.nameservers[0]: 'dns.example:53' is not an IP address" in problems
    assert 'dns.nameservers[1]: expected an "address:port" string, got 53' in problems
    assert "dns.nameservers[2]: '127.0.0.1:0': port must be 1..65535" in problems
    assert "dns.nameservers[4]: '127.0.0.1:53' is listed twice" in problems
    assert "dns.timeout: must be more than zero" in problems
    assert "dns.attempts: must be at least 1" in problems


def test_empty_nameservers_read_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.test\nnameserver 127.0.0.53\nnameserver ::1\n")
    resolver = StubResolver((), timeout=1, attempts=2, resolv_conf=str(conf))
    assert resolver.nameservers == ["127.0.0.53:53", "[::1]:53"]
    assert resolver.lifetime == 4


def test_no_nameservers_anywhere_is_a_temporary_failure_of_every_lookup(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# nothing\n")
    resolver = StubResolver((), resolv_conf=str(conf))
    answer = asyncio.run(resolver.mx("example.test"))
    assert answer.status is Status.TEMPORARY
    assert answer.detail.startswith("no nameservers ([dns] nameservers is empty;")
