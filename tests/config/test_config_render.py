"""Generated text: docs/configuration.md, the file `mailstead init` writes, `config show`."""

import re
import tomllib
from pathlib import Path

import pytest

from mailstead.config import (
    ListenAddress,
    load_config,
    render_config_file,
    render_docs,
    render_effective,
)
from mailstead.config._schema import schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_docs_are_up_to_date():
    assert DOCS.read_text(encoding="utf-8") == render_docs(), (
        "docs/configuration.md is out of date; regenerate it with:\n"
        "    python -m mailstead.config.docs > docs/configuration.md"
    )


def test_docs_cover_every_key():
    text = render_docs()
    for name, _doc, keys in schema():
        assert f"## `[{name}]`" in text
        for key, _f, info in keys:
            assert f"### `{name}.{key}`" in text
            assert info.doc in text


def test_docs_explain_units_and_paths():
    text = render_docs()
    assert '"50M" (50 × 1024 × 1024 bytes)' in text
    assert '"500ms", "30s", "5m"' in text
    assert "every other path is relative to server.data_dir" in text


DEV_PORTS = {
    "smtp": [ListenAddress("127.0.0.1", 10025)],
    "submission": [ListenAddress("127.0.0.1", 10587)],
    "submissions": [ListenAddress("127.0.0.1", 10465)],
    "imap": [ListenAddress("127.0.0.1", 10143)],
    "imaps": [ListenAddress("127.0.0.1", 10993)],
    "pop3": [ListenAddress("127.0.0.1", 10110)],
    "pop3s": [ListenAddress("127.0.0.1", 10995)],
    "managesieve": [ListenAddress("127.0.0.1", 14190)],
    "http": [ListenAddress("127.0.0.1", 8080)],
}
STANDARD = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "managesieve": 4190,
}
PROD_PORTS = {
    **{k: [ListenAddress("0.0.0.0", p), ListenAddress("::", p)] for k, p in STANDARD.items()},
    "http": [ListenAddress("127.0.0.1", 8080)],
}


@pytest.mark.parametrize(("dev", "ports"), [(True, DEV_PORTS), (False, PROD_PORTS)])
def test_generated_file_loads_with_the_expected_listeners(tmp_path, dev, ports):
    path = tmp_path / "mailstead.toml"
    path.write_text(render_config_file(dev=dev, hostname="mail.example.test", data_dir="."))
    cfg = load_config(path)
    assert cfg.server.hostname == "mail.example.test"
    assert cfg.server.data_dir == tmp_path
    assert {name: list(getattr(cfg.listen, name)) for name in ports} == ports
    assert cfg.log.format == ("text" if dev else "json")


def test_generated_file_documents_every_key():
    text = render_config_file(dev=False, hostname="mail.example.test", data_dir="/srv/mail")
    for name, _doc, keys in schema():
        assert f"\n[{name}]\n" in text
        for key, _f, _info in keys:
            assert f"\n{key} = " in text or f"\n# {key} = " in text, key
    # Defaults are commented out, so they follow the documented defaults of later versions.
    assert '\n# max_message_size = "50M"\n' in text
    assert '\ndata_dir = "/srv/mail"\n' in text


def test_generated_file_quotes_strings(tmp_path):
    text = render_config_file(dev=True, hostname="mail.example.test", data_dir='d "q" \\ x')
    assert tomllib.loads(text)["server"]["data_dir"] == 'd "q" \\ x'


def test_effective_configuration_loads_back_to_the_same_values(tmp_path):
    path = tmp_path / "mailstead.toml"
    path.write_text(render_config_file(dev=True, hostname="mail.example.test", data_dir="."))
    cfg = load_config(path)
    shown = render_effective(cfg)
    copy = tmp_path / "elsewhere" / "copy.toml"
    copy.parent.mkdir()
    copy.write_text(shown)
    again = load_config(copy)
    assert again.path != cfg.path
    for name, _doc, _keys in schema():
        assert getattr(again, name) == getattr(cfg, name)
    # Every key appears with its value, none commented out.
    assert not re.search(r"^# \w+ = ", shown, re.MULTILINE)
    assert '\nidle_timeout = "5m"\n' in shown
    assert f'\ncert_file = "{tmp_path / "tls" / "cert.pem"}"\n' in shown
