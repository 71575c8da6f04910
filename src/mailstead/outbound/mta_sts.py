"""MTA-STS (RFC 8461): discover, fetch, parse and cache a domain's policy.

- Discovery (§3.1): the TXT record at ``_mta-sts.<domain>``, ``v=STSv1; id=...``. Records not
  starting with ``v=STSv1;`` are ignored; anything but exactly one valid record is no record.
- Fetch (§3.3): ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, one GET over an asyncio
  stream: the name resolved through our resolver, the certificate verified against
  ``mta-sts.<domain>`` (``context`` carries the CA bundle), no redirects (only a 200 counts),
  ``Content-Type: text/plain``, at most ``MAX_POLICY`` octets, within ``timeout`` seconds. One
  GET does not justify an HTTP client dependency (docs/decisions.md).
- Parse (§3.2): ``version: STSv1``, ``mode`` (enforce, testing, none), ``mx`` patterns
  (``*.example.net`` matches one left-most label, §4.1) and ``max_age`` (at most a year).
- Cache (§5.1): one JSON file per domain under ``directory`` (so it survives a restart), kept
  until ``max_age`` runs out. A TXT ``id`` unlike the cached one fetches anew; a failed fetch
  keeps an unexpired cached policy; no TXT record (or DNS trouble) keeps it too.

``MtaSts.policy(domain)`` returns the `Policy` in force, or None when the domain has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailstead.dns import InvalidName, Resolver, Status, normalize_name
from mailstead.observability.log import log_event
from mailstead.outbound.routing import order_addresses

log = logging.getLogger("mailstead.outbound.mta_sts")

HTTPS_PORT = 443
WELL_KNOWN = "/.well-known/mta-sts.txt"
MAX_POLICY = 64 * 1024  # §3.3: senders may limit the policy body; 64 KiB is the RFC's example
MAX_HEADER = 16 * 1024  # status line and header fields of the response
MAX_AGE = 31_557_600  # §3.2: max_age is at most one year
FETCH_TIMEOUT = 60.0  # §3.3 suggests at least a minute for the whole fetch
MAX_MX_PATTERNS = 100

Mode = Literal["enforce", "testing", "none"]
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_FIELD = re.compile(r"^([A-Za-z0-9_]{1,32}):[ \t]*(.*?)[ \t]*$")


class PolicyError(Exception):
    """A policy that cannot be fetched or parsed (the reason, for logs)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One domain's policy; ``fetched`` is the Unix time it was fetched, ``id`` the TXT id it
    was fetched under."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    id: str = ""
    fetched: float = 0.0

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def matches(self, host: str) -> bool:
        """Whether MX host ``host`` is allowed by the policy (§4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: ``mail.example.com`` matches itself; ``*.example.com`` matches exactly one more
    label on the left (``a.example.com``, not ``a.b.example.com`` nor ``example.com``)."""
    host = host.lower().removesuffix(".")
    pattern = pattern.lower().removesuffix(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return host == pattern


def parse_txt(records: Sequence[bytes]) -> str | None:
    """The policy id of the ``_mta-sts`` TXT records, or None when there is not exactly one
    valid record (§3.1)."""
    candidates = [r for r in records if r.startswith(b"v=STSv1;")]
    if len(candidates) != 1:
        return None
    fields: dict[str, str] = {}
    for part in candidates[0].decode("ascii", "replace").split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            return None
        fields.setdefault(key, value)
    policy_id = fields.get("id", "")
    return policy_id if _ID.match(policy_id) else None


def parse_policy(text: str, *, policy_id: str = "", fetched: float = 0.0) -> Policy:
    """A policy body (§3.2); raises PolicyError. Unknown fields are ignored."""
    values: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        m = _FIELD.match(line)
        if not m:
            raise PolicyError(f"not a policy field: {line[:80]!r}")
        values.setdefault(m.group(1), []).append(m.group(2))
    if values.get("version") != ["STSv1"]:
        raise PolicyError("version is not STSv1")
    modes = values.get("mode", [])
    if len(modes) != 1 or modes[0] not in ("enforce", "testing", "none"):
        raise PolicyError(f"mode is not one of enforce, testing, none: {modes}")
    mode: Mode = modes[0]  # type: ignore[assignment]
    ages = values.get("max_age", [])
    if len(ages) != 1 or not ages[0].isdigit() or len(ages[0]) > 10:
        raise PolicyError("max_age is not a number of seconds")
    max_age = min(int(ages[0]), MAX_AGE)
    patterns = []
    for pattern in values.get("mx", [])[:MAX_MX_PATTERNS]:
        try:
            name = normalize_name(pattern.removeprefix("*."))
        except InvalidName:
            raise PolicyError(f"mx {pattern!r} is not a host name pattern") from None
        patterns.append(f"*.{name}" if pattern.startswith("*.") else name)
    if mode != "none" and not patterns:
        raise PolicyError(f"a {mode} policy without mx")
    return Policy(mode, tuple(patterns), max_age, policy_id, fetched)


# --- the HTTPS GET ---------------------------------------------------------------------------


async def fetch_policy_text(
    domain: str,
    resolver: Resolver,
    context: ssl.SSLContext,
    *,
    port: int = HTTPS_PORT,
    seconds: float = FETCH_TIMEOUT,
) -> str:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; raises PolicyError."""
    host = f"mta-sts.{domain}"
    answer = await resolver.addresses(host)
    if not answer.found:
        raise PolicyError(f"{host}: {answer.detail or answer.status.value}")
    problems = []
    try:
        async with asyncio.timeout(seconds):
            for address in order_addresses(answer.records)[:4]:
                try:
                    return await _get(str(address), port, host, context)
                except (OSError, ssl.SSLError) as exc:  # this address: try the next one
                    problems.append(f"[{address}]:{port}: {_why(exc)}")
    except TimeoutError:
        problems.append(f"no policy within {seconds:g} s")
    raise PolicyError(f"{host}: " + "; ".join(problems or ["no usable address"]))


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    return str(exc) or type(exc).__name__


async def _get(address: str, port: int, host: str, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(
        address, port, ssl=context, server_hostname=host, limit=MAX_HEADER
    )
    try:
        request = (
            f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mailstead\r\n"
            "Accept: text/plain\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> str:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise PolicyError("no complete HTTP response header") from None
    lines = head.decode("iso-8859-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1."):
        raise PolicyError(f"not an HTTP response: {lines[0][:80]!r}")
    if status[1] != "200":  # §3.3: redirects are not followed; only a 200 is a policy
        raise PolicyError(f"HTTP status {' '.join(status[1:])[:80]}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "text/plain":  # §3.2
        raise PolicyError(f"Content-Type {headers.get('content-type', 'missing')!r}")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit() or int(length) > MAX_POLICY:
            raise PolicyError(f"Content-Length {length[:20]} (at most {MAX_POLICY})")
        try:
            body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError:
            raise PolicyError("the policy body was cut short") from None
    else:
        body = await reader.read(MAX_POLICY + 1)
        while len(body) <= MAX_POLICY and (more := await reader.read(MAX_POLICY + 1 - len(body))):
            body += more
        if len(body) > MAX_POLICY:
            raise PolicyError(f"the policy is larger than {MAX_POLICY} octets")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("the policy is not UTF-8") from None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    try:
        while True:
            size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
            size = int(size_line, 16)
            if size == 0:
                return body
            if len(body) + size > MAX_POLICY:
                raise PolicyError(f"the policy is larger than {MAX_POLICY} octets")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise PolicyError("a malformed chunked body") from None


# --- the cache and the policy in force --------------------------------------------------------


class PolicyCache:
    """Policies on disk, one JSON file per domain in ``directory`` (created 0700 when needed),
    each replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, domain: str) -> Path:
        return self.directory / f"{domain}.json"

    def load(self, domain: str) -> Policy | None:
        try:
            data = json.loads(self._path(domain).read_text("utf-8"))
            return Policy(
                data["mode"],
                tuple(data["mx"]),
                int(data["max_age"]),
                str(data["id"]),
                float(data["fetched"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, domain: str, policy: Policy) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = dataclasses.asdict(policy)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{domain}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self._path(domain))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class MtaSts:
    """The MTA-STS policies in force (see the module docstring). ``clock`` gives Unix time."""

    def __init__(
        self,
        resolver: Resolver,
        cache: PolicyCache,
        context: Callable[[], Awaitable[ssl.SSLContext]],
        *,
        port: int = HTTPS_PORT,
        timeout: float = FETCH_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.cache = cache
        self.context = context
        self.port = port
        self.timeout = timeout
        self.clock = clock
        self._memory: dict[str, Policy | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def policy(self, domain: str) -> Policy | None:
        """The policy in force for ``domain`` (None: no policy, or mode ``none``)."""
        # one fetch at a time per domain (a lock per domain delivered to: a few bytes each)
        async with self._locks.setdefault(domain, asyncio.Lock()):
            found = await self._policy(domain)
        return found if found is not None and found.mode != "none" else None

    async def _cached(self, domain: str) -> Policy | None:
        if domain in self._memory:
            cached = self._memory[domain]
        else:
            cached = await asyncio.to_thread(self.cache.load, domain)
            self._memory[domain] = cached
        if cached is not None and cached.expires <= self.clock():
            return None  # §5.1: an expired policy is no policy
        return cached

    async def _policy(self, domain: str) -> Policy | None:
        cached = await self._cached(domain)
        txt = await self.resolver.txt(f"_mta-sts.{domain}")
        if txt.status is Status.TEMPORARY or not txt.found:
            return cached  # §5.1: without a record, a cached policy stays in force
        policy_id = parse_txt(txt.records)
        if policy_id is None:
            return cached
        if cached is not None and cached.id == policy_id:
            return cached
        try:
            text = await fetch_policy_text(
                domain, self.resolver, await self.context(), port=self.port, seconds=self.timeout
            )
            fresh = parse_policy(text, policy_id=policy_id, fetched=self.clock())
        except PolicyError as exc:
            log_event(
                log,
                "mta_sts.fetch_failed",
                logging.WARNING,
                domain=domain,
                id=policy_id,
                error=str(exc),
                cached=cached.id if cached else None,
            )
            return cached  # §5.1: a failed fetch keeps the unexpired cached policy
        log_event(
            log, "mta_sts.policy", domain=domain, id=policy_id, mode=fresh.mode, mx=list(fresh.mx),
            max_age=fresh.max_age,
        )  # fmt: skip
        self._memory[domain] = fresh
        try:
            await asyncio.to_thread(self.cache.store, domain, fresh)
        except OSError as exc:
            log_event(log, "mta_sts.cache_failed", logging.WARNING, domain=domain, error=str(exc))
        return fresh
