"""HvAssertVirtualInterrupt into the partition's local APICs.

Fixed, lowest-priority, NMI, INIT and SIPI interrupts are messages to the
hypervisor's local APICs (`mshv.hv.apic`, on every engine), delivered from
any thread, running VPs included. A level-triggered vector's EOI comes back
to the VMM as HVMSG_X64_APIC_EOI. An ExtINT is the vector a userspace PIC
hands over: it goes straight in when the target VP is stopped, or waits for
the VP's next chance to take an interrupt. LINT0/LINT1 are asserted through
the target's LVT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_interrupt_type as IT
from mshv.hv.apic_defs import XAPIC_BROADCAST
from mshv.hv.errors import HvError, UnsupportedError

if TYPE_CHECKING:
    from mshv.hv.partition import Partition

_DELIVERY_MODE: dict[int, int] = {
    IT.HV_X64_INTERRUPT_TYPE_FIXED: 0,
    IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY: 1,
    IT.HV_X64_INTERRUPT_TYPE_NMI: 4,
    IT.HV_X64_INTERRUPT_TYPE_INIT: 5,
    IT.HV_X64_INTERRUPT_TYPE_SIPI: 6,
}
_UNSUPPORTED: dict[int, str] = {
    IT.HV_X64_INTERRUPT_TYPE_SMI: "the emulation has no system management mode",
    IT.HV_X64_INTERRUPT_TYPE_REMOTEREAD: "remote read is obsolete and no APIC here has it",
}
_LINT: dict[int, int] = {
    IT.HV_X64_INTERRUPT_TYPE_LOCALINT0: 0, IT.HV_X64_INTERRUPT_TYPE_LOCALINT1: 1,
}  # fmt: skip


class Controller:
    def __init__(self, partition: Partition) -> None:
        self._part = partition

    def assert_interrupt(
        self, kind: int, dest: int, vector: int, level: bool, logical: bool
    ) -> None:
        part = self._part
        bus = part.apic_bus
        if bus is None:
            raise HvError(
                hv_status.HV_STATUS_INVALID_PARAMETER,
                "the partition was created without HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED",
            )
        if kind in _UNSUPPORTED:
            raise UnsupportedError(f"interrupt type {kind}: {_UNSUPPORTED[kind]}")
        if kind == IT.HV_X64_INTERRUPT_TYPE_EXTINT:
            self._extint(dest, vector)
            return
        if kind in _LINT:
            self._lint(dest, _LINT[kind])
            return
        mode = _DELIVERY_MODE.get(kind)
        if mode is None:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"interrupt type {kind}")
        if mode in (0, 1) and not 16 <= vector <= 255:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"vector {vector}")
        if mode == 6 and not 0 <= vector <= 255:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"SIPI vector {vector}")
        if not 0 <= dest <= 0xFF:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"destination {dest:#x}")
        if not logical and dest != XAPIC_BROADCAST and not bus.has_apic(dest):
            # A physical destination names one VP: one that does not exist is
            # the caller's mistake, as for EXTINT and LINT (a logical one is a
            # mask, and matching no APIC there drops the message, as on hardware).
            raise HvError(hv_status.HV_STATUS_INVALID_VP_INDEX, f"no VP with APIC id {dest}")
        level &= mode in (0, 1)  # only fixed interrupts can be level-triggered
        bus.deliver(dest, logical=logical, mode=mode, vector=vector & 0xFF, level=level)

    def _extint(self, dest: int, vector: int) -> None:
        if not 0 <= vector <= 255:
            raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER, f"vector {vector}")
        vp = self._part.vps.get(dest)
        if vp is None:
            raise HvError(hv_status.HV_STATUS_INVALID_VP_INDEX, f"no VP with APIC id {dest}")
        vp.queue_extint(vector)

    def _lint(self, dest: int, pin: int) -> None:
        vp = self._part.vps.get(dest)
        if vp is None or vp.apic is None:
            raise HvError(hv_status.HV_STATUS_INVALID_VP_INDEX, f"no VP with APIC id {dest}")
        if vp.apic.apic.assert_lint(pin) == "extint":
            raise UnsupportedError(
                f"LINT{pin} is programmed for ExtINT: assert HV_X64_INTERRUPT_TYPE_EXTINT "
                "with the PIC's vector instead"
            )
