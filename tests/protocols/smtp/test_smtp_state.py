"""The state table: every verb in every state gets what the table says."""

from __future__ import annotations

import pytest

from mailstead.protocols.smtp import replies
from mailstead.protocols.smtp.state import TABLE, Rule, State, check

OPEN = [s for s in State if s is not State.CLOSED]


@pytest.mark.parametrize("state", OPEN)
@pytest.mark.parametrize("verb", sorted(TABLE))
def test_every_cell(state, verb):
    verdict = check(state, verb)
    rule = TABLE[verb]
    if state in rule.allowed:
        assert verdict is rule
    else:
        assert verdict == rule.refused.get(state, rule.default_refusal)
        assert verdict.code in (503, 554)


def test_unknown_verb():
    assert check(State.READY, "TURN") == replies.UNKNOWN_COMMAND


@pytest.mark.parametrize(
    ("state", "verb", "reply"),
    [
        (State.GREETED, "MAIL", replies.NEED_HELO),
        (State.RCPT, "MAIL", replies.NESTED_MAIL),
        (State.READY, "RCPT", replies.NEED_MAIL),
        (State.MAIL, "DATA", replies.NO_VALID_RECIPIENTS),
        (State.BDAT, "DATA", replies.DATA_AFTER_BDAT),
        (State.MAIL, "STARTTLS", replies.TRANSACTION_IN_PROGRESS),
        (State.GREETED, "STARTTLS", replies.NEED_EHLO),
    ],
)
def test_named_refusals(state, verb, reply):
    assert check(state, verb) == reply


def test_rules_are_data():
    assert all(isinstance(rule, Rule) for rule in TABLE.values())
