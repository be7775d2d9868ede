"""The stateful fuzzer (tests/fuzz/surface.py) on both engines, with a short
budget; `python -m tests.fuzz.soak` runs it for as long as asked."""

from __future__ import annotations

import faulthandler

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.fuzz.surface import SyscallSurface, calls, settle_threads, warm
from tests.process import open_fds

HANG_LIMIT_S = 300  # a hung call dumps every thread's stack and ends the process

FUZZ_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_random_call_sequences_raise_only_oserror_and_leak_nothing(engine: str) -> None:
    warm()
    fds, threads = open_fds(), settle_threads(0, 0)
    before = calls.made
    faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True)
    try:
        run_state_machine_as_test(SyscallSurface, settings=FUZZ_SETTINGS)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert calls.made - before > 100
    assert open_fds() == fds
    assert settle_threads(threads) <= threads
