"""Imports go one way (DESIGN.md): a test walks every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mailstead"

# package -> the packages of ours it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "protocols": set(),
    "message": set(),
    "sieve": set(),
    "config": set(),
    "observability": set(),
    "security": set(),
    # sans-IO SASL mechanisms shared by SMTP, IMAP and POP3 (no I/O, no clock)
    "sasl": set(),
    "dns": set(),
    "mailauth": {"dns", "message"},
    "store": {"message"},
    "directory": {"store", "message", "sasl"},
    "delivery": {"store", "directory", "mailauth", "message", "observability"},
    # the one login service: bans, SASL credential lookups, outcome and log events, between the
    # protocol sessions (imap, pop3, servers) and directory/security
    "login": {"directory", "security", "sasl", "store", "observability"},
    # the IMAP service layer: session logic over the store, answering the protocol core's commands
    "imap": {
        "store", "directory", "message", "protocols", "observability", "sasl", "security", "login",
    },
    "pop3": {
        "store", "directory", "message", "protocols", "observability", "sasl", "security", "login",
    },
    # the queue runner routes (dns, outbound.routing) and sends (outbound.sender) itself;
    # outbound must therefore never import queue
    "queue": {
        "store", "directory", "mailauth", "message", "observability", "dns", "outbound",
        "protocols",
    },
    "filtering": {"store", "directory", "mailauth", "message", "observability"},
}
ANYTHING = {"servers", "outbound", "web", "cli", "testing"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "mailstead" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_go_one_way():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if len(relative.parts) < 2:
            continue
        package = relative.parts[0]
        if package in ANYTHING:
            continue
        assert package in ALLOWED, f"new package {package}: add it to the layering table"
        for target in _imports(path) - {package}:
            if target not in ALLOWED[package]:
                wrong.append(f"{relative} imports mailstead.{target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_protocol_cores_do_no_io():
    banned = {"asyncio", "socket", "ssl", "time", "selectors", "threading"}
    offenders = []
    for path in (SRC / "protocols").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n in banned]
    assert not offenders
