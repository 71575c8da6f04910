"""The fuzz targets (fuzz/targets/) in the normal test run.

Two layers: every committed seed goes through its target's ``check`` in this process (fast, and
no atheris needed), and each target runs under libFuzzer for a bounded time in a subprocess, on
the committed corpus, writing new inputs and artifacts to a temporary directory only. A failure
shows the failing input (repr and base64) and how to replay it. `scripts/fuzz` runs the long
campaign; docs/fuzzing.md says how.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.runner import TARGETS, run_target  # noqa: E402

SECONDS = 10  # per target: nine targets and their start-up stay under two minutes
RUNS = 300_000  # a cap for a machine much faster than ours


def test_every_target_has_seeds_and_a_module():
    for target in TARGETS:
        seeds = list((ROOT / "fuzz" / "corpus" / target).glob("seed-*"))
        assert len(seeds) >= 5, target
        assert (ROOT / "fuzz" / "targets" / f"{target}.py").is_file()
    modules = {p.stem for p in (ROOT / "fuzz" / "targets").glob("[a-z]*.py")}
    assert modules == set(TARGETS), "a target missing from fuzz.runner.TARGETS"


@pytest.mark.parametrize("target", TARGETS)
def test_committed_corpus_holds_its_properties(target):
    check = importlib.import_module(f"fuzz.targets.{target}").check
    corpus = sorted((ROOT / "fuzz" / "corpus" / target).iterdir())
    for path in corpus:
        data = path.read_bytes()
        try:
            check(data)
        except BaseException as e:
            raise AssertionError(f"{target} fails on {path.name}: {data[:300]!r}") from e


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_for_a_while(target, tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris has wheels for Linux x86-64 only (pyproject test extras)")
    result = run_target(target, tmp_path, seconds=SECONDS, runs=RUNS)
    assert result.ok, result.failure()
    assert result.runs > 0, result.output[-3000:]
