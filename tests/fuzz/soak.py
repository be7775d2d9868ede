"""Soak the syscall surface: run the stateful fuzzer for a while on an engine
and say how many sequences and calls it made.

    python -m tests.fuzz.soak --engine tcg --seconds 600

Each sequence is one hypothesis example of up to 50 steps; a failure stops
the soak with hypothesis's minimal reproduction."""

from __future__ import annotations

import argparse
import os
import time

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.fuzz.surface import SyscallSurface, calls, settle_threads, warm
from tests.process import open_fds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["kvm", "tcg"], default="tcg")
    ap.add_argument("--seconds", type=float, default=600)
    args = ap.parse_args()
    os.environ["MSHV_ENGINE"] = args.engine
    warm()
    fds, threads = open_fds(), settle_threads(0, 0)
    batch = settings(max_examples=20, stateful_step_count=50, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))  # fmt: skip
    t0 = time.monotonic()
    sequences = 0
    while time.monotonic() - t0 < args.seconds:
        run_state_machine_as_test(SyscallSurface, settings=batch)
        sequences += batch.max_examples
    leaked_fds = open_fds() - fds
    print(f"engine {args.engine}: {sequences} sequences, {calls.made} calls in "
          f"{time.monotonic() - t0:.0f} s; fds left over: {leaked_fds}, threads: "
          f"{settle_threads(threads) - threads}")  # fmt: skip


if __name__ == "__main__":
    main()
