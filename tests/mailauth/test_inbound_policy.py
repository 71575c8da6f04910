"""What the inbound checks do with a DMARC outcome (mailauth.inbound._dmarc_action): refuse,
Junk, defer or accept, under the administrator's [mailauth] choices and ARC trust. The same cases
end to end, with a real NSD and server, are in tests/interop/test_mailauth_inbound.py."""

from __future__ import annotations

import pytest

from mailstead.mailauth.arc import ArcResult, ArcVerdict
from mailstead.mailauth.dmarc import DmarcVerdict, parse_dmarc_record
from mailstead.mailauth.inbound import Action, InboundPolicy, _dmarc_action

POLICY = InboundPolicy("mx.example.org", arc_trusted_sealers=frozenset({"lists.example"}))
LENIENT = InboundPolicy("mx.example.org", dmarc_reject="none", dmarc_quarantine="none")


def verdict(result: str, p: str | None, disposition: str = "none") -> DmarcVerdict:
    record = parse_dmarc_record(f"v=DMARC1; p={p}") if p is not None else None
    policy = p or "none"
    return DmarcVerdict(
        result,  # type: ignore[arg-type]
        policy,  # type: ignore[arg-type]
        disposition,  # type: ignore[arg-type]
        "author.example",
        "author.example",
        "test",
        record,
    )


def arc(result: ArcResult, sealer: str, *, temporary: bool = False) -> ArcVerdict:
    return ArcVerdict(result, 1, (sealer,), temporary=temporary)


@pytest.mark.parametrize(
    ("dmarc", "policy", "expected"),
    [
        (verdict("fail", "reject", "reject"), POLICY, Action.REJECT),
        (verdict("fail", "quarantine", "quarantine"), POLICY, Action.JUNK),
        (verdict("fail", "none", "none"), POLICY, Action.ACCEPT),
        (verdict("fail", "reject", "reject"), LENIENT, Action.ACCEPT),
        (verdict("pass", "reject"), POLICY, Action.ACCEPT),
        # the record could not be read: it might say reject
        (verdict("temperror", None), POLICY, Action.DEFER),
        (verdict("temperror", None), LENIENT, Action.ACCEPT),
        # the record was read (an aligned DKIM key could not be): only an enforced policy waits
        (verdict("temperror", "reject"), POLICY, Action.DEFER),
        (verdict("temperror", "none"), POLICY, Action.ACCEPT),
        (verdict("temperror", "quarantine"), LENIENT, Action.ACCEPT),
    ],
)
def test_dmarc_outcomes(dmarc, policy, expected):
    assert _dmarc_action(dmarc, None, policy)[0] is expected


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        (arc(ArcResult.PASS, "lists.example"), Action.ACCEPT),
        (arc(ArcResult.PASS, "other.example"), Action.REJECT),
        (arc(ArcResult.FAIL, "lists.example"), Action.REJECT),
        # the trusted sealer's chain failed for DNS trouble: it might pass when asked again
        (arc(ArcResult.FAIL, "lists.example", temporary=True), Action.DEFER),
        (arc(ArcResult.FAIL, "other.example", temporary=True), Action.REJECT),
    ],
)
def test_arc_trust(chain, expected):
    action, reason = _dmarc_action(verdict("fail", "reject", "reject"), chain, POLICY)
    assert action is expected
    assert bool(reason) is (expected is not Action.ACCEPT)
