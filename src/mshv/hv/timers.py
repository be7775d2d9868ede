"""Deadline timers of one partition, run on one daemon thread.

Every local APIC timer of a partition (one-shot, periodic, TSC deadline)
is an entry in one heap ordered by `time.monotonic_ns()` deadlines. The
thread starts on the first `add` and sleeps on a condition until the
earliest deadline, so an idle partition costs nothing.

Callbacks run on the timer thread without the Timers lock held: a callback
may take its owner's lock and add or cancel timers (a periodic timer re-arms
itself from its callback). The owner's lock may be held while calling `add`
or `cancel`, since the Timers lock is never held while a callback runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PENDING, _FIRED, _CANCELLED = 0, 1, 2
# Condition.wait refuses timeouts above threading.TIMEOUT_MAX; a far-away
# deadline (a huge TSC deadline) is reached by waking up once a day.
_MAX_WAIT_S = 86400.0


class Timer:
    """One deadline registered with `Timers.add`; `cancel()` withdraws it."""

    __slots__ = ("_callback", "_owner", "_state", "deadline_ns")

    def __init__(self, owner: Timers, deadline_ns: int, callback: Callable[[], None]) -> None:
        self._owner = owner
        self._callback = callback
        self._state = _PENDING
        self.deadline_ns = deadline_ns

    @property
    def pending(self) -> bool:
        """True until the timer fires or is cancelled."""
        return self._state == _PENDING

    def cancel(self) -> None:
        """Withdraw the timer (idempotent). Once this returns the callback
        will not start, unless the timer thread had already begun to run it."""
        self._owner._cancel(self)


class Timers:
    """The timer thread of one partition: `add` deadlines, `close` at the end."""

    def __init__(self, *, name: str = "mshv-timers") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._heap: list[tuple[int, int, Timer]] = []
        self._order = itertools.count()  # equal deadlines fire in the order added
        self._cancelled = 0  # cancelled entries still in the heap
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> int:
        """The clock deadlines are measured on (`time.monotonic_ns`)."""
        return time.monotonic_ns()

    def add(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        """Run `callback` on the timer thread once `now()` reaches `deadline_ns`
        (at once if it already has). Raises RuntimeError after `close()`."""
        timer = Timer(self, deadline_ns, callback)
        with self._lock:
            if self._closed:
                raise RuntimeError("the partition's timers are closed")
            heapq.heappush(self._heap, (deadline_ns, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:  # the thread sleeps until a later deadline
                self._wakeup.notify()
        return timer

    def _cancel(self, timer: Timer) -> None:
        with self._lock:
            if timer._state != _PENDING:
                return
            timer._state = _CANCELLED
            self._cancelled += 1
            # Guests re-arm TSC deadlines on every tick: drop dead entries
            # before they outnumber the live ones, so the heap stays small.
            if self._cancelled > 64 and 2 * self._cancelled > len(self._heap):
                self._heap[:] = [e for e in self._heap if e[2]._state == _PENDING]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent). Timers still pending
        never fire; a callback already running completes first, so do not
        call this holding a lock that a callback takes."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            for _, _, timer in self._heap:
                timer._state = _CANCELLED
            self._heap.clear()
            self._wakeup.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Timers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> Timer | None:
        """Wait for the earliest live deadline; None once closed."""
        heap = self._heap  # compaction rewrites it in place
        with self._lock:
            while not self._closed:
                if not heap:
                    self._wakeup.wait()
                    continue
                deadline, _, timer = heap[0]
                if timer._state != _PENDING:
                    heapq.heappop(heap)
                    self._cancelled -= 1
                    continue
                delay = deadline - self.now()
                if delay <= 0:
                    heapq.heappop(heap)
                    timer._state = _FIRED  # from here on cancel() cannot stop it
                    return timer
                self._wakeup.wait(min(delay / 1e9, _MAX_WAIT_S))
            return None

    def _run(self) -> None:
        while (timer := self._next()) is not None:
            try:
                timer._callback()
            except Exception:
                log.exception("timer callback %r failed", timer._callback)
