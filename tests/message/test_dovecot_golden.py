"""Our structure, rendered as Dovecot 2.3 renders it, against answers recorded from a real
Dovecot 2.3.19.1 (dovecot_golden.py) for cases.py and the shared MIME corpus."""

import json
from pathlib import Path

import pytest

from mailstead.imap import render
from mailstead.message import parse_message

from .cases import CASES, corpus_dir, corpus_files

GOLDEN = json.loads((Path(__file__).parent / "dovecot_golden.json").read_text())


def _dovecot_saved(raw: bytes) -> bytes:
    # Dovecot's save path drops a lone CR at the very end of a message (it writes LF
    # files and waits for an LF that never comes); the parser is not involved.
    return raw[:-1] if raw.endswith(b"\r") else raw


def _check(name: str, raw: bytes) -> None:
    expected = GOLDEN[name]
    m = parse_message(_dovecot_saved(raw))
    assert render.envelope(m) == expected["envelope"].encode("latin-1")
    got = render.bodystructure(m.root)
    assert got == expected["bodystructure"].encode("latin-1")


@pytest.mark.parametrize("name", sorted(CASES))
def test_cases_match_dovecot(name):
    _check(f"case:{name}", CASES[name])


def _corpus() -> list[Path]:
    base = corpus_dir()
    return [] if base is None else corpus_files(base)


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_corpus_matches_dovecot(path):
    base = corpus_dir()
    assert base is not None
    _check(f"corpus:{path.relative_to(base).as_posix()}", path.read_bytes())


def test_corpus_present_and_recorded():
    base = corpus_dir()
    if base is None:
        pytest.skip("../shared/testdata/mime not found next to the repository")
    files = corpus_files(base)
    assert len(files) > 50
    recorded = {k for k in GOLDEN if k.startswith("corpus:")}
    assert recorded == {f"corpus:{p.relative_to(base).as_posix()}" for p in files}
    assert {k for k in GOLDEN if k.startswith("case:")} == {f"case:{k}" for k in CASES}
