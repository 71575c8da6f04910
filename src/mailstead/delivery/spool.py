"""Where DATA/BDAT content accumulates while it streams in: memory, then a temporary file."""

from __future__ import annotations

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

    def getvalue(self) -> bytes:
        """The whole content (read back from disk if it spilled there)."""
        if self._file is None:
            return bytes(self._buffer)
        self._file.flush()
        self._file.seek(0)
        data = self._file.read()
        self._file.seek(0, os.SEEK_END)
        return data

    def discard(self) -> None:
        self._buffer = bytearray()
        self.size = 0
        if self._file is not None:
            self._file.close()
            self._file = None
