"""A vCPU's time-stamp counter, readable from any thread without blocking.

KVM_GET_MSRS takes the vCPU's mutex, which KVM_RUN holds while the guest
runs: from another thread it would wait for the guest's next exit (for ever,
if none comes). The hypervisor's APIC timer and the partition's reference
time read the TSC from other threads, so only the thread that has the
vCPU stopped reads it exactly; the others extrapolate from its last exact
reading at the rate KVM gives the guest (KVM_GET_TSC_KHZ).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

REFRESH_NS = 50_000_000  # re-anchor on the VP's thread when older than this


class TscClock:
    """`read` reads the guest TSC (an ioctl); `owner` is the native id of
    the thread that has the vCPU stopped, None while it may be in KVM_RUN."""

    def __init__(self, read: Callable[[], int], khz: int) -> None:
        self._read = read
        self._khz = khz
        self._lock = threading.Lock()
        self.owner: int | None = threading.get_native_id()
        self._anchor = (0, 0)  # (tsc, monotonic ns) of the last exact reading
        self.exact()

    def running(self) -> None:
        """The vCPU is about to enter KVM_RUN: no more exact readings from
        other threads (one in flight finishes first)."""
        if self.owner is not None:
            with self._lock:
                self.owner = None

    def stopped(self) -> None:
        """The calling thread has the vCPU stopped."""
        self.owner = threading.get_native_id()

    def exact(self) -> int:
        """Read the TSC (the vCPU must be stopped) and re-anchor."""
        before = time.monotonic_ns()
        tsc = self._read()
        self._anchor = (tsc, (before + time.monotonic_ns()) // 2)
        return tsc

    def now(self) -> int:
        """The guest TSC now: exact on the thread that has the vCPU stopped."""
        with self._lock:
            if self.owner == threading.get_native_id():
                return self.exact()
        tsc, at = self._anchor
        return tsc + (time.monotonic_ns() - at) * self._khz // 1_000_000

    def refresh(self) -> None:
        """Re-anchor if the last exact reading is old (on the VP's thread, stopped)."""
        if time.monotonic_ns() - self._anchor[1] > REFRESH_NS:
            self.exact()
