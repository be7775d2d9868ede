"""CPUs come and go while others run: the library's shared state (the tick
thread's scan of the instances) must stay sound through it. Threads that
come and go: tests/driver/test_lifetime.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A child process, so that a crash is reported as this test failing rather
# than ending the whole run.
_CREATE_WHILE_TICKING = textwrap.dedent(
    """
    import threading
    from mshv.tcg.abi import ExitReason
    from tests.guests import asm
    from tests.tcg.machine import Ram, new_cpu, real_mode

    ram = Ram()
    ram.write(0x1000, asm("again: out 0x80, al\\njmp again", 16, 0x1000))
    runner = new_cpu(ram)
    real_mode(runner, 0x1000)
    stop = threading.Event()

    def run() -> None:
        # exits all the time, so the tick thread scans the instances
        # through the whole loop below
        while not stop.is_set():
            assert runner.run() is ExitReason.IO

    t = threading.Thread(target=run)
    t.start()
    try:
        for _ in range(4000):
            new_cpu(ram).close()
    finally:
        stop.set()
        t.join()
        runner.close()
    print("created 4000")
    """
)


def test_cpus_are_created_while_another_runs() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CREATE_WHILE_TICKING],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == 0, f"child ended with {child.returncode}: {child.stderr[-2000:]}"
    assert "created 4000" in child.stdout
