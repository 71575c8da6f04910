"""`mailstead init`, run as the real command."""

import os
import socket
import stat
import subprocess
import sys
import tomllib
import types

import pytest
from cryptography import x509

from mailstead.cli.main import main
from mailstead.config import ListenAddress, hostname_problem, load_config


def mailstead(*args, cwd=None, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "MAILSTEAD_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=60,
        check=False,
    )


DEV_LISTEN = {
    "smtp": ["127.0.0.1:10025"],
    "submission": ["127.0.0.1:10587"],
    "submissions": ["127.0.0.1:10465"],
    "imap": ["127.0.0.1:10143"],
    "imaps": ["127.0.0.1:10993"],
    "pop3": ["127.0.0.1:10110"],
    "pop3s": ["127.0.0.1:10995"],
    "managesieve": ["127.0.0.1:14190"],
    "http": ["127.0.0.1:8080"],
}


def test_init_dev(tmp_path):
    result = mailstead("init", "--dev", "--data", "./var", "--domain", "example.test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config_file = tmp_path / "var" / "mailstead.toml"
    document = tomllib.loads(config_file.read_text())
    assert document["listen"] == DEV_LISTEN
    assert document["server"] == {"hostname": "mail.example.test", "data_dir": "."}

    check = mailstead("config", "check", "--config", str(config_file))
    assert check.returncode == 0, check.stderr
    assert check.stdout == f"OK: {config_file}\n"

    cfg = load_config(config_file)
    assert cfg.server.data_dir == tmp_path / "var"
    assert cfg.listen.smtp == (ListenAddress("127.0.0.1", 10025),)
    assert cfg.tls.cert_file == tmp_path / "var" / "tls" / "cert.pem"
    assert stat.S_IMODE(cfg.tls.key_file.stat().st_mode) == 0o600
    assert "mailstead serve --config var/mailstead.toml" in result.stdout


def test_init_production_listens_on_standard_ports(tmp_path):
    data = tmp_path / "data"
    result = mailstead("init", "--data", str(data), "--hostname", "mx.example.org")
    assert result.returncode == 0, result.stderr
    cfg = load_config(data / "mailstead.toml")
    assert cfg.server.hostname == "mx.example.org"
    assert cfg.listen.smtp == (ListenAddress("0.0.0.0", 25), ListenAddress("::", 25))
    assert cfg.listen.imaps == (ListenAddress("0.0.0.0", 993), ListenAddress("::", 993))
    assert cfg.listen.managesieve == (ListenAddress("0.0.0.0", 4190), ListenAddress("::", 4190))
    assert cfg.listen.http == (ListenAddress("127.0.0.1", 8080),)
    assert cfg.log.format == "json"
    assert mailstead("config", "check", "--config", str(data / "mailstead.toml")).returncode == 0


def test_hostname_defaults_to_this_machine(tmp_path):
    fqdn = socket.getfqdn()
    if hostname_problem(fqdn):
        pytest.skip(f"this machine's name {fqdn!r} is not a valid host name")
    assert mailstead("init", "--data", str(tmp_path)).returncode == 0
    assert load_config(tmp_path / "mailstead.toml").server.hostname == fqdn


def test_refuses_to_overwrite_without_force(tmp_path):
    first = mailstead("init", "--dev", "--data", str(tmp_path), "--hostname", "a.test")
    assert first.returncode == 0, first.stderr
    cert = (tmp_path / "tls" / "cert.pem").read_bytes()

    again = mailstead("init", "--data", str(tmp_path), "--hostname", "b.test")
    assert again.returncode == 1
    assert "exists; pass --force" in again.stderr
    assert load_config(tmp_path / "mailstead.toml").server.hostname == "a.test"

    forced = mailstead("init", "--data", str(tmp_path), "--hostname", "b.test", "--force")
    assert forced.returncode == 0, forced.stderr
    assert load_config(tmp_path / "mailstead.toml").server.hostname == "b.test"
    # The existing certificate is kept.
    assert (tmp_path / "tls" / "cert.pem").read_bytes() == cert
    assert "Kept the existing certificate" in forced.stdout


def test_lone_key_is_not_replaced(tmp_path):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "key.pem").write_text("precious")
    result = mailstead("init", "--data", str(tmp_path), "--hostname", "a.test")
    assert result.returncode == 1
    assert "exists without its pair" in result.stderr
    assert (tmp_path / "tls" / "key.pem").read_text() == "precious"


@pytest.mark.parametrize(
    "args", [["--domain", "bad domain"], ["--hostname=-x.example"], ["--domain", "a..b"]]
)
def test_bad_names(tmp_path, args):
    result = mailstead("init", "--data", str(tmp_path), *args)
    assert result.returncode == 2
    assert "not a valid host name" in result.stderr
    assert not (tmp_path / "mailstead.toml").exists()


def test_domain_is_added_through_the_directory_commands(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("mailstead.cli.directory_cmd")
    fake.register = lambda subparsers: None
    fake.add_domain_from_config = lambda path, domain: calls.append((path, domain))
    monkeypatch.setitem(sys.modules, "mailstead.cli.directory_cmd", fake)

    status = main(["init", "--dev", "--data", str(tmp_path), "--domain", "Example.TEST"])
    assert status == 0
    assert calls == [(tmp_path / "mailstead.toml", "example.test")]
    assert "Added domain example.test" in capsys.readouterr().out


def test_output_into_a_closed_pipe_ends_quietly(tmp_path, monkeypatch, capsys):
    """`mailstead config show | head -1`: the reader went away; no traceback, exit 141."""
    data = tmp_path / "data"
    made = mailstead("init", "--dev", "--data", str(data), "--domain", "example.test")
    assert made.returncode == 0
    spare = (tmp_path / "stdout").open("w")

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return spare.fileno()

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    status = main(["config", "show", "--config", str(data / "mailstead.toml")])
    spare.close()
    assert status == 141
    assert "Traceback" not in capsys.readouterr().err


def test_init_under_umask_000_sets_every_mode(tmp_path):
    # umask 000 and a data directory someone already made world-writable: before, tls/ came out
    # 0777 (anyone could swap the key) and the 0777 data directory was kept.
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    nested = tmp_path / "new" / "deeper" / "data"
    for target in (data, nested):
        result = subprocess.run(
            [sys.executable, "-m", "mailstead.cli.main", "init", "--data", str(target),
             "--hostname", "mx.example.org"],
            capture_output=True, text=True, timeout=60, check=False,
            preexec_fn=lambda: os.umask(0),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

        def mode(path):
            return stat.S_IMODE(path.stat().st_mode)

        assert mode(target) == 0o700
        assert mode(target / "tls") == 0o700
        assert mode(target / "tls" / "key.pem") == 0o600
        assert mode(target / "tls" / "cert.pem") == 0o644
        assert mode(target / "mailstead.toml") == 0o640
    assert mode(tmp_path / "new") == 0o755
    assert mode(tmp_path / "new" / "deeper") == 0o755


def test_generated_certificate_is_valid_at_most_397_days(tmp_path):
    result = mailstead("init", "--data", str(tmp_path / "data"), "--hostname", "mx.example.org")
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "data" / "tls" / "cert.pem").read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.total_seconds() <= 397 * 86400
