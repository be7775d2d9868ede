"""Synthetic processor features: what the guest sees of the hypervisor
(CPUID 0x40000000-0x40000006) and the synthetic MSRs they enable.

The bits given at partition creation decide both. A feature this hypervisor
does not implement on its engine is refused at creation, never silently
left out; the MSRs of a feature that is off raise #GP, as on Hyper-V.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

from mshv.abi import tlfs as t
from mshv.abi.tlfs import hv_partition_synthetic_processor_feature as F
from mshv.hv import apic_defs
from mshv.hv.errors import UnsupportedError

if TYPE_CHECKING:
    from mshv.hv.partition import Partition
    from mshv.hv.vp import Vp

# Features the emulation provides. The rest (SynIC, synthetic timers, VP run
# time, guest idle, TLB-flush and IPI hypercalls, ...) need hypervisor
# services KVM cannot give us; asking for them fails partition creation.
SUPPORTED = (
    1 << F.hypervisor_present
    | 1 << F.hv1
    | 1 << F.access_partition_reference_counter
    | 1 << F.access_intr_ctrl_regs
    | 1 << F.access_hypercall_regs
    | 1 << F.access_vp_index
    | 1 << F.access_partition_reference_tsc
    | 1 << F.access_frequency_regs
    | 1 << F.notify_long_spin_wait
)

# The version this hypervisor reports (CPUID 0x40000002): build, major.minor.
BUILD, MAJOR, MINOR = 20348, 10, 0
MAX_VPS = 256
APIC_HZ = apic_defs.APIC_TIMER_HZ  # the local APIC timer's input clock
HYPERCALL_PAGE_CODE = bytes.fromhex("f30f1efae78ec3")  # endbr64; out 0x8e, eax; ret
HYPERCALL_PORT = 0x8E
APIC_MSRS = frozenset(
    {t.HV_X64_MSR_EOI, t.HV_X64_MSR_ICR, t.HV_X64_MSR_TPR, t.HV_X64_MSR_VP_ASSIST_PAGE}
)


def check(features: int) -> None:
    missing = features & ~SUPPORTED
    if missing:
        names = [f.name for f in F if missing >> f & 1] or [f"{missing:#x}"]
        raise UnsupportedError(f"synthetic processor features {', '.join(names)} are not provided")


# Synthetic feature bit -> bit of the TLFS partition privilege mask (CPUID
# 0x40000003 EAX). The privilege mask keeps bits 7-8 for the reset and
# statistics MSRs, which have no feature bit, so the mapping is not a shift.
_PRIVILEGE_BIT = {
    F.access_vp_run_time_reg: 0,
    F.access_partition_reference_counter: 1,
    F.access_synic_regs: 2,
    F.access_synthetic_timer_regs: 3,
    F.access_intr_ctrl_regs: 4,
    F.access_hypercall_regs: 5,
    F.access_vp_index: 6,
    F.access_partition_reference_tsc: 9,
    F.access_guest_idle_reg: 10,
    F.access_frequency_regs: 11,
}


def privileges(features: int) -> int:
    """The partition privilege mask the guest reads from CPUID 0x40000003."""
    return sum(1 << bit for feature, bit in _PRIVILEGE_BIT.items() if features >> feature & 1)


def cpuid_leaves(features: int, logical_processors: int) -> dict[int, tuple[int, int, int, int]]:
    """CPUID leaves 0x40000000.. as the partition's features show them."""
    if not features & 1 << F.hypervisor_present:
        return {}
    vendor = struct.unpack("<3I", b"Microsoft Hv")
    if not features & 1 << F.hv1:
        return {
            t.HV_CPUID_VENDOR_AND_MAX_FUNCTIONS: (t.HV_CPUID_INTERFACE, *vendor),
            t.HV_CPUID_INTERFACE: (0, 0, 0, 0),
        }
    misc = t.HV_CPUID_FEATURES_EDX_FREQUENCY_MSRS if features & 1 << F.access_frequency_regs else 0
    spin = 0xFFFF_FFFF  # never notify long spin waits, as hints are 0
    return {
        t.HV_CPUID_VENDOR_AND_MAX_FUNCTIONS: (t.HV_CPUID_HARDWARE_FEATURES, *vendor),
        t.HV_CPUID_INTERFACE: (t.HV_CPUID_SIGNATURE_HV1, 0, 0, 0),
        t.HV_CPUID_VERSION: (BUILD, MAJOR << 16 | MINOR, 0, 0),
        t.HV_CPUID_FEATURES: (privileges(features), 0, 0, misc),
        t.HV_CPUID_ENLIGHTENMENT_INFO: (0, spin, 0, 0),
        t.HV_CPUID_IMPLEMENTATION_LIMITS: (MAX_VPS, logical_processors, 0, 0),
        t.HV_CPUID_HARDWARE_FEATURES: (0, 0, 0, 0),
    }


_U64_MASK = (1 << 64) - 1


def _signed64(v: int) -> int:
    v &= _U64_MASK
    return v - (1 << 64) if v >> 63 else v


class ReferenceClock:
    """Partition reference time in 100 ns units, and the TSC page that lets
    the guest compute it from its TSC: time = ((tsc * scale) >> 64) + offset."""

    def __init__(self, tsc_hz: int) -> None:
        self.tsc_hz = tsc_hz
        self.scale = (10_000_000 << 64) // tsc_hz
        self.offset: int | None = None  # fixed when a VP's TSC is first seen
        self._origin = time.monotonic_ns()
        self.frozen: int | None = None  # reference time while TIME_FREEZE is set
        self.sequence = 1

    def _host_time(self) -> int:
        return (time.monotonic_ns() - self._origin) // 100

    def anchor(self, tsc: int) -> None:
        """Tie reference time to a VP's TSC so both clocks agree."""
        if self.offset is None:
            self.offset = _signed64(self._host_time() - ((tsc * self.scale) >> 64))

    def now(self, tsc: int | None) -> int:
        if self.frozen is not None:
            return self.frozen
        if tsc is None or self.offset is None:
            return self._host_time() & _U64_MASK
        # The guest's sum wraps at 64 bits, as the TSC page's does.
        return (((tsc * self.scale) >> 64) + self.offset) & _U64_MASK

    def set(self, value: int, tsc: int | None) -> None:
        """Make the reference time `value` now (REFERENCE_TIME); the TSC page
        then needs rewriting with a new sequence number."""
        if tsc is not None and self.offset is not None:
            self.offset = _signed64(value - ((tsc * self.scale) >> 64))
        self._origin = time.monotonic_ns() - value * 100
        if self.frozen is not None:
            self.frozen = value
        self.sequence = self.sequence % 0xFFFF_FFFE + 1

    def tsc_page(self) -> bytes:
        """HV_REFERENCE_TSC_PAGE: sequence, reserved, scale, offset (a signed
        64-bit addend, so any reference time is reachable modulo 2^64)."""
        offset = self.offset or 0
        return struct.pack("<IIQQ", self.sequence, 0, self.scale, offset & _U64_MASK)


def msr_read(part: Partition, vp: Vp, index: int) -> int | None:
    """The value of a synthetic MSR, or None for #GP (unknown or disabled)."""
    f = part.synthetic_features
    if index in (t.HV_X64_MSR_GUEST_OS_ID, t.HV_X64_MSR_HYPERCALL):
        if f & 1 << F.access_hypercall_regs:
            return part.guest_os_id if index == t.HV_X64_MSR_GUEST_OS_ID else part.hypercall_msr
    elif index == t.HV_X64_MSR_VP_INDEX:
        if f & 1 << F.access_vp_index:
            return vp.index
    elif index == t.HV_X64_MSR_TIME_REF_COUNT:
        if f & 1 << F.access_partition_reference_counter:
            return part.reference_time(vp)
    elif index == t.HV_X64_MSR_REFERENCE_TSC:
        if f & 1 << F.access_partition_reference_tsc:
            return part.reference_tsc_msr
    elif index in (t.HV_X64_MSR_TSC_FREQUENCY, t.HV_X64_MSR_APIC_FREQUENCY):
        if f & 1 << F.access_frequency_regs:
            return part.clock.tsc_hz if index == t.HV_X64_MSR_TSC_FREQUENCY else APIC_HZ
    elif index in APIC_MSRS and f & 1 << F.access_intr_ctrl_regs:
        return vp.apic_msr_read(index)
    return None


def msr_write(part: Partition, vp: Vp, index: int, value: int) -> bool:
    """Apply a write to a synthetic MSR; False for #GP."""
    f = part.synthetic_features
    if index == t.HV_X64_MSR_GUEST_OS_ID and f & 1 << F.access_hypercall_regs:
        part.guest_os_id = value
        if not value:  # a zero guest OS id also disables the hypercall page
            part.set_hypercall_msr(part.hypercall_msr & ~1)
        return True
    if index == t.HV_X64_MSR_HYPERCALL and f & 1 << F.access_hypercall_regs:
        # Enabling needs a guest OS id first; bits 1..11 are reserved.
        if value & 1 and not part.guest_os_id:
            return True  # ignored, as Hyper-V ignores it
        return part.set_hypercall_msr(value & ~0xFFE)
    if index == t.HV_X64_MSR_REFERENCE_TSC and f & 1 << F.access_partition_reference_tsc:
        return part.set_reference_tsc_msr(value & ~0xFFE, vp)
    if index in APIC_MSRS and f & 1 << F.access_intr_ctrl_regs:
        return vp.apic_msr_write(index, value)
    return False


def is_synthetic(index: int) -> bool:
    return 0x4000_0000 <= index <= 0x4000_0FFF
