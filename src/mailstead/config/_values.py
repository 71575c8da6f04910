"""Value kinds of the configuration schema: how one TOML value is checked, converted and shown.

Each schema field carries a ``Spec`` in its metadata. A spec turns the raw TOML value into the typed
value (``parse``), turns a typed value back into TOML (``to_toml``, for ``config show`` and the
generated file), and names its type for the documentation (``type_name``). A bad value raises
``Invalid`` with messages that already name the dotted key, so the loader can collect every problem
of a file at once."""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

import idna

T = TypeVar("T")

# TOML values as tomllib returns them (dates and times are possible but never valid here).
TomlValue = Any


class Invalid(Exception):
    """One or more problems with a value; each message starts with the dotted key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def invalid(key: str, message: str) -> Invalid:
    return Invalid([f"{key}: {message}"])


def show(value: object) -> str:
    """A short rendering of a raw TOML value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def expected(key: str, what: str, value: object) -> Invalid:
    return invalid(key, f"expected {what}, got {show(value)}")


class Spec(ABC, Generic[T]):
    """How one setting is parsed, rendered and documented."""

    TYPE: ClassVar[str] = "value"

    def type_name(self) -> str:
        """The type as the documentation names it."""
        return self.TYPE

    @abstractmethod
    def parse(self, value: TomlValue, key: str) -> T:
        """``value`` from the TOML file as the typed setting; ConfigError naming ``key``."""

    def to_toml(self, value: T) -> TomlValue:
        return value


# --- scalars -------------------------------------------------------------------------------------


def _check_range(key: str, number: int, minimum: int | None, maximum: int | None) -> None:
    if minimum is not None and number < minimum:
        raise invalid(key, f"must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise invalid(key, f"must be at most {maximum}, got {number}")


@dataclass(frozen=True)
class Int(Spec[int]):
    minimum: int | None = None
    maximum: int | None = None
    TYPE: ClassVar[str] = "integer"

    def parse(self, value: TomlValue, key: str) -> int:
        # bool is a subclass of int in Python; `true` is not a number in TOML.
        if isinstance(value, bool) or not isinstance(value, int):
            raise expected(key, "an integer", value)
        _check_range(key, value, self.minimum, self.maximum)
        return value


@dataclass(frozen=True)
class Bool(Spec[bool]):
    TYPE: ClassVar[str] = "boolean"

    def parse(self, value: TomlValue, key: str) -> bool:
        if not isinstance(value, bool):
            raise expected(key, "true or false", value)
        return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Str(Spec[str]):
    """A string; control characters (CR, LF, ...) are never accepted: they could end a protocol
    line.
    """

    allow_empty: bool = True
    TYPE: ClassVar[str] = "string"

    def parse(self, value: TomlValue, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, "a string", value)
        if not value and not self.allow_empty:
            raise invalid(key, "must not be empty")
        if _CONTROL.search(value):
            raise invalid(key, "must not contain control characters")
        return value


@dataclass(frozen=True)
class Choice(Spec[str]):
    choices: tuple[str, ...] = ()

    def type_name(self) -> str:
        return " | ".join(f'"{c}"' for c in self.choices)

    def parse(self, value: TomlValue, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, "a string", value)
        if value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise invalid(key, f"must be one of {allowed}, got {show(value)}")
        return value


# --- host names ----------------------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def hostname_problem(name: str) -> str | None:
    """Why ``name`` is not a usable DNS host name (Unicode allowed), or None if it is."""
    if not name:
        return "must not be empty"
    ascii_name = name
    if not name.isascii():
        try:
            ascii_name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            return f"{show(name)} is not a valid host name ({exc})"
    ascii_name = ascii_name.removesuffix(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(lab) for lab in ascii_name.split(".")):
        return f"{show(name)} is not a valid host name"
    return None


@dataclass(frozen=True)
class Hostname(Spec[str]):
    """A DNS host name, without a trailing dot. Empty is allowed here; the loader decides where a
    name is required."""

    TYPE: ClassVar[str] = "string (host name)"

    def parse(self, value: TomlValue, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, "a string", value)
        if value:
            problem = hostname_problem(value)
            if problem:
                raise invalid(key, problem)
        return value.removesuffix(".")


# --- sizes and durations -------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE = re.compile(r"^\s*([0-9]+)\s*([KMG]?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Size(Spec[int]):
    """A byte count: an integer, or a string with a K, M or G suffix (binary multiples: 1K = 1024).
    """

    minimum: int | None = None
    maximum: int | None = None
    TYPE: ClassVar[str] = "size"

    def parse(self, value: TomlValue, key: str) -> int:
        if isinstance(value, bool):
            raise expected(key, 'a size (bytes, or a string like "50M")', value)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and (m := _SIZE.match(value)):
            number = int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
        else:
            raise expected(key, 'a size (bytes, or a string like "50M")', value)
        _check_range(key, number, self.minimum, self.maximum)
        return number

    def to_toml(self, value: int) -> TomlValue:
        return format_size(value)


def format_size(value: int) -> TomlValue:
    for suffix in ("G", "M", "K"):
        unit = _SIZE_UNITS[suffix]
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return value


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*([0-9]+)\s*(ms|s|m|h|d)\s*$")


@dataclass(frozen=True)
class Duration(Spec[float]):
    """A time span, exposed in seconds: an integer (seconds) or a string like "500ms", "30s", "5m",
    "1h"."""

    positive: bool = True
    TYPE: ClassVar[str] = "duration"

    def parse(self, value: TomlValue, key: str) -> float:
        what = 'a duration (seconds, or a string like "30s", "5m")'
        if isinstance(value, bool):
            raise expected(key, what, value)
        if isinstance(value, int):
            if value < 0:
                raise invalid(key, f"must not be negative, got {value}")
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value)):
            seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        else:
            raise expected(key, what, value)
        if self.positive and seconds <= 0:
            raise invalid(key, "must be more than zero")
        return float(seconds)

    def to_toml(self, value: float) -> TomlValue:
        return format_duration(value)


def format_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    for suffix in ("d", "h", "m", "s"):
        unit_ms = round(_DURATION_UNITS[suffix] * 1000)
        if ms and ms % unit_ms == 0:
            return f"{ms // unit_ms}{suffix}"
    return f"{ms}ms"


# --- paths ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathSpec(Spec["Path | None"]):
    """A file or directory. Relative paths are resolved by the loader against ``relative_to``:
    the configuration file's directory ("file") or ``server.data_dir`` ("data_dir").
    With ``empty_is_none``, "" means "not set" (the typed value is None)."""

    relative_to: Literal["file", "data_dir"] = "data_dir"
    empty_is_none: bool = False
    TYPE: ClassVar[str] = "path"

    def parse(self, value: TomlValue, key: str) -> Path | None:
        if not isinstance(value, str):
            raise expected(key, "a path (string)", value)
        if not value:
            if self.empty_is_none:
                return None
            raise invalid(key, "must not be empty")
        if "\x00" in value:
            raise invalid(key, "must not contain NUL")
        return Path(value)

    def to_toml(self, value: Path | None) -> TomlValue:
        return "" if value is None else str(value)


# --- listeners -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ListenAddress:
    """One listening socket: an IP literal or a host name, and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


def parse_listen_address(text: str) -> ListenAddress:
    """Parse "host:port" or "[v6]:port"; raises ValueError with a message (without the key)."""
    m = _HOSTPORT.match(text)
    if not m:
        raise ValueError(f"{show(text)} is not host:port (IPv6 as [::1]:25)")
    port = int(m.group("port"))
    # Port 0 asks the system for a free port: for tests, which read the bound port back.
    if not 0 <= port <= 65535:
        raise ValueError(f"{show(text)}: port must be 0..65535")
    if m.group("v6") is not None:
        try:
            ipaddress.IPv6Address(m.group("v6"))
        except ValueError:
            bad = show(m.group("v6"))
            raise ValueError(f"{show(text)}: {bad} is not an IPv6 address") from None
        return ListenAddress(m.group("v6"), port)
    host = m.group("host")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", host):
            raise ValueError(f"{show(text)}: {show(host)} is not an IPv4 address") from None
        problem = hostname_problem(host)
        if problem:
            raise ValueError(f"{show(text)}: {problem}") from None
    return ListenAddress(host, port)


@dataclass(frozen=True)
class ListenList(Spec[tuple[ListenAddress, ...]]):
    TYPE: ClassVar[str] = 'list of "host:port"'

    def parse(self, value: TomlValue, key: str) -> tuple[ListenAddress, ...]:
        if not isinstance(value, list):
            raise expected(key, 'a list of "host:port" strings', value)
        problems: list[str] = []
        addresses: list[ListenAddress] = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if not isinstance(item, str):
                problems.append(f'{item_key}: expected a "host:port" string, got {show(item)}')
                continue
            try:
                address = parse_listen_address(item)
            except ValueError as exc:
                problems.append(f"{item_key}: {exc}")
                continue
            if address in addresses:
                problems.append(f"{item_key}: {show(item)} is listed twice")
            addresses.append(address)
        if problems:
            raise Invalid(problems)
        return tuple(addresses)

    def to_toml(self, value: tuple[ListenAddress, ...]) -> TomlValue:
        return [str(a) for a in value]


@dataclass(frozen=True)
class NetworkList(Spec[tuple[str, ...]]):
    """IP networks in CIDR notation (``127.0.0.0/8``, ``2001:db8::/32``); a bare address is a
    network of one."""

    TYPE: ClassVar[str] = "list of networks"

    def parse(self, value: TomlValue, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise expected(key, 'a list of network strings like "192.0.2.0/24"', value)
        problems: list[str] = []
        networks: list[str] = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if not isinstance(item, str):
                problems.append(f"{item_key}: expected a network string, got {show(item)}")
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as exc:
                problems.append(f"{item_key}: {exc}")
        if problems:
            raise Invalid(problems)
        return tuple(networks)

    def to_toml(self, value: tuple[str, ...]) -> TomlValue:
        return list(value)


# --- special strings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delimiter(Spec[str]):
    """Recipient delimiter characters: each one may separate a local part from its extension."""

    TYPE: ClassVar[str] = "string"

    def parse(self, value: TomlValue, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, "a string", value)
        bad = sorted({c for c in value if not c.isascii() or not c.isprintable() or c in '@" \\'})
        if bad:
            raise invalid(key, f"cannot use {', '.join(repr(c) for c in bad)} as a delimiter")
        return value


@dataclass(frozen=True)
class UserName(Spec[str]):
    """A system user name (or a numeric uid); "" means "do not change user"."""

    TYPE: ClassVar[str] = "string"

    def parse(self, value: TomlValue, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, "a string", value)
        if value and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", value):
            raise invalid(key, f"{show(value)} is not a user name")
        return value
