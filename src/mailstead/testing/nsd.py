"""A private NSD (NLnet Labs' authoritative DNS server) on loopback, for tests that need real DNS.

``with nsd_server({"example.test": ZONE_TEXT}, tmp_path) as (host, port):`` writes the zone files
and an ``nsd.conf`` under the given directory, starts ``nsd -d`` on a free UDP+TCP port of
``127.0.0.1`` (or ``::1``), waits until it answers the SOA of every zone, and stops it (its own
process group, nothing else) on exit. Point a resolver at ``server.nameserver``
(``"127.0.0.1:PORT"``). Zone texts are ordinary master files; ``$ORIGIN`` defaults to the zone
name. A zone given as ``None`` is declared without a file, so NSD answers SERVFAIL for it.

``nsd_missing()`` says why the server cannot run here (no ``nsd`` binary), for a test's skip
reason. ``scripts/install-test-deps`` installs it (Debian package ``nsd``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

START_TIMEOUT = 15.0
PORT_TRIES = 5


class NsdError(RuntimeError):
    """NSD could not be started (bad zone, no free port, missing binary); the message includes
    the end of its log."""


class NsdServer(NamedTuple):
    host: str
    port: int

    @property
    def nameserver(self) -> str:
        """The server as a ``[dns] nameservers`` entry."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None
    )


def nsd_missing() -> str | None:
    """Why NSD cannot run here, or None when it can."""
    if _binary("nsd") is None:
        return "nsd is not installed (scripts/install-test-deps installs the Debian package)"
    return None


def _free_port(host: str) -> int:
    """A port free for both UDP and TCP on ``host`` (the caller retries if it is taken before
    NSD binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise NsdError(f"no port free for both UDP and TCP on {host}")


def _config(directory: Path, host: str, port: int, zones: Mapping[str, str | None]) -> str:
    lines = [
        "# written by mailstead.testing.nsd",
        "server:",
        f"    ip-address: {host}",
        f"    port: {port}",
        f"    do-ip4: {'no' if ':' in host else 'yes'}",
        f"    do-ip6: {'yes' if ':' in host else 'no'}",
        '    username: ""',
        '    chroot: ""',
        f'    zonesdir: "{directory}"',
        '    database: ""',
        f'    pidfile: "{directory}/nsd.pid"',
        f'    logfile: "{directory}/nsd.log"',
        f'    xfrdfile: "{directory}/xfrd.state"',
        f'    xfrdir: "{directory}/xfr"',
        f'    zonelistfile: "{directory}/zone.list"',
        "    server-count: 1",
        "    verbosity: 1",
        "remote-control:",
        "    control-enable: no",
    ]
    for name in zones:
        lines += ["zone:", f"    name: {name}", f"    zonefile: {name}.zone"]
    return "\n".join(lines) + "\n"


def _write_zones(directory: Path, zones: Mapping[str, str | None]) -> None:
    (directory / "xfr").mkdir(parents=True, exist_ok=True)
    checkzone = _binary("nsd-checkzone")
    for name, text in zones.items():
        path = directory / f"{name}.zone"
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.write_text(text, encoding="utf-8")
        if checkzone is not None:
            check = subprocess.run(
                [checkzone, name, str(path)], capture_output=True, text=True, check=False
            )
            if check.returncode != 0:
                raise NsdError(f"zone {name} is invalid: {check.stdout}{check.stderr}".strip())


def _rcode(host: str, port: int, zone: str) -> int | None:
    """The rcode NSD gives to the SOA query of ``zone``, None without an answer."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        response = dns.query.udp(query, host, port=port, timeout=0.2)
    except (dns.exception.DNSException, OSError):
        return None
    return int(response.rcode())


def _ready(host: str, port: int, served: list[str]) -> bool:
    if not served:
        return _rcode(host, port, ".") is not None
    return all(_rcode(host, port, zone) == dns.rcode.NOERROR for zone in served)


def _log_tail(directory: Path) -> str:
    try:
        text = (directory / "nsd.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-15:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # nsd -d leads its own process group (start_new_session): its server children with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def run_on_free_port(
    host: str,
    directory: Path,
    name: str,
    command: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    why_not: Callable[[int], str],
    error: type[Exception],
) -> Iterator[int]:
    """Start ``command(port)`` (a daemon in the foreground, its own process group, output in
    ``directory/<name>.out``) on a free port of ``host`` and poll ``ready(port)`` until it says
    yes, trying another port (PORT_TRIES in all) when the daemon dies or never gets ready;
    yields the port, or raises ``error`` with the last ``why_not(port)`` when no attempt worked.
    The daemon is stopped when the block ends."""
    problem = "no attempt made"
    for _ in range(PORT_TRIES):
        port = _free_port(host)
        with (directory / f"{name}.out").open("wb") as out:
            process = subprocess.Popen(
                command(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            ok = False
            while not ok and process.poll() is None and time.monotonic() < deadline:
                ok = ready(port)
                if not ok:
                    # A refused probe returns at once: pace the polling on the process instead.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=0.02)
            if not ok:
                problem = why_not(port)
                _stop(process)
                continue  # most likely the port was taken meanwhile: try another
            yield port
            return
        finally:
            _stop(process)
    raise error(problem)


@contextlib.contextmanager
def nsd_server(
    zones: Mapping[str, str | None], directory: Path, *, host: str = "127.0.0.1"
) -> Iterator[NsdServer]:
    """Serve ``zones`` (zone name -> master file text) on ``host`` and a free port until the
    block ends. ``directory`` holds the configuration, zone files and ``nsd.log``."""
    nsd = _binary("nsd")
    if nsd is None:
        raise NsdError(nsd_missing() or "nsd is not installed")
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _write_zones(directory, zones)
    served = [name for name, text in zones.items() if text is not None]
    conf = directory / "nsd.conf"

    def command(port: int) -> list[str]:
        conf.write_text(_config(directory, host, port, zones), encoding="utf-8")
        (directory / "nsd.log").unlink(missing_ok=True)
        return [nsd, "-d", "-c", str(conf)]

    def why_not(port: int) -> str:
        return f"nsd did not answer on {host}:{port}:\n{_log_tail(directory)}"

    def ready(port: int) -> bool:
        return _ready(host, port, served)

    with run_on_free_port(host, directory, "nsd", command, ready, why_not, NsdError) as port:
        yield NsdServer(host, port)
