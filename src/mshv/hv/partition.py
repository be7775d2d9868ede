"""A guest partition: its guest-physical map, its VPs and its lifecycle."""

from __future__ import annotations

import threading

from mshv.abi.status import hv_status
from mshv.abi.uapi import HV_MAP_GPA_READABLE, HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED
from mshv.hv.engine import Machine
from mshv.hv.errors import HvError
from mshv.hv.gpa import PAGE_SIZE, GpaMap, GpaRange, check_flags
from mshv.hv.vp import Vp

MAX_VP_INDEX = 255


class Partition:
    """The hypervisor's view of one partition (HvCreatePartition onwards)."""

    def __init__(self, pid: int, flags: int, synthetic_features: int, machine: Machine) -> None:
        self.id = pid
        self.flags = flags
        self.synthetic_features = synthetic_features
        self.lapic = bool(flags & HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED)
        self.machine = machine
        self.gpa_map = GpaMap()
        self.vps: dict[int, Vp] = {}
        self.lock = threading.Lock()  # the guest-physical map and the VP table
        self.deleted = False

    # --- HvMapGpaPages / HvUnmapGpaPages --------------------------------------------

    def map_gpa_pages(self, gpa_pfn: int, page_count: int, uaddr: int, flags: int) -> None:
        check_flags(flags)
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
            if flags & HV_MAP_GPA_READABLE:
                handle = self.machine.map_memory(gpa, size, uaddr, writable=flags == 0xF)
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
            processor = self.machine.create_processor(index)
            try:
                vp = Vp(self, index, processor)
            except BaseException:
                processor.close()
                raise
            self.vps[index] = vp
            return vp

    # --- HvFinalizePartition + HvDeletePartition ------------------------------------------

    def delete(self) -> None:
        with self.lock:
            if self.deleted:
                return
            self.deleted = True
            for vp in self.vps.values():
                vp.close()
            self.vps.clear()
            self.machine.close()
