"""Loading: TOML file → validated, immutable ``Config`` snapshot, or ``ConfigError`` with every
problem.

``load_config`` has no side effects beyond reading the file, so a reload (SIGHUP) is simply another
call: keep the running snapshot if it raises."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from mailstead.config._schema import Config, schema, section_class, section_fields, setting_of
from mailstead.config._values import Invalid, PathSpec, show


class ConfigError(Exception):
    """The file could not be read or is invalid. ``problems`` has one line per problem, each
    starting
    with the dotted key it is about (or the file name, for unreadable or malformed files)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: Path) -> Config:
    """Read, validate and convert the configuration file at ``path``."""
    path = Path(os.path.abspath(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    return config_from_dict(document, path=path)


def config_from_dict(document: dict[str, Any], *, path: Path) -> Config:
    """Validate a parsed TOML document; ``path`` (absolute) anchors relative paths."""
    problems: list[str] = []
    sections = {f.name: f for f in section_fields()}
    for name, value in document.items():
        if name not in sections:
            problems.append(f"{name}: unknown section{_suggest(name, sections)}")
        elif not isinstance(value, dict):
            problems.append(f"{name}: expected a table ([{name}]), got {show(value)}")

    built: dict[str, Any] = {}
    for name, sec in sections.items():
        table = document.get(name, {})
        cls = section_class(sec)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        if isinstance(table, dict):
            for key, raw in table.items():
                dotted = f"{name}.{key}"
                if key not in fields:
                    problems.append(f"{dotted}: unknown key{_suggest(key, fields)}")
                    continue
                try:
                    values[key] = setting_of(fields[key]).spec.parse(raw, dotted)
                except Invalid as exc:
                    problems.extend(exc.problems)
        built[name] = cls(**values)

    if not built["server"].hostname and not any(p.startswith("server.hostname:") for p in problems):
        problems.append(
            "server.hostname: required: the name this server announces, e.g. \"mail.example.com\""
        )
    if problems:
        raise ConfigError(problems)

    base_dir = path.parent
    data_dir = _resolve(base_dir, built["server"].data_dir)
    for name in sections:
        built[name] = _resolve_paths(built[name], base_dir=base_dir, data_dir=data_dir)
    return Config(**built, path=path, base_dir=base_dir)


def _resolve(base: Path, value: Path) -> Path:
    return Path(os.path.normpath(base / value))


def _resolve_paths(obj: Any, *, base_dir: Path, data_dir: Path) -> Any:
    changes: dict[str, Path] = {}
    for f in dataclasses.fields(obj):
        spec = setting_of(f).spec
        value = getattr(obj, f.name)
        if isinstance(spec, PathSpec) and value is not None:
            changes[f.name] = _resolve(base_dir if spec.relative_to == "file" else data_dir, value)
    return dataclasses.replace(obj, **changes)


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def iter_settings(cfg: Config) -> list[tuple[str, str, Any]]:
    """(section, key, typed value) for every key of ``cfg``, in schema order."""
    result = []
    for name, _doc, keys in schema():
        sec = getattr(cfg, name)
        for key, _f, _info in keys:
            result.append((name, key, getattr(sec, key)))
    return result
