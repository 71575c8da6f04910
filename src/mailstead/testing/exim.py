"""A private Exim (Debian's ``exim4-daemon-light``) as a real SMTP peer, for tests.

Installing Debian's Exim package would remove Postfix (both provide ``mail-transport-agent``),
which other tests need, so the package is never installed: ``install_exim()`` downloads the
``.deb`` files with ``apt-get download`` into a cache directory and unpacks them with
``dpkg-deb -x``. Exim insists on its compiled-in user ``Debian-exim`` existing (and not
being root); nothing is added to the system's user database: ``libnss-wrapper`` (also
unpacked, loaded with ``LD_PRELOAD``) makes that name resolve to an unprivileged uid, and
the unpacked binary loses its set-uid bit so that the loader honours the preload when Exim
re-executes itself.

``with exim_peer(install, port=PORT, tls=False, directory=...) as exim:`` writes a
configuration that sends every message to ``127.0.0.1:PORT`` (a manualroute router and an
smtp transport; cleartext, or TLS required without certificate verification), with its own
spool and logs. ``exim.submit(...)`` hands a message to Exim (``-odi``: delivered before
the call returns), ``exim.queue_run()`` runs the queue once (``-qff``), ``exim.mainlog()``
reads its log. Nothing listens: Exim only acts as a client of the server under test.

``exim_unavailable()`` says why Exim cannot be obtained here (no ``apt-get``, no network,
a library missing), for a test's skip reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("exim4-daemon-light", "libnss-wrapper")
COMMAND_TIMEOUT = 120.0
_ENV_NAMES = ("LD_PRELOAD", "LD_LIBRARY_PATH", "NSS_WRAPPER_PASSWD", "NSS_WRAPPER_GROUP")


class EximUnavailable(RuntimeError):
    """Exim could not be downloaded, unpacked or run here; the message says why."""


@dataclass(frozen=True)
class EximInstall:
    """An unpacked Exim: its binary, the NSS wrapper it runs with, extra library dirs."""

    root: Path
    binary: Path
    nss_wrapper: Path
    library_path: str  # for LD_LIBRARY_PATH ("" when the system has every library)


def default_cache() -> Path:
    """``$MAILSTEAD_TEST_CACHE``, else a directory of this user under the temporary directory
    (world-traversable: when run as root, Exim's delivery processes run as another uid and
    re-execute the binary from there)."""
    configured = os.environ.get("MAILSTEAD_TEST_CACHE")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"mailstead-test-cache-{os.getuid()}"


def _own_directory(path: Path) -> None:
    """Create ``path`` (0755) or check that an existing one is ours and writable only by us
    (a shared temporary directory: someone else could have prepared it)."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise EximUnavailable(f"{path} is not a directory of this user")
    if info.st_mode & 0o022:
        raise EximUnavailable(f"{path} is writable by others")
    path.chmod(0o755)


def _run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    return subprocess.run(
        args, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT,
        check=False,
    )  # fmt: skip


def _tail(result: subprocess.CompletedProcess[bytes]) -> str:
    text = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-8:])


def _download(packages: list[str], debs: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EximUnavailable("apt-get and dpkg-deb are needed to fetch Debian's Exim")
    result = _run(["apt-get", "download", *packages], cwd=debs)
    if result.returncode != 0:
        raise EximUnavailable(f"apt-get download {' '.join(packages)} failed:\n{_tail(result)}")


def _unpack(debs: Path, root: Path) -> None:
    for deb in sorted(debs.glob("*.deb")):
        result = _run(["dpkg-deb", "-x", str(deb), str(root)])
        if result.returncode != 0:
            raise EximUnavailable(f"dpkg-deb -x {deb.name} failed:\n{_tail(result)}")


def _library_dirs(root: Path) -> str:
    """Every unpacked directory holding shared libraries (for LD_LIBRARY_PATH)."""
    return ":".join(sorted({str(p.parent) for p in root.glob("**/lib*.so*")}))


def _missing_libraries(binary: Path, library_path: str) -> list[str]:
    env = dict(os.environ)
    if library_path:
        env["LD_LIBRARY_PATH"] = library_path
    result = _run(["ldd", str(binary)], env=env)
    return re.findall(r"^\s*(\S+) => not found", result.stdout.decode(), re.MULTILINE)


def _uninstalled_dependencies(package: str) -> list[str]:
    """The direct dependencies of ``package`` that dpkg does not have installed."""
    result = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", package])
    names = re.findall(r"^\s*\|?Depends: (\S+)", result.stdout.decode(), re.MULTILINE)
    missing = []
    for name in dict.fromkeys(n for n in names if not n.startswith("<")):
        status = _run(["dpkg-query", "-W", "-f=${Status}", name])
        if b"install ok installed" not in status.stdout:
            missing.append(name)
    return missing


def _binary_in(root: Path) -> Path:
    return root / "usr/sbin/exim4"


def _wrapper_in(root: Path) -> Path | None:
    return next(iter(sorted(root.glob("usr/lib/*/libnss_wrapper.so"))), None) or next(
        iter(sorted(root.glob("usr/lib/libnss_wrapper.so"))), None
    )


def install_exim(cache: Path | None = None) -> EximInstall:
    """Download and unpack Exim once into ``cache`` (see ``default_cache``), or reuse what an
    earlier call unpacked; raises EximUnavailable with the reason when that is impossible."""
    cache = cache or default_cache()
    _own_directory(cache)
    root = cache / "exim-root"
    with (cache / "exim.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes unpack once
        ready = cache / "exim.ready"
        if not (ready.exists() and _binary_in(root).exists() and _wrapper_in(root)):
            shutil.rmtree(root, ignore_errors=True)
            debs = cache / "exim-debs"
            shutil.rmtree(debs, ignore_errors=True)
            _own_directory(debs)
            _own_directory(root)
            _download(list(PACKAGES), debs)
            _unpack(debs, root)
            binary = _binary_in(root)
            if not binary.exists():
                raise EximUnavailable(f"{binary} missing after unpacking {PACKAGES[0]}")
            # no set-uid: the loader then honours LD_PRELOAD when Exim re-executes itself
            binary.chmod(0o755)
            if _missing_libraries(binary, _library_dirs(root)):
                dependencies = _uninstalled_dependencies(PACKAGES[0])
                if dependencies:
                    _download(dependencies, debs)
                    _unpack(debs, root)
            ready.write_text("unpacked\n", encoding="utf-8")
    binary = _binary_in(root)
    wrapper = _wrapper_in(root)
    if wrapper is None:
        raise EximUnavailable("libnss_wrapper.so missing after unpacking libnss-wrapper")
    library_path = _library_dirs(root)
    missing = _missing_libraries(binary, library_path)
    if missing:
        raise EximUnavailable(f"Exim needs libraries this system lacks: {', '.join(missing)}")
    return EximInstall(root, binary, wrapper, library_path)


def exim_unavailable(cache: Path | None = None) -> str | None:
    """Why Exim cannot be obtained here, or None when it can (downloads it if needed)."""
    try:
        install_exim(cache)
    except (EximUnavailable, OSError, subprocess.SubprocessError) as exc:
        return f"Debian's Exim cannot be obtained: {exc}"
    return None


def _exim_ids() -> tuple[int, int]:
    """The uid and gid Exim's user maps to: ours, or (as root, which Exim refuses for its
    user) nobody's."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


def _config(install: EximInstall, work: Path, *, host: str, port: int, tls: bool) -> str:
    keep = " : ".join(_ENV_NAMES)
    tls_lines = (
        ["  hosts_require_tls = *", "  tls_verify_hosts =", "  tls_try_verify_hosts ="]
        if tls
        else ["  hosts_avoid_tls = *"]
    )
    lines = [
        "# written by mailstead.testing.exim",
        "exim_user = Debian-exim",
        "exim_group = Debian-exim",
        f"exim_path = {install.binary}",
        f"keep_environment = {keep}",
        f"spool_directory = {work}/spool",
        f"log_file_path = {work}/log/%slog",
        "primary_hostname = exim.test",
        "qualify_domain = exim.test",
        "tls_advertise_hosts =",
        "begin routers",
        "to_server:",
        "  driver = manualroute",
        f"  route_list = * {host} byname",
        "  transport = to_server",
        "  self = send",
        "begin transports",
        "to_server:",
        "  driver = smtp",
        f"  port = {port}",
        "  allow_localhost",
        "  command_timeout = 60s",
        "  data_timeout = 60s",
        "  final_timeout = 60s",
        *tls_lines,
        "begin retry",
        "* * F,1h,5m",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class EximPeer:
    """A configured private Exim (see ``exim_peer``)."""

    install: EximInstall
    directory: Path
    config: Path
    env: dict[str, str]

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return _run([str(self.install.binary), "-C", str(self.config), *args],
                    env=self.env, stdin=stdin)  # fmt: skip

    def submit(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Hand ``message`` to Exim and let it deliver at once (``-odi``): it has tried the
        server when this returns."""
        result = self.run("-odi", "-f", sender, "--", *recipients, stdin=message)
        if result.returncode != 0:
            raise EximUnavailable(f"exim refused the message:\n{_tail(result)}\n{self.mainlog()}")

    def queue_run(self) -> None:
        """One forced run over the whole queue (retries what was deferred)."""
        result = self.run("-qff")
        if result.returncode != 0:
            raise EximUnavailable(f"exim -qff failed:\n{_tail(result)}")

    def queue_size(self) -> int:
        result = self.run("-bpc")
        return int(result.stdout.decode().strip() or 0)

    def mainlog(self) -> str:
        parts = []
        for name in ("mainlog", "paniclog", "rejectlog"):
            path = self.directory / "log" / name
            if path.exists():
                parts.append(path.read_text("utf-8", "replace"))
        return "".join(parts)


@contextlib.contextmanager
def exim_peer(
    install: EximInstall, *, port: int, tls: bool = False, host: str = "127.0.0.1"
) -> Iterator[EximPeer]:
    """A private Exim whose every message goes to ``host:port`` (with TLS required when
    ``tls``), its spool and logs in a fresh directory removed when the block ends."""
    work = Path(tempfile.mkdtemp(prefix="mailstead-exim-"))
    try:
        work.chmod(0o755)  # Exim's user (maybe not us) reads its configuration and spool here
        uid, gid = _exim_ids()
        for sub in ("spool", "log"):
            (work / sub).mkdir()
            if os.getuid() == 0:
                os.chown(work / sub, uid, gid)
        (work / "passwd").write_text(
            f"{pwd.getpwuid(os.getuid()).pw_name}:x:{os.getuid()}:{os.getgid()}::/:/bin/false\n"
            f"Debian-exim:x:{uid}:{gid}:Exim:{work}:/bin/false\n",
            encoding="utf-8",
        )
        (work / "group").write_text(f"Debian-exim:x:{gid}:\n", encoding="utf-8")
        config = work / "exim.conf"
        config.write_text(_config(install, work, host=host, port=port, tls=tls), "utf-8")
        config.chmod(0o644)  # Exim refuses a configuration that others could change
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LD_PRELOAD": str(install.nss_wrapper),
            "NSS_WRAPPER_PASSWD": str(work / "passwd"),
            "NSS_WRAPPER_GROUP": str(work / "group"),
        }
        if install.library_path:
            env["LD_LIBRARY_PATH"] = install.library_path
        yield EximPeer(install, work, config, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
