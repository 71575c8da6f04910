"""Helpers for bench/imap: the generated mailbox, a minimal asyncio IMAP client, the workload.

Nothing here knows which server it talks to: bench/imap starts Mailstead and Dovecot, loads the
same messages into both, and runs :func:`run_workload` and :func:`hold_idle_connections`
against each.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

# -- the mailbox -----------------------------------------------------------------------------

BASE_TIME = 1_700_000_000  # the oldest message's Date; each next one is a minute later
DOMAIN = "example.test"
MAILBOX_USER = "u1"  # holds the big mailbox; u2..u5 hold a few messages each
OTHER_USERS = ("u2", "u3", "u4", "u5")
PASSWORD = "pass"  # Dovecot peer's fixed password, reused for Mailstead


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


WORDS = words(
    "the of and to in is that for it as with was on be by this are or at from have an not "
    "which but all were when we there can more if will one about up so out what into them "
    "would their some than other time only new could these may then do first any like now "
    "people my made over did down way find use each get very through back much before go "
    "good well where just those too here our how also after thing must year work because "
    "meeting budget schedule review customer project delivery invoice contract shipment "
    "report quarter release deadline update agenda minutes draft proposal request feedback "
    "server network backup license renewal payment account order support ticket issue fix "
    "please thanks regards attached below above tomorrow monday friday week month office"
)
SYLLABLES = ("ka", "lo", "mi", "ru", "ze", "po", "ti", "ne", "va", "gu", "so", "bi", "da", "fe")
TOPICS = (
    "Invoice", "Meeting notes", "Re: Quarterly report", "Shipment update", "Fwd: Contract",
    "Support ticket", "Budget review", "Release plan", "Re: Agenda", "Payment reminder",
    "Weekly status", "Re: Proposal", "Server maintenance", "License renewal", "Lunch friday",
)  # fmt: skip
FIRST = words("Anna Ben Clara David Eva Frank Grace Hugo Ines Jonas Karin Luca Mara Nils Olga")
LAST = words("Berg Costa Dahl Engel Fischer Garcia Hansen Ivanova Jensen Keller Lang Moreau")


def pseudo_word(k: int, syllables: int) -> str:
    """A made-up word, different for each k < len(SYLLABLES) ** syllables."""
    parts = []
    for _ in range(syllables):
        k, digit = divmod(k, len(SYLLABLES))
        parts.append(SYLLABLES[digit])
    return "".join(parts)


def project_word(k: int) -> str:
    """Subject keyword (about 1 message in 100 has each): what SEARCH SUBJECT looks for."""
    return "Proj" + pseudo_word(k, 3)


def rare_word(k: int) -> str:
    """Body-only word (each in about 3 messages): what SEARCH BODY / TEXT look for."""
    return "zq" + pseudo_word(k, 5)


@dataclass(frozen=True)
class MailboxPlan:
    """Which messages make up the mailbox and which words the searches look for."""

    messages: int
    projects: int = 100
    rare_words: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rare_words", max(1, self.messages // 3))

    def internal_date(self, i: int) -> int:
        return BASE_TIME + 60 * i

    def message(self, i: int) -> bytes:
        """Message ``i`` (0-based, oldest first): realistic headers, a 1-10 KB text body."""
        rng = random.Random(i * 7919 + 17)
        date = datetime.fromtimestamp(self.internal_date(i), UTC)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sender = f"{first} {last} <{first.lower()}.{last.lower()}@corp{i % 7}.example>"
        subject = f"{rng.choice(TOPICS)} {project_word(i % self.projects)} #{i}"
        msgid = hashlib.sha1(b"%d" % i).hexdigest()[:16]
        headers = [
            f"Return-Path: <{first.lower()}.{last.lower()}@corp{i % 7}.example>",
            f"Received: from mail.corp{i % 7}.example (mail.corp{i % 7}.example"
            f" [192.0.2.{i % 250 + 1}])\r\n\tby mx.{DOMAIN} with ESMTPS; {format_datetime(date)}",
            f"From: {sender}",
            f"To: {MAILBOX_USER}@{DOMAIN}",
            f"Subject: {subject}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: <{msgid}.{i}@corp{i % 7}.example>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        size = rng.randint(1000, 10_000)
        special = {rng.randrange(10, 40): rare_word(i % self.rare_words)}
        lines, line, total, n = [], [], 0, 0
        while total < size:
            word = special.get(n) or rng.choice(WORDS)
            n += 1
            line.append(word)
            if sum(map(len, line)) + len(line) > 70:
                text = " ".join(line)
                lines.append(text[0].upper() + text[1:])
                total += len(text) + 2
                line = []
                if rng.random() < 0.12:
                    lines.append("")
        if line:
            lines.append(" ".join(line))
        return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()

    def other_message(self, user: str, i: int) -> bytes:
        """A few small messages for the users the idle connections log in as."""
        date = format_datetime(datetime.fromtimestamp(self.internal_date(i), UTC))
        return (
            f"From: Anna Berg <anna.berg@corp0.example>\r\nTo: {user}@{DOMAIN}\r\n"
            f"Subject: Note {i}\r\nDate: {date}\r\nMessage-ID: <note{i}.{user}@corp0.example>\r\n"
            f"\r\nShort note {i} for {user}.\r\n"
        ).encode()

    def search_words(self, rng: random.Random) -> tuple[str, str]:
        """(subject word, body word) for one SEARCH."""
        return project_word(rng.randrange(self.projects)), rare_word(rng.randrange(self.rare_words))


OTHER_MESSAGES = 20  # in each of u2..u5's INBOX


# -- a minimal IMAP client -------------------------------------------------------------------


class ImapError(Exception):
    pass


class ImapClient:
    """One connection; ``command`` sends a tagged command and returns everything up to and
    including its tagged reply (raising ImapError unless it is OK)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()
        self.count = 0
        self.idle_tag = b""

    @classmethod
    async def connect(cls, host: str, port: int) -> ImapClient:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await client.read_line()
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise ImapError(f"greeting: {greeting[:200]!r}")
        return client

    async def _fill(self) -> None:
        chunk = await self.reader.read(1 << 18)
        if not chunk:
            raise ImapError("connection closed by the server")
        self.buffer += chunk

    def _take(self, end: int) -> bytes:
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def read_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            await self._fill()
        return self._take(end + 2)

    async def read_tagged(self, tag: bytes) -> bytes:
        """Everything up to and including the line that starts with ``tag``."""
        marker, pos = b"\r\n" + tag + b" ", 0
        while True:
            if self.buffer.startswith(tag + b" "):
                found = 0
            else:
                found = self.buffer.find(marker, pos)
                found = found + 2 if found >= 0 else -1
            if found >= 0:
                end = self.buffer.find(b"\r\n", found)
                if end >= 0:
                    return self._take(end + 2)
            else:
                pos = max(0, len(self.buffer) - len(marker))
            await self._fill()

    def _tag(self) -> bytes:
        self.count += 1
        return b"b%d" % self.count

    async def command(self, text: str, literal: bytes | None = None) -> bytes:
        tag = self._tag()
        line = tag + b" " + text.encode()
        if literal is not None:  # LITERAL+ (both servers announce it)
            line += b" {%d+}\r\n" % len(literal) + literal
        self.writer.write(line + b"\r\n")
        reply = await self.read_tagged(tag)
        last = reply.rfind(b"\r\n", 0, len(reply) - 2)
        status = reply[last + 2 + len(tag) + 1 :] if last >= 0 else reply[len(tag) + 1 :]
        if not status.startswith(b"OK"):
            raise ImapError(f"{text[:60]}: {status.strip()[:200]!r}")
        return reply

    async def idle(self) -> None:
        """Send IDLE and wait for the continuation."""
        self.idle_tag = self._tag()
        self.writer.write(self.idle_tag + b" IDLE\r\n")
        while not (line := await self.read_line()).startswith(b"+"):
            if line.startswith(self.idle_tag + b" "):
                raise ImapError(f"IDLE: {line.strip()!r}")

    async def wait_exists(self, above: int) -> int:
        """Read untagged lines until ``* N EXISTS`` with N > above; returns N."""
        while True:
            parts = (await self.read_line()).split()
            if len(parts) == 3 and parts[2].upper() == b"EXISTS" and int(parts[1]) > above:
                return int(parts[1])

    async def done(self) -> None:
        self.writer.write(b"DONE\r\n")
        await self.read_tagged(self.idle_tag)

    def close(self) -> None:
        self.writer.close()


def exists_of(select_reply: bytes) -> int:
    for line in select_reply.split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"*" and parts[2].upper() == b"EXISTS":
            return int(parts[1])
    raise ImapError("SELECT without EXISTS")


def search_hits(reply: bytes) -> int:
    for line in reply.split(b"\r\n"):
        if line.upper().startswith(b"* SEARCH"):
            return len(line.split()) - 2
    return 0


# -- the workload ----------------------------------------------------------------------------


@dataclass
class OpResult:
    name: str
    latencies: list[float]  # seconds, one per command
    wall: float  # seconds from the first command sent to the last reply
    check: int | None = None  # a count to compare between servers (e.g. FETCH lines)

    @property
    def ops_per_s(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


Operation = Callable[[ImapClient, random.Random], Awaitable[int | None]]


def operations(plan: MailboxPlan, exists: int) -> list[tuple[str, Operation]]:
    """The timed operations, in order. Each returns a count to compare between servers."""
    newest = max(1, exists - 199)

    async def select(c: ImapClient, rng: random.Random) -> int:
        return exists_of(await c.command("SELECT INBOX"))

    async def fetch_flags(c: ImapClient, rng: random.Random) -> int:
        return (await c.command("UID FETCH 1:* (FLAGS)")).count(b" FETCH (")

    async def fetch_headers(c: ImapClient, rng: random.Random) -> int:
        return (await c.command(f"FETCH {newest}:* (UID BODY.PEEK[HEADER])")).count(b" FETCH (")

    async def search_subject(c: ImapClient, rng: random.Random) -> int:
        word, _ = plan.search_words(rng)
        return search_hits(await c.command(f'UID SEARCH SUBJECT "{word}"'))

    async def search_body(c: ImapClient, rng: random.Random) -> int:
        _, word = plan.search_words(rng)
        return search_hits(await c.command(f'UID SEARCH BODY "{word}"'))

    async def search_text(c: ImapClient, rng: random.Random) -> int:
        _, word = plan.search_words(rng)
        return search_hits(await c.command(f'UID SEARCH TEXT "{word}"'))

    async def store(c: ImapClient, rng: random.Random) -> None:
        sign = rng.choice("+-")
        await c.command(f"UID STORE {rng.randint(1, exists)} {sign}FLAGS (\\Flagged)")
        return None

    return [
        ("SELECT", select),
        ("UID FETCH 1:* (FLAGS)", fetch_flags),
        ("FETCH newest 200 headers", fetch_headers),
        ("SEARCH SUBJECT", search_subject),
        ("SEARCH BODY", search_body),
        ("SEARCH TEXT", search_text),
        ("STORE +/-FLAGS", store),
    ]


async def login(host: str, port: int, user: str) -> ImapClient:
    client = await ImapClient.connect(host, port)
    await client.command(f"LOGIN {user}@{DOMAIN} {PASSWORD}")
    return client


async def run_op(
    name: str, op: Operation, clients: list[ImapClient], seconds: float, min_ops: int
) -> OpResult:
    """Every client runs ``op`` back to back until ``seconds`` have passed (at least ``min_ops``
    times each); the check value is the one the first command of the first client returned."""
    latencies: list[float] = []
    checks: list[int | None] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(index: int, client: ImapClient) -> None:
        rng = random.Random(f"{name}/{index}")
        done = 0
        while done < min_ops or time.perf_counter() < deadline:
            sent = time.perf_counter()
            value = await op(client, rng)
            latencies.append(time.perf_counter() - sent)
            if index == 0 and done == 0:
                checks.append(value)
            done += 1

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(clients)))
    return OpResult(name, latencies, time.perf_counter() - start, checks[0] if checks else None)


async def idle_wakeup(
    host: str, port: int, idlers: list[ImapClient], deliveries: int, plan: MailboxPlan
) -> OpResult:
    """``idlers`` (SELECTed INBOX) IDLE; another connection APPENDs ``deliveries`` messages one
    at a time. Latency: from just before the APPEND is sent to each idler's EXISTS."""
    appender = await login(host, port, MAILBOX_USER)
    exists = exists_of(await appender.command("SELECT INBOX"))
    latencies: list[float] = []
    start = time.perf_counter()
    for idler in idlers:
        await idler.idle()
    for n in range(deliveries):
        raw = plan.message(plan.messages + n)
        sent = time.perf_counter()
        append = asyncio.ensure_future(appender.command("APPEND INBOX ()", raw))

        async def woken(idler: ImapClient, above: int = exists, sent: float = sent) -> None:
            await idler.wait_exists(above)
            latencies.append(time.perf_counter() - sent)

        await asyncio.wait_for(asyncio.gather(append, *(woken(i) for i in idlers)), 30)
        exists += 1
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - start
    for idler in idlers:
        await idler.done()
    appender.close()
    return OpResult("IDLE wake-up", latencies, wall, None)


async def run_workload(
    host: str, port: int, plan: MailboxPlan, clients: int, seconds: float, deliveries: int,
    progress: Callable[[str], None],
) -> list[OpResult]:  # fmt: skip
    conns = [await login(host, port, MAILBOX_USER) for _ in range(clients)]
    try:
        exists = exists_of(await conns[0].command("SELECT INBOX"))  # lets Dovecot index once
        for c in conns[1:]:
            await c.command("SELECT INBOX")
        results = []
        for name, op in operations(plan, exists):
            await op(conns[0], random.Random(0))  # one untimed warm-up
            result = await run_op(name, op, conns, seconds, 1)
            progress(
                f"{name}: {len(result.latencies)} in {result.wall:.1f}s = "
                f"{result.ops_per_s:.1f}/s, p99 {result.quantile(0.99) * 1000:.1f} ms"
            )
            results.append(result)
        wake = await idle_wakeup(host, port, conns, deliveries, plan)
        progress(f"IDLE wake-up: p50 {wake.quantile(0.5) * 1000:.1f} ms, p99 "
                 f"{wake.quantile(0.99) * 1000:.1f} ms over {len(wake.latencies)}")  # fmt: skip
        results.append(wake)
        return results
    finally:
        for c in conns:
            c.close()


# -- idle connections ------------------------------------------------------------------------


@dataclass
class IdleHold:
    """Connections held in IDLE; close them with :meth:`close`."""

    clients: list[ImapClient]
    failures: list[str]
    seconds: float

    def close(self) -> None:
        for c in self.clients:
            c.close()


def idle_users() -> Iterator[str]:
    while True:
        yield from OTHER_USERS


async def hold_idle_connections(
    host: str, port: int, count: int, progress: Callable[[str], None], *, parallel: int = 50,
    step_timeout: float = 30.0, give_up_after: int = 50,
) -> IdleHold:  # fmt: skip
    """Open ``count`` connections that LOGIN (as u2..u5 in turn), SELECT INBOX and IDLE; stop
    opening more once ``give_up_after`` have failed (e.g. a process limit was reached)."""
    clients: list[ImapClient] = []
    failures: list[str] = []
    users = idle_users()
    gate = asyncio.Semaphore(parallel)
    start = time.perf_counter()
    last_report = [start]

    async def one(user: str) -> None:
        async with gate:
            if len(failures) >= give_up_after:
                return
            client = None
            try:
                async with asyncio.timeout(step_timeout):
                    client = await login(host, port, user)
                    await client.command("SELECT INBOX")
                    await client.idle()
                clients.append(client)
            except (OSError, ImapError, TimeoutError) as exc:
                if client is not None:
                    client.close()
                failures.append(f"{type(exc).__name__}: {exc}")
            now = time.perf_counter()
            if now - last_report[0] > 30:
                last_report[0] = now
                progress(f"{len(clients)} idle connections after {now - start:.0f}s")

    await asyncio.gather(*(one(next(users)) for _ in range(count)))
    return IdleHold(clients, failures, time.perf_counter() - start)
