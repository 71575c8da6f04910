"""The POP3 session states and the one table of which command is legal in which state.

RFC 1939 §3: AUTHORIZATION → TRANSACTION (USER/PASS or AUTH) → UPDATE (QUIT) → closed.
``USER`` is the AUTHORIZATION state right after an accepted USER command: PASS is legal there
and nowhere else (RFC 1939 §7: "immediately after a successful USER command"). It lasts one
command: the core drops back to AUTHORIZATION before handing out (or refusing) anything but
PASS. The core consults `TABLE` before parsing a command's arguments; a command refused here
gets ``-ERR`` with the table's text. The session moves between states with
``core.set_state``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["TABLE", "Rule", "State", "check"]


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    USER = "user"  # USER accepted, PASS expected
    TRANSACTION = "transaction"
    UPDATE = "update"  # QUIT in TRANSACTION: nothing more is read


@dataclass(frozen=True, slots=True)
class Rule:
    """The states a command is legal in, and the refusal text in each other state."""

    allowed: frozenset[State]
    refused: Mapping[State, str]


_A, _U, _T = State.AUTHORIZATION, State.USER, State.TRANSACTION
_LOGGED_IN: Final = "Already logged in"
_LOG_IN_FIRST: Final = "Log in first"
_ANY: Final = Rule(frozenset({_A, _U, _T}), {})
_AUTHORIZATION: Final = Rule(frozenset({_A, _U}), {_T: _LOGGED_IN})
_TRANSACTION: Final = Rule(frozenset({_T}), {_A: _LOG_IN_FIRST, _U: _LOG_IN_FIRST})

TABLE: Final[Mapping[str, Rule]] = {
    "CAPA": _ANY,  # RFC 2449 §5: AUTHORIZATION and TRANSACTION
    "QUIT": _ANY,
    "USER": _AUTHORIZATION,  # a second USER replaces the first
    "PASS": Rule(frozenset({_U}), {_A: "Send USER first", _T: _LOGGED_IN}),
    "AUTH": _AUTHORIZATION,
    "STLS": _AUTHORIZATION,  # RFC 2595 §4: AUTHORIZATION state only
    "STAT": _TRANSACTION,
    "LIST": _TRANSACTION,
    "RETR": _TRANSACTION,
    "DELE": _TRANSACTION,
    "NOOP": _TRANSACTION,
    "RSET": _TRANSACTION,
    "TOP": _TRANSACTION,
    "UIDL": _TRANSACTION,
}


def check(state: State, keyword: str) -> str | None:
    """None when ``keyword`` is legal in ``state``, else the text of the ``-ERR`` reply.
    Unknown keywords are the parser's business (None here)."""
    rule = TABLE.get(keyword)
    if rule is None or state in rule.allowed:
        return None
    return rule.refused.get(state, "Command not valid in this state")
