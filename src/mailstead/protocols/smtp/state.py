"""The SMTP server state table: which command is legal in which state, and what it leads to.

One table (`TABLE`) drives the server core; handlers never re-check the order of commands. A command
refused here gets the reply the table names (RFC 5321 §4.1.4 and §4.3.2 list the legal sequences;
RFC 3030 §3 forbids DATA after BDAT in one transaction).

States follow the mail transaction, not the byte stream: while DATA or BDAT content is being read
the core is in content mode and does not consult this table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from . import replies
from .replies import Reply

__all__ = ["TABLE", "TRANSACTION_STATES", "Rule", "State", "check"]


class State(enum.Enum):
    GREETED = "greeted"  # no HELO/EHLO yet (also right after STARTTLS, RFC 3207 §4.2)
    READY = "ready"  # HELO/EHLO done, no transaction
    MAIL = "mail"  # MAIL FROM accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    BDAT = "bdat"  # at least one non-LAST BDAT chunk received
    CLOSED = "closed"  # QUIT, 421 or EOF: nothing more is read


TRANSACTION_STATES: Final = frozenset({State.MAIL, State.RCPT, State.BDAT})

_ALL_OPEN: Final = frozenset({State.GREETED, State.READY, State.MAIL, State.RCPT, State.BDAT})


@dataclass(frozen=True, slots=True)
class Rule:
    """Legal states of one command, the reply in each other state, and the extension it needs.

    ``extension`` names a ServerSettings flag that must be on (and EHLO used) for the command to
    exist; the server core picks the refusal otherwise.
    """

    allowed: frozenset[State]
    refused: Mapping[State, Reply] = field(default_factory=dict)
    extension: str | None = None
    default_refusal: Reply = replies.BAD_SEQUENCE


_IN_TRANSACTION_MAIL: Final = {s: replies.NESTED_MAIL for s in TRANSACTION_STATES}

TABLE: Final[Mapping[str, Rule]] = {
    # RFC 5321 §4.1.4: EHLO/HELO may be sent at any time and reset the transaction.
    "EHLO": Rule(_ALL_OPEN),
    "HELO": Rule(_ALL_OPEN),
    "MAIL": Rule(
        frozenset({State.READY}),
        {State.GREETED: replies.NEED_HELO, **_IN_TRANSACTION_MAIL},
    ),
    "RCPT": Rule(
        frozenset({State.MAIL, State.RCPT}),
        {
            State.GREETED: replies.NEED_HELO,
            State.READY: replies.NEED_MAIL,
            State.BDAT: replies.RCPT_AFTER_BDAT,
        },
    ),
    "DATA": Rule(
        frozenset({State.RCPT}),
        {
            State.GREETED: replies.NEED_HELO,
            State.READY: replies.NEED_MAIL,
            State.MAIL: replies.NO_VALID_RECIPIENTS,  # RFC 5321 §3.3
            State.BDAT: replies.DATA_AFTER_BDAT,  # RFC 3030 §3
        },
    ),
    "BDAT": Rule(
        frozenset({State.RCPT, State.BDAT}),
        {
            State.GREETED: replies.NEED_HELO,
            State.READY: replies.NEED_MAIL,
            State.MAIL: replies.NO_VALID_RECIPIENTS,
        },
        extension="chunking",
    ),
    "RSET": Rule(_ALL_OPEN),
    "NOOP": Rule(_ALL_OPEN),
    "QUIT": Rule(_ALL_OPEN),
    "VRFY": Rule(_ALL_OPEN),
    "EXPN": Rule(_ALL_OPEN),
    "HELP": Rule(_ALL_OPEN),
    # RFC 3207 §4: after EHLO, outside a mail transaction.
    "STARTTLS": Rule(
        frozenset({State.READY}),
        {State.GREETED: replies.NEED_EHLO},
        extension="starttls",
        default_refusal=replies.TRANSACTION_IN_PROGRESS,
    ),
}


def check(state: State, verb: str) -> Rule | Reply:
    """The rule for ``verb`` if it is legal in ``state``, else the reply refusing it.

    Unknown verbs get 500 5.5.2. The extension check is the caller's (it depends on settings).
    """
    rule = TABLE.get(verb)
    if rule is None:
        return replies.UNKNOWN_COMMAND
    if state in rule.allowed:
        return rule
    return rule.refused.get(state, rule.default_refusal)
