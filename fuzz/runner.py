"""Runs fuzz targets under libFuzzer (atheris) with bounded time, and reports what happened.

``python -m fuzz.runner [--time S] [--runs N] [--workdir DIR] [TARGET ...]`` runs each target in
turn (all by default) on its committed seeds (fuzz/corpus/TARGET, read only) and on a working
corpus under DIR (where new inputs and crash artifacts go), then prints executions and exec/s.
The exit status is 1 when a target failed; its input is shown (repr and base64) and kept in DIR.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (
    "smtp_server",
    "smtp_grammar",
    "smtp_client",
    "imap_server",
    "imap_grammar",
    "pop3_server",
    "message_parse",
    "message_headers",
    "sasl",
)
MAX_LEN = 4096  # inputs longer than this add little: every limit is set lower in the targets
INPUT_TIMEOUT = 10  # seconds for one input: past it libFuzzer reports a hang (a slow parser)
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_ARTIFACT = re.compile(rb"Test unit written to (\S+)")


@dataclass(frozen=True)
class Result:
    target: str
    ok: bool
    runs: int
    seconds: float
    artifact: Path | None
    output: str

    @property
    def exec_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def failure(self) -> str:
        """The failing input and the end of the fuzzer's output, for a test or a terminal."""
        lines = [f"fuzz target {self.target} failed after {self.runs} runs"]
        if self.artifact is not None and self.artifact.is_file():
            data = self.artifact.read_bytes()
            lines += [
                f"input ({len(data)} octets), kept in {self.artifact}:",
                f"  repr:   {data[:2000]!r}",
                f"  base64: {base64.b64encode(data).decode()}",
                f"replay: python -m fuzz.targets.{self.target} {self.artifact}",
            ]
        lines += ["--- fuzzer output (end) ---", self.output[-6000:]]
        return "\n".join(lines)


def run_target(
    target: str,
    workdir: Path,
    *,
    seconds: int,
    runs: int | None = None,
    nice: bool = True,
    python: str = sys.executable,
) -> Result:
    """Run one target for at most ``seconds`` (and ``runs`` inputs, when given)."""
    corpus = workdir / target / "corpus"
    artifacts = workdir / target / "artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        python,
        "-m",
        f"fuzz.targets.{target}",
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        f"-timeout={INPUT_TIMEOUT}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    if runs is not None:
        cmd.append(f"-runs={runs}")
    words = ROOT / "fuzz" / "dicts" / f"{target}.dict"
    if words.is_file():
        cmd.append(f"-dict={words}")
    cmd += [str(corpus), str(ROOT / "fuzz" / "corpus" / target)]
    if nice:
        cmd = ["nice", "-n", "19", *cmd]
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), src, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    elapsed = time.monotonic() - start
    out = proc.stdout
    done = _DONE.findall(out)
    execs = re.findall(rb"#(\d+)\s", out)
    n = int(done[-1][0]) if done else (int(execs[-1]) if execs else 0)
    took = float(done[-1][1]) if done and int(done[-1][1]) else elapsed
    found = _ARTIFACT.findall(out)
    text = "\n".join(
        line
        for line in out.decode("utf-8", "replace").splitlines()
        if not line.startswith("INFO: Instrumenting")
    )
    return Result(
        target,
        proc.returncode == 0,
        n,
        took,
        Path(found[-1].decode()) if found else None,
        text,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--time", type=int, default=600, help="seconds per target")
    parser.add_argument("--runs", type=int, default=None, help="stop a target after N inputs")
    parser.add_argument("--workdir", type=Path, default=None, help="working corpus (default: temp)")
    parser.add_argument("--no-nice", action="store_true", help="do not run under nice -n 19")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.targets = args.targets or list(TARGETS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mailstead-fuzz-"))
    print(f"working corpus and artifacts in {workdir}", flush=True)
    failed = False
    for target in args.targets:
        r = run_target(target, workdir, seconds=args.time, runs=args.runs, nice=not args.no_nice)
        status = "ok" if r.ok else "FAILED"
        line = f"{target:16} {status:6} {r.runs:>10} runs {r.seconds:8.0f} s"
        print(f"{line} {r.exec_per_s:8.0f} exec/s", flush=True)
        if not r.ok:
            failed = True
            print(r.failure(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
