"""BODY[section], BINARY and BINARY.SIZE against answers recorded from Dovecot 2.3.19.1
(sections_golden.py) for section_cases.py and the shared MIME corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mailstead.imap.sections import (
    BadEncoding,
    BinaryError,
    Partial,
    Section,
    binary_item,
    binary_size_item,
    body_item,
)
from mailstead.message import parse_message

from .section_cases import CASES, SHARED, crlf

GOLDEN: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "sections_golden.json").read_text()
)

_ITEM = re.compile(r"(BODY\.PEEK|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?\Z")
_FIELDS = re.compile(r'"([^"]*)"|([^ ()"]+)')


def parse_item(item: str) -> tuple[str, Section, Partial | None]:
    m = _ITEM.match(item)
    assert m, item
    verb, spec, origin, count = m.groups()
    fields: tuple[str, ...] = ()
    quoted: tuple[bool, ...] = ()
    if " (" in spec:
        spec, _, flist = spec.partition(" (")
        found = _FIELDS.findall(flist.rstrip(")"))
        fields = tuple(a or b for a, b in found)
        quoted = tuple(not b for a, b in found)
    nums: list[int] = []
    rest = spec
    while rest[:1].isdigit():
        num, _, rest = rest.partition(".")
        nums.append(int(num))
    kind = rest.upper()
    partial = (
        None if origin is None else Partial(int(origin), None if count is None else int(count))
    )
    return verb, Section(tuple(nums), kind, fields, quoted), partial  # type: ignore[arg-type]


def ours(raw: bytes, item: str) -> str:
    parsed = parse_message(raw)
    verb, section, partial = parse_item(item)
    try:
        if verb == "BODY.PEEK":
            out = body_item(raw, parsed, section, partial)
        elif verb == "BINARY.PEEK":
            out = binary_item(raw, parsed, section, partial)
        else:
            out = binary_size_item(raw, parsed, section)
    except BinaryError as e:
        return f"NO [{e.code}] {e.text}" + (
            " (or DISCONNECT)" if isinstance(e, BadEncoding) else ""
        )
    return out.decode("latin-1")


_LITERAL = re.compile(r"\S+ ~?\{(\d+)\}\r\n")


def expected_answer(expected: dict[str, str], item: str) -> str:
    """Dovecot's answer, with two of its artefacts replaced by what RFC 3516 asks:
    BINARY.SIZE is the size of the BINARY answer (Dovecot computes it over the whole
    message, so it fails on any bad part and its arithmetic drifts for nested parts), and
    timings are cut from NO answers."""
    want = expected[item]
    if item.startswith("BINARY.SIZE["):
        peek = expected.get("BINARY.PEEK[" + item[len("BINARY.SIZE[") :])
        if peek is not None:
            m = _LITERAL.match(peek)
            if m:
                return f"{item} {m.group(1)}"
            want = peek
    if want.startswith("NO "):
        want = re.sub(r" \(\d+\.\d+ \+ \d+\.\d+ secs\)\.$", "", want)
    return want


def matches(got: str, want: str) -> bool:
    if got.endswith(" (or DISCONNECT)"):
        return want in (got[: -len(" (or DISCONNECT)")], "DISCONNECT")
    return got == want


def store_form(raw: bytes) -> bytes:
    raw = crlf(raw)
    return raw[:-1] if raw.endswith(b"\r") else raw


def _corpus() -> dict[str, Path]:
    base = SHARED / "mime"
    if not base.is_dir():
        return {}
    return {f"corpus:{p.relative_to(base).as_posix()}": p for p in sorted(base.rglob("*.eml"))}


def _check(name: str, raw: bytes) -> None:
    raw = store_form(raw)
    expected = GOLDEN[name]
    bad = {}
    for item, want in expected.items():
        got = ours(raw, item)
        want = expected_answer(expected, item)
        if not matches(got, want):
            bad[item] = (got[:300], want[:300])
    assert not bad, bad


@pytest.mark.parametrize("name", sorted(k for k in CASES if store_form(CASES[k])))
def test_cases_match_dovecot(name):
    _check(f"case:{name}", CASES[name])


@pytest.mark.parametrize("name", sorted(_corpus()))
def test_corpus_matches_dovecot(name):
    _check(name, _corpus()[name].read_bytes())


def test_corpus_present_and_recorded():
    corpus = _corpus()
    if not corpus:
        pytest.skip("../shared/testdata/mime not found next to the repository")
    assert {k for k in GOLDEN if k.startswith("corpus:")} == set(corpus)
