"""MSHV_RUN_VP and signals: a signal to the running thread makes RUN_VP fail
with EINTR, the VP stays consistent, and the next RUN_VP continues. The
guest runs with the GIL released."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

import mshv
from tests.conftest import real_mode_vp
from tests.guests import asm

SPIN = asm("spin:\ninc ecx\njmp spin")  # at 0x1000
OUT_AT = 0x1010
OUT = asm("out dx, al\nhlt", 16, OUT_AT)


@pytest.fixture
def sigusr1() -> Iterator[list[int]]:
    received: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGUSR1, old)


def _interrupt_run(vp: mshv.Vp, during: object = None) -> tuple[BaseException | None, int]:
    """Run the VP in a thread, signal it until RUN_VP returns; (error, spins of
    the main thread meanwhile)."""
    outcome: list[BaseException | None] = []
    started = threading.Event()

    def body() -> None:
        started.set()
        try:
            vp.run()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=body)
    t.start()
    started.wait()
    spins = 0
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # the guest runs; we keep the GIL busy
        spins += 1
    for _ in range(500):
        if not t.is_alive():
            break
        assert t.ident is not None
        signal.pthread_kill(t.ident, signal.SIGUSR1)
        t.join(0.01)
    t.join(5)
    assert not t.is_alive(), "RUN_VP did not return after signals"
    return outcome[0], spins


def test_signal_interrupts_run_vp_and_it_resumes(
    partition: mshv.Partition, sigusr1: list[int]
) -> None:
    vp, mem = real_mode_vp(partition, SPIN, rcx=0, rdx=0x80)
    mem.write(OUT_AT, OUT)
    with mem:
        err, spins = _interrupt_run(vp)
        assert isinstance(err, InterruptedError)
        assert err.errno == 4
        assert sigusr1, "the Python handler saw the signal"
        # The GIL was free while the guest ran: the main thread kept running.
        assert spins > 10_000
        first = vp.get_registers("rcx", "rip")
        assert first["rcx"] > 0
        assert first["rip"] in (0x1000, 0x1002)  # between instructions of the loop

        err, _ = _interrupt_run(vp)
        assert isinstance(err, InterruptedError)
        second = vp.get_registers("rcx", "rip")
        assert second["rcx"] > first["rcx"]  # it continued where it stopped

        vp.set_registers(rip=OUT_AT)
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept)
        assert (msg.port, msg.rip) == (0x80, OUT_AT)
