"""MSHV_RUN_VP and signals: a signal to the running thread makes RUN_VP fail
with EINTR, the VP stays consistent, and the next RUN_VP continues. The
guest runs with the GIL released."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import mshv
from mshv.abi.tlfs import HV_PARTITION_PROPERTY_REFERENCE_TIME as REFERENCE_TIME
from mshv.abi.tlfs import hv_interrupt_type as IT
from tests.conftest import real_mode_vp
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry

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
        first_rcx, first_rip = vp.get("rcx"), vp.get("rip")
        assert first_rcx > 0
        assert first_rip in (0x1000, 0x1002)  # between instructions of the loop

        err, _ = _interrupt_run(vp)
        assert isinstance(err, InterruptedError)
        assert vp.get("rcx") > first_rcx  # it continued where it stopped

        vp.set_registers(rip=OUT_AT)
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept)
        assert (msg.port, msg.rip) == (0x80, OUT_AT)


# With a local APIC: a HLT waits inside RUN_VP, and the hypervisor itself
# interrupts a running guest to give it interrupts.
VECTOR = 0x40
HANDLER_AT = 0x2000


def _lapic_vp(part: mshv.Partition, main: str, handler: str) -> tuple[mshv.Vp, mshv.GuestMemory]:
    vp, mem = real_mode_vp(part, asm(X2APIC_ON + main), rsp=0x8000, rcx=0)
    mem.write(HANDLER_AT, asm(handler + "iret", 16, HANDLER_AT))
    mem.write(*ivt_entry(VECTOR, HANDLER_AT))
    return vp, mem


def _in_thread(body: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(body())
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, outcome


def test_signal_ends_a_halt_and_the_next_run_waits_on(
    device: mshv.Device, sigusr1: list[int]
) -> None:
    with device.create_partition(lapic=True) as part:
        vp, mem = _lapic_vp(part, "sti\nidle:\nhlt\njmp idle", "out 0x81, al\n" + X2APIC_EOI)
        with mem:
            t, outcome = _in_thread(vp.run)
            time.sleep(0.1)  # halted in RUN_VP by now
            assert t.ident is not None
            signal.pthread_kill(t.ident, signal.SIGUSR1)
            t.join(5)
            assert len(outcome) == 1 and isinstance(outcome[0], InterruptedError), outcome
            assert vp.get("internal_activity_state") == 2  # still halted
            t, outcome = _in_thread(vp.run)
            time.sleep(0.05)
            part.assert_interrupt(VECTOR, 0)
            t.join(5)
            msg = outcome[0] if outcome else None
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x81, outcome


def _storm(part: mshv.Partition, vp: mshv.Vp, kind: int) -> list[object]:
    """Run the VP in a thread while another asserts interrupts of `kind`
    without pause; signal the VP's thread once: what its RUN_VP gave by 5 s
    later (nothing: the signal was lost)."""
    stop = threading.Event()

    def fire() -> None:
        while not stop.is_set():
            part.assert_interrupt(VECTOR, 0, kind)
            time.sleep(0)

    firing = threading.Thread(target=fire)
    t, outcome = _in_thread(vp.run)
    firing.start()
    try:
        time.sleep(0.2)
        assert t.ident is not None
        signal.pthread_kill(t.ident, signal.SIGUSR1)  # once
        t.join(5)
        seen = list(outcome)
    finally:
        stop.set()
        firing.join()
        while t.is_alive():  # lost: end the test, not the suite
            assert t.ident is not None
            signal.pthread_kill(t.ident, signal.SIGUSR1)
            t.join(0.01)
    return seen


def test_signal_is_not_lost_among_the_hypervisors_own_kicks(
    device: mshv.Device, sigusr1: list[int]
) -> None:
    """NMIs asserted from another thread stop the running guest again and
    again (its NMI handler just returns); one signal from the VMM among them
    still ends RUN_VP."""
    with device.create_partition(lapic=True) as part:
        vp, mem = _lapic_vp(part, "spin:\ninc ecx\njmp spin", "")
        mem.write(*ivt_entry(2, HANDLER_AT))
        with mem:
            outcome = _storm(part, vp, IT.HV_X64_INTERRUPT_TYPE_NMI)
            assert len(outcome) == 1 and isinstance(outcome[0], InterruptedError), outcome
            assert vp.get("rcx") > 0  # the guest ran meanwhile


def test_signal_is_not_lost_while_the_hypervisor_handles_an_eoi(sigusr1: list[int]) -> None:
    """KVM engine: every interrupt's handler writes the x2APIC EOI, which the
    hypervisor completes inside RUN_VP; one signal, wherever it lands, ends
    RUN_VP. (The software engine's library arms its canary at each of its
    runs: a signal taken between two of them is seen at the VMM's next.)"""
    with mshv.Device(engine="kvm") as device, device.create_partition(lapic=True) as part:
        vp, mem = _lapic_vp(part, "sti\nspin:\ninc ecx\njmp spin", X2APIC_EOI)
        with mem:
            outcome = _storm(part, vp, IT.HV_X64_INTERRUPT_TYPE_FIXED)
            assert len(outcome) == 1 and isinstance(outcome[0], InterruptedError), outcome


def test_reference_time_while_a_vp_runs(partition: mshv.Partition, sigusr1: list[int]) -> None:
    """Another thread reads the partition's time (the VP's TSC) without
    waiting for the running guest to exit."""
    vp, mem = real_mode_vp(partition, SPIN, rcx=0)
    with mem:
        t, outcome = _in_thread(vp.run)
        try:
            time.sleep(0.05)

            def read_twice() -> tuple[int, int]:
                first = partition.get_property(REFERENCE_TIME)
                time.sleep(0.02)
                return first, partition.get_property(REFERENCE_TIME)

            reader, times = _in_thread(read_twice)
            reader.join(5)
            assert not reader.is_alive(), "reading the reference time waited for the guest"
        finally:
            while t.is_alive():
                assert t.ident is not None
                signal.pthread_kill(t.ident, signal.SIGUSR1)
                t.join(0.01)
        got = times[0]
        assert isinstance(got, tuple), got
        first, second = got
        assert 150_000 < second - first < 10_000_000  # 100 ns units: about 20 ms
        assert isinstance(outcome[0], InterruptedError)
