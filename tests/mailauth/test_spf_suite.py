"""The openspf RFC 7208 test suite (``../shared/testdata/spf/rfc7208-tests.yml``), every test
a case of its own, run through ``check_sender`` against a FakeResolver built from the
scenario's zone data.

Zone conventions of the suite (its header comment): records listed as ``SPF`` are served as
TXT unless the name lists TXT records of its own (``TXT: NONE`` means "none at all"); a name
marked ``TIMEOUT`` times out for every type it has no records of; a list of strings is one
record whose strings are joined. ``explanation: DEFAULT`` means no exp= text was used."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailstead.mailauth.spf import SpfResult, check_sender
from mailstead.testing.dns import FakeResolver

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO.parent / "shared" / "testdata" / "spf" / "rfc7208-tests.yml"
LOOKUP_TYPES = ("A", "AAAA", "MX", "TXT", "PTR")

if not SUITE.exists():
    pytest.skip(
        f"{SUITE} not found (the shared test data lives next to the repository)",
        allow_module_level=True,
    )


def _text(value: str | list[str]) -> bytes:
    """One TXT record; the YAML writes raw octets as \\xNN escapes, i.e. Latin-1 characters."""
    text = "".join(value) if isinstance(value, list) else value
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def zone_resolver(zonedata: dict[str, list[Any]]) -> FakeResolver:
    resolver = FakeResolver()
    for name, entries in zonedata.items():
        records: dict[str, list[Any]] = {}
        timeout = False
        for entry in entries:
            if entry == "TIMEOUT":
                timeout = True
                continue
            ((rtype, value),) = entry.items()
            values = records.setdefault(rtype, [])
            if rtype in ("SPF", "TXT"):
                if value != "NONE":
                    values.append(_text(value))
            elif rtype == "MX":
                values.append((int(value[0]), str(value[1])))
            else:
                values.append(str(value))
        spf = records.pop("SPF", None)
        if spf is not None and "TXT" not in records:
            records["TXT"] = spf
        for rtype, values in records.items():
            if rtype == "CNAME":
                resolver.add(name, "CNAME", values[0])
            elif values:
                resolver.add(name, rtype, values)
        if timeout:
            for rtype in LOOKUP_TYPES:
                if not records.get(rtype):
                    resolver.fail(f"{rtype} {name}")
    return resolver


def _cases() -> list[Any]:
    cases = []
    with SUITE.open(encoding="utf-8") as f:
        for scenario in yaml.safe_load_all(f):
            for name, test in scenario["tests"].items():
                cases.append(
                    pytest.param(scenario["zonedata"], test, id=f"{scenario['description']}/{name}")
                )
    return cases


CASES = _cases()


def test_the_whole_suite_is_here() -> None:
    assert len(CASES) == 203


@pytest.mark.parametrize(("zonedata", "test"), CASES)
def test_rfc7208_suite(zonedata: dict[str, list[Any]], test: dict[str, Any]) -> None:
    resolver = zone_resolver(zonedata)
    verdict = asyncio.run(
        check_sender(
            resolver,
            test["host"],
            helo=test["helo"],
            mail_from=test["mailfrom"],
            receiver="receiver.example.net",
        )
    )
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    check = verdict.check
    assert check.result in [SpfResult(result) for result in expected], (
        f"{check.result} ({check.problem or check.mechanism}); expected {expected}"
    )
    if "explanation" in test:
        wanted = None if test["explanation"] == "DEFAULT" else test["explanation"]
        assert check.explanation == wanted
