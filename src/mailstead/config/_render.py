"""Text generated from the schema: the reference documentation, the commented file
``mailstead init`` writes, and the effective configuration ``mailstead config show`` prints."""

from __future__ import annotations

import textwrap
from typing import Any

from mailstead.config._load import iter_settings
from mailstead.config._schema import Config, Setting, schema

# Shared by the documentation and the generated file.
UNITS = [
    'Sizes are a number of bytes, or a string with a K, M or G suffix in binary multiples: "512K", '
    '"50M" (50 × 1024 × 1024 bytes), "1G".',
    'Durations are a number of seconds, or a string with a unit: "500ms", "30s", "5m", "1h", "1d".',
    "Relative paths: server.data_dir is relative to the directory of the configuration file; every "
    "other path is relative to server.data_dir.",
]

# Listeners written by `mailstead init`. Development: loopback, standard port + 10000, so no root is
# needed and a system mail server can keep the standard ports. Production: all IPv4 and IPv6
# addresses, except HTTP, which speaks no TLS and stays on loopback behind a reverse proxy.
DEV_LISTEN: dict[str, list[str]] = {
    "smtp": ["127.0.0.1:10025"],
    "submission": ["127.0.0.1:10587"],
    "submissions": ["127.0.0.1:10465"],
    "imap": ["127.0.0.1:10143"],
    "imaps": ["127.0.0.1:10993"],
    "pop3": ["127.0.0.1:10110"],
    "pop3s": ["127.0.0.1:10995"],
    "managesieve": ["127.0.0.1:14190"],
    "http": ["127.0.0.1:8080"],
}
_PUBLIC_PORTS = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "managesieve": 4190,
}
PROD_LISTEN: dict[str, list[str]] = {
    **{name: [f"0.0.0.0:{port}", f"[::]:{port}"] for name, port in _PUBLIC_PORTS.items()},
    "http": ["127.0.0.1:8080"],
}


def format_value(value: Any) -> str:
    """A TOML literal for a string, integer, float, boolean, or a list or table of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _format_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table, keys quoted
        pairs = ", ".join(f"{_format_string(str(k))} = {format_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _format_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _comment(text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent="# ", subsequent_indent="# ")


# --- docs/configuration.md -----------------------------------------------------------------------


def _default_doc(info: Setting) -> str:
    if info.default_doc is not None:
        return info.default_doc
    return f"`{format_value(info.raw_default)}`"


def render_docs() -> str:
    """The Markdown reference for every section and key (``docs/configuration.md``)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/mailstead/config/_schema.py; do not edit. Regenerate with:",
        "     python -m mailstead.config.docs > docs/configuration.md -->",
        "",
        "Mailstead reads one TOML file, usually `mailstead.toml`, named by `--config FILE` or "
        "`$MAILSTEAD_CONFIG`. `mailstead init` writes a complete, commented one; "
        "`mailstead config check` validates a file and `mailstead config show` prints every "
        "effective value.",
        "",
        "- Unknown sections and keys are errors, and so are values of the wrong type (`true` is "
        'not a number, `"100"` is not an integer). All problems are reported at once, each '
        "naming its key.",
        *(f"- {line}" for line in UNITS),
        "- Listen addresses are `host:port` strings; the host is an IP address or a name, IPv6 in "
        'brackets: `"[::]:25"`.',
        "- On reload the file is read again; if it is invalid, the running configuration is kept.",
        "",
        "## Listeners written by `mailstead init`",
        "",
        "`mailstead init --dev` listens on loopback only, on the standard ports + 10000, so it "
        "needs no root and leaves the standard ports to a system mail server. `mailstead init` "
        "listens on "
        "the standard ports on every IPv4 and IPv6 address, except HTTP: that listener speaks no "
        "TLS, so it stays on loopback, for a TLS-terminating reverse proxy (public webmail, "
        "autoconfig, MTA-STS) or an SSH tunnel (admin).",
        "",
        "| Service | `init` | `init --dev` |",
        "|---|---|---|",
        *(
            f"| {name} | {', '.join(f'`{a}`' for a in PROD_LISTEN[name])} | "
            f"{', '.join(f'`{a}`' for a in DEV_LISTEN[name])} |"
            for name in DEV_LISTEN
        ),
        "",
    ]
    for name, doc, keys in schema():
        lines += [f"## `[{name}]`", "", doc, ""]
        lines += ["| Key | Type | Default |", "|---|---|---|"]
        for key, _f, info in keys:
            type_name = info.spec.type_name().replace("|", "\\|")
            default = _default_doc(info).replace("|", "\\|")
            lines.append(f"| [`{key}`](#{name}{key}) | {type_name} | {default} |")
        lines.append("")
        for key, _f, info in keys:
            lines += [
                f"### `{name}.{key}`",
                "",
                f"*{info.spec.type_name()}*, default {_default_doc(info)}.",
                "",
                info.doc,
                "",
            ]
    return "\n".join(lines)


# --- the file `mailstead init` writes ------------------------------------------------------------


def render_config_file(*, dev: bool, hostname: str, data_dir: str) -> str:
    """A complete configuration file: every key with its documentation as a comment; keys that keep
    their default are commented out. ``dev`` selects loopback listeners on the standard ports +
    10000 and text logs; otherwise the standard ports on every address."""
    values: dict[str, Any] = {"server.hostname": hostname, "server.data_dir": data_dir}
    listen = DEV_LISTEN if dev else PROD_LISTEN
    values.update({f"listen.{name}": addrs for name, addrs in listen.items()})
    if dev:
        values["log.format"] = "text"
    return _render_file(
        header=[
            f"Mailstead configuration, written by `mailstead init{' --dev' if dev else ''}`.",
            "",
            "Every key is listed with its documentation; keys left at their default are "
            "commented out. Check the file with `mailstead config check --config FILE`; the "
            "reference is docs/configuration.md.",
            "",
            *UNITS,
        ],
        values=values,
        always_set={"server.hostname", "server.data_dir"},
    )


def render_effective(cfg: Config) -> str:
    """Every key of ``cfg`` with its effective value, as a TOML file that loads back to the same
    values."""
    values = {
        f"{name}.{key}": info.spec.to_toml(getattr(getattr(cfg, name), key))
        for name, _doc, keys in schema()
        for key, _f, info in keys
    }
    assert len(values) == len(iter_settings(cfg))
    return _render_file(
        header=[f"Effective configuration of {cfg.path}"],
        values=values,
        always_set=set(values),
        docs=False,
    )


def _render_file(
    *, header: list[str], values: dict[str, Any], always_set: set[str], docs: bool = True
) -> str:
    lines: list[str] = []
    for paragraph in header:
        lines += _comment(paragraph) if paragraph else ["#"]
    for name, doc, keys in schema():
        lines += ["", ""] if docs else [""]
        if docs:
            lines += _comment(doc)
        lines.append(f"[{name}]")
        for key, _f, info in keys:
            dotted = f"{name}.{key}"
            if docs:
                lines += ["", *_comment(info.doc)]
            if dotted in values and (dotted in always_set or values[dotted] != info.raw_default):
                lines.append(f"{key} = {format_value(values[dotted])}")
            else:
                lines.append(f"# {key} = {format_value(info.raw_default)}")
    return "\n".join(lines) + "\n"
