"""ENVELOPE, BODYSTRUCTURE, BODY[section], BINARY and SEARCH answers of a running Mailstead,
compared byte for byte with Dovecot 2.3's answers for the same mailboxes (issue 3).

Mailstead gets the exact APPENDs, FETCHes (one item per ``UID FETCH``) and SEARCHes that
Dovecot got when imap_differential/record.py and the component recorders
(tests/message/dovecot_golden.py, tests/imap/sections_golden.py) ran; see
imap_differential/diff_session.py. Dovecot's answers are read from the goldens, so the test
needs no Dovecot.

Every difference must be explained by a rule of KNOWN_FETCH / KNOWN_APPEND or an entry of
KNOWN_SEARCH. The rules are exact (they name our answer, not just the item), a rule or entry
that explains nothing fails the run, so a fix or a new difference shows up. Rules marked
"BUG" are reported server problems, the others deliberate choices (docs/protocols/imap.md).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "imap_differential"))

from diff_corpus import MIME, crlf
from diff_session import plan, recorded, run, search_key, without_timing
from diff_wire import Client

from mailstead.testing.server import Account, populate, start_server, write_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not MIME.is_dir(), reason=f"MIME corpus not found at {MIME}"),
]

PLAN = plan() if MIME.is_dir() else {}
RAW = {(mailbox, name): raw for mailbox, msgs in PLAN.items() for name, raw, _ in msgs}


@dataclass(frozen=True)
class Diff:
    mailbox: str
    name: str
    item: str
    ours: str
    theirs: str
    raw: bytes
    dovecot: dict[str, str]  # all of Dovecot's answers for this message


def _literal_size(answer: str | None) -> int | None:
    m = re.match(r"\S+ ~?\{(\d+)\}\r\n", answer or "")
    return int(m.group(1)) if m else None


def _binary_size(d: Diff) -> bool:
    """RFC 3516: BINARY.SIZE is the size of the BINARY answer, or fails as BINARY does.
    Dovecot computes it over the whole message (any bad part fails it) with arithmetic
    that drifts for nested parts (sections.py)."""
    if not d.item.startswith("BINARY.SIZE["):
        return False
    peek = d.dovecot.get("BINARY.PEEK[" + d.item[len("BINARY.SIZE[") :])
    size = _literal_size(peek)
    if size is not None:
        return d.ours == f"{d.item} {size}"
    if peek == "DISCONNECT":
        return d.ours == "NO [PARSE] Invalid data in MIME part"
    return peek is not None and d.ours == without_timing(peek)


def _bare_lf_size(d: Diff) -> bool:
    virtual = crlf(d.raw)
    virtual = virtual[:-1] if virtual.endswith(b"\r") else virtual
    return (
        d.item == "RFC822.SIZE"
        and d.ours == f"RFC822.SIZE {len(d.raw)}"
        and d.theirs == f"RFC822.SIZE {len(virtual)}"
    )


def _numbers(s: str) -> str:
    return re.sub(r"\d+", "N", s)


# rule name -> (reason, predicate on one differing item)
KNOWN_FETCH: dict[str, tuple[str, Callable[[Diff], bool]]] = {
    "binary-text-section": (
        "RFC 3516 section-binary is part numbers only; Dovecot also takes BINARY[TEXT]",
        lambda d: (
            d.item == "BINARY.PEEK[TEXT]"
            and d.ours == "BAD Expected ']' after binary section at 'TEXT])'"
        ),
    ),
    "part-zero": (
        "RFC 9051 section-part is nz-number; Dovecot answers BODY[0] as the first part",
        lambda d: d.item == "BODY.PEEK[0]" and d.ours == "BAD Section part must not be 0",
    ),
    "partial-without-length": (
        "RFC 9051 partial is <origin.length>; Dovecot also takes <origin>",
        lambda d: (
            re.search(r"<\d+>\Z", d.item) is not None
            and d.ours == "BAD Expected '.' in partial at '>)'"
        ),
    ),
    "partial-zero-length": (
        "RFC 9051 partial length is nz-number64; Dovecot answers <0.0> with {0}",
        lambda d: d.item.endswith(".0>") and d.ours == "BAD Partial length must not be 0",
    ),
    "binary-size": ("deliberate, sections.py: " + (_binary_size.__doc__ or ""), _binary_size),
    "no-instead-of-disconnect": (
        "a part that cannot be decoded gets NO [PARSE]; Dovecot drops the connection",
        lambda d: d.theirs == "DISCONNECT" and d.ours == "NO [PARSE] Invalid data in MIME part",
    ),
    "rfc822-size-bare-lf": (
        "BUG: RFC822.SIZE of a message APPENDed with bare LF is its stored length, not the "
        "length of BODY[] (which sends CRLF); Dovecot counts CRLF. LARGER/SMALLER likewise",
        _bare_lf_size,
    ),
    "trailing-lone-cr": (
        "a message APPENDed ending in a lone CR keeps it; Dovecot's save drops it",
        lambda d: (
            d.raw.endswith(b"\r")
            and _numbers(d.ours.rstrip("\r")) == _numbers(d.theirs)
            and d.item in ("BODY", "BODYSTRUCTURE", "RFC822.TEXT", "RFC822.SIZE")
        ),
    ),
}

KNOWN_APPEND: dict[str, tuple[str, Callable[[bytes, str], bool]]] = {
    "nul-in-literal": (
        "RFC 9051 literal is CHAR8 (no NUL): refused, a literal8 is accepted; Dovecot takes it",
        lambda raw, ours: (
            b"\0" in raw and ours == "BAD APPEND: NUL in literal (use literal8 with BINARY)"
        ),
    ),
}

# SEARCH command -> (reason, messages only we find, messages only Dovecot finds)
KNOWN_SEARCH: dict[str, tuple[str, set[int], set[int]]] = {}

# SEARCH command -> (reason, our whole answer) where the answer is not a SEARCH list
KNOWN_SEARCH_ANSWERS: dict[str, tuple[str, str]] = {
    'SEARCH CHARSET ISO-8859-1 BODY "a"': (
        "only US-ASCII and UTF-8 search charsets (BADCHARSET, RFC 9051 §6.4.4); Dovecot "
        "converts any charset iconv knows",
        "NO [BADCHARSET]",
    ),
}


@pytest.fixture(scope="module")
def transcript(tmp_path_factory) -> Iterator[dict]:
    config = write_config(tmp_path_factory.mktemp("differential"))
    populate(config, ["example.test"], [Account("u1@example.test", "pass")])
    server = start_server(config)

    def connect() -> Client:
        client = Client(server.imap_address)
        client.login("u1@example.test", "pass")
        return client

    try:
        yield run(connect, PLAN)
    finally:
        server.stop()


DOVECOT = recorded()


def test_goldens_hold_every_item():
    assert DOVECOT["append"] == {}
    missing = [
        (mailbox, name, item)
        for mailbox, messages in PLAN.items()
        for name, _, items in messages
        for item in items
        if item not in DOVECOT["fetch"][mailbox].get(name, {})
    ]
    assert not missing, f"run imap_differential/record.py: {missing[:5]}"
    assert set(DOVECOT["search"]) == {search_key(c) for c in _searches()}


def _searches() -> list:
    from diff_corpus import SEARCHES

    return SEARCHES


def fetch_differences(transcript: dict, mailbox: str, name: str) -> list[Diff]:
    dovecot = DOVECOT["fetch"][mailbox][name]
    ours = transcript["fetch"][mailbox][name]
    out = []
    for item, theirs in dovecot.items():
        got = ours.get(item, "<not fetched>")
        if without_timing(got) != without_timing(theirs):
            out.append(Diff(mailbox, name, item, got, theirs, RAW[mailbox, name], dovecot))
    return out


def explain(d: Diff) -> str | None:
    rules = [rule for rule, (_, matches) in KNOWN_FETCH.items() if matches(d)]
    return rules[0] if rules else None


@pytest.mark.parametrize(
    ("mailbox", "name"), [(mb, name) for mb, msgs in PLAN.items() for name, _, _ in msgs]
)
def test_fetch_matches_dovecot(transcript, mailbox, name):
    unexplained = [
        f"{d.item}\n  ours:    {d.ours[:400]!r}\n  Dovecot: {d.theirs[:400]!r}"
        for d in fetch_differences(transcript, mailbox, name)
        if explain(d) is None
    ]
    assert not unexplained, "\n".join(unexplained)


def test_append_matches_dovecot(transcript):
    unexplained = {}
    for key, refusal in transcript["append"].items():
        mailbox, name = key.split(" ", 1)
        if not any(ok(RAW[mailbox, name], refusal) for _, ok in KNOWN_APPEND.values()):
            unexplained[key] = refusal
    assert not unexplained


def _numbers_of(answer: str) -> set[int]:
    line = answer.split("\n")[0]
    return {int(n) for n in line.split()[2:]} if line.startswith("* SEARCH") else set()


@pytest.mark.parametrize("command", sorted(search_key(c) for c in _searches()))
def test_search_matches_dovecot(transcript, command):
    ours, theirs = transcript["search"][command], DOVECOT["search"][command]
    report = f"\n  ours:    {ours}\n  Dovecot: {theirs}"
    if command in KNOWN_SEARCH_ANSWERS:
        reason, expected = KNOWN_SEARCH_ANSWERS[command]
        assert ours != theirs, "matches Dovecot now: remove it from KNOWN_SEARCH_ANSWERS"
        assert ours == expected, reason + report
    elif command in KNOWN_SEARCH:
        reason, only_ours, only_theirs = KNOWN_SEARCH[command]
        assert ours != theirs, f"matches Dovecot now: remove it from KNOWN_SEARCH ({reason})"
        a, b = _numbers_of(ours), _numbers_of(theirs)
        assert (a - b, b - a) == (only_ours, only_theirs), reason + report
    else:
        assert ours == theirs, report


def test_every_known_difference_still_occurs(transcript):
    used = set()
    for mailbox, messages in PLAN.items():
        for name, _, _ in messages:
            used.update(explain(d) for d in fetch_differences(transcript, mailbox, name))
    for key, refusal in transcript["append"].items():
        mailbox, name = key.split(" ", 1)
        used.update(r for r, (_, ok) in KNOWN_APPEND.items() if ok(RAW[mailbox, name], refusal))
    stale = (set(KNOWN_FETCH) | set(KNOWN_APPEND)) - used
    assert not stale, f"these differences are gone: remove them from KNOWN_*: {sorted(stale)}"
