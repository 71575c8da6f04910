"""A server-wide budget of memory for large messages in flight (a semaphore counted in bytes).

A large message is held in memory, once, while it is parsed, hashed, compressed and committed
(SMTP end of data, IMAP APPEND) or while it is answered (IMAP FETCH). Every protocol takes its
share of one budget first, so N clients sending or fetching big messages at once cannot add up
to N times their size: past the budget they wait their turn, first come first served.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from collections import deque

LARGE = 1 << 20  # messages below this are not counted: they are many and each costs little
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 256 << 10


def return_large_buffers() -> bool:
    """Make glibc's malloc give every buffer of MMAP_THRESHOLD or more its own mapping, returned
    to the system when freed. Left alone, glibc raises that threshold to the size of the largest
    buffer freed so far (up to 32 MiB): after one 30 MB message every 1 MiB piece of the next
    one's compression, storage and indexing comes from the heaps of the threads that made it,
    and freed there it stays resident (measured: +40 MB for a 30 MB message). Setting the
    threshold once turns that adjustment off. True when it was set (Linux with glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class MemoryBudget:
    """At most ``limit`` bytes of large messages at once. A message larger than the whole
    budget is let in alone (counted as ``limit``), so nothing waits forever."""

    def __init__(self, limit: int, *, large: int = LARGE) -> None:
        self.limit = limit
        self.large = large
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def charge(self, size: int) -> int:
        """What a message of ``size`` octets counts for (0 when it is not large)."""
        return 0 if size < self.large else min(size, self.limit)

    async def acquire(self, size: int, wait: float) -> int | None:
        """Take the share of a message of ``size`` octets, waiting up to ``wait`` seconds
        behind earlier ones. Returns the charge to :meth:`release`, or None when the wait
        timed out (nothing was taken)."""
        charge = self.charge(size)
        if charge == 0:
            return 0
        if not self._waiters and self._fits(charge):
            self.in_use += charge
            return charge
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((charge, waiter))
        try:
            async with asyncio.timeout(wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # granted just as we gave up
                self.release(charge)
            else:
                waiter.cancel()
                self._wake()  # a smaller share behind us may fit now
            if isinstance(exc, TimeoutError):
                return None
            raise
        return charge

    def release(self, charge: int) -> None:
        if charge:
            self.in_use -= charge
            self._wake()

    def _fits(self, charge: int) -> bool:
        return self.in_use == 0 or self.in_use + charge <= self.limit

    def _wake(self) -> None:
        while self._waiters:
            charge, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._fits(charge):
                return
            self._waiters.popleft()
            self.in_use += charge
            waiter.set_result(None)
