"""CPUs come and go while others run, on threads that come and go: the
library's shared state (the tick thread's scan, per-thread signal stacks)
must stay sound through it."""

from __future__ import annotations

import ctypes
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


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _malloc_in_use() -> int:
    """Bytes the C allocator has handed out, over all arenas (address-space
    size would miss blocks carved from a thread arena's reserved heap)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def test_threads_that_ran_a_cpu_leave_no_signal_stack_behind() -> None:
    import threading

    from mshv.tcg.abi import ExitReason
    from tests.guests import asm
    from tests.tcg.machine import Ram, new_cpu, real_mode

    ram = Ram()
    ram.write(0x1000, asm("out 0x80, al", 16, 0x1000))
    cpu = new_cpu(ram)
    results: list[ExitReason] = []

    def run_once() -> None:
        real_mode(cpu, 0x1000)
        results.append(cpu.run())

    def threads(n: int) -> None:
        for _ in range(n):
            t = threading.Thread(target=run_once)
            t.start()
            t.join()

    try:
        threads(50)  # the allocator's arenas and caches settle
        before = _malloc_in_use()
        threads(100)
        grown = _malloc_in_use() - before
    finally:
        cpu.close()
        ram.close()
    assert results == [ExitReason.IO] * 150
    # each thread kept a 256 KiB alternate signal stack before: 25 MiB here
    assert grown < 4 << 20, f"malloc'd memory grew by {grown} bytes over 100 threads"
