"""The IMAP connection states and the one table of which command is legal in which state.

RFC 9051 §3 (and RFC 3501 §3): Not Authenticated → Authenticated (LOGIN, AUTHENTICATE or PREAUTH)
→ Selected (SELECT/EXAMINE) → back to Authenticated (CLOSE, UNSELECT, a failed SELECT) → Logout.
The core consults `TABLE` before handing a command out, and before accepting a literal for it;
a command refused here gets ``tag BAD <text>`` with the table's text (RFC 9051 §7.1.5: BAD for
a command not valid in this state). The shell moves between states with ``core.set_state``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["TABLE", "Rule", "State", "check"]


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"  # nothing more is read


@dataclass(frozen=True, slots=True)
class Rule:
    """The states a command is legal in, and the refusal text in each other state."""

    allowed: frozenset[State]
    refused: Mapping[State, str]


_N, _A, _S = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED
_NOT_ALLOWED: Final = "Command not allowed in this state"
_ANY: Final = Rule(frozenset({_N, _A, _S}), {})
_UNAUTH: Final = Rule(frozenset({_N}), {_A: "Already authenticated", _S: "Already authenticated"})
_AUTH: Final = Rule(frozenset({_A, _S}), {_N: "Not authenticated"})
_SELECTED: Final = Rule(frozenset({_S}), {_N: "Not authenticated", _A: "No mailbox selected"})

TABLE: Final[Mapping[str, Rule]] = {
    # Any state (RFC 9051 §6.1)
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,  # RFC 2971 §3.1: any state
    # Not Authenticated (RFC 9051 §6.2)
    "STARTTLS": _UNAUTH,
    "AUTHENTICATE": _UNAUTH,
    "LOGIN": _UNAUTH,
    # Authenticated, and so Selected too (RFC 9051 §6.3)
    "ENABLE": Rule(  # RFC 5161 §3.1: only before a mailbox is selected
        frozenset({_A}),
        {_N: "Not authenticated", _S: "ENABLE is not allowed while a mailbox is selected"},
    ),
    "SELECT": _AUTH,
    "EXAMINE": _AUTH,
    "CREATE": _AUTH,
    "DELETE": _AUTH,
    "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH,
    "UNSUBSCRIBE": _AUTH,
    "LIST": _AUTH,
    "LSUB": _AUTH,
    "NAMESPACE": _AUTH,
    "STATUS": _AUTH,
    "APPEND": _AUTH,
    "IDLE": _AUTH,
    "GETQUOTA": _AUTH,
    "GETQUOTAROOT": _AUTH,
    "SETQUOTA": _AUTH,
    "COMPRESS": _AUTH,  # after authentication only: no compression oracle before login
    # Selected (RFC 9051 §6.4); UID forms share the entry of their command
    "CHECK": _SELECTED,
    "CLOSE": _SELECTED,
    "UNSELECT": _SELECTED,
    "EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED,
    "FETCH": _SELECTED,
    "STORE": _SELECTED,
    "COPY": _SELECTED,
    "MOVE": _SELECTED,
    "SORT": _SELECTED,
    "THREAD": _SELECTED,
    "CANCELUPDATE": _SELECTED,
    "UID": _SELECTED,
}


def check(state: State, name: str) -> str | None:
    """None when ``name`` (a command word; ``"UID FETCH"`` counts as UID) is legal in ``state``,
    else the text of the BAD reply. Unknown names are the grammar's business (None here)."""
    if name.startswith("UID "):
        name = "UID"
    rule = TABLE.get(name)
    if rule is None:
        return None
    if state in rule.allowed:
        return None
    return rule.refused.get(state, _NOT_ALLOWED)
