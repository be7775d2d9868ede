"""The hypervisor's local APIC and APIC bus, against a fake CPU line.

`FakeLine` records what the APIC offers and plays the CPU's interrupt
acknowledge: `cpu_take()` takes the offered vector, as a processor does at
an instruction boundary, and the APIC learns of it on its next call.
`ManualTimers` runs APIC timers on a clock the test advances; the tests
with real time use short timeouts and generous bounds.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mshv.abi.uapi import hv_local_interrupt_controller_state
from mshv.hv import apic_defs as d
from mshv.hv.apic import (
    APIC_TIMER_HZ,
    STATE_SIZE,
    ApicBus,
    ApicError,
    EoiResult,
    LocalApic,
)
from mshv.hv.timers import Timer, Timers

MS = 1_000_000
SVR_ON = 0x1FF
LVT_TIMER, LVT_LINT0, LVT_LINT1, LVT_ERROR = 0x320, 0x350, 0x360, 0x370
ONE_SHOT, PERIODIC, TSC_DEADLINE = 0, 1 << 17, 2 << 17
DIVIDE_BY_1 = 0xB


class FakeLine:
    """A CPU's interrupt inputs: one offered vector, one acknowledgment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offered: int | None = None
        self.acked: int | None = None
        self.offers: list[int | None] = []
        self.nmis = 0
        self.wakes = 0

    def offer_interrupt(self, vector: int | None) -> None:
        with self._lock:
            self.offered = vector
            self.offers.append(vector)

    def take_acknowledged(self) -> int | None:
        with self._lock:
            v, self.acked = self.acked, None
            return v

    def raise_nmi(self) -> None:
        with self._lock:
            self.nmis += 1

    def wake(self) -> None:
        with self._lock:
            self.wakes += 1

    def cpu_take(self) -> int | None:
        """The CPU takes the offered vector (one acknowledgment at a time)."""
        with self._lock:
            if self.acked is not None or self.offered is None:
                return None
            self.acked, self.offered = self.offered, None
            return self.acked


class FakeClock:
    """A guest TSC that stands still unless the test moves it."""

    def __init__(self, tsc_hz: int = 2_000_000_000, tsc: int = 10**9) -> None:
        self.tsc_hz = tsc_hz
        self.tsc = tsc

    def tsc_now(self) -> int:
        return self.tsc


class ManualTimers(Timers):
    """Timers on a clock the test advances; callbacks run in `advance`."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 10**12
        self.added: list[Timer] = []

    def now(self) -> int:
        return self.t

    def add(self, deadline_ns: int, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, deadline_ns, callback)
        self.added.append(timer)
        return timer

    def armed(self) -> list[Timer]:
        return [t for t in self.added if t.pending]

    def advance(self, ns: int) -> None:
        self.t += ns
        while due := sorted(
            (t for t in self.armed() if t.deadline_ns <= self.t), key=lambda t: t.deadline_ns
        ):
            self.added.remove(due[0])
            due[0]._callback()


@pytest.fixture
def timers() -> Iterator[Timers]:
    t = Timers()
    yield t
    t.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("mshv-timers")]


@pytest.fixture
def manual() -> ManualTimers:
    return ManualTimers()


@pytest.fixture
def bus() -> ApicBus:
    return ApicBus()


def make(
    bus: ApicBus,
    timers: Timers,
    apic_id: int = 0,
    *,
    bsp: bool = True,
    clock: FakeClock | None = None,
    enable: bool = True,
) -> tuple[LocalApic, FakeLine]:
    apic = LocalApic(apic_id, bus, timers, clock or FakeClock(), bsp=bsp)
    line = FakeLine()
    apic.attach(line)
    bus.add(apic)
    if enable:
        apic.mmio_write(d.SVR, 4, SVR_ON)
    return apic, line


def rd(apic: LocalApic, off: int) -> int:
    return apic.mmio_read(off, 4)


def wr(apic: LocalApic, off: int, value: int) -> EoiResult | None:
    return apic.mmio_write(off, 4, value)


def bitmap(apic: LocalApic, base: int) -> int:
    return sum(rd(apic, base + 0x10 * i) << (32 * i) for i in range(8))


def to_x2apic(apic: LocalApic) -> None:
    base = apic.msr_read(d.MSR_APIC_BASE)
    assert base is not None
    assert apic.msr_write(d.MSR_APIC_BASE, base | d.BASE_EXTD) is None
    assert apic.mode == "x2apic"


def take_and_eoi(apic: LocalApic, line: FakeLine) -> int | None:
    v = line.cpu_take()
    if v is not None:
        result = apic.eoi()
        assert result is not None and result.vector == v
    return v


# --- reset values and registers ----------------------------------------------------


def test_power_on_values(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual, 3, bsp=False, enable=False)
    assert apic.mode == "xapic" and apic.mmio_base == 0xFEE0_0000
    assert apic.msr_read(d.MSR_APIC_BASE) == 0xFEE0_0800
    assert (rd(apic, d.ID), rd(apic, d.VERSION)) == (3 << 24, 0x0005_0014)
    assert (rd(apic, d.TPR), rd(apic, d.PPR), rd(apic, d.LDR)) == (0, 0, 0)
    assert (rd(apic, d.DFR), rd(apic, d.SVR), rd(apic, d.ESR)) == (0xFFFF_FFFF, 0xFF, 0)
    for off in (0x2F0, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370):
        assert rd(apic, off) == 0x10000
    for base in (d.ISR, d.TMR, d.IRR):
        assert bitmap(apic, base) == 0
    assert (rd(apic, d.ICR_LOW), rd(apic, d.ICR_HIGH)) == (0, 0)
    assert (rd(apic, d.INITIAL_COUNT), rd(apic, d.CURRENT_COUNT), rd(apic, d.DIVIDE)) == (0, 0, 0)
    assert apic.waiting_for_sipi and line.offered is None
    bsp, _ = make(bus, manual, 0)
    assert bsp.msr_read(d.MSR_APIC_BASE) == 0xFEE0_0900 and not bsp.waiting_for_sipi


def test_xapic_registers_keep_only_their_writable_bits(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    writes = {
        d.ID: (0xFFFF_FFFF, 0xFF00_0000),
        d.TPR: (0x1234, 0x34),
        d.LDR: (0xFFFF_FFFF, 0xFF00_0000),
        d.DFR: (0x0000_0000, 0x0FFF_FFFF),
        d.SVR: (0xFFFF_FFFF, 0x1FF),
        d.ICR_HIGH: (0xFFFF_FFFF, 0xFF00_0000),
        LVT_TIMER: (0xFFFF_FFFF, 0x700FF),
        0x330: (0xFFFF_FFFF, 0x107FF),
        LVT_LINT0: (0xFFFF_FFFF, 0x1A7FF),
        LVT_ERROR: (0xFFFF_FFFF, 0x100FF),
        0x2F0: (0xFFFF_FFFF, 0x107FF),
        d.DIVIDE: (0xFFFF_FFFF, 0xB),
        d.INITIAL_COUNT: (0, 0),
    }
    for off, (value, expect) in writes.items():
        wr(apic, off, value)
        assert rd(apic, off) == expect, hex(off)
    for off in (d.VERSION, d.PPR, d.ISR, d.IRR, d.TMR, d.CURRENT_COUNT, d.APR, d.RRD):
        before = rd(apic, off)
        wr(apic, off, 0x5A5A_5A5A)
        assert rd(apic, off) == before, hex(off)


def test_software_disable_masks_every_lvt_and_keeps_them_masked(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, _ = make(bus, manual)
    wr(apic, LVT_LINT0, 0x700)
    assert rd(apic, LVT_LINT0) == 0x700
    wr(apic, d.SVR, 0xFF)
    assert rd(apic, LVT_LINT0) == 0x10700
    wr(apic, LVT_LINT1, 0x400)
    assert rd(apic, LVT_LINT1) == 0x10400
    wr(apic, d.SVR, SVR_ON)
    wr(apic, LVT_LINT1, 0x400)
    assert rd(apic, LVT_LINT1) == 0x400


def test_reserved_offsets_read_zero_and_flag_an_illegal_register_address(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, _ = make(bus, manual)
    for off in (0x000, 0x010, 0x040, 0x290, 0x3A0, 0x3F0, 0x400, 0xFF0):
        assert rd(apic, off) == 0
    wr(apic, 0x070, 1)
    assert rd(apic, d.ESR) == 0, "errors show only after an ESR write"
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == d.ESR_ILLEGAL_REGISTER
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == 0


def test_narrow_and_unaligned_accesses(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual, 0x42)
    assert apic.mmio_read(d.ID + 3, 1) == 0x42
    assert apic.mmio_read(d.SVR, 2) == 0x1FF
    assert apic.mmio_read(d.SVR + 4, 4) == 0
    assert apic.mmio_read(d.SVR, 8) == 0x1FF
    apic.mmio_write(d.TPR, 2, 0x20)
    apic.mmio_write(d.TPR + 4, 4, 0x20)
    assert rd(apic, d.TPR) == 0
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == 0, "a bad access to a real register is no error"


def test_the_mmio_page_is_dead_outside_xapic_mode(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    to_x2apic(apic)
    assert rd(apic, d.VERSION) == 0
    assert wr(apic, d.TPR, 0x40) is None
    assert apic.msr_read(0x808) == 0


def test_x2apic_registers_and_their_gp_cases(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual, 0x23)
    assert apic.msr_read(0x802) is None and apic.msr_write(0x808, 0) is False
    to_x2apic(apic)
    assert apic.msr_read(0x802) == 0x23
    assert apic.msr_read(0x803) == 0x0005_0014
    assert apic.msr_read(0x80D) == 2 << 16 | 1 << 3  # cluster 2, member 3
    assert apic.msr_read(0x80F) == SVR_ON
    for absent in (0x800, 0x809, 0x80B, 0x80C, 0x80E, 0x831, 0x83F, 0x840, 0x8FF):
        assert apic.msr_read(absent) is None, hex(absent)
    for read_only in (0x802, 0x803, 0x80A, 0x80D, 0x810, 0x818, 0x820, 0x839, 0x809, 0x80E):
        assert apic.msr_write(read_only, 0) is False, hex(read_only)
    assert apic.msr_write(0x808, 1 << 32) is False, "bits 32-63 are reserved"
    assert apic.msr_write(0x80B, 1) is False, "EOI takes only 0"
    assert apic.msr_write(0x828, 1) is False, "ESR takes only 0"
    assert apic.msr_write(0x83F, 0x140) is False, "SELF IPI bits 8-31 are reserved"
    assert apic.msr_write(0x808, 0x50) is None and apic.msr_read(0x808) == 0x50
    assert apic.msr_write(0x83E, 0xB) is None and apic.msr_read(0x83E) == 0xB
    icr = 0x0000_0007 << 32 | 0x4000 | 0x40
    assert apic.msr_write(0x830, icr) is None and apic.msr_read(0x830) == icr
    with pytest.raises(ValueError):
        apic.msr_write(0x808, 1 << 64)


def test_apic_base_transitions(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual, 1, bsp=False)
    xapic = 0xFEE0_0800
    assert apic.msr_write(d.MSR_APIC_BASE, xapic | 1) is False, "reserved bit 0"
    assert apic.msr_write(d.MSR_APIC_BASE, xapic | 1 << 36) is False, "above bit 35"
    assert apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0400) is False, "EXTD without enable"
    assert apic.msr_write(d.MSR_APIC_BASE, xapic | d.BASE_BSP) is None
    assert apic.msr_read(d.MSR_APIC_BASE) == xapic, "the BSP flag is read-only"
    assert apic.msr_write(d.MSR_APIC_BASE, xapic | d.BASE_EXTD) is None
    assert apic.msr_write(d.MSR_APIC_BASE, xapic) is False, "x2APIC to xAPIC"
    assert apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0000) is None
    assert apic.mode == "disabled"
    assert apic.msr_write(d.MSR_APIC_BASE, xapic | d.BASE_EXTD) is False, "disabled to x2APIC"
    assert apic.msr_write(d.MSR_APIC_BASE, 0xFED0_0800) is None
    assert (apic.mode, apic.mmio_base) == ("xapic", 0xFED0_0000)


def test_disabling_the_apic_resets_it(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual, 2)
    wr(apic, d.ID, 0x7 << 24)
    wr(apic, d.TPR, 0x20)
    wr(apic, LVT_LINT0, 0x700)
    apic.accept(0x80, level=False)
    assert line.offered == 0x80
    assert apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0000) is None
    assert line.offered is None
    assert apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0800) is None
    assert rd(apic, d.ID) == 7 << 24, "the ID survives"
    assert (rd(apic, d.TPR), rd(apic, d.SVR), rd(apic, LVT_LINT0)) == (0, 0xFF, 0x10000)
    assert not apic.outstanding(0x80)
    wr(apic, d.SVR, SVR_ON)
    to_x2apic(apic)
    apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0000)
    apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0800)
    assert rd(apic, d.ID) == 2 << 24, "leaving x2APIC mode, the x2APIC id's low byte"


def test_xapic_to_x2apic_keeps_registers_but_id_and_ldr(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual, 0x11)
    wr(apic, d.ID, 0x5 << 24)
    wr(apic, d.LDR, 0x8 << 24)
    wr(apic, d.TPR, 0x30)
    apic.accept(0x90, level=False)
    to_x2apic(apic)
    assert apic.msr_read(0x802) == 0x11
    assert apic.msr_read(0x80D) == 1 << 16 | 1 << 1
    assert apic.msr_read(0x808) == 0x30
    assert apic.outstanding(0x90) and line.offered == 0x90


# --- priorities, acknowledgment, EOI -----------------------------------------------


def test_the_highest_request_is_offered_and_the_tpr_holds_it_back(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    assert apic.accept(0x31, level=False) and line.offered == 0x31
    apic.accept(0x52, level=False)
    assert line.offered == 0x52
    apic.tpr = 0x50
    assert line.offered is None, "class 5 is not above the TPR's class 5"
    assert apic.ppr == 0x50
    apic.tpr = 0x4F
    assert line.offered == 0x52
    wr(apic, d.TPR, 0x60)
    assert line.offered is None
    wr(apic, d.TPR, 0x00)
    assert line.offered == 0x52
    assert bitmap(apic, d.IRR) == 1 << 0x31 | 1 << 0x52
    with pytest.raises(ValueError):
        apic.tpr = 0x100


def test_the_cpu_acknowledgment_moves_the_vector_to_service(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    apic.accept(0x52, level=False)
    apic.accept(0x55, level=False)
    apic.accept(0x71, level=False)
    assert line.cpu_take() == 0x71
    # The APIC has not been told yet; any read of its state collects it first.
    assert bitmap(apic, d.ISR) == 1 << 0x71
    assert bitmap(apic, d.IRR) == 1 << 0x52 | 1 << 0x55
    assert rd(apic, d.PPR) == 0x70 and line.offered is None
    assert apic.eoi() == EoiResult(0x71, False)
    assert line.offered == 0x55
    assert line.cpu_take() == 0x55
    assert apic.ppr == 0x50 and apic.highest_in_service() == 0x55
    assert line.offered is None, "0x52 is in 0x55's class"
    apic.accept(0x61, level=False)
    assert line.offered == 0x61, "a higher class nests"


def test_eoi_ends_the_highest_in_service_first(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    ended: list[int] = []
    bus.on_level_eoi = ended.append
    apic.accept(0x40, level=True)
    assert line.cpu_take() == 0x40
    apic.accept(0x80, level=False)
    assert line.cpu_take() == 0x80
    assert apic.outstanding(0x40) and apic.outstanding(0x80)
    assert wr(apic, d.EOI, 0) == EoiResult(0x80, False)
    assert ended == []
    assert wr(apic, d.EOI, 0) == EoiResult(0x40, True)
    assert ended == [0x40]
    assert wr(apic, d.EOI, 0) is None
    assert apic.eoi() is None
    assert not apic.outstanding(0x40)


def test_eoi_through_the_x2apic_msr(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    to_x2apic(apic)
    apic.accept(0x44, level=True)
    line.cpu_take()
    assert apic.msr_read(0x810 + 2) == 1 << 4
    assert apic.msr_read(0x818 + 2) == 1 << 4, "TMR: level-triggered"
    assert apic.msr_write(0x80B, 0) == EoiResult(0x44, True)
    assert apic.msr_write(0x80B, 0) is None


def test_a_reset_between_offer_and_acknowledgment_is_harmless(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    apic.accept(0x40, level=False)
    assert line.cpu_take() == 0x40
    apic.deliver_init()  # the CPU's acknowledgment arrives after the reset
    assert apic.highest_in_service() is None and not apic.outstanding(0x40)


def test_illegal_vectors_flag_the_esr_and_raise_the_error_lvt(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    assert not apic.accept(5, level=False)
    assert line.offered is None, "the error LVT is masked"
    wr(apic, LVT_ERROR, 0xFE)
    assert not apic.accept(15, level=False)
    assert line.offered == 0xFE
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == d.ESR_RECEIVE_ILLEGAL_VECTOR
    wr(apic, d.ICR_LOW, 0x4003)  # a fixed IPI with vector 3 is not sent
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == d.ESR_SEND_ILLEGAL_VECTOR
    assert bitmap(apic, d.IRR) == 1 << 0xFE


def test_a_software_disabled_apic_refuses_fixed_interrupts(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual, enable=False)
    assert not apic.accept(0x40, level=False)
    assert line.offers[-1:] in ([], [None])
    with pytest.raises(ValueError):
        apic.accept(256, level=False)


def test_self_ipi(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    to_x2apic(apic)
    assert apic.msr_write(0x83F, 0x66) is None
    assert line.offered == 0x66
    assert apic.msr_write(0x83F, 0x02) is None
    assert apic.msr_write(0x828, 0) is None
    assert apic.msr_read(0x828) == d.ESR_SEND_ILLEGAL_VECTOR | d.ESR_RECEIVE_ILLEGAL_VECTOR


# --- the timer ---------------------------------------------------------------------


def test_divide_configuration_values() -> None:
    assert [d.divisor(v) for v in (0, 1, 2, 3, 8, 9, 0xA, 0xB)] == [2, 4, 8, 16, 32, 64, 128, 1]
    assert APIC_TIMER_HZ == 1_000_000_000


def test_one_shot_counts_down_and_fires_once(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    wr(apic, LVT_TIMER, ONE_SHOT | 0x40)
    wr(apic, d.DIVIDE, 0)  # by 2: a count is 2 ns
    wr(apic, d.INITIAL_COUNT, 1000)
    assert rd(apic, d.CURRENT_COUNT) == 1000
    manual.advance(500)
    assert rd(apic, d.CURRENT_COUNT) == 750
    assert line.offered is None
    manual.advance(1500)
    assert line.offered == 0x40 and rd(apic, d.CURRENT_COUNT) == 0
    take_and_eoi(apic, line)
    manual.advance(10_000)
    assert not apic.outstanding(0x40) and manual.armed() == []
    assert rd(apic, d.INITIAL_COUNT) == 1000


def test_periodic_re_arms_from_the_previous_deadline(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    wr(apic, LVT_TIMER, PERIODIC | 0x41)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    start = manual.now()
    wr(apic, d.INITIAL_COUNT, 100_000)  # 100 us
    for n in range(1, 6):
        manual.advance(100_000 + 7_000 if n == 1 else 100_000)
        assert take_and_eoi(apic, line) == 0x41
        (armed,) = manual.armed()
        assert armed.deadline_ns == start + (n + 1) * 100_000, "no drift"
    manual.advance(1_000_000)  # ten periods missed: one interrupt, same phase
    assert take_and_eoi(apic, line) == 0x41
    assert manual.armed()[0].deadline_ns == start + 16 * 100_000
    assert rd(apic, d.CURRENT_COUNT) == 100_000 - 7_000
    wr(apic, d.INITIAL_COUNT, 0)
    assert manual.armed() == [] and rd(apic, d.CURRENT_COUNT) == 0


def test_a_very_fast_periodic_timer_is_held_to_a_minimum_period(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    wr(apic, LVT_TIMER, PERIODIC | 0x41)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    wr(apic, d.INITIAL_COUNT, 10)
    manual.advance(10)
    assert take_and_eoi(apic, line) == 0x41
    assert manual.armed()[0].deadline_ns - manual.now() >= 50_000


def test_a_new_divider_applies_from_the_current_count(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    wr(apic, LVT_TIMER, ONE_SHOT | 0x40)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    wr(apic, d.INITIAL_COUNT, 1000)
    manual.advance(400)
    wr(apic, d.DIVIDE, 1)  # by 4
    assert rd(apic, d.CURRENT_COUNT) == 600
    assert manual.armed()[0].deadline_ns == manual.now() + 2400


def test_a_masked_timer_counts_without_interrupting(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    wr(apic, LVT_TIMER, d.LVT_MASKED | PERIODIC | 0x40)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    wr(apic, d.INITIAL_COUNT, 1000)
    manual.advance(2500)
    assert line.offered is None and rd(apic, d.CURRENT_COUNT) == 500


def test_timer_vector_below_16_is_an_illegal_vector(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    wr(apic, LVT_TIMER, 0x05)
    wr(apic, d.INITIAL_COUNT, 10)
    manual.advance(100)
    wr(apic, d.ESR, 0)
    assert rd(apic, d.ESR) == d.ESR_RECEIVE_ILLEGAL_VECTOR


def test_an_overdue_expiry_is_delivered_before_anyone_looks(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    wr(apic, LVT_TIMER, PERIODIC | 0x40)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    start = manual.now()
    wr(apic, d.INITIAL_COUNT, 100_000)
    manual.t += 150_000  # the timer thread is late
    s = hv_local_interrupt_controller_state.from_buffer_copy(apic.state())
    assert s.apic_irr[2] == 1 and s.apic_counter_value == 50_000
    assert line.offered == 0x40
    (armed,) = manual.armed()
    assert armed.deadline_ns == start + 200_000
    wr(apic, LVT_TIMER, ONE_SHOT | 0x40)
    take_and_eoi(apic, line)
    manual.t += 100_000
    assert rd(apic, d.CURRENT_COUNT) == 0 and apic.outstanding(0x40)
    assert manual.armed() == []


def test_tsc_deadline_converts_guest_tsc_to_time(bus: ApicBus, manual: ManualTimers) -> None:
    clock = FakeClock(tsc_hz=2_000_000_000, tsc=5_000_000)
    apic, line = make(bus, manual, clock=clock)
    assert apic.msr_write(d.MSR_TSC_DEADLINE, 6_000_000) is None
    assert apic.msr_read(d.MSR_TSC_DEADLINE) == 0, "ignored outside the TSC-deadline mode"
    wr(apic, LVT_TIMER, TSC_DEADLINE | 0x42)
    wr(apic, d.INITIAL_COUNT, 1000)  # ignored in this mode
    assert rd(apic, d.INITIAL_COUNT) == 0 and manual.armed() == []
    apic.msr_write(d.MSR_TSC_DEADLINE, 5_000_000 + 3_000)  # 3000 ticks at 2 GHz: 1500 ns
    (armed,) = manual.armed()
    assert armed.deadline_ns == manual.now() + 1500
    assert apic.msr_read(d.MSR_TSC_DEADLINE) == 5_003_000
    manual.advance(1499)
    assert line.offered is None
    manual.advance(1)
    assert line.offered == 0x42 and apic.msr_read(d.MSR_TSC_DEADLINE) == 0
    take_and_eoi(apic, line)
    apic.msr_write(d.MSR_TSC_DEADLINE, 4_000_000)  # in the past: at once
    assert line.offered == 0x42 and manual.armed() == []
    assert apic.msr_read(d.MSR_TSC_DEADLINE) == 0
    take_and_eoi(apic, line)
    apic.msr_write(d.MSR_TSC_DEADLINE, 9_000_000)
    apic.msr_write(d.MSR_TSC_DEADLINE, 0)  # disarms
    assert manual.armed() == []
    apic.msr_write(d.MSR_TSC_DEADLINE, 9_000_000)
    wr(apic, LVT_TIMER, ONE_SHOT | 0x42)  # leaving the mode disarms too
    assert manual.armed() == [] and apic.msr_read(d.MSR_TSC_DEADLINE) == 0


def test_one_shot_in_real_time(bus: ApicBus, timers: Timers) -> None:
    apic, line = make(bus, timers)
    wr(apic, LVT_TIMER, ONE_SHOT | 0x40)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    start = time.monotonic()
    wr(apic, d.INITIAL_COUNT, 3 * MS)  # 3 ms
    assert rd(apic, d.CURRENT_COUNT) <= 3 * MS  # exact counts: the ManualTimers tests
    assert apic.wait_for_event(5.0, interrupts_enabled=True)
    assert time.monotonic() - start >= 0.003
    assert line.offered == 0x40 and rd(apic, d.CURRENT_COUNT) == 0
    take_and_eoi(apic, line)
    assert not apic.wait_for_event(0.02, interrupts_enabled=True)


def test_periodic_in_real_time_until_stopped(bus: ApicBus, timers: Timers) -> None:
    apic, line = make(bus, timers)
    wr(apic, LVT_TIMER, PERIODIC | 0x40)
    wr(apic, d.DIVIDE, DIVIDE_BY_1)
    wr(apic, d.INITIAL_COUNT, 2 * MS)
    ticks = 0
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        if apic.wait_for_event(0.05, interrupts_enabled=True):
            ticks += take_and_eoi(apic, line) == 0x40
    assert 5 <= ticks <= 60
    wr(apic, d.INITIAL_COUNT, 0)
    take_and_eoi(apic, line)
    assert not apic.wait_for_event(0.02, interrupts_enabled=True)


def test_tsc_deadline_in_real_time(bus: ApicBus, timers: Timers) -> None:
    clock = FakeClock(tsc_hz=1_000_000_000, tsc=123)
    apic, line = make(bus, timers, clock=clock)
    wr(apic, LVT_TIMER, TSC_DEADLINE | 0x43)
    start = time.monotonic()
    apic.msr_write(d.MSR_TSC_DEADLINE, 123 + 3 * MS)
    assert apic.wait_for_event(5.0, interrupts_enabled=True)
    assert time.monotonic() - start >= 0.003
    assert line.offered == 0x43 and apic.msr_read(d.MSR_TSC_DEADLINE) == 0


# --- the bus: IPIs and MSIs --------------------------------------------------------


@pytest.fixture
def four(bus: ApicBus, manual: ManualTimers) -> list[tuple[LocalApic, FakeLine]]:
    return [make(bus, manual, i, bsp=i == 0) for i in range(4)]


def _got(four: list[tuple[LocalApic, FakeLine]], vector: int) -> list[int]:
    return [apic.apic_id for apic, _ in four if apic.outstanding(vector)]


def _ipi(apic: LocalApic, dest: int, low: int) -> None:
    wr(apic, d.ICR_HIGH, dest << 24)
    wr(apic, d.ICR_LOW, low)


def test_physical_ipis_and_broadcast(four: list[tuple[LocalApic, FakeLine]]) -> None:
    a0 = four[0][0]
    _ipi(a0, 2, 0x4050)
    assert _got(four, 0x50) == [2]
    assert rd(a0, d.ICR_LOW) == 0x4050, "delivery status reads idle"
    _ipi(a0, 0xFF, 0x4051)
    assert _got(four, 0x51) == [0, 1, 2, 3]
    _ipi(a0, 9, 0x4052)
    assert _got(four, 0x52) == []
    _ipi(a0, 1, 0xC053)  # the trigger bit means nothing to a fixed IPI: edge
    four[1][1].cpu_take()
    assert four[1][0].eoi() == EoiResult(0x53, False)


def test_shorthands(four: list[tuple[LocalApic, FakeLine]]) -> None:
    a1 = four[1][0]
    _ipi(a1, 3, 0x4_4060)  # self
    assert _got(four, 0x60) == [1]
    _ipi(a1, 3, 0x8_4061)  # all including self
    assert _got(four, 0x61) == [0, 1, 2, 3]
    _ipi(a1, 3, 0xC_4062)  # all excluding self
    assert _got(four, 0x62) == [0, 2, 3]


def test_logical_flat_and_cluster(four: list[tuple[LocalApic, FakeLine]]) -> None:
    for apic, _ in four:
        wr(apic, d.LDR, 1 << (24 + apic.apic_id))
    _ipi(four[0][0], 0b0101, 0x4870)
    assert _got(four, 0x70) == [0, 2]
    for apic, _ in four:
        wr(apic, d.DFR, 0x0FFF_FFFF)  # cluster model
        cluster = 1 if apic.apic_id < 2 else 2
        wr(apic, d.LDR, (cluster << 4 | 1 << (apic.apic_id % 2)) << 24)
    _ipi(four[0][0], 0x13, 0x4871)  # cluster 1, members 0 and 1
    assert _got(four, 0x71) == [0, 1]
    _ipi(four[0][0], 0x22, 0x4872)
    assert _got(four, 0x72) == [3]
    _ipi(four[0][0], 0xF1, 0x4873)  # every cluster, member 0
    assert _got(four, 0x73) == [0, 2]


def test_x2apic_physical_and_cluster_destinations(
    four: list[tuple[LocalApic, FakeLine]],
) -> None:
    for apic, _ in four:
        to_x2apic(apic)
    a0 = four[0][0]
    a0.msr_write(0x830, 3 << 32 | 0x4080)
    assert _got(four, 0x80) == [3]
    a0.msr_write(0x830, 0xFF << 32 | 0x4081)
    assert _got(four, 0x81) == [], "0xFF is an ordinary x2APIC id"
    a0.msr_write(0x830, 0xFFFF_FFFF << 32 | 0x4082)
    assert _got(four, 0x82) == [0, 1, 2, 3]
    a0.msr_write(0x830, 0b1010 << 32 | 0x4883)  # cluster 0, members 1 and 3
    assert _got(four, 0x83) == [1, 3]
    a0.msr_write(0x830, (1 << 16 | 0b1010) << 32 | 0x4884)
    assert _got(four, 0x84) == []


def test_lowest_priority_picks_the_lowest_ppr_then_the_lowest_id(
    bus: ApicBus, four: list[tuple[LocalApic, FakeLine]]
) -> None:
    for (apic, _), tpr in zip(four, (0x20, 0x10, 0x10, 0x30), strict=True):
        apic.tpr = tpr
    assert bus.deliver(0xFF, logical=False, mode=d.LOWEST_PRIORITY, vector=0x90, level=False)
    assert _got(four, 0x90) == [1]
    wr(four[1][0], d.SVR, 0xFF)  # software-disabled APICs are not candidates
    _ipi(four[0][0], 0xFF, 0x4191)
    assert _got(four, 0x91) == [2]


def test_nmi_init_and_refused_modes(bus: ApicBus, four: list[tuple[LocalApic, FakeLine]]) -> None:
    _ipi(four[0][0], 2, 0x4400)
    assert [line.nmis for _, line in four] == [0, 0, 1, 0]
    for mode in (d.SMI, 3, d.EXTINT):
        with pytest.raises(ApicError):
            bus.deliver(1, logical=False, mode=mode, vector=0, level=False)
    with pytest.raises(ApicError):
        _ipi(four[0][0], 1, 0x4200)
    with pytest.raises(ValueError):
        bus.deliver(1, logical=False, mode=d.FIXED, vector=0x40, level=False, shorthand=1)


def test_msi_decoding(bus: ApicBus, four: list[tuple[LocalApic, FakeLine]]) -> None:
    assert bus.msi(0xFEE0_2000, 0x4031)
    assert _got(four, 0x31) == [2]
    bus.msi(0xFEE0_3000, 0xC032)  # level-triggered
    four[3][1].cpu_take()
    assert four[3][0].eoi() == EoiResult(0x32, True)
    for apic, _ in four:
        wr(apic, d.LDR, 1 << (24 + apic.apic_id))
    bus.msi(0xFEE0_6004, 0x4033)  # logical 0b0110
    assert _got(four, 0x33) == [1, 2]
    four[0][0].tpr = 0x40
    bus.msi(0xFEE0_3004 | 1 << 3, 0x4034)  # logical 0b0011, redirection hint
    assert _got(four, 0x34) == [1]
    bus.msi(0xFEE0_1000, 0x4400)  # NMI
    assert four[1][1].nmis == 1
    assert not bus.msi(0xFED0_0000, 0x4035)
    assert _got(four, 0x35) == []


def test_an_apic_leaves_the_bus(bus: ApicBus, four: list[tuple[LocalApic, FakeLine]]) -> None:
    bus.remove(four[2][0])
    assert bus.get(2) is None and [a.apic_id for a in bus.apics()] == [0, 1, 3]
    bus.msi(0xFEE0_2000, 0x4031)
    assert _got(four, 0x31) == []
    with pytest.raises(ValueError):
        bus.add(four[1][0])


# --- INIT, SIPI, LINT, NMI ---------------------------------------------------------


def test_init_sipi_sequence(bus: ApicBus, four: list[tuple[LocalApic, FakeLine]]) -> None:
    bsp, ap = four[0][0], four[1][0]
    ap_line = four[1][1]
    wr(ap, d.TPR, 0x20)
    wr(ap, LVT_LINT0, 0x700)
    _ipi(bsp, 1, 0x4500)  # INIT assert
    _ipi(bsp, 1, 0x8500)  # INIT level de-assert: nothing
    assert rd(ap, d.ID) == 1 << 24 and rd(ap, d.TPR) == 0 and rd(ap, LVT_LINT0) == 0x10000
    assert ap.msr_read(d.MSR_APIC_BASE) == 0xFEE0_0800
    assert ap.waiting_for_sipi and ap_line.wakes == 1
    _ipi(bsp, 1, 0x4600 | 0x9A)
    _ipi(bsp, 1, 0x4600 | 0x9B)  # a second SIPI finds the AP started
    assert ap.take_startup_event() == "init"
    assert ap.take_startup_event() == ("sipi", 0x9A)
    assert ap.take_startup_event() is None and not ap.waiting_for_sipi
    assert ap_line.wakes == 2


def test_an_ap_waits_for_sipi_from_power_on_and_init_keeps_x2apic(
    bus: ApicBus, manual: ManualTimers
) -> None:
    ap, _ = make(bus, manual, 0x21, bsp=False)
    assert ap.deliver_sipi(0x10) and ap.take_startup_event() == ("sipi", 0x10)
    assert not ap.deliver_sipi(0x10)
    to_x2apic(ap)
    ap.deliver_init()
    assert ap.mode == "x2apic" and ap.msr_read(0x80D) == 2 << 16 | 1 << 1
    bsp, _ = make(bus, manual, 0, bsp=True)
    bsp.deliver_init()
    assert bsp.take_startup_event() == "init" and not bsp.waiting_for_sipi


def test_lint_pins(bus: ApicBus, manual: ManualTimers) -> None:
    apic, line = make(bus, manual)
    assert apic.assert_lint(0) == "dropped"
    wr(apic, LVT_LINT0, 0x700)
    assert apic.assert_lint(0) == "extint"
    wr(apic, LVT_LINT1, 0x400)
    assert apic.assert_lint(1) == "delivered" and line.nmis == 1
    wr(apic, LVT_LINT1, 0x500)  # INIT through a pin: ignored
    assert apic.assert_lint(1) == "dropped" and apic.take_startup_event() is None
    wr(apic, LVT_LINT0, d.LVT_LEVEL | 0x45)
    assert apic.assert_lint(0) == "delivered"
    assert rd(apic, LVT_LINT0) & d.LVT_REMOTE_IRR and line.offered == 0x45
    line.cpu_take()
    apic.assert_lint(0)  # still in service: no new request
    assert not bitmap(apic, d.IRR)
    assert apic.eoi() == EoiResult(0x45, True)
    assert not rd(apic, LVT_LINT0) & d.LVT_REMOTE_IRR
    wr(apic, LVT_LINT1, 0x46)
    assert apic.assert_lint(1) == "delivered" and line.offered == 0x46
    with pytest.raises(ValueError):
        apic.assert_lint(2)


def test_lint_pins_of_a_disabled_apic_go_straight_to_the_cpu(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    apic.msr_write(d.MSR_APIC_BASE, 0xFEE0_0000)
    assert apic.assert_lint(0) == "extint"
    assert apic.assert_lint(1) == "delivered" and line.nmis == 1
    assert not bus.msi(0xFEE0_0000, 0x4040), "a disabled APIC takes no messages"


def test_the_synthetic_icr_in_both_modes(four: list[tuple[LocalApic, FakeLine]]) -> None:
    a0 = four[0][0]
    a0.write_icr(2 << 56 | 0x4070)
    assert _got(four, 0x70) == [2]
    to_x2apic(a0)
    a0.write_icr(3 << 32 | 0x4071)
    assert _got(four, 0x71) == [3]
    assert a0.msr_read(0x830) == 3 << 32 | 0x4071


def test_close_stops_the_timer(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    wr(apic, LVT_TIMER, PERIODIC | 0x40)
    wr(apic, d.INITIAL_COUNT, 1000)
    apic.close()
    assert manual.armed() == []


def test_an_nmi_before_attach_is_kept(bus: ApicBus, manual: ManualTimers) -> None:
    apic = LocalApic(7, bus, manual, FakeClock(), bsp=False)
    apic.deliver_nmi()
    apic.mmio_write(d.SVR, 4, SVR_ON)
    apic.accept(0x40, level=False)
    line = FakeLine()
    apic.attach(line)
    assert line.nmis == 1 and line.offered == 0x40
    with pytest.raises(ValueError):
        apic.attach(FakeLine())


# --- waiting in HLT ----------------------------------------------------------------


def _later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_wait_for_event_times_out(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    start = time.monotonic()
    assert not apic.wait_for_event(0.02, interrupts_enabled=True)
    assert time.monotonic() - start >= 0.02
    assert not apic.wait_for_event(0, interrupts_enabled=True)


@pytest.mark.parametrize(
    "event",
    ["interrupt", "nmi", "init", "sipi", "kick"],
)
def test_wait_for_event_wakes_from_another_thread(
    bus: ApicBus, manual: ManualTimers, event: str
) -> None:
    apic, _ = make(bus, manual, 1, bsp=False)
    actions: dict[str, Callable[[], object]] = {
        "interrupt": lambda: bus.msi(0xFEE0_1000, 0x4040),
        "nmi": apic.deliver_nmi,
        "init": apic.deliver_init,
        "sipi": lambda: apic.deliver_sipi(0x10),
        "kick": apic.wake_waiter,
    }
    t = _later(0.02, actions[event])
    start = time.monotonic()
    assert apic.wait_for_event(10.0, interrupts_enabled=True)
    assert time.monotonic() - start < 5.0
    t.join()


def test_an_interrupt_wakes_only_with_interrupts_enabled(
    bus: ApicBus, manual: ManualTimers
) -> None:
    apic, line = make(bus, manual)
    t = _later(0.01, lambda: apic.accept(0x40, level=False))
    assert not apic.wait_for_event(0.1, interrupts_enabled=False)
    t.join()
    assert apic.wait_for_event(0.0, interrupts_enabled=True)
    apic.tpr = 0x40  # held back by the TPR: nothing to wake for
    assert not apic.wait_for_event(0.01, interrupts_enabled=True)
    t = _later(0.01, lambda: setattr(apic, "tpr", 0))
    assert apic.wait_for_event(5.0, interrupts_enabled=True)
    t.join()
    assert line.offered == 0x40


def test_a_kick_before_the_wait_is_not_lost(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual)
    apic.wake_waiter()
    assert apic.wait_for_event(None, interrupts_enabled=False)
    assert not apic.wait_for_event(0.01, interrupts_enabled=False), "consumed"


# --- saved state -------------------------------------------------------------------


def test_state_layout_in_both_modes(bus: ApicBus, manual: ManualTimers) -> None:
    apic, _ = make(bus, manual, 0x25)
    wr(apic, d.LDR, 0x4 << 24)
    wr(apic, d.ICR_HIGH, 0x3 << 24)
    wr(apic, d.ICR_LOW, 0x4050 | 0x40000)  # self IPI
    apic.accept(0x61, level=True)
    raw = apic.state()
    assert len(raw) == STATE_SIZE == ctypes.sizeof(hv_local_interrupt_controller_state)
    s = hv_local_interrupt_controller_state.from_buffer_copy(raw)
    assert (s.apic_id, s.apic_version, s.apic_ldr, s.apic_dfr) == (
        0x25 << 24, 0x0005_0014, 0x4 << 24, 0xFFFF_FFFF)  # fmt: skip
    assert s.apic_spurious == SVR_ON and s.apic_lvt_timer == 0x10000
    assert (s.apic_irr[2], s.apic_irr[3], s.apic_tmr[2], s.apic_tmr[3]) == (1 << 0x10, 2, 0, 2)
    assert (s.apic_icr_high, s.apic_icr_low) == (0x3 << 24, 0x44050)
    to_x2apic(apic)
    s = hv_local_interrupt_controller_state.from_buffer_copy(apic.state())
    assert (s.apic_id, s.apic_ldr) == (0x25, 2 << 16 | 1 << 5)


def test_state_round_trip_with_a_pending_interrupt_and_a_running_timer(
    bus: ApicBus, manual: ManualTimers
) -> None:
    src, src_line = make(bus, manual, 1)
    wr(src, d.TPR, 0x10)
    wr(src, LVT_TIMER, PERIODIC | 0x48)
    wr(src, LVT_LINT0, 0x700)
    wr(src, LVT_ERROR, 0x3E)
    wr(src, d.DIVIDE, DIVIDE_BY_1)
    wr(src, d.INITIAL_COUNT, 10_000)
    src.accept(0x90, level=True)
    assert src_line.cpu_take() == 0x90
    src.accept(0x70, level=False)
    src.accept(0xA0, level=False)
    assert not src.accept(3, level=False)  # an error waiting for an ESR write
    manual.advance(4_000)
    saved = src.state()
    dst, dst_line = make(bus, manual, 2, enable=False)
    dst.set_state(saved)
    assert dst.state() == saved
    assert dst_line.offered == 0xA0 and dst.highest_in_service() == 0x90
    assert rd(dst, d.CURRENT_COUNT) == 6_000
    manual.advance(6_000)
    assert dst.outstanding(0x48), "the timer went on from its current count"
    assert dst_line.cpu_take() == 0xA0
    assert dst.eoi() == EoiResult(0xA0, False)
    assert dst.eoi() == EoiResult(0x90, True)
    wr(dst, d.ESR, 0)
    assert rd(dst, d.ESR) == d.ESR_RECEIVE_ILLEGAL_VECTOR
    with pytest.raises(ValueError):
        dst.set_state(saved[:-1])


def test_a_restored_timer_in_real_time(bus: ApicBus, timers: Timers) -> None:
    src, _ = make(bus, timers, 1)
    wr(src, LVT_TIMER, ONE_SHOT | 0x48)
    wr(src, d.DIVIDE, DIVIDE_BY_1)
    wr(src, d.INITIAL_COUNT, 4 * MS)
    saved = src.state()
    wr(src, d.INITIAL_COUNT, 0)
    dst, dst_line = make(bus, timers, 2, enable=False)
    dst.set_state(saved)
    assert dst.wait_for_event(5.0, interrupts_enabled=True)
    assert dst_line.offered == 0x48


# --- concurrency -------------------------------------------------------------------


class CountingApic(LocalApic):
    """Counts the fixed interrupts it accepted."""

    accepted = 0

    def accept(self, vector: int, *, level: bool) -> bool:
        ok = super().accept(vector, level=level)
        self.accepted += ok  # only the other VP's thread sends here
        return ok


def test_two_vps_sending_each_other_ipis_neither_deadlock_nor_lose_any(
    bus: ApicBus, timers: Timers
) -> None:
    n = 10_000
    apics: list[CountingApic] = []
    lines: list[FakeLine] = []
    for i in range(2):
        apic = CountingApic(i, bus, timers, FakeClock(), bsp=i == 0)
        line = FakeLine()
        apic.attach(line)
        bus.add(apic)
        wr(apic, d.SVR, SVR_ON)
        wr(apic, d.ICR_HIGH, (1 - i) << 24)
        # The timer thread joins in: a periodic timer every 100 us on both VPs.
        wr(apic, LVT_TIMER, PERIODIC | 0x30)
        wr(apic, d.DIVIDE, DIVIDE_BY_1)
        wr(apic, d.INITIAL_COUNT, 100_000)
        apics.append(apic)
        lines.append(line)
    taken = [0, 0]
    failures: list[BaseException] = []

    def vp(i: int) -> None:
        apic, line = apics[i], lines[i]
        try:
            for _ in range(n):
                wr(apic, d.ICR_LOW, 0x4000 | 0x50 + i)  # to the other VP
                taken[i] += take_and_eoi(apic, line) == 0x50 + 1 - i
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=vp, args=(i,)) for i in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, inside the APICs' critical sections
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert failures == []
    assert [a.accepted for a in apics] == [n, n]
    for i, (apic, line) in enumerate(zip(apics, lines, strict=True)):
        wr(apic, d.INITIAL_COUNT, 0)
        # What is still requested is still offered: nothing was stranded.
        while take_and_eoi(apic, line) is not None:
            pass
        assert bitmap(apic, d.IRR) == bitmap(apic, d.ISR) == 0
        assert line.offered is None and taken[i] > 0
