"""Short unique identifiers for sessions and queue entries (no syscall per id)."""

from __future__ import annotations

import itertools
import os
import time

_PROCESS = os.urandom(2).hex().upper()  # tells apart processes started in the same second
_COUNTER = itertools.count()


def new_id() -> str:
    """``<unix seconds hex><process><counter>``: sortable by time, unique per process."""
    return f"{int(time.time()):08X}{_PROCESS}{next(_COUNTER) & 0xFFFFF:05X}"
