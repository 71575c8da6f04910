"""The running server: opens the store, starts every configured service, handles signals.

SIGTERM/SIGINT: stop gracefully (in-flight SMTP transactions finish, new connections get 421).
SIGHUP: reload the configuration file; an invalid file keeps the running snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.config import Config, ConfigError, load_config
from mailstead.delivery import LocalDelivery
from mailstead.directory import Directory
from mailstead.dns import StubResolver
from mailstead.login import LoginService
from mailstead.mailauth import psl
from mailstead.mailauth.inbound import InboundPolicy
from mailstead.observability.log import log_event, setup_logging
from mailstead.outbound.policy import load_outbound_tls
from mailstead.outbound.relay import load_relays
from mailstead.outbound.sender import DEFAULT_TIMEOUTS
from mailstead.protocols.smtp import ServerSettings
from mailstead.queue.runner import QueueRunner, RunnerLimits
from mailstead.queue.schedule import RetrySchedule
from mailstead.queue.service import Queue, QueueSettings
from mailstead.queue.transport import SmtpTransport
from mailstead.security.bans import AuthFailureTracker
from mailstead.security.memory import MemoryBudget
from mailstead.security.tls import TLSError, server_context
from mailstead.servers.imap import IMAPLimits, IMAPService, IMAPServiceState
from mailstead.servers.pop3 import POP3Limits, POP3Service, POP3ServiceState, channel_bindings
from mailstead.servers.privileges import drop_privileges, prepare_privilege_drop
from mailstead.servers.smtp import (
    InboundChecks,
    SMTPLimits,
    SMTPService,
    SMTPServiceState,
    SubmissionPolicy,
)
from mailstead.store import Store, open_sqlite

log = logging.getLogger("mailstead.server")

SHUTDOWN_GRACE = 30.0  # seconds in-flight transactions get to finish
# Address lookups are reused for this long: directory changes made with the CLI while the
# server runs take effect within it.
DIRECTORY_CACHE_TTL = 1.0
# Full-text indexing: batch size, the pause in deliveries it waits for, and the longest wait.
INDEX_BATCH = 256
INDEX_QUIET = 0.3
INDEX_MAX_DELAY = 10.0
GIL_SWITCH_INTERVAL = 0.0005  # seconds; see run()


def open_store(config: Config) -> Store:
    """The configured storage backend (not yet opened)."""
    storage = config.storage
    return open_sqlite(
        storage.path,
        compression_level=storage.compression_level,
        group_commit_max_batch=storage.group_commit_max_batch,
        group_commit_max_delay=storage.group_commit_max_delay,
    )


def make_directory(config: Config, store: Store) -> Directory:
    hostname = config.server.hostname
    parent = hostname.split(".", 1)[1] if hostname.count(".") >= 2 else hostname
    return Directory(
        store,
        recipient_delimiter=config.delivery.recipient_delimiter,
        max_alias_depth=config.delivery.max_alias_depth,
        postmaster_domain=parent,
        cache_ttl=DIRECTORY_CACHE_TTL,
    )


def smtp_settings(config: Config, *, tls_available: bool) -> ServerSettings:
    smtp = config.smtp
    return ServerSettings(
        hostname=config.server.hostname,
        banner=smtp.banner,
        max_message_size=smtp.max_message_size,
        max_recipients=smtp.max_recipients,
        max_data_line=smtp.max_line_length,
        max_commands=smtp.max_commands,
        max_errors=smtp.max_errors,
        starttls=tls_available,
        require_tls_for_mail=smtp.require_tls and tls_available,
    )


def smtp_limits(config: Config) -> SMTPLimits:
    smtp = config.smtp
    return SMTPLimits(
        idle_timeout=smtp.idle_timeout,
        data_timeout=smtp.data_timeout,
        max_connections=smtp.max_connections,
        max_connections_per_ip=smtp.max_connections_per_ip,
        max_received_headers=smtp.max_received_headers,
        helo_timeout=smtp.helo_timeout,
        session_timeout=smtp.session_timeout,
        handshake_timeout=config.tls.handshake_timeout,
        submission_max_connections=config.submission.max_connections,
        submission_max_connections_per_ip=config.submission.max_connections_per_ip,
        submission_session_timeout=config.submission.session_timeout,
    )


def submission_policy(config: Config, *, tls_available: bool) -> SubmissionPolicy:
    return SubmissionPolicy(
        allow_any_sender_for=config.submission.allow_any_sender_for,
        allow_plaintext_on_loopback=config.auth.allow_plaintext_on_loopback,
        channel_bindings=channel_bindings(config.tls.cert_file) if tls_available else {},
    )


def load_tls(config: Config) -> ssl.SSLContext | None:
    cert, key = config.tls.cert_file, config.tls.key_file
    if not (cert.exists() and key.exists()):
        log_event(log, "tls.unavailable", logging.WARNING, cert=str(cert), key=str(key))
        return None
    return server_context(cert, key, min_version=config.tls.min_version)


def imap_limits(config: Config) -> IMAPLimits:
    return IMAPLimits(
        max_connections=config.imap.max_connections,
        max_connections_per_ip=config.imap.max_connections_per_ip,
        max_append_size=config.imap.append_limit,
        allow_insecure_auth_on_loopback=config.auth.allow_plaintext_on_loopback,
        handshake_timeout=config.tls.handshake_timeout,
        login_timeout=config.imap.login_timeout,
    )


def pop3_limits(config: Config) -> POP3Limits:
    return POP3Limits(
        max_connections=config.pop3.max_connections,
        max_connections_per_ip=config.pop3.max_connections_per_ip,
        idle_timeout=config.pop3.idle_timeout,
        max_errors=config.pop3.max_errors,
        allow_insecure_auth_on_loopback=config.auth.allow_plaintext_on_loopback,
        handshake_timeout=config.tls.handshake_timeout,
        login_timeout=config.pop3.login_timeout,
    )


def auth_failure_tracker(config: Config) -> AuthFailureTracker:
    auth = config.auth
    return AuthFailureTracker(
        max_failures=auth.max_failures,
        window=auth.failure_window,
        ban_time=auth.ban_time,
        exempt=auth.exempt_networks,
    )


def make_resolver(config: Config) -> StubResolver:
    dns = config.dns
    return StubResolver(dns.nameservers, timeout=dns.timeout, attempts=dns.attempts)


def queue_settings(config: Config) -> QueueSettings:
    queue = config.queue
    return QueueSettings(
        hostname=config.server.hostname,
        schedule=RetrySchedule(queue.retry_schedule, queue.max_age),
        delay_warning=queue.delay_warning,
    )


def inbound_checks(config: Config, resolver: StubResolver) -> InboundChecks | None:
    """[mailauth]: how port 25 checks SPF, DKIM, ARC and DMARC (None: it does not)."""
    settings = config.mailauth
    if not settings.verify:
        return None
    policy = InboundPolicy(
        authserv_id=settings.authserv_id or config.server.hostname,
        dmarc_reject=settings.dmarc_reject,
        dmarc_quarantine=settings.dmarc_quarantine,
        arc_trusted_sealers=frozenset(settings.arc_trusted_sealers),
    )
    trusted = tuple(ipaddress.ip_network(n, strict=False) for n in settings.trusted_networks)
    psl.load()  # the Public Suffix List (DMARC), read now rather than at the first message
    return InboundChecks(resolver, policy, trusted, arc_seal=settings.arc_seal)


def queue_runner(config: Config, queue: Queue, resolver: StubResolver) -> QueueRunner:
    settings = config.queue
    hostname = config.server.hostname
    transport = SmtpTransport(
        resolver,
        helo_name=settings.helo_name or hostname,
        local_names=(hostname,),
        port=settings.remote_port,
        timeouts=dataclasses.replace(DEFAULT_TIMEOUTS, connect=settings.connect_timeout),
        relays=load_relays(config),
        tls=load_outbound_tls(config, resolver),
    )
    limits = RunnerLimits(
        concurrency=settings.concurrency, per_destination=settings.per_destination_concurrency
    )
    return QueueRunner(queue, transport, limits)


@dataclass(slots=True)
class BoundAddresses:
    """Where each service actually listens (port 0 in the config picks a free port)."""

    smtp: list[tuple[str, int]]
    imap: list[tuple[str, int]]
    imaps: list[tuple[str, int]]
    pop3: list[tuple[str, int]] = field(default_factory=list)
    pop3s: list[tuple[str, int]] = field(default_factory=list)
    submission: list[tuple[str, int]] = field(default_factory=list)
    submissions: list[tuple[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, list[tuple[str, int]]]:
        return {"smtp": self.smtp, "imap": self.imap, "imaps": self.imaps, "pop3": self.pop3,
                "pop3s": self.pop3s, "submission": self.submission,
                "submissions": self.submissions}  # fmt: skip


class MailServer:
    """Every service of one Mailstead process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = open_store(config)
        self.directory = make_directory(config, self.store)
        self.delivery = LocalDelivery(self.store)
        self.tls_context = load_tls(config)
        self.smtp_state = SMTPServiceState(
            settings=smtp_settings(config, tls_available=self.tls_context is not None),
            limits=smtp_limits(config),
            tls_context=self.tls_context,
            directory=self.directory,
            delivery=self.delivery,
            spool_dir=config.server.data_dir / "spool",
            submission=submission_policy(config, tls_available=self.tls_context is not None),
        )
        self.resolver = make_resolver(config)
        self.smtp_state.mailauth = inbound_checks(config, self.resolver)
        self.smtp_state.resolver = self.resolver
        # one budget for the large messages of every protocol (security.memory)
        self.memory = MemoryBudget(config.server.large_message_memory)
        self.smtp_state.memory = self.memory
        self.queue = Queue(self.store, self.directory, queue_settings(config))
        self.queue_runner = queue_runner(config, self.queue, self.resolver)
        self.smtp_state.queue = self.queue
        self.smtp = SMTPService(self.smtp_state)
        self.auth_failures = auth_failure_tracker(config)  # one for SMTP, IMAP and POP3
        # one login service (bans, credentials, log events) for every protocol
        self.login = LoginService(self.directory, self.auth_failures)
        self.smtp_state.login = self.login
        bindings = channel_bindings(config.tls.cert_file) if self.tls_context else {}
        self.imap_state = IMAPServiceState(
            hostname=config.server.hostname,
            store=self.store,
            directory=self.directory,
            tls_context=self.tls_context,
            limits=imap_limits(config),
            login=self.login,
            channel_bindings=bindings,
        )
        self.imap_state.memory = self.memory
        self.imap = IMAPService(self.imap_state)
        self.pop3_state = POP3ServiceState(
            hostname=config.server.hostname,
            store=self.store,
            directory=self.directory,
            tls_context=self.tls_context,
            limits=pop3_limits(config),
            channel_bindings=bindings,
            login=self.login,
            memory=self.memory,
        )
        self.pop3 = POP3Service(self.pop3_state)
        self.bound: BoundAddresses | None = None
        self._indexer: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> BoundAddresses:
        # As root: the user is resolved and the data directory handed to it before binding;
        # the store is opened, threads started and connections accepted only after the drop.
        identity = prepare_privilege_drop(self.config)
        listen = self.config.listen
        smtp = await self.smtp.start([(a.host, a.port) for a in listen.smtp])
        submission, submissions = await self.smtp.start_submission(
            [(a.host, a.port) for a in listen.submission],
            [(a.host, a.port) for a in listen.submissions],
        )
        imap, imaps = await self.imap.start(
            [(a.host, a.port) for a in listen.imap], [(a.host, a.port) for a in listen.imaps]
        )
        pop3, pop3s = await self.pop3.start(
            [(a.host, a.port) for a in listen.pop3], [(a.host, a.port) for a in listen.pop3s]
        )
        self.bound = BoundAddresses(smtp=smtp, imap=imap, imaps=imaps, pop3=pop3, pop3s=pop3s,
                                    submission=submission, submissions=submissions)  # fmt: skip
        if identity is not None:
            drop_privileges(self.config, identity)
        await self.store.open()
        for server in (*self.smtp.servers, *self.imap.servers, *self.pop3.servers):
            await server.start_serving()
        self._indexer = asyncio.get_running_loop().create_task(self._index_when_quiet())
        self.queue_runner.start()
        log_event(
            log, "server.started", hostname=self.config.server.hostname, listen=self.bound.as_json()
        )
        return self.bound

    async def _index_when_quiet(self) -> None:
        """Keep the full-text index up to date, in batches, when deliveries pause for a moment
        (under sustained load at least every INDEX_MAX_DELAY), so SMTP ingest never waits."""
        changes = self.store.feed.any_change
        while True:
            try:
                indexed = await self.store.index_pending(INDEX_BATCH)
            except Exception:
                log.exception("full-text indexing failed")
                indexed = 0
            if indexed:
                await self._quiet(changes)
                continue
            changes.clear()
            await changes.wait()
            await self._quiet(changes)

    @staticmethod
    async def _quiet(changes: asyncio.Event) -> None:
        deadline = asyncio.get_running_loop().time() + INDEX_MAX_DELAY
        while asyncio.get_running_loop().time() < deadline:
            changes.clear()
            try:
                async with asyncio.timeout(INDEX_QUIET):
                    await changes.wait()
            except TimeoutError:
                return

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        log_event(log, "server.stopping")
        if self._indexer is not None:
            self._indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._indexer
        await asyncio.gather(
            self.smtp.shutdown(grace),
            self.imap.shutdown(grace),
            self.pop3.shutdown(grace),
            self.queue_runner.stop(grace),
        )
        await self.store.close()
        log_event(log, "server.stopped")
        self._stopped.set()

    def reload(self) -> bool:
        """Re-read the configuration file; keep the running one if the new one is invalid."""
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            log_event(log, "config.reload_failed", logging.ERROR, problems=exc.problems)
            return False
        if new.listen != self.config.listen or new.storage != self.config.storage:
            log_event(
                log,
                "config.restart_needed",
                logging.WARNING,
                detail="listen and storage changes take effect at the next start",
            )
        # After the privilege drop these files are opened as server.user: one that cannot be
        # read keeps the running snapshot, as an invalid file does.
        try:
            tls = load_tls(new)
            setup_logging(new.log.level, new.log.format, new.log.file)
        except (TLSError, OSError) as exc:
            log_event(log, "config.reload_failed", logging.ERROR, problems=[str(exc)])
            return False
        self.tls_context = tls
        self.smtp_state.tls_context = tls
        self.smtp_state.settings = smtp_settings(new, tls_available=tls is not None)
        self.smtp_state.limits = smtp_limits(new)
        self.smtp_state.submission = submission_policy(new, tls_available=tls is not None)
        self.imap_state.tls_context = tls
        self.imap_state.limits = imap_limits(new)
        self.imap_state.hostname = new.server.hostname
        self.pop3_state.tls_context = tls
        self.pop3_state.channel_bindings = channel_bindings(new.tls.cert_file) if tls else {}
        self.pop3_state.limits = pop3_limits(new)
        self.pop3_state.hostname = new.server.hostname
        self.directory.recipient_delimiter = new.delivery.recipient_delimiter
        self.directory.max_alias_depth = new.delivery.max_alias_depth
        self.queue.settings = queue_settings(new)
        self.config = new
        log_event(log, "config.reloaded", path=str(new.path))
        return True

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def serve(config: Config, *, ready: Callable[[BoundAddresses], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads."""
    server = MailServer(config)
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    # Handlers first: a signal sent as soon as we report ready must not meet the default
    # action (SIGHUP would terminate the process).
    loop.add_signal_handler(signal.SIGTERM, stop_requested.set)
    loop.add_signal_handler(signal.SIGINT, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    try:
        bound = await server.start()
        if ready is not None:
            ready(bound)
        await stop_requested.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await server.stop()


def run(config_path: Path, *, ready: Callable[[BoundAddresses], None] | None = None) -> None:
    """Load the configuration and serve (with uvloop when it is installed)."""
    config = load_config(config_path)
    setup_logging(config.log.level, config.log.format, config.log.file)
    # Store reads run in threads; a thread waiting for the GIL waits up to the switch interval
    # (5 ms by default) while the event loop thread runs, which made a busy server answer even
    # a small SELECT in ~5 ms. 0.5 ms hands results back sooner at a small switching cost.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, ready=ready))
    else:
        uvloop.run(serve(config, ready=ready))
