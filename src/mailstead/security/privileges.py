"""Running as root only as long as needed: resolve ``server.user``, hand the data directory to
that user, and switch to it once the listening sockets are bound.

The order (``mailstead serve`` started as root, see ``servers/app.py``):

1. :func:`resolve_user` before anything else: a user that does not exist stops the start.
2. :func:`read_config_file`: root acts on the configuration (it changes the owner of files it
   names), so a file the server's user could rewrite is refused.
3. :func:`prepare_data_dir`: everything under ``data_dir`` becomes the user's, directories 0700
   and files 0600 (symbolic links and hard-linked files are left alone: root never changes a
   file it reaches through a name the user controls; a directory holding a third user's files,
   a home directory named by mistake, is refused). The configuration file stays root's,
   readable by the user's group (0640), so a reload can read it.
4. Bind every listener, then :func:`drop_privileges`: supplementary groups, gid and uid (real,
   effective and saved), checked afterwards (``setuid(0)`` must fail).
5. Open the store and start the worker threads, accept connections.

Files the configuration names outside ``data_dir`` (a certificate under /etc, a log file under
/var/log) keep their owner; :func:`unreadable` lists those the user cannot read after the drop,
so the server can say so.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
CONFIG_MODE = 0o640  # root-owned, readable by the user's group: reloads read it after the drop


class PrivilegeError(Exception):
    """The server cannot (or must not) start under the configured user; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The system user the server runs as after the drop."""

    name: str
    uid: int
    gid: int


def resolve_user(spec: str) -> Identity:
    """The passwd entry of ``spec`` (a user name, or a numeric uid that has an entry)."""
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except (KeyError, OverflowError):
        raise PrivilegeError(
            f"server.user: no such user {spec!r} (create it, e.g. useradd --system "
            f"--no-create-home --shell /usr/sbin/nologin {spec if not spec.isdigit() else 'NAME'})"
        ) from None
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid)


def user_problem(spec: str) -> str | None:
    """Why ``spec`` cannot be used as ``server.user`` (None: it can, or it is "")."""
    if not spec:
        return None
    try:
        identity = resolve_user(spec)
    except PrivilegeError as exc:
        return str(exc)
    if identity.uid == 0:
        return f"server.user: {spec!r} is root; name an unprivileged user"
    return None


def must_switch(identity: Identity) -> bool:
    """Whether this process has to switch to ``identity``: False when it already runs as it.
    Raises PrivilegeError when it cannot (not root, and another user)."""
    if identity.uid == 0:
        raise PrivilegeError(f"server.user: {identity.name!r} is root; name an unprivileged user")
    if os.geteuid() == 0:
        return True
    if os.getuid() == identity.uid and os.geteuid() == identity.uid:
        return False
    raise PrivilegeError(
        f"server.user is {identity.name!r} but mailstead serve runs as uid {os.geteuid()}: "
        "only root can switch user (start it as root, or leave server.user empty)"
    )


def _groups_of(identity: Identity) -> set[int]:
    return set(os.getgrouplist(identity.name, identity.gid))


def read_config_file(path: Path, identity: Identity) -> bytes:
    """The content of the configuration file, refused if the user could have written it: root
    changes owners as the file says, so a compromised server rewriting ``data_dir = "/etc"``
    would get /etc at the next start. Checked and read through one descriptor, so the file
    cannot be swapped in between."""
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            data = f.read()
    except OSError as exc:
        raise PrivilegeError(f"{path}: {exc.strerror}") from None
    writable_by_user = (
        info.st_uid == identity.uid
        or bool(info.st_mode & stat.S_IWOTH)
        or (bool(info.st_mode & stat.S_IWGRP) and info.st_gid in _groups_of(identity))
    )
    if writable_by_user:
        raise PrivilegeError(
            f"{path} can be changed by {identity.name!r}, the user the server switches to; "
            f"make it root's: chown root:{identity.gid} {path} && chmod {CONFIG_MODE:o} {path}"
        )
    return data


@dataclass(frozen=True, slots=True)
class Skipped:
    """A name under ``data_dir`` that was left as it is, and why."""

    path: str
    reason: str


def prepare_data_dir(data_dir: Path, identity: Identity, *, config_file: Path) -> list[Skipped]:
    """As root: make ``data_dir`` (created if missing) and everything under it belong to
    ``identity`` (directories 0700, files 0600), except ``config_file`` when it lies there
    (root's, group ``identity.gid``, 0640). Never follows a symbolic link and never changes a
    file with several hard links (either could point outside ``data_dir``); returns those left
    alone. The walk works on descriptors (``os.fwalk``), so a name swapped while it runs is
    not followed either."""
    top = Path(os.path.realpath(data_dir))
    if top == Path(top.anchor):
        raise PrivilegeError(f"server.data_dir is {top}: refusing to hand it to {identity.name!r}")
    top.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _check_no_third_party(top, identity)
    config = Path(os.path.realpath(config_file))
    skipped: list[Skipped] = []
    for dirpath, _dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        _own(dirfd, identity.uid, identity.gid, DIR_MODE)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if Path(path) == config:
                skipped += _fix_file(dirfd, name, path, 0, identity.gid, CONFIG_MODE)
            else:
                skipped += _fix_file(dirfd, name, path, identity.uid, identity.gid, FILE_MODE)
    return skipped


def _check_no_third_party(top: Path, identity: Identity) -> None:
    """Refuse a data directory holding files of a third user (neither root nor ``identity``):
    a data_dir pointing at a home or shared directory by mistake is not handed over."""
    for dirpath, _dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        for name in (".", *filenames):
            try:
                owner = os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid
            except FileNotFoundError:
                continue
            if owner not in (0, identity.uid):
                path = os.path.normpath(os.path.join(dirpath, name))
                raise PrivilegeError(
                    f"{path} belongs to uid {owner}, neither root nor {identity.name!r}: "
                    f"server.data_dir {top} is not handed over (chown it to "
                    f"{identity.name!r} if it is the right directory)"
                )


def _own(fd: int, uid: int, gid: int, mode: int) -> None:
    info = os.fstat(fd)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    if stat.S_IMODE(info.st_mode) != mode:
        os.fchmod(fd, mode)


def _fix_file(dirfd: int, name: str, path: str, uid: int, gid: int, mode: int) -> list[Skipped]:
    # fwalk lists symbolic links (and sockets, FIFOs) among the files: open none of them.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        before = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if not stat.S_ISREG(before.st_mode):
            kind = "symbolic link" if stat.S_ISLNK(before.st_mode) else "not a regular file"
            return [Skipped(path, kind)]
        fd = os.open(name, flags, dir_fd=dirfd)
    except FileNotFoundError:
        return []  # gone meanwhile (a spool file, the -shm of a closing database)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return [Skipped(path, "symbolic link")]
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return [Skipped(path, "not a regular file")]
        if info.st_nlink != 1:
            return [Skipped(path, f"{info.st_nlink} hard links")]
        _own(fd, uid, gid, mode)
    finally:
        os.close(fd)
    return []


def drop_privileges(identity: Identity) -> None:
    """Switch this process (every thread: glibc applies set*id to all of them) to ``identity``
    for good: the user's groups only, then gid, then uid, real, effective and saved alike.
    Raises PrivilegeError if root could be regained."""
    os.initgroups(identity.name, identity.gid)  # replaces root's supplementary groups
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PrivilegeError(f"switching to {identity.name!r} did not take effect")
    if 0 in os.getgroups() and identity.gid != 0:
        raise PrivilegeError(f"switching to {identity.name!r} kept group root")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError(f"switched to {identity.name!r} but could become root again")


def inaccessible(paths: Iterable[Path], mode: int = os.R_OK) -> list[Path]:
    """Those of ``paths`` (that exist) this process cannot access with ``mode``: after the drop,
    the files a reload opens again and the user cannot."""
    return [p for p in paths if p.exists() and not os.access(p, mode)]


def inaccessible_dir(path: Path) -> str | None:
    """Why this process cannot create and use files in directory ``path`` (None: it can)."""
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return (
            f"{path}: not usable by uid {os.getuid()} (is it, or a parent directory, closed "
            "to the server's user?)"
        )
    return None
