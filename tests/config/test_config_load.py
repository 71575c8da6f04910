"""load_config: whole files in, a typed snapshot or every problem out."""

import dataclasses
from pathlib import Path

import pytest

from mailstead.config import Config, ConfigError, ListenAddress, load_config


def write(tmp_path: Path, text: str, name: str = "mailstead.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


MINIMAL = '[server]\nhostname = "mail.example.test"\n'


def test_minimal_file_gets_defaults(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.path == tmp_path / "mailstead.toml"
    assert cfg.base_dir == tmp_path
    assert cfg.server.hostname == "mail.example.test"
    assert cfg.server.data_dir == tmp_path
    assert cfg.server.user == ""
    assert cfg.listen.smtp == ()
    assert cfg.tls.cert_file == tmp_path / "tls" / "cert.pem"
    assert cfg.tls.key_file == tmp_path / "tls" / "key.pem"
    assert cfg.tls.min_version == "TLSv1.2"
    assert cfg.smtp.max_message_size == 50 * 1024 * 1024
    assert cfg.smtp.max_recipients == 100
    assert cfg.smtp.max_line_length == 32768
    assert cfg.smtp.max_commands == 10000
    assert cfg.smtp.max_errors == 20
    assert cfg.smtp.idle_timeout == 300.0
    assert cfg.smtp.data_timeout == 600.0
    assert cfg.smtp.max_connections == 1000
    assert cfg.smtp.max_connections_per_ip == 20
    assert cfg.smtp.banner == "ESMTP Mailstead"
    assert cfg.smtp.require_tls is False
    assert cfg.delivery.recipient_delimiter == "+"
    assert cfg.delivery.max_alias_depth == 10
    assert cfg.storage.backend == "sqlite"
    assert cfg.storage.path == tmp_path / "mailstead.db"
    assert cfg.storage.compression_level == 3
    assert cfg.storage.group_commit_max_batch == 512
    assert cfg.storage.group_commit_max_delay == 0.0
    assert cfg.log.level == "info"
    assert cfg.log.format == "json"
    assert cfg.log.file is None


def test_values_are_converted(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[listen]
smtp = ["0.0.0.0:25", "[::]:25"]
http = ["localhost:8080"]

[smtp]
max_message_size = "10M"
idle_timeout = 60
data_timeout = "30s"
require_tls = true

[delivery]
recipient_delimiter = "+-"

[storage]
group_commit_max_delay = "2ms"

[log]
level = "debug"
format = "text"
file = "log/mailstead.log"
""",
        )
    )
    assert cfg.listen.smtp == (ListenAddress("0.0.0.0", 25), ListenAddress("::", 25))
    assert cfg.listen.http == (ListenAddress("localhost", 8080),)
    assert cfg.smtp.max_message_size == 10 * 1024 * 1024
    assert cfg.smtp.idle_timeout == 60.0
    assert cfg.smtp.data_timeout == 30.0
    assert cfg.smtp.require_tls is True
    assert cfg.delivery.recipient_delimiter == "+-"
    assert cfg.storage.group_commit_max_delay == pytest.approx(0.002)
    assert cfg.log.file == tmp_path / "log" / "mailstead.log"


def test_relative_paths(tmp_path):
    # data_dir is relative to the file's directory; the other paths to data_dir.
    (tmp_path / "etc").mkdir()
    path = write(
        tmp_path / "etc",
        MINIMAL
        + """data_dir = "../var"
[tls]
cert_file = "certs/fullchain.pem"
key_file = "/etc/ssl/private/mail.key"
[storage]
path = "db/mail.db"
""",
    )
    cfg = load_config(path)
    assert cfg.base_dir == tmp_path / "etc"
    assert cfg.server.data_dir == tmp_path / "var"
    assert cfg.tls.cert_file == tmp_path / "var" / "certs" / "fullchain.pem"
    assert cfg.tls.key_file == Path("/etc/ssl/private/mail.key")
    assert cfg.storage.path == tmp_path / "var" / "db" / "mail.db"


def test_relative_config_path_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("mailstead.toml"))
    assert cfg.path == tmp_path / "mailstead.toml"
    assert cfg.server.data_dir == tmp_path


def test_wrong_type(tmp_path):
    assert problems(tmp_path, MINIMAL + "[smtp]\nmax_recipients = 'abc'\n") == [
        "smtp.max_recipients: expected an integer, got 'abc'"
    ]


def test_bool_is_not_an_int(tmp_path):
    assert problems(tmp_path, MINIMAL + "[smtp]\nmax_recipients = true\n") == [
        "smtp.max_recipients: expected an integer, got true"
    ]


def test_int_is_not_a_bool(tmp_path):
    assert problems(tmp_path, MINIMAL + "[smtp]\nrequire_tls = 1\n") == [
        "smtp.require_tls: expected true or false, got 1"
    ]


def test_unknown_key_suggests_the_near_one(tmp_path):
    assert problems(tmp_path, MINIMAL + "[smtp]\nmaxrecipients = 10\n") == [
        "smtp.maxrecipients: unknown key (did you mean 'max_recipients'?)"
    ]


def test_unknown_section(tmp_path):
    assert problems(tmp_path, MINIMAL + "[smpt]\nbanner = 'x'\n[zzz]\n") == [
        "smpt: unknown section (did you mean 'smtp'?)",
        "zzz: unknown section",
    ]


def test_section_must_be_a_table(tmp_path):
    assert problems(tmp_path, MINIMAL + "smtp = 5\n") == [
        # A top-level key after [server] belongs to [server].
        "server.smtp: unknown key"
    ]
    assert problems(tmp_path, 'smtp = 5\n[server]\nhostname = "h"\n') == [
        "smtp: expected a table ([smtp]), got 5"
    ]


def test_bad_listen_address(tmp_path):
    assert problems(tmp_path, MINIMAL + '[listen]\nsmtp = ["0.0.0.0"]\n') == [
        "listen.smtp[0]: '0.0.0.0' is not host:port (IPv6 as [::1]:25)"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[smtp]\nmax_line_length = 998\n", "smtp.max_line_length: must be at least 1000, got 998"),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients: must be at least 1, got 0"),
        (
            "[storage]\ncompression_level = 23\n",
            "storage.compression_level: must be at most 22, got 23",
        ),
        (
            "[storage]\nbackend = 'postgres'\n",
            "storage.backend: must be one of 'sqlite', got 'postgres'",
        ),
        (
            "[tls]\nmin_version = 'TLSv1.1'\n",
            "tls.min_version: must be one of 'TLSv1.2', 'TLSv1.3', got 'TLSv1.1'",
        ),
        (
            "[log]\nlevel = 'verbose'\n",
            "log.level: must be one of 'debug', 'info', 'warning', 'error', got 'verbose'",
        ),
        ("[smtp]\nidle_timeout = '0s'\n", "smtp.idle_timeout: must be more than zero"),
        ("[tls]\ncert_file = ''\n", "tls.cert_file: must not be empty"),
        (
            '[smtp]\nbanner = "x\\r\\n250 ok"\n',
            "smtp.banner: must not contain control characters",
        ),
        ("user = 'bad user'\n", "server.user: 'bad user' is not a user name"),
    ],
)
def test_bad_values(tmp_path, text, problem):
    assert problems(tmp_path, MINIMAL + text) == [problem]


def test_hostname_is_required(tmp_path):
    assert problems(tmp_path, "") == [
        'server.hostname: required: the name this server announces, e.g. "mail.example.com"'
    ]
    [problem] = problems(tmp_path, '[server]\nhostname = ""\n')
    assert problem.startswith("server.hostname: required")


def test_every_problem_is_reported_at_once(tmp_path):
    text = """
[server]
hostname = "bad host"
[smtp]
max_recipients = "abc"
max_errors = true
maxrecipients = 1
[listen]
smtp = ["0.0.0.0", "[::]:70000"]
[nope]
"""
    assert problems(tmp_path, text) == [
        "nope: unknown section",
        "server.hostname: 'bad host' is not a valid host name",
        "listen.smtp[0]: '0.0.0.0' is not host:port (IPv6 as [::1]:25)",
        "listen.smtp[1]: '[::]:70000': port must be 0..65535",
        "smtp.max_recipients: expected an integer, got 'abc'",
        "smtp.max_errors: expected an integer, got true",
        "smtp.maxrecipients: unknown key (did you mean 'max_recipients'?)",
    ]


def test_toml_syntax_error(tmp_path):
    [problem] = problems(tmp_path, "[server\n")
    assert problem.startswith(f"{tmp_path / 'mailstead.toml'}: invalid TOML: ")
    assert "line 1" in problem


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    absent = tmp_path / "absent.toml"
    assert info.value.problems == [f"{absent}: cannot read: No such file or directory"]


def test_not_utf8(tmp_path):
    path = tmp_path / "mailstead.toml"
    path.write_bytes(b'[server]\nhostname = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not UTF-8" in info.value.problems[0]


def test_error_message_lists_every_problem(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[a]\n[b]\n"))
    assert str(info.value).splitlines() == info.value.problems


def test_snapshot_is_immutable_and_reload_is_a_new_load(tmp_path):
    path = write(tmp_path, MINIMAL)
    old = load_config(path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.smtp.max_recipients = 5  # type: ignore[misc]
    path.write_text(MINIMAL + "[smtp]\nmax_recipients = 5\n")
    new = load_config(path)
    assert (old.smtp.max_recipients, new.smtp.max_recipients) == (100, 5)
    # An invalid file raises; the caller keeps `new`.
    path.write_text(MINIMAL + "[smtp]\nmax_recipients = -5\n")
    with pytest.raises(ConfigError):
        load_config(path)
    assert new.smtp.max_recipients == 5
    # Snapshots compare and hash by value.
    assert load_config(write(tmp_path, MINIMAL + "[smtp]\nmax_recipients = 5\n")) == new
    assert hash(new) == hash(dataclasses.replace(new))


def test_every_field_is_documented():
    for sec in dataclasses.fields(Config):
        if not sec.metadata.get("section"):
            continue
        assert sec.metadata["doc"]
        for f in dataclasses.fields(sec.default_factory()):  # type: ignore[misc]
            assert f.metadata["doc"].strip(), f"{sec.name}.{f.name} has no doc"
