"""The timer unit of a local APIC: one-shot, periodic and TSC-deadline modes.

The current count is computed from the monotonic clock, never stepped, so
reads cost nothing and the count is right however late the timer thread
runs. Expiry is one entry in the partition's `Timers`; a periodic timer
re-arms from its previous deadline, so it keeps its phase without drift.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from mshv.hv.apic_defs import (
    APIC_TIMER_HZ,
    DIVIDE_WRITABLE,
    TIMER_PERIODIC,
    TIMER_TSC_DEADLINE,
    divisor,
)
from mshv.hv.timers import Timer, Timers

_NS = 1_000_000_000
# A periodic timer programmed faster than this fires at this rate: a guest
# cannot turn the timer thread into a busy loop. The count keeps the real rate.
MIN_PERIOD_NS = 50_000


class ApicClock(Protocol):
    """The guest TSC of the APIC's VP, for the TSC-deadline mode."""

    tsc_hz: int

    def tsc_now(self) -> int:
        """The VP's guest TSC now."""
        ...


class ApicTimer:
    """Timer registers and expiry of one APIC. Every method is called with
    the APIC's `lock` held; `fire` (deliver the LVT timer interrupt) is called
    with it held as well, from the timer thread or from a TSC-deadline write."""

    def __init__(
        self, lock: threading.Lock, timers: Timers, clock: ApicClock, fire: Callable[[], None]
    ) -> None:
        self._lock = lock
        self._timers = timers
        self._clock = clock
        self._fire = fire
        self._pending: Timer | None = None
        self._generation = 0  # bumps on every re-arm; a stale expiry sees another value
        self.reset()

    def reset(self) -> None:
        """Power-on state: stopped, divide by 2, one-shot."""
        self._disarm()
        self.initial = 0
        self.divide = 0
        self.mode = 0  # LVT timer bits 17-18, kept in step by the APIC; 3 (reserved) is one-shot
        self._running = False  # counting down (one-shot, periodic)
        self._deadline = 0  # monotonic ns of the next expiry when running
        self._period = 0  # ns of one count-down of `initial`
        self._tsc_deadline = 0

    def _tick_ns(self) -> int:
        return divisor(self.divide) * _NS // APIC_TIMER_HZ

    def _disarm(self) -> None:
        self._generation += 1
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _arm(self, deadline_ns: int) -> None:
        self._disarm()
        generation = self._generation
        self._pending = self._timers.add(deadline_ns, lambda: self._expired(generation))

    def _start(self, remaining_ns: int) -> None:
        self._period = self.initial * self._tick_ns()
        self._deadline = self._timers.now() + remaining_ns
        self._running = True
        self._arm(self._deadline)

    def set_mode(self, mode: int) -> None:
        """The LVT timer mode bits were written. Moving into or out of the
        TSC-deadline mode disarms the timer (SDM 10.5.4.1)."""
        if (mode == TIMER_TSC_DEADLINE) != (self.mode == TIMER_TSC_DEADLINE):
            self._disarm()
            self._running = False
            self._tsc_deadline = 0
        self.mode = mode

    def write_initial(self, count: int) -> None:
        """Initial count write: restart the count-down; 0 stops it. Ignored in
        the TSC-deadline mode."""
        if self.mode == TIMER_TSC_DEADLINE:
            return
        self.initial = count & 0xFFFF_FFFF
        self._disarm()
        self._running = False
        if self.initial:
            self._start(self.initial * self._tick_ns())

    def write_divide(self, value: int) -> None:
        """A new divider applies from the current count on."""
        count = self.current()
        self.divide = value & DIVIDE_WRITABLE
        if self._running and count:
            self._start(count * self._tick_ns())

    def current(self) -> int:
        """The current count register, computed from the time left."""
        if not self._running or self.mode == TIMER_TSC_DEADLINE:
            return 0
        left = self._deadline - self._timers.now()
        if left <= 0:
            if self.mode != TIMER_PERIODIC or not self._period:
                return 0  # expired one-shot; the expiry may still be on its way
            left = self._period - (-left) % self._period
        tick = self._tick_ns()
        return min(-(-left // tick), self.initial)

    def read_tsc_deadline(self) -> int:
        """IA32_TSC_DEADLINE: the armed deadline; 0 once fired or outside the mode."""
        return self._tsc_deadline if self.mode == TIMER_TSC_DEADLINE else 0

    def write_tsc_deadline(self, value: int) -> None:
        """Arm the TSC deadline (0 disarms; a past deadline fires at once).
        Ignored outside the TSC-deadline mode, as the SDM says."""
        if self.mode != TIMER_TSC_DEADLINE:
            return
        self._disarm()
        self._tsc_deadline = value
        if not value:
            return
        ticks = value - self._clock.tsc_now()
        if ticks <= 0:
            self._tsc_deadline = 0
            self._fire()
            return
        self._arm(self._timers.now() - (-ticks * _NS // self._clock.tsc_hz))

    def restore(self, initial: int, current: int, divide: int, mode: int) -> None:
        """Reload from saved registers: a timer that was counting down goes on
        from `current`. The TSC deadline is an MSR of its own, restored apart."""
        self.reset()
        self.mode = mode
        self.divide = divide & DIVIDE_WRITABLE
        self.initial = initial & 0xFFFF_FFFF
        if mode == TIMER_TSC_DEADLINE or not self.initial:
            return
        if current:
            self._start(min(current, self.initial) * self._tick_ns())
        elif mode == TIMER_PERIODIC:
            self._start(self.initial * self._tick_ns())

    def catch_up(self) -> None:
        """Deliver an expiry that is due but not yet run by the timer thread,
        so that no reader sees a timer that ran out without its interrupt."""
        pending = self._pending
        if pending is not None and pending.deadline_ns <= self._timers.now():
            self._expire()

    def _expired(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:  # else re-armed or stopped meanwhile
                self._pending = None
                self._expire()

    def _expire(self) -> None:
        self._disarm()
        if self.mode == TIMER_TSC_DEADLINE:
            self._tsc_deadline = 0
        elif self.mode == TIMER_PERIODIC and self._period:
            # The next deadline follows the previous one, skipping periods the
            # thread slept through; a fast rate is held at MIN_PERIOD_NS.
            now = self._timers.now()
            deadline = self._deadline + self._period
            if deadline <= now:
                deadline += ((now - deadline) // self._period + 1) * self._period
            self._deadline = deadline
            self._arm(max(deadline, now + MIN_PERIOD_NS))
        else:
            self._running = False
        self._fire()
