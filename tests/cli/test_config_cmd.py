"""`mailstead config check` and `mailstead config show`, run as the real command."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailstead.config import load_config, render_config_file
from mailstead.security.tls import generate_self_signed


def mailstead(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "MAILSTEAD_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailstead.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


MINIMAL = '[server]\nhostname = "mail.example.test"\n'


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "mailstead.toml"
    path.write_text(MINIMAL)
    return path


def test_check_ok_with_config_after_the_subcommand(config_file):
    result = mailstead("config", "check", "--config", str(config_file))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"OK: {config_file}\n", "")


def test_check_ok_with_config_before_the_subcommand(config_file):
    result = mailstead("--config", str(config_file), "config", "check")
    assert (result.returncode, result.stdout) == (0, f"OK: {config_file}\n")


def test_check_ok_with_environment(config_file):
    result = mailstead("config", "check", env={"MAILSTEAD_CONFIG": str(config_file)})
    assert (result.returncode, result.stdout) == (0, f"OK: {config_file}\n")


def test_option_wins_over_environment(config_file, tmp_path):
    result = mailstead(
        "config",
        "check",
        "--config",
        str(config_file),
        env={"MAILSTEAD_CONFIG": str(tmp_path / "absent.toml")},
    )
    assert result.returncode == 0, result.stderr


def test_no_config_given():
    result = mailstead("config", "check")
    assert result.returncode == 2
    assert "--config FILE or set MAILSTEAD_CONFIG" in result.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[smtp]\nmaxrecipients = 5\n", "smtp.maxrecipients: unknown key"),
        ("[smtp]\nmax_recipients = 'abc'\n", "smtp.max_recipients: expected an integer, got 'abc'"),
        ("[smtp]\nmax_recipients = true\n", "smtp.max_recipients: expected an integer, got true"),
        ("[smtp]\nmax_line_length = 500\n", "smtp.max_line_length: must be at least 1000, got 500"),
        ("[listen]\nsmtp = ['0.0.0.0']\n", "listen.smtp[0]: '0.0.0.0' is not host:port"),
        ("[smpt]\n", "smpt: unknown section"),
    ],
)
@pytest.mark.parametrize("via_env", [False, True])
def test_check_reports_the_key(tmp_path, text, problem, via_env):
    path = tmp_path / "mailstead.toml"
    path.write_text(MINIMAL + text)
    if via_env:
        result = mailstead("config", "check", env={"MAILSTEAD_CONFIG": str(path)})
    else:
        result = mailstead("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(problem)
    assert result.stderr.splitlines()[-1] == f"mailstead: {path}: 1 problem"


def test_check_reports_every_problem_on_its_own_line(tmp_path):
    path = tmp_path / "mailstead.toml"
    path.write_text(MINIMAL + "[smtp]\nmax_recipients = 'abc'\nbanner = 5\n[log]\nlevel = 'loud'\n")
    result = mailstead("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "smtp.max_recipients: expected an integer, got 'abc'",
        "smtp.banner: expected a string, got 5",
        "log.level: must be one of 'debug', 'info', 'warning', 'error', got 'loud'",
        f"mailstead: {path}: 3 problems",
    ]


def test_check_missing_file(tmp_path):
    result = mailstead("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 1
    assert "cannot read: No such file or directory" in result.stderr


def test_check_warns_about_a_missing_certificate(tmp_path):
    # The server starts without TLS then; an unloadable certificate stops it, so that is an error.
    path = tmp_path / "mailstead.toml"
    path.write_text(render_config_file(dev=True, hostname="mail.example.test", data_dir="."))
    result = mailstead("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: tls.cert_file: ")
    assert "TLS (STARTTLS, imaps, ...) unavailable" in result.stderr

    cert, key = tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem"
    generate_self_signed("mail.example.test", cert, key)
    result = mailstead("config", "check", "--config", str(path))
    assert (result.returncode, result.stderr) == (0, "")

    key.write_text("not a key")
    result = mailstead("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("tls.cert_file: cannot load certificate")


def test_show_prints_every_effective_value(config_file, tmp_path):
    result = mailstead("config", "show", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert 'max_message_size = "50M"\n' in result.stdout
    assert f'data_dir = "{tmp_path}"\n' in result.stdout
    assert f'path = "{tmp_path / "mailstead.db"}"\n' in result.stdout
    copy = tmp_path / "shown.toml"
    copy.write_text(result.stdout)
    assert load_config(copy).smtp == load_config(config_file).smtp


def test_show_invalid_file(tmp_path):
    path = tmp_path / "mailstead.toml"
    path.write_text(MINIMAL + "[smtp]\nidle_timeout = 'forever'\n")
    result = mailstead("config", "show", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("smtp.idle_timeout: expected a duration")


def test_config_without_subcommand_prints_help():
    result = mailstead("config")
    assert result.returncode == 2
    assert "check" in result.stdout
    assert "show" in result.stdout
