"""Where DATA/BDAT content accumulates while it streams in: memory, then a temporary file."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class Spool:
    """Append-only message buffer that moves to disk past ``memory_limit`` bytes."""

    def __init__(self, directory: Path | None, memory_limit: int = 1 << 20) -> None:
        self._directory = directory
        self._memory_limit = memory_limit
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None:
            self._buffer += data
            if len(self._buffer) > self._memory_limit:
                if self._directory is not None:
                    self._directory.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115 - kept open
                self._file.write(self._buffer)
                self._buffer = bytearray()
        else:
            self._file.write(data)

    def getvalue(self, prefix: bytes = b"") -> bytes:
        """``prefix`` and the whole content, as one object made once: content that spilled to
        disk is copied behind the prefix in the kernel and read back in one piece, so a large
        message never exists twice in memory here."""
        if self._file is None:
            return prefix + self._buffer
        self._file.flush()
        if not prefix:
            return _read_whole(self._file.fileno(), self.size)
        with tempfile.TemporaryFile(dir=self._directory) as joined:
            joined.write(prefix)
            joined.flush()
            _copy(self._file.fileno(), joined.fileno(), self.size)
            return _read_whole(joined.fileno(), len(prefix) + self.size)

    def discard(self) -> None:
        self._buffer = bytearray()
        self.size = 0
        if self._file is not None:
            self._file.close()
            self._file = None


def _copy(source: int, target: int, size: int) -> None:
    """Append the first ``size`` octets of ``source`` to ``target`` (at its position), in the
    kernel when it can, else in 1 MiB pieces."""
    done = 0
    try:
        while done < size:
            copied = os.copy_file_range(source, target, size - done, done)
            if copied <= 0:
                raise OSError("spool file shorter than its content")
            done += copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        while done < size:
            piece = os.pread(source, min(size - done, 1 << 20), done)
            if not piece:
                raise OSError("spool file shorter than its content") from None
            os.write(target, piece)
            done += len(piece)


def _read_whole(fd: int, size: int) -> bytes:
    """``size`` octets from the start of ``fd``, read into one bytes object (no joined pieces
    unless the kernel returns less than asked, which it does not for regular files)."""
    data = os.pread(fd, size, 0)
    if len(data) == size:
        return data
    pieces = [data]
    done = len(data)
    while done < size:
        piece = os.pread(fd, size - done, done)
        if not piece:
            raise OSError("spool file shorter than its content")
        pieces.append(piece)
        done += len(piece)
    return b"".join(pieces)
