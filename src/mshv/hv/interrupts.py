"""HvAssertVirtualInterrupt into the partition's local APICs.

Fixed, lowest-priority, NMI, INIT and SIPI interrupts are messages to the
local APICs, delivered from any thread, running VPs included: KVM's (as
MSIs) or the hypervisor's own (`mshv.hv.apic`, on the software engine). A
level-triggered vector's EOI comes back to the VMM as HVMSG_X64_APIC_EOI.
An ExtINT is the vector a userspace PIC hands over: it goes straight in when
the target VP is stopped, or waits for the VP's next chance to take an
interrupt. LINT0/LINT1 are asserted through the target's LVT (hypervisor
APIC only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_interrupt_type as IT
from mshv.hv.errors import HvError, UnsupportedError

if TYPE_CHECKING:
    from mshv.hv.partition import Partition

MSI_ADDRESS = 0xFEE0_0000
MSI_DEST_LOGICAL = 1 << 2
MSI_ASSERT = 1 << 14
MSI_LEVEL = 1 << 15
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
_KVM_UNSUPPORTED: dict[int, str] = {
    IT.HV_X64_INTERRUPT_TYPE_LOCALINT0: "KVM's local APIC has no LINT pins to assert",
    IT.HV_X64_INTERRUPT_TYPE_LOCALINT1: "KVM's local APIC has no LINT pins to assert",
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
        if not part.lapic:
            raise HvError(
                hv_status.HV_STATUS_INVALID_PARAMETER,
                "the partition was created without HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED",
            )
        if kind in _UNSUPPORTED:
            raise UnsupportedError(f"interrupt type {kind}: {_UNSUPPORTED[kind]}")
        if kind == IT.HV_X64_INTERRUPT_TYPE_EXTINT:
            self._extint(dest, vector)
            return
        if part.apic_bus is None and kind in _KVM_UNSUPPORTED:
            raise UnsupportedError(f"interrupt type {kind}: {_KVM_UNSUPPORTED[kind]}")
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
        level &= mode in (0, 1)  # only fixed interrupts can be level-triggered
        if part.apic_bus is not None:
            part.apic_bus.deliver(dest, logical=logical, mode=mode, vector=vector & 0xFF,
                                  level=level)  # fmt: skip
            return
        target = None
        if level:
            part.machine.watch_eoi(vector)
            if not part.machine.reports_eoi:
                # The engine cannot stop at the EOI: the target VP checks for it
                # whenever it stops (docs/conformance.md), so it must be known.
                target = part.vps.get(dest)
                if logical or target is None:
                    raise UnsupportedError(
                        "a level-triggered interrupt needs a physical destination that is a VP "
                        "on this host, whose KVM does not report EOIs"
                    )
        address = MSI_ADDRESS | dest << 12 | (MSI_DEST_LOGICAL if logical else 0)
        data = (vector & 0xFF if mode in (0, 1, 6) else 0) | mode << 8 | MSI_ASSERT
        if target is not None:
            target.level_outstanding.add(vector)
        part.machine.signal_msi(address, data | (MSI_LEVEL if level else 0))

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

    def send_ipi(self, source: int, icr: int) -> None:
        """An interprocessor interrupt written to the synthetic ICR MSR:
        vector, delivery mode, destination mode, trigger, shorthand, destination."""
        part = self._part
        vector, mode = icr & 0xFF, icr >> 8 & 7
        logical, level = bool(icr >> 11 & 1), bool(icr >> 15 & 1)
        shorthand = icr >> 18 & 3
        dest = icr >> 32 & 0xFF if icr >> 32 & 0xFFFF_FF00 == 0 else icr >> 56
        targets = {0: [dest], 1: [source], 2: [0xFF]}.get(shorthand)
        if targets is None:  # all excluding self
            targets, logical = [i for i in part.vps if i != source], False
        elif shorthand:
            logical = False
        data = vector | mode << 8 | MSI_ASSERT | (MSI_LEVEL if level and mode in (0, 1) else 0)
        for target in targets:
            address = MSI_ADDRESS | target << 12 | (MSI_DEST_LOGICAL if logical else 0)
            part.machine.signal_msi(address, data)
