"""The SMTP command grammar (command line, MAIL, RCPT, HELO, AUTH, BDAT, xtext).

Input: one octet choosing the parser and what MAIL/RCPT offer, then its argument. Properties:
only `GrammarError` on bad input, and its reply is a 5xx; a parsed path holds no CR, LF or NUL
and parses back to itself when the client writes it (the client checks paths with the same
parser); xtext round-trips (tests/protocols/smtp/test_xtext_utf8.py).
"""

from __future__ import annotations

from fuzz.harness import instrument, run

with instrument(__name__ == "__main__"):
    from mailstead.protocols.smtp import grammar
    from mailstead.protocols.smtp.grammar import GrammarError

MAIL_KEYS = ("SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH")
RCPT_KEYS = ("NOTIFY", "ORCPT")
_FORBIDDEN = set("\r\n\0")  # "<" and ">" are legal inside a quoted local part


def check(data: bytes) -> None:
    if not data:
        return
    which, offered = data[0] % 8, data[0] >> 3
    arg = data[1:]
    text = arg.decode("utf-8", "surrogateescape")
    try:
        if which == 0:
            cmd = grammar.parse_command_line(arg)
            assert cmd.verb == cmd.verb.upper() and cmd.verb.isascii()
        elif which == 1:
            keys = [k for i, k in enumerate(MAIL_KEYS) if offered >> i & 1 or offered == 31]
            path, _ = grammar.parse_mail_from(text, keys)
            assert not _FORBIDDEN & set(path), path
            again, _ = grammar.parse_mail_from(f"FROM:<{path}>", ())
            assert again == path, (again, path)
        elif which == 2:
            keys = list(RCPT_KEYS) if offered & 1 else []
            path, _ = grammar.parse_rcpt_to(text, keys)
            assert not _FORBIDDEN & set(path), path
            again, _ = grammar.parse_rcpt_to(f"TO:<{path}>", ())
            assert again == path, (again, path)
        elif which == 3:
            domain = grammar.parse_helo(text)
            assert not _FORBIDDEN & set(domain)
        elif which == 4:
            mechanism, _ = grammar.parse_auth(text)
            assert mechanism == mechanism.upper()
        elif which == 5:
            size, _ = grammar.parse_bdat(text)
            assert size >= 0
        elif which == 6:
            try:
                decoded = grammar.xtext_decode(text)
            except ValueError:  # documented: malformed xtext
                return
            assert grammar.xtext_decode(grammar.xtext_encode(decoded)) == decoded
        else:  # what the queue encodes is text (decoded xtext or an address), never surrogates
            text = arg.decode("utf-8", "replace")
            encoded = grammar.xtext_encode(text)
            assert encoded.isascii()
            assert grammar.xtext_decode(encoded) == text  # test_xtext_utf8.py
    except GrammarError as e:
        assert 500 <= e.reply.code < 600, e.reply


if __name__ == "__main__":
    run(check)
