"""The partition's timer thread: deadline order, cancellation, failing
callbacks, and no thread left behind by close()."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from mshv.hv.timers import Timers

MS = 1_000_000


def _timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mshv-timers")]


@pytest.fixture
def timers() -> Iterator[Timers]:
    t = Timers()
    yield t
    t.close()
    assert _timer_threads() == []


def _wait(event: threading.Event) -> None:
    assert event.wait(5.0), "the timer did not fire within 5 s"


def _park(timers: Timers) -> threading.Event:
    """Keep the timer thread busy in a callback until the event is set, so
    that timers due meanwhile cannot start whatever the machine's load."""
    parked, release = threading.Event(), threading.Event()

    def park() -> None:
        parked.set()
        release.wait(10.0)

    timers.add(timers.now(), park)
    _wait(parked)
    return release


def test_no_thread_until_the_first_timer(timers: Timers) -> None:
    assert _timer_threads() == []
    done = threading.Event()
    timers.add(timers.now(), done.set)
    _wait(done)
    assert len(_timer_threads()) == 1


def test_callbacks_run_in_deadline_order_and_equal_deadlines_in_order_added(
    timers: Timers,
) -> None:
    order: list[str] = []
    done = threading.Event()

    def last() -> None:
        order.append("c")
        done.set()

    release = _park(timers)  # all four are due when the thread comes back
    base = timers.now()
    timers.add(base + 3 * MS, last)
    timers.add(base + 1 * MS, lambda: order.append("a1"))
    timers.add(base + 2 * MS, lambda: order.append("b"))
    timers.add(base + 1 * MS, lambda: order.append("a2"))
    time.sleep(0.004)
    release.set()
    _wait(done)
    assert order == ["a1", "a2", "b", "c"]


def test_a_timer_fires_no_earlier_than_its_deadline(timers: Timers) -> None:
    fired_at: list[int] = []
    done = threading.Event()
    deadline = timers.now() + 5 * MS

    def fire() -> None:
        fired_at.append(timers.now())
        done.set()

    timers.add(deadline, fire)
    _wait(done)
    assert fired_at[0] >= deadline


def test_an_earlier_timer_added_later_wakes_the_thread(timers: Timers) -> None:
    done = threading.Event()
    timers.add(timers.now() + 3600 * 1000 * MS, lambda: None)  # the thread sleeps on this
    start = time.monotonic()
    timers.add(timers.now() + 2 * MS, done.set)
    _wait(done)
    assert time.monotonic() - start < 2.0


def test_a_cancelled_timer_never_runs(timers: Timers) -> None:
    ran: list[int] = []
    done = threading.Event()
    release = _park(timers)
    t = timers.add(timers.now(), lambda: ran.append(1))  # due while the thread is busy
    assert t.pending
    t.cancel()
    t.cancel()  # idempotent
    assert not t.pending
    timers.add(timers.now(), done.set)
    release.set()
    _wait(done)
    assert ran == []


def test_cancel_after_firing_is_harmless(timers: Timers) -> None:
    done = threading.Event()
    t = timers.add(timers.now(), done.set)
    _wait(done)
    assert not t.pending
    t.cancel()


def test_many_cancelled_timers_do_not_pile_up(timers: Timers) -> None:
    far = timers.now() + 3600 * 1000 * MS
    for _ in range(1000):
        timers.add(far, lambda: None).cancel()
    assert len(timers._heap) < 200
    done = threading.Event()
    timers.add(timers.now() + MS, done.set)
    _wait(done)


def test_a_failing_callback_is_logged_and_the_thread_goes_on(
    timers: Timers, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    done = threading.Event()
    with caplog.at_level(logging.ERROR, logger="mshv.hv.timers"):
        timers.add(timers.now(), boom)
        timers.add(timers.now() + 5 * MS, done.set)
        _wait(done)
    assert any("boom" in (r.exc_text or "") for r in caplog.records)


def test_a_callback_may_re_arm_itself(timers: Timers) -> None:
    count = 0
    done = threading.Event()

    def tick() -> None:
        nonlocal count
        count += 1
        if count < 5:
            timers.add(timers.now() + MS, tick)
        else:
            done.set()

    timers.add(timers.now(), tick)
    _wait(done)
    assert count == 5


def test_cancel_from_another_thread(timers: Timers) -> None:
    ran: list[int] = []
    release = _park(timers)
    ts = [timers.add(timers.now() + i * 100_000, lambda: ran.append(1)) for i in range(50)]

    def cancel_all() -> None:
        for t in ts:
            t.cancel()

    canceller = threading.Thread(target=cancel_all)
    canceller.start()
    canceller.join()
    done = threading.Event()
    timers.add(timers.now() + 6 * MS, done.set)
    release.set()
    _wait(done)
    assert ran == []


def test_close_stops_the_thread_and_is_idempotent() -> None:
    timers = Timers()
    ran: list[int] = []
    release = _park(timers)
    timers.add(timers.now(), lambda: ran.append(1))  # due, but the thread is busy
    closer = threading.Thread(target=timers.close)
    closer.start()
    while not timers._closed:
        time.sleep(0.001)
    release.set()  # close() waits for the running callback, then the thread ends
    closer.join(10.0)
    timers.close()
    assert _timer_threads() == []
    assert ran == []
    with pytest.raises(RuntimeError):
        timers.add(0, lambda: None)


def test_close_without_timers_and_as_a_context_manager() -> None:
    Timers().close()
    with Timers() as timers:
        done = threading.Event()
        timers.add(timers.now(), done.set)
        _wait(done)
    assert _timer_threads() == []


def test_close_from_a_callback_does_not_deadlock() -> None:
    timers = Timers()
    done = threading.Event()

    def close() -> None:
        timers.close()
        done.set()

    timers.add(timers.now(), close)
    _wait(done)
    deadline = time.monotonic() + 5
    while _timer_threads() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert _timer_threads() == []
