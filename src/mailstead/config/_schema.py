"""The configuration schema: one frozen dataclass per TOML section, one field per key.

Every field is declared with ``setting(default, spec, doc)``: the default is written as it would
appear in the TOML file (``"50M"``, ``"5m"``) and converted by the same spec the loader uses, so the
documented default and the effective default cannot drift apart. ``docs/configuration.md`` and the
file ``mailstead init`` writes are both generated from these declarations."""

# RUF009: `setting()` and `section()` return dataclasses.Field objects, like `field()` does; no
# default is computed once and shared.
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mailstead.config._values import (
    Bool,
    Choice,
    Delimiter,
    Duration,
    Hostname,
    Int,
    Invalid,
    ListenAddress,
    ListenList,
    NetworkList,
    PathSpec,
    Size,
    Spec,
    Str,
    TomlValue,
    UserName,
    expected,
    format_duration,
    hostname_problem,
    invalid,
    parse_listen_address,
    show,
)


@dataclass(frozen=True)
class Setting:
    """What the schema knows about one key, beyond its Python type."""

    spec: Spec[Any]
    doc: str
    raw_default: TomlValue
    # Shown instead of raw_default in the documentation (e.g. "set by `mailstead init`").
    default_doc: str | None = None


def setting(
    default: TomlValue, spec: Spec[Any], doc: str, *, default_doc: str | None = None
) -> Any:
    """Declare one key: its default as written in TOML, how it is parsed, and its documentation."""
    typed = spec.parse(default, "default")
    info = Setting(spec=spec, doc=doc, raw_default=default, default_doc=default_doc)
    return field(default=typed, metadata={"doc": doc, "setting": info})


def setting_of(f: dataclasses.Field[Any]) -> Setting:
    info = f.metadata["setting"]
    assert isinstance(info, Setting)
    return info


def section(cls: type[Any], doc: str) -> Any:
    """Declare one section of ``Config``."""
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


# --- list values of the [submission] section -----------------------------------------------


_SENDER_ENTRY = re.compile(r"\*|[^@\s]*@[^@\s]+")


@dataclass(frozen=True)
class SenderList(Spec[tuple[str, ...]]):
    """Who may send as any address: account addresses, "@domain" for every account of a
    domain, "*" for everyone."""

    TYPE: ClassVar[str] = "list of addresses"

    def parse(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise expected(key, 'a list of addresses ("user@example.org", "@example.org", "*")',
                           value)  # fmt: skip
        problems = [
            f"{key}[{i}]: expected an address, \"@domain\" or \"*\", got {show(item)}"
            for i, item in enumerate(value)
            if not isinstance(item, str) or not _SENDER_ENTRY.fullmatch(item.strip())
        ]
        if problems:
            raise Invalid(problems)
        return tuple(item.strip() for item in value)

    def to_toml(self, value: tuple[str, ...]) -> Any:
        return list(value)


# --- list values of the [mailauth] section --------------------------------------------------


@dataclass(frozen=True)
class DomainList(Spec[tuple[str, ...]]):
    """Domain names, lower-cased, without a trailing dot."""

    TYPE: ClassVar[str] = "list of domain names"

    def parse(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise expected(key, 'a list of domain names ("forwarder.example")', value)
        problems: list[str] = []
        names: list[str] = []
        for i, item in enumerate(value):
            name = item.strip().rstrip(".").lower() if isinstance(item, str) else None
            problem = hostname_problem(name) if name else "expected a domain name"
            if problem is not None or name is None:
                problems.append(f"{key}[{i}]: {show(item)}: {problem}")
                continue
            names.append(name)
        if problems:
            raise Invalid(problems)
        return tuple(dict.fromkeys(names))

    def to_toml(self, value: tuple[str, ...]) -> Any:
        return list(value)


# --- list values of the [dns] section -------------------------------------------------------


@dataclass(frozen=True)
class NameserverList(Spec[tuple[str, ...]]):
    """Nameservers as IP addresses with an optional port: "192.0.2.53", "127.0.0.1:5353",
    "[::1]:5353". The typed value spells each one "address:port" ("[v6]:port")."""

    TYPE: ClassVar[str] = 'list of "address:port"'

    def parse(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise expected(key, 'a list of "address:port" strings', value)
        problems: list[str] = []
        servers: list[str] = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if not isinstance(item, str):
                problems.append(f'{item_key}: expected an "address:port" string, got {show(item)}')
                continue
            try:
                address = ipaddress.ip_address(item)
                host, port = str(address), 53
            except ValueError:
                try:
                    listen = parse_listen_address(item)
                    host, port = str(ipaddress.ip_address(listen.host)), listen.port
                except ValueError:
                    problems.append(
                        f"{item_key}: {show(item)} is not an IP address with an optional port "
                        '("127.0.0.1:5353", "[::1]:5353")'
                    )
                    continue
            if port == 0:
                problems.append(f"{item_key}: {show(item)}: port must be 1..65535")
                continue
            text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if text in servers:
                problems.append(f"{item_key}: {show(item)} is listed twice")
            servers.append(text)
        if problems:
            raise Invalid(problems)
        return tuple(servers)

    def to_toml(self, value: tuple[str, ...]) -> Any:
        return list(value)


# --- list values of the [queue] section -----------------------------------------------------


_RELAY = re.compile(r"^(?:\[(?P<inner>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?$")


def relay_problem(text: str) -> str | None:
    """Why ``text`` is not a relay as Postfix's relayhost writes it, or None if it is."""
    m = _RELAY.match(text.strip())
    if not m:
        return f'{show(text)} is not "host:port" ("[smtp.example.net]:587", "[192.0.2.7]:25")'
    if m.group("port") is not None and not 1 <= int(m.group("port")) <= 65535:
        return f"{show(text)}: port must be 1..65535"
    host = m.group("inner") or m.group("host")
    if m.group("inner") is not None and host[:5].lower() == "ipv6:":
        host = host[5:]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        problem = hostname_problem(host)
        if problem is not None:
            return f"{show(text)}: {problem}"
    return None


@dataclass(frozen=True)
class RelayHost(Spec[str]):
    """A relay host ("" for none): "[name]:port" uses the name's addresses, "name:port" its MX
    hosts (as Postfix's relayhost)."""

    TYPE: ClassVar[str] = 'string ("[host]:port")'

    def parse(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise expected(key, 'a string ("[smtp.example.net]:587")', value)
        if value.strip() and (problem := relay_problem(value)):
            raise invalid(key, problem)
        return value.strip()


@dataclass(frozen=True)
class RelayTable(Spec[tuple[tuple[str, str], ...]]):
    """Destination domain -> relay: "example.org" for that domain, ".example.org" for the
    domains below it. The typed value is ((domain, relay), ...) with the domains lower-cased."""

    TYPE: ClassVar[str] = 'table of "domain" = "[host]:port"'

    def parse(self, value: Any, key: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise expected(key, 'a table ({ "example.org" = "[10.0.0.5]:25" })', value)
        problems: list[str] = []
        out: list[tuple[str, str]] = []
        for domain, relay in value.items():
            item = f"{key}.{domain}"
            name = domain.removeprefix(".")
            if (problem := hostname_problem(name)) is not None:
                problems.append(f"{item}: {problem}")
            elif not isinstance(relay, str):
                problems.append(f'{item}: expected a string ("[host]:port"), got {show(relay)}')
            elif (problem := relay_problem(relay)) is not None:
                problems.append(f"{item}: {problem}")
            else:
                out.append((domain.lower().removesuffix("."), relay.strip()))
        if problems:
            raise Invalid(problems)
        return tuple(out)

    def to_toml(self, value: tuple[tuple[str, str], ...]) -> Any:
        return dict(value)


@dataclass(frozen=True)
class DurationList(Spec[tuple[float, ...]]):
    """A non-empty list of positive durations ("1m", "1h", or seconds), in seconds."""

    TYPE: ClassVar[str] = "list of durations"

    def parse(self, value: Any, key: str) -> tuple[float, ...]:
        if not isinstance(value, list) or not value:
            raise expected(key, 'a non-empty list of durations ("1m", "1h")', value)
        problems: list[str] = []
        out: list[float] = []
        for i, item in enumerate(value):
            try:
                out.append(Duration().parse(item, f"{key}[{i}]"))
            except Invalid as exc:
                problems += exc.problems
        if problems:
            raise Invalid(problems)
        return tuple(out)

    def to_toml(self, value: tuple[float, ...]) -> Any:
        return [format_duration(v) for v in value]


@dataclass(frozen=True)
class ServerConfig:
    hostname: str = setting(
        "",
        Hostname(),
        "The name this server announces: in the SMTP greeting and EHLO, in Received headers and "
        "DSNs, and as the TLS certificate name. It should be the name your MX record points to, "
        "and the reverse DNS of the server's public addresses. Required.",
        default_doc="none, required (`mailstead init` writes this machine's name)",
    )
    data_dir: Path = setting(
        ".",
        PathSpec(relative_to="file"),
        "Directory holding the mail store, the TLS files and other state. A relative path is "
        "relative to the directory of this configuration file; other relative paths in this file "
        "are relative to data_dir.",
    )
    user: str = setting(
        "",
        UserName(),
        "System user (name or uid) to switch to after binding the listening sockets, when started "
        "as root; it must exist (a missing user stops the start) and must not be root. Before "
        "binding, the server makes data_dir and everything under it that user's (directories "
        "0700, files 0600; symbolic links and hard-linked files are left alone), except this "
        "file, which stays root's and readable by the user's group (0640), and refuses a "
        "configuration file that user could change. After binding, it takes the user's groups, "
        "gid and uid for good, then opens the store and accepts connections. Files named here "
        "outside data_dir (a certificate under /etc, a log file) keep their owner: a reload "
        "reads them as this user, so give it read access (or the reload keeps the old ones). "
        '"" keeps the current user (as root, a warning is logged at start).',
    )
    large_message_memory: int = setting(
        "128M",
        Size(minimum=1 << 20),
        "Memory all large messages (1 MiB and more) in flight may use at once, server-wide: "
        "each is held in memory once while SMTP commits it or IMAP FETCH answers with it; POP3 "
        "RETR and TOP send it in pieces and count 4 MiB each. Past this, a session waits its "
        "turn (as clients wait for the reply to the final dot); after 2 minutes SMTP answers "
        "452 4.3.1, IMAP NO [LIMIT] and POP3 -ERR [SYS/TEMP], and the client tries again later. "
        "A message larger than the budget is handled alone.",
    )


@dataclass(frozen=True)
class ListenConfig:
    smtp: tuple[ListenAddress, ...] = setting(
        [],
        ListenList(),
        "SMTP for mail from other servers (MX), usually port 25, with STARTTLS.",
    )
    submission: tuple[ListenAddress, ...] = setting(
        [],
        ListenList(),
        "Message submission by your users' mail clients, usually port 587, with STARTTLS "
        "(RFC 6409).",
    )
    submissions: tuple[ListenAddress, ...] = setting(
        [],
        ListenList(),
        "Message submission over implicit TLS, usually port 465 (RFC 8314).",
    )
    imap: tuple[ListenAddress, ...] = setting(
        [], ListenList(), "IMAP with STARTTLS, usually port 143."
    )
    imaps: tuple[ListenAddress, ...] = setting(
        [], ListenList(), "IMAP over implicit TLS, usually port 993 (RFC 8314)."
    )
    pop3: tuple[ListenAddress, ...] = setting(
        [], ListenList(), "POP3 with STLS, usually port 110."
    )
    pop3s: tuple[ListenAddress, ...] = setting(
        [], ListenList(), "POP3 over implicit TLS, usually port 995 (RFC 8314)."
    )
    managesieve: tuple[ListenAddress, ...] = setting(
        [],
        ListenList(),
        "ManageSieve (RFC 5804) for editing filters from mail clients, usually port 4190.",
    )
    http: tuple[ListenAddress, ...] = setting(
        [],
        ListenList(),
        "Plain HTTP for the web interface: admin, webmail, autoconfig, MTA-STS policy and metrics."
        "This listener does not speak TLS: keep it on loopback and put a TLS-terminating reverse "
        "proxy in front of it for access from other machines.",
    )


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path = setting(
        "tls/cert.pem",
        PathSpec(),
        "PEM certificate chain, server certificate first. Relative to server.data_dir.",
    )
    key_file: Path = setting(
        "tls/key.pem",
        PathSpec(),
        "PEM private key of the certificate. Relative to server.data_dir. Keep it mode 0600.",
    )
    min_version: str = setting(
        "TLSv1.2",
        Choice(choices=("TLSv1.2", "TLSv1.3")),
        "Oldest TLS version accepted, on every TLS listener and STARTTLS.",
    )
    handshake_timeout: float = setting(
        "10s",
        Duration(),
        "How long a client has to complete the TLS handshake, on the implicit-TLS listeners "
        "(imaps, pop3s, submissions) and after STARTTLS/STLS; then it is disconnected. "
        "Connections to implicit-TLS listeners count against the connection limits from the "
        "moment they are accepted, before the handshake.",
    )


@dataclass(frozen=True)
class SMTPConfig:
    max_message_size: int = setting(
        "50M",
        Size(minimum=1024),
        "Largest message accepted, announced in the EHLO SIZE keyword (RFC 1870). A message over "
        "the limit is rejected with 552 as it streams, without being stored.",
    )
    max_recipients: int = setting(
        100,
        Int(minimum=1),
        "Most RCPT TO accepted in one transaction; more get 452 4.5.3 (RFC 5321 §4.5.3.1.8: "
        "servers must accept at least 100).",
    )
    max_line_length: int = setting(
        32768,
        Int(minimum=1000),
        "Longest line of message data accepted, in octets including CRLF. RFC 5321 §4.5.3.1.6 "
        "requires at least 1000; real mail often exceeds it, hence the larger default.",
    )
    max_commands: int = setting(
        10000,
        Int(minimum=1),
        "Most commands accepted in one connection before it is closed.",
    )
    max_errors: int = setting(
        20,
        Int(minimum=1),
        "Most error replies (bad commands, refused recipients, failed AUTH) in one connection "
        "before it is closed with 421.",
    )
    max_received_headers: int = setting(
        50,
        Int(minimum=1),
        "Most Received header fields a message may carry (RFC 5321 §6.3 loop detection; "
        "Postfix's hopcount_limit). One with more is refused at the end of DATA or BDAT with "
        "554 5.4.6, on port 25 and on submission.",
    )
    idle_timeout: float = setting(
        "5m",
        Duration(),
        "How long to wait for the client's next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).",
    )
    data_timeout: float = setting(
        "10m",
        Duration(),
        "How long to wait for the next chunk of message data during DATA or BDAT. Clients wait up "
        "to 10 minutes for the reply to the final dot (RFC 5321 §4.5.3.2.6); be as patient.",
    )
    helo_timeout: float = setting(
        "30s",
        Duration(),
        "How long to wait for EHLO or HELO after the greeting (and after STARTTLS), on the smtp "
        "and submission listeners; then 421 and the connection is closed. Real clients send it "
        "at once; idle connections would otherwise hold a connection slot for idle_timeout.",
    )
    session_timeout: float = setting(
        "30m",
        Duration(),
        "Longest SMTP session on the smtp listeners, from connection to close, however active: "
        "past it the server answers 421 4.4.2 and closes (a message whose data is being "
        "committed is finished first). Submission has its own, submission.session_timeout.",
    )
    max_connections: int = setting(
        1000,
        Int(minimum=1),
        "Most simultaneous SMTP connections on the smtp listeners (port 25). Submission has "
        "its own budget (submission.max_connections).",
    )
    max_connections_per_ip: int = setting(
        20,
        Int(minimum=1),
        "Most simultaneous connections to the smtp listeners from one client address (IPv6: "
        "from one /64).",
    )
    banner: str = setting(
        "ESMTP Mailstead",
        Str(),
        "Text after the host name in the 220 greeting. It must begin with ESMTP for old clients "
        "to try EHLO.",
    )
    require_tls: bool = setting(
        False,
        Bool(),
        "Refuse MAIL FROM on the smtp listeners until the client has started TLS. Keep false on "
        "port 25: many servers still send without TLS (RFC 3207 §4). Submission always requires "
        "TLS before AUTH.",
    )


@dataclass(frozen=True)
class DeliveryConfig:
    recipient_delimiter: str = setting(
        "+",
        Delimiter(),
        'Characters that separate a local part from an extension: with "+", user+tag@example.com '
        'is delivered to user@example.com. Several characters mean any of them; "" disables '
        "sub-addressing.",
    )
    max_alias_depth: int = setting(
        10,
        Int(minimum=1, maximum=100),
        "Most alias expansions followed for one recipient; deeper chains (or loops) are refused.",
    )


@dataclass(frozen=True)
class StorageConfig:
    backend: str = setting(
        "sqlite", Choice(choices=("sqlite",)), "Storage backend for mailboxes, messages and queue."
    )
    path: Path = setting(
        "mailstead.db",
        PathSpec(),
        "Database file of the sqlite backend. Relative to server.data_dir.",
    )
    compression_level: int = setting(
        3,
        Int(minimum=1, maximum=22),
        "zstd level for stored message contents: 1 is fastest, 22 smallest.",
    )
    group_commit_max_batch: int = setting(
        512,
        Int(minimum=1),
        "Most writes (deliveries, flag changes, ...) committed with one fsync.",
    )
    group_commit_max_delay: float = setting(
        "0ms",
        Duration(positive=False),
        "How long a commit waits for more writes to join it. 0 commits as soon as the previous "
        "commit has finished, with whatever queued meanwhile; a few ms can save fsyncs on slow "
        "disks at the cost of latency.",
    )


@dataclass(frozen=True)
class IMAPConfig:
    max_connections: int = setting(
        1000, Int(minimum=1), "Most simultaneous IMAP connections, over all listeners."
    )
    max_connections_per_ip: int = setting(
        50,
        Int(minimum=1),
        "Most simultaneous IMAP connections from one client address (IPv6: from one /64). Mail "
        "clients open several per account.",
    )
    append_limit: int = setting(
        "50M",
        Size(minimum=1024),
        "Largest message APPEND accepts, announced as APPENDLIMIT (RFC 7889); larger ones are "
        "refused with NO [TOOBIG] before they are sent.",
    )
    login_timeout: float = setting(
        "3m",
        Duration(),
        "How long a client has from connecting to logging in, however many commands it sends "
        "meanwhile; then * BYE and the connection is closed. Between two commands before login "
        "it may idle at most a minute.",
    )


@dataclass(frozen=True)
class POP3Config:
    max_connections: int = setting(
        1000, Int(minimum=1), "Most simultaneous POP3 connections, over all listeners."
    )
    max_connections_per_ip: int = setting(
        20,
        Int(minimum=1),
        "Most simultaneous POP3 connections from one client address (IPv6: from one /64).",
    )
    idle_timeout: float = setting(
        "10m",
        Duration(),
        "How long to wait for the client's next command after login (RFC 1939 §3: at least 10 "
        "minutes). Before login a client may idle a minute at most, and has login_timeout in all.",
    )
    max_errors: int = setting(
        10,
        Int(minimum=1),
        "Most error replies (unknown, malformed or over-long commands, commands in the wrong "
        "state, failed logins) in one connection before it is closed.",
    )
    login_timeout: float = setting(
        "3m",
        Duration(),
        "How long a client has from connecting to logging in, however many commands it sends "
        "meanwhile; then -ERR and the connection is closed.",
    )


@dataclass(frozen=True)
class AuthConfig:
    allow_plaintext_on_loopback: bool = setting(
        False,
        Bool(),
        "Accept passwords (SMTP AUTH on submission, IMAP LOGIN/AUTHENTICATE, POP3 "
        "USER/PASS/AUTH) without TLS from "
        "loopback clients, e.g. a webmail or a test on the same machine. Everyone else must use "
        "TLS first.",
    )
    max_failures: int = setting(
        5,
        Int(minimum=1),
        "Failed logins (SMTP AUTH, IMAP, POP3 together) from one client address (an IPv6 /64) "
        "within failure_window before that address is refused for ban_time, even with the "
        "right password. Logins being checked count too (parallel guesses wait their turn), "
        "and a successful login forgets only the failures on its own account.",
    )
    failure_window: float = setting(
        "10m", Duration(), "The span over which failed logins are counted."
    )
    ban_time: float = setting(
        "15m", Duration(), "How long a client address is refused after too many failed logins."
    )
    exempt_networks: tuple[str, ...] = setting(
        [],
        NetworkList(),
        "Client networks never banned for failed logins (e.g. a webmail's address). Loopback is "
        "not exempt unless listed here.",
    )


@dataclass(frozen=True)
class SubmissionConfig:
    allow_any_sender_for: tuple[str, ...] = setting(
        [],
        SenderList(),
        "Who may use any sender address on the submission listeners (MAIL FROM and From: "
        'header): account addresses, "@domain" for every account of a domain, or "*" for '
        "everyone. Everybody else may send only as their own address (with a +extension) or an "
        "alias that delivers to them; the null sender <> is always allowed.",
    )
    max_connections: int = setting(
        1000,
        Int(minimum=1),
        "Most simultaneous connections to the submission and submissions listeners (587, 465), "
        "counted apart from port 25's so that strangers filling port 25 cannot lock users out.",
    )
    max_connections_per_ip: int = setting(
        20,
        Int(minimum=1),
        "Most simultaneous submission connections from one client address (IPv6: from one /64).",
    )
    session_timeout: float = setting(
        "30m",
        Duration(),
        "Longest session on the submission listeners, from connection to close: past it the "
        "server answers 421 4.4.2 and closes (a message whose data is being committed is "
        "finished first).",
    )


@dataclass(frozen=True)
class DNSConfig:
    nameservers: tuple[str, ...] = setting(
        [],
        NameserverList(),
        "Recursive nameservers asked for MX, address, TXT (SPF, DKIM, DMARC), TLSA and PTR "
        'records, as "address:port" ("127.0.0.1:53", "[::1]:5353"; the port defaults to 53). '
        "Empty uses those of /etc/resolv.conf. For DANE, use a DNSSEC-validating resolver on "
        "this machine (e.g. unbound on 127.0.0.1).",
    )
    timeout: float = setting(
        "5s",
        Duration(),
        "How long to wait for one nameserver's answer before asking the next one (or the same "
        "one again).",
    )
    attempts: int = setting(
        2,
        Int(minimum=1, maximum=10),
        "How many times each nameserver is asked before a lookup fails. A failed lookup "
        "(after at most timeout × attempts × the number of nameservers) is a temporary "
        "failure: mail stays in the queue and is tried again later, never bounced for it.",
    )


@dataclass(frozen=True)
class QueueConfig:
    retry_schedule: tuple[float, ...] = setting(
        ["1m", "5m", "15m", "30m", "1h"],
        DurationList(),
        "How long to wait after each failed attempt before the next one: the first entry "
        "after the first attempt, and so on; after the last entry, its value again and again "
        "(hourly by default). Temporary failures (4xx replies, no connection, timeouts, DNS "
        "trouble) are retried; permanent ones (5xx) are reported at once.",
    )
    max_age: float = setting(
        "5d",
        Duration(),
        "How long a message may stay in the queue. A recipient still failing temporarily after "
        "that fails for good (status 4.4.7) and the sender gets a report (RFC 5321 §4.5.4.1 "
        "suggests 4-5 days).",
    )
    delay_warning: float = setting(
        "0s",
        Duration(positive=False),
        "Send the sender a delay warning (a DSN with action delayed) once a message has waited "
        "this long for a recipient and is still being retried; one warning per recipient. "
        '"0s" sends none. Recipients whose NOTIFY excludes DELAY never get one.',
    )
    concurrency: int = setting(
        20,
        Int(minimum=1, maximum=1000),
        "Outgoing SMTP deliveries (connections) at once, in all.",
    )
    per_destination_concurrency: int = setting(
        2,
        Int(minimum=1, maximum=100),
        "Outgoing deliveries at once to one destination domain.",
    )
    helo_name: str = setting(
        "",
        Hostname(),
        'The name given in EHLO to other servers. "" uses server.hostname.',
    )
    connect_timeout: float = setting(
        "30s",
        Duration(),
        "How long to wait for a TCP connection to a remote server before trying its next "
        "address. The waits for replies follow RFC 5321 §4.5.3.2 (5 minutes for most, 10 for "
        "the end of the data).",
    )
    remote_port: int = setting(
        25,
        Int(minimum=1, maximum=65535),
        "The port of other servers' MX hosts. Always 25 on the Internet; another value only "
        "makes sense in a test or lab network whose MX hosts all listen on another port.",
    )
    relay_host: str = setting(
        "",
        RelayHost(),
        "A relay (smarthost) that takes all outgoing mail instead of the recipients' MX hosts, "
        "as Postfix's relayhost: \"[smtp.example.net]:587\" connects to that name's addresses, "
        '"example.net" to the MX hosts of example.net (port 25 unless given). "" delivers '
        "directly. Failures to reach it are temporary: mail waits in the queue.",
    )
    relay_domains: tuple[tuple[str, str], ...] = setting(
        {},
        RelayTable(),
        'Relays per destination domain, which win over relay_host: { "example.org" = '
        '"[10.0.0.5]:25" } sends mail for example.org there, a key ".example.org" does so for '
        "every domain below example.org.",
    )
    relay_tls: str = setting(
        "auto",
        Choice(choices=("auto", "none", "opportunistic", "required", "implicit")),
        "TLS to relays: none; opportunistic (STARTTLS when offered, certificate not checked); "
        "required (STARTTLS, certificate verified against the relay's name and relay_ca_file); "
        "implicit (TLS from the first byte, port 465, verified the same way). auto is required "
        "when relay_username is set, else opportunistic.",
    )
    relay_username: str = setting(
        "",
        Str(),
        "The AUTH user name for relay_host (and for a relay_domains entry naming the same host "
        'and port). "" sends no AUTH. Credentials are never sent without TLS.',
    )
    relay_password_file: Path | None = setting(
        "",
        PathSpec(empty_is_none=True),
        "A file holding the relay password (its first line), readable only by the server: the "
        "password is never written in this file. A warning is logged when others may read it.",
    )
    relay_ca_file: Path | None = setting(
        "",
        PathSpec(empty_is_none=True),
        "CA certificates (PEM) that verify the relays' certificates. \"\" uses the system's.",
    )
    dane: bool = setting(
        True,
        Bool(),
        "Use DANE (RFC 7672): when the DNS vouches (DNSSEC, the AD bit) for an MX host's TLSA "
        "records, TLS is mandatory and the certificate must match them, or the mail waits in "
        "the queue. Needs a DNSSEC-validating resolver in [dns] nameservers, on this machine "
        "(e.g. unbound on 127.0.0.1); with one that does not validate, DANE never applies.",
    )
    mta_sts: bool = setting(
        True,
        Bool(),
        "Honour the MTA-STS policies of destination domains (RFC 8461): under an enforce "
        "policy, mail goes only to the MX hosts the policy names, over TLS with a certificate "
        "valid for the MX host name, or waits in the queue. Policies are cached in "
        "data_dir/mta-sts. DANE, where it applies, wins over MTA-STS.",
    )
    mta_sts_ca_file: Path | None = setting(
        "",
        PathSpec(empty_is_none=True),
        "CA certificates (PEM) that verify MTA-STS policy servers (https://mta-sts.<domain>) "
        'and the MX hosts of domains with an enforced policy. "" uses the system\'s.',
    )
    mta_sts_port: int = setting(
        443,
        Int(minimum=1, maximum=65535),
        "The HTTPS port MTA-STS policies are fetched from. Always 443 on the Internet; another "
        "value only makes sense in a test or lab network.",
    )


@dataclass(frozen=True)
class MailAuthConfig:
    verify: bool = setting(
        True,
        Bool(),
        "Check SPF, DKIM, DMARC and ARC of every message arriving on the smtp listener and "
        "record the results in one Authentication-Results header field (RFC 8601). Mail from "
        "authenticated users (submission) is never checked.",
    )
    authserv_id: str = setting(
        "",
        Str(),
        'The name in Authentication-Results fields; "" uses server.hostname. Incoming '
        "Authentication-Results fields that claim this name are removed first (RFC 8601 §5).",
    )
    trusted_networks: tuple[str, ...] = setting(
        [],
        NetworkList(),
        "Client networks whose mail is not checked (e.g. an internal relay that checked it "
        "already). Loopback and private addresses are checked like any other unless listed.",
    )
    dmarc_reject: str = setting(
        "reject",
        Choice(choices=("reject", "quarantine", "none")),
        "What to do with mail that fails DMARC when its domain publishes p=reject: refuse it "
        "at the end of DATA (550 5.7.1), deliver it to the Junk folder, or deliver it as usual.",
    )
    dmarc_quarantine: str = setting(
        "quarantine",
        Choice(choices=("quarantine", "none")),
        "What to do with mail that fails DMARC when its domain publishes p=quarantine: deliver "
        "it to the Junk folder, or as usual.",
    )
    arc_trusted_sealers: tuple[str, ...] = setting(
        [],
        DomainList(),
        "Forwarders (the d= of their ARC-Seal) whose valid ARC chain overrides a DMARC "
        "failure (RFC 8617 §7.2): a mailing list or forwarding service known to check mail "
        "before it changes it.",
    )
    arc_seal: bool = setting(
        True,
        Bool(),
        "ARC-seal mail that an alias forwards to a remote address, with the DKIM key of the "
        "alias's domain (when it has one; see mailstead dkim generate).",
    )


@dataclass(frozen=True)
class LogConfig:
    level: str = setting(
        "info",
        Choice(choices=("debug", "info", "warning", "error")),
        "Least severe level written.",
    )
    format: str = setting(
        "json",
        Choice(choices=("json", "text")),
        "json: one JSON object per line, for log collectors; text: for reading in a terminal.",
    )
    file: Path | None = setting(
        "",
        PathSpec(empty_is_none=True),
        'Log file, relative to server.data_dir; "" writes to standard error.',
    )


@dataclass(frozen=True)
class Config:
    """One immutable configuration snapshot. Reloading builds a new one."""

    server: ServerConfig = section(ServerConfig, "The server itself.")
    listen: ListenConfig = section(
        ListenConfig,
        'Listening sockets, one list per protocol, of "host:port" strings (IPv6 in brackets: '
        '"[::]:25"). An empty list disables the service; port 0 picks a free port (for tests).',
    )
    tls: TLSConfig = section(TLSConfig, "Certificate and protocol versions for every TLS service.")
    smtp: SMTPConfig = section(
        SMTPConfig, "The SMTP server (smtp, submission and submissions listeners): limits."
    )
    delivery: DeliveryConfig = section(DeliveryConfig, "Local delivery: address resolution.")
    storage: StorageConfig = section(StorageConfig, "Where and how mail is stored.")
    imap: IMAPConfig = section(IMAPConfig, "The IMAP server (imap and imaps listeners).")
    pop3: POP3Config = section(POP3Config, "The POP3 server (pop3 and pop3s listeners).")
    auth: AuthConfig = section(AuthConfig, "Authentication of users, for every protocol.")
    submission: SubmissionConfig = section(
        SubmissionConfig,
        "Message submission by authenticated users (submission and submissions listeners).",
    )
    dns: DNSConfig = section(
        DNSConfig,
        "The DNS resolver used for mail routing (MX) and sender checks, with a cache that "
        "respects TTLs (see docs/dns.md).",
    )
    queue: QueueConfig = section(
        QueueConfig,
        "The outbound queue: mail for other servers, retried with backoff, reported to the "
        "sender when it fails (see docs/queue.md).",
    )
    mailauth: MailAuthConfig = section(
        MailAuthConfig,
        "Checks of inbound mail: SPF, DKIM, DMARC and ARC, and what a DMARC failure does "
        "(see docs/mailauth.md).",
    )
    log: LogConfig = section(LogConfig, "Logging.")
    # Not TOML keys: where the snapshot was loaded from.
    path: Path = Path("mailstead.toml")
    base_dir: Path = Path(".")


def section_fields() -> list[dataclasses.Field[Any]]:
    """The fields of ``Config`` that are TOML sections, in file order."""
    return [f for f in dataclasses.fields(Config) if f.metadata.get("section")]


def section_class(f: dataclasses.Field[Any]) -> type[Any]:
    factory = f.default_factory
    assert isinstance(factory, type)
    return factory


def schema() -> list[tuple[str, str, list[tuple[str, dataclasses.Field[Any], Setting]]]]:
    """(section name, section doc, [(key, field, setting)]) for every section, in file order."""
    result = []
    for sec in section_fields():
        keys = [(f.name, f, setting_of(f)) for f in dataclasses.fields(section_class(sec))]
        result.append((sec.name, str(sec.metadata["doc"]), keys))
    return result
