"""RFC 5256 §2.1 base subject, with Dovecot's treatment of the edge cases."""

import pytest

from mailstead.imap.subject import base_subject, base_subject_ex


@pytest.mark.parametrize(
    ("raw", "base", "refwd"),
    [
        (b"hello", "HELLO", False),
        (b"Re: hello", "HELLO", True),
        (b"RE:  re: Re:hello", "HELLO", True),
        (b"Fwd: x", "X", True),
        (b"fw: x", "X", True),
        (b"Re [blob]: x", "X", True),
        (b"[list] Re: x", "X", True),
        (b"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "B", True),
        (b"x (fwd)", "X", True),
        (b"[fwd: x]", "X", True),
        (b"[fwd: Re: [fwd: x]]", "X", True),
        (b"[only a blob]", "[ONLY A BLOB]", False),  # step 4: the blob stays if nothing follows
        (b"[a][b] c", "C", False),
        (b"Re: [a]", "[A]", True),
        (b"  spaced\t\tout  ", "SPACED OUT", False),
        (b"Re:", "", True),
        (b"", "", False),
        (b"Rex: not a reply", "REX: NOT A REPLY", False),
        (b"[unclosed Re: x", "[UNCLOSED RE: X", False),
        (b"=?utf-8?q?Re=3A_caf=C3=A9?=", "CAFE\u0301", True),
        (b"b (a)", "B (A)", False),
    ],
)
def test_base_subject(raw, base, refwd):
    assert base_subject_ex(raw) == (base, refwd)


def test_str_input_is_taken_as_decoded():
    assert base_subject("=?utf-8?q?x?=") == "=?UTF-8?Q?X?="
