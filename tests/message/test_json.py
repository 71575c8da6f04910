import json

import pytest

from mailstead.imap import render
from mailstead.message import from_json, parse_message, to_json

from .cases import CASES, corpus_dir, corpus_files


def _without_fields(m):
    """ParsedMessage equality minus the header fields (not serialised, by design)."""
    m.fields = []
    for p in m.root.walk():
        if p.message is not None:
            p.message.fields = []
    return m


def _messages():
    out = [(f"case:{k}", v) for k, v in sorted(CASES.items())]
    base = corpus_dir()
    if base is not None:
        out += [(f"corpus:{p.name}", p.read_bytes()) for p in corpus_files(base)]
    return out


@pytest.mark.parametrize(("name", "raw"), _messages(), ids=[n for n, _ in _messages()])
def test_round_trip_exact(name, raw):
    m = parse_message(raw)
    data = to_json(m)
    back = from_json(data)
    assert back.fields == []
    assert back == _without_fields(parse_message(raw))
    assert to_json(back) == data
    assert render.envelope(back) == render.envelope(m)
    assert render.bodystructure(back.root) == render.bodystructure(m.root)


def test_round_trip_keeps_8bit_and_nul_octets():
    raw = b'Subject: caf\xe9 \xff\r\nFrom: "\xfe" <\xfd@x>\r\n\r\n'
    m = from_json(to_json(parse_message(raw)))
    assert m.envelope.subject == b"caf\xe9 \xff"
    (a,) = m.envelope.from_
    assert a.name_raw == b"\xfe" and a.local.encode("utf-8", "surrogateescape") == b"\xfd"
    assert to_json(m).isascii()


def test_format_is_compact():
    raw = CASES["multipart-basic"]
    data = to_json(parse_message(raw))
    assert len(data) < 300, data
    doc = json.loads(data)
    assert doc[0] == 1


def test_rejects_unknown_format():
    with pytest.raises(ValueError, match="version"):
        from_json(b"[99,0,0,[],[]]")
