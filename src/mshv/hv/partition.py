"""A guest partition: its guest-physical map, VPs, synthetic state,
intercepts, interrupts and lifecycle."""

from __future__ import annotations

import threading

from mshv.abi import tlfs as t
from mshv.abi.status import hv_status
from mshv.abi.uapi import (
    HV_MAP_GPA_EXECUTABLE,
    HV_MAP_GPA_READABLE,
    HV_MAP_GPA_WRITABLE,
    HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
)
from mshv.hv import intercepts, interrupts, synthetic
from mshv.hv.apic import ApicBus, LocalApic
from mshv.hv.engine import Machine, Processor
from mshv.hv.errors import HvError
from mshv.hv.gpa import PAGE_SIZE, RWX, GpaMap, GpaRange, check_flags
from mshv.hv.synthetic import ReferenceClock
from mshv.hv.timers import Timers
from mshv.hv.vp import Vp
from mshv.hv.vp_apic import VpApic, line_of

MAX_VP_INDEX = 255


class Partition:
    """The hypervisor's view of one partition (HvCreatePartition onwards)."""

    def __init__(self, pid: int, flags: int, synthetic_features: int, machine: Machine) -> None:
        synthetic.check(synthetic_features)
        self.id = pid
        self.flags = flags
        self.synthetic_features: int = synthetic_features
        self.lapic = bool(flags & HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED)
        self.machine: Machine = machine
        self.gpa_map = GpaMap()
        self.vps: dict[int, Vp] = {}
        self.lock = threading.Lock()  # the guest-physical map and the VP table
        self.deleted = False
        # Partition-wide synthetic state (TLFS: these MSRs are per partition).
        self.guest_os_id: int = 0
        self.hypercall_msr: int = 0
        self.reference_tsc_msr: int = 0
        self.clock: ReferenceClock = ReferenceClock(machine.tsc_hz())
        self.unimplemented_msr_action: int = t.HV_UNIMPLEMENTED_MSR_ACTION_FAULT
        self.processors_per_socket: int = 1
        self.intercepts = intercepts.Table(machine)
        self.interrupts = interrupts.Controller(self)
        # The hypervisor's own local APICs (no engine has any).
        self.apic_bus: ApicBus | None = None
        self.timers: Timers | None = None
        if self.lapic:
            self.apic_bus = ApicBus()
            self.timers = Timers(name=f"mshv-partition-{pid}-timers")

    # --- HvMapGpaPages / HvUnmapGpaPages --------------------------------------------

    def map_gpa_pages(self, gpa_pfn: int, page_count: int, uaddr: int, flags: int) -> None:
        check_flags(flags, self.machine.enforces_no_execute)
        gpa = gpa_pfn * PAGE_SIZE
        size = page_count * PAGE_SIZE
        if gpa + size > 1 << self.machine.physical_address_bits:
            raise HvError(
                hv_status.HV_STATUS_INVALID_PARAMETER,
                f"GPA range {gpa:#x}+{size:#x} is beyond the partition's "
                f"{self.machine.physical_address_bits}-bit physical address space",
            )
        with self.lock:
            if self.gpa_map.overlaps(gpa, size):
                # The hypercall would overwrite; the RFC driver never lets it.
                raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, "GPA range already mapped")
            handle = None
            if self.machine.enforces_no_execute:
                if flags:  # what the flags leave out stops the access
                    handle = self.machine.map_memory(
                        gpa, size, uaddr, bool(flags & HV_MAP_GPA_WRITABLE),
                        bool(flags & HV_MAP_GPA_EXECUTABLE), bool(flags & HV_MAP_GPA_READABLE),
                    )  # fmt: skip
            elif flags & HV_MAP_GPA_READABLE:
                handle = self.machine.map_memory(gpa, size, uaddr, writable=flags == RWX)
            self.gpa_map.add(GpaRange(gpa, size, uaddr, flags, handle))

    def unmap_gpa_pages(self, gpa_pfn: int, page_count: int) -> None:
        gpa = gpa_pfn * PAGE_SIZE
        with self.lock:
            rng = self.gpa_map.find(gpa)
            if rng is None or rng.gpa != gpa or rng.size != page_count * PAGE_SIZE:
                raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, "no such mapping")
            if rng.handle is not None:
                self.machine.unmap_memory(rng.handle)
            self.gpa_map.remove(rng)

    # --- HvCreateVp ----------------------------------------------------------------------

    def create_vp(self, index: int) -> Vp:
        with self.lock:
            if index > MAX_VP_INDEX:
                raise HvError(hv_status.HV_STATUS_INVALID_VP_INDEX, f"VP index {index}")
            if index in self.vps:
                raise HvError(hv_status.HV_STATUS_INVALID_VP_INDEX, f"VP {index} exists")
            leaves = synthetic.cpuid_leaves(self.synthetic_features, self.processors_per_socket)
            processor = self.machine.create_processor(index, leaves)
            apic = None
            try:
                self.clock.anchor(processor.tsc())
                vp = Vp(self, index, processor)
                if self.apic_bus is not None and self.timers is not None:
                    clock = VpApic.clock(processor, self.machine.tsc_hz())
                    apic = LocalApic(index, self.apic_bus, self.timers, clock, bsp=index == 0)
                    apic.attach(line_of(processor))
                    self.apic_bus.add(apic)
                    vp.apic = VpApic(vp, apic)
            except BaseException:
                if apic is not None:
                    apic.close()
                    if self.apic_bus is not None:
                        self.apic_bus.remove(apic)
                processor.close()
                raise
            self.vps[index] = vp
            return vp

    # --- properties, and the state they stand for --------------------------------------

    def cpuid(self, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        return self.machine.cpuid(leaf, subleaf)

    def xsave_supported(self) -> int:
        return self.machine.xsave_features()

    def max_xsave_size(self) -> int:
        return self.machine.xsave_size()

    def set_synthetic_features(self, value: int) -> None:
        if self.vps:
            raise HvError(hv_status.HV_STATUS_INVALID_PARTITION_STATE, "VPs already exist")
        synthetic.check(value)
        self.synthetic_features = value

    def _some_processor(self) -> Processor | None:
        for vp in self.vps.values():
            return vp.processor
        return None

    def reference_time(self, vp: Vp | None) -> int:
        """Reference time now, by the given VP's TSC (or any VP's)."""
        if self.clock.frozen is not None:
            return self.clock.frozen
        p = vp.processor if vp is not None else self._some_processor()
        return self.clock.now(None if p is None else p.tsc())

    def set_reference_time(self, value: int) -> None:
        p = self._some_processor()
        self.clock.set(value, None if p is None else p.tsc())
        self._write_tsc_page()

    def set_time_freeze(self, freeze: bool) -> None:
        """Frozen, reference time stands still and VPs do not run; on thawing
        it goes on from where it stopped (the reference TSC page is rewritten).
        The VPs' own TSCs are not stopped (docs/conformance.md)."""
        if freeze == (self.clock.frozen is not None):
            return
        if freeze:
            self.clock.frozen = self.reference_time(None)
            return
        value = self.clock.frozen
        self.clock.frozen = None
        if value is not None:
            self.set_reference_time(value)

    @property
    def frozen(self) -> bool:
        return self.clock.frozen is not None

    def set_hypercall_msr(self, value: int) -> bool:
        """Enabling puts the hypercall code into the guest page (RAM only:
        the emulation cannot overlay a page, docs/conformance.md)."""
        if value & 1 and not self.machine.write_memory(
            value & ~0xFFF, synthetic.HYPERCALL_PAGE_CODE
        ):
            return False
        self.hypercall_msr = value
        return True

    def hypercall_page_gpa(self) -> int | None:
        return self.hypercall_msr & ~0xFFF if self.hypercall_msr & 1 else None

    def set_reference_tsc_msr(self, value: int, vp: Vp) -> bool:
        old = self.reference_tsc_msr
        self.reference_tsc_msr = value
        self.clock.anchor(vp.processor.tsc())
        if not self._write_tsc_page():
            self.reference_tsc_msr = old
            return False
        return True

    def _write_tsc_page(self) -> bool:
        if not self.reference_tsc_msr & 1:
            return True
        return self.machine.write_memory(self.reference_tsc_msr & ~0xFFF, self.clock.tsc_page())

    # --- HvFinalizePartition + HvDeletePartition ------------------------------------------

    def delete(self) -> None:
        with self.lock:
            if self.deleted:
                return
            self.deleted = True
            for vp in self.vps.values():
                if vp.apic is not None and self.apic_bus is not None:
                    vp.apic.apic.close()
                    self.apic_bus.remove(vp.apic.apic)
                vp.close()
            self.vps.clear()
            if self.timers is not None:
                self.timers.close()
            self.machine.close()
