"""The SMTP server state table: which command is legal in which state, and what it leads to.

One table (`TABLE`) drives the server core; handlers never re-check the order of commands. A command
refused here gets the reply the table names (RFC 5321 §4.1.4 and §4.3.2 list the legal sequences;
RFC 3030 §3 forbids DATA after BDAT in one transaction).

States follow the mail transaction, not the byte stream: while DATA or BDAT content is being read
the core is in content mode and does not consult this table, nor while it reads the client's lines
of an AUTH exchange. Whether the client has authenticated (RFC 4954) is a second, independent
dimension: `check` takes it as an argument, and a rule says what it means for its command.
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
    exist; the server core picks the refusal otherwise. ``needs_auth``: refused with 530 5.7.0
    where the service requires authentication (submission) until AUTH succeeded.
    ``when_authenticated``: the refusal once the client has authenticated (AUTH itself).
    """

    allowed: frozenset[State]
    refused: Mapping[State, Reply] = field(default_factory=dict)
    extension: str | None = None
    default_refusal: Reply = replies.BAD_SEQUENCE
    needs_auth: bool = False
    when_authenticated: Reply | None = None


_IN_TRANSACTION_MAIL: Final = {s: replies.NESTED_MAIL for s in TRANSACTION_STATES}

TABLE: Final[Mapping[str, Rule]] = {
    # RFC 5321 §4.1.4: EHLO/HELO may be sent at any time and reset the transaction.
    "EHLO": Rule(_ALL_OPEN),
    "HELO": Rule(_ALL_OPEN),
    "MAIL": Rule(
        frozenset({State.READY}),
        {State.GREETED: replies.NEED_HELO, **_IN_TRANSACTION_MAIL},
        needs_auth=True,  # RFC 6409 §4.3 (submission): 530 5.7.0
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
    # RFC 4954 §4: after EHLO, not during a mail transaction, once per session (503 after a
    # successful AUTH).
    "AUTH": Rule(
        frozenset({State.READY}),
        {State.GREETED: replies.NEED_EHLO},
        extension="auth",
        default_refusal=replies.AUTH_IN_TRANSACTION,
        when_authenticated=replies.AUTH_ALREADY_DONE,
    ),
}


def check(
    state: State, verb: str, *, authenticated: bool = False, auth_required: bool = False
) -> Rule | Reply:
    """The rule for ``verb`` if it is legal in ``state``, else the reply refusing it.

    ``authenticated``: AUTH succeeded in this session; ``auth_required``: the service accepts
    mail only from authenticated clients. Unknown verbs get 500 5.5.2. The extension check is
    the caller's (it depends on settings).
    """
    rule = TABLE.get(verb)
    if rule is None:
        return replies.UNKNOWN_COMMAND
    if state not in rule.allowed:
        return rule.refused.get(state, rule.default_refusal)
    if authenticated and rule.when_authenticated is not None:
        return rule.when_authenticated
    if auth_required and not authenticated and rule.needs_auth:
        return replies.AUTH_REQUIRED
    return rule
