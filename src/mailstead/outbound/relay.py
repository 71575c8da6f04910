"""Relays (smarthosts): which relay, if any, takes the mail for a destination domain, with what
TLS and which credentials.

``Relays.for_domain(domain)`` looks in the per-domain table first (``example.org`` for that
domain, ``.example.org`` for the domains below it, the longest match winning), then falls back
to the global relay. AUTH credentials belong to the global relay (and to a table entry naming
the same host and port): an internal next hop in the table gets no password it was not meant
to see. The TLS mode applies to every relay; ``auto`` is ``required`` when credentials are
sent, else ``opportunistic``. ``load_relays`` reads the ``[queue]`` settings and the password
file.
"""

from __future__ import annotations

import enum
import logging
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailstead.config import Config, ConfigError
from mailstead.observability.log import log_event
from mailstead.outbound.routing import Smarthost, parse_smarthost
from mailstead.outbound.sender import SmtpAuth, TlsMode, TlsPolicy

log = logging.getLogger("mailstead.outbound.relay")

MAX_PASSWORD_FILE = 4096  # bytes: a password file is one line


class RelayTls(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    IMPLICIT = "implicit"


@dataclass(frozen=True, slots=True)
class Relays:
    """The relay configuration (see the module docstring)."""

    default: Smarthost | None = None
    domains: Mapping[str, Smarthost] = field(default_factory=dict)
    tls: RelayTls = RelayTls.AUTO
    auth: SmtpAuth | None = None
    ca_file: Path | None = None

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.domains)

    def for_domain(self, domain: str) -> Smarthost | None:
        """The relay for mail to ``domain``, or None to deliver to its MX hosts."""
        name = domain.lower().removesuffix(".")
        if name in self.domains:
            return self.domains[name]
        labels = name.split(".")
        for i in range(1, len(labels)):
            relay = self.domains.get("." + ".".join(labels[i:]))
            if relay is not None:
                return relay
        return self.default

    def auth_for(self, relay: Smarthost) -> SmtpAuth | None:
        """The credentials sent to ``relay``: only the global relay's own."""
        if self.auth is None or self.default is None:
            return None
        same = (relay.host, relay.port) == (self.default.host, self.default.port)
        return self.auth if same else None

    def tls_policy(self, relay: Smarthost, hostname: str) -> TlsPolicy:
        """The TLS policy for a connection to ``relay`` at ``hostname`` (the host the
        certificate must name: the relay's name or, for an MX-routed relay, its MX host)."""
        mode = self.tls
        if mode is RelayTls.AUTO:
            mode = RelayTls.REQUIRED if self.auth_for(relay) else RelayTls.OPPORTUNISTIC
        if mode is RelayTls.NONE:
            return TlsPolicy.none()
        if mode is RelayTls.OPPORTUNISTIC:
            return TlsPolicy.opportunistic(hostname)
        if mode is RelayTls.IMPLICIT:
            return TlsPolicy.implicit_tls(hostname)
        return TlsPolicy.required(hostname)

    def ssl_context(self, policy: TlsPolicy) -> ssl.SSLContext | None:
        """A context verifying against ``ca_file`` for a verifying policy (None: the sender's
        default). Reads files: call it off the event loop."""
        if policy.mode is not TlsMode.REQUIRED or self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))


def read_password_file(path: Path) -> str:
    """The first line of ``path``; logs a warning when group or others may read it. Raises
    ValueError when it cannot be read or is empty."""
    try:
        info = path.stat()
        with path.open("rb") as f:
            data = f.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise ValueError(f"queue.relay_password_file: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PASSWORD_FILE:
        raise ValueError(f"queue.relay_password_file: {path} is larger than a password")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log_event(
            log,
            "relay.password_file_readable",
            logging.WARNING,
            path=str(path),
            mode=oct(stat.S_IMODE(info.st_mode)),
            fix=f"chmod 600 {path}",
        )
    lines = data.decode("utf-8", "replace").splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ValueError(f"queue.relay_password_file: {path} holds no password")
    return password


def load_relays(config: Config) -> Relays:
    """The relays of ``config``'s ``[queue]`` section; ConfigError names what is wrong (the
    server does not start, or a reload keeps the old settings)."""
    try:
        return _relays(config)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None


def _relays(config: Config) -> Relays:
    queue = config.queue
    default = parse_smarthost(queue.relay_host) if queue.relay_host else None
    domains = {domain: parse_smarthost(relay) for domain, relay in queue.relay_domains}
    auth = None
    if queue.relay_username:
        if queue.relay_password_file is None:
            raise ValueError("queue.relay_username is set but queue.relay_password_file is not")
        if default is None:
            raise ValueError("queue.relay_username is set but queue.relay_host is not")
        password = read_password_file(queue.relay_password_file)
        auth = SmtpAuth(queue.relay_username, password)
    ca_file = queue.relay_ca_file
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        raise ValueError(f"queue.relay_ca_file: cannot read {ca_file}")
    return Relays(default, domains, RelayTls(queue.relay_tls), auth, ca_file)
