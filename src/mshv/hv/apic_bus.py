"""The interrupt bus between a partition's local APICs: IPIs and MSIs.

The bus resolves a destination (physical, logical flat/cluster, x2APIC
cluster, shorthands) to APICs and hands the message to each. It holds its
lock only to copy the id table and reads each APIC's routing snapshot
without that APIC's lock; delivery then takes one APIC lock at a time, so
two VPs sending IPIs to each other never wait on each other's locks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from mshv.hv.apic_defs import (
    DFR_FLAT,
    EXTINT,
    FIXED,
    INIT,
    LOWEST_PRIORITY,
    NMI,
    SHORTHAND_ALL,
    SHORTHAND_NONE,
    SHORTHAND_OTHERS,
    SHORTHAND_SELF,
    SIPI,
    SMI,
    X2APIC_BROADCAST,
    XAPIC_BROADCAST,
    ApicError,
    Routing,
)

if TYPE_CHECKING:
    from mshv.hv.apic import LocalApic

MSI_ADDRESS_MASK, MSI_ADDRESS = 0xFFF0_0000, 0xFEE0_0000
_REFUSED = {
    SMI: "SMI: this hypervisor has no system management mode",
    3: "delivery mode 3 is reserved",
    EXTINT: "ExtINT is taken from the PIC by the VP (LINT0), not sent as a message",
}


def _matches_logical(r: Routing, dest: int) -> bool:
    if r.mode == "x2apic":
        if dest == X2APIC_BROADCAST:
            return True
        return dest >> 16 == r.ldr >> 16 and bool(dest & r.ldr & 0xFFFF)
    if dest == X2APIC_BROADCAST:
        dest = XAPIC_BROADCAST
    elif dest > 0xFF:
        return False
    if r.dfr >> 28 == DFR_FLAT:
        return bool(dest & r.ldr >> 24)
    cluster, member = r.ldr >> 28, r.ldr >> 24 & 0xF  # the cluster model
    return (dest >> 4 in (cluster, 0xF)) and bool(dest & 0xF & member)


class ApicBus:
    """The local APICs of one partition, by APIC id, and message delivery.
    `on_level_eoi(vector)` is called (without any APIC lock held) when a
    level-triggered interrupt is ended by EOI: the IOAPIC's hook."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apics: dict[int, LocalApic] = {}
        self.on_level_eoi: Callable[[int], None] | None = None

    def add(self, apic: LocalApic) -> None:
        """Connect an APIC; its initial APIC id must be new on this bus."""
        with self._lock:
            if apic.apic_id in self._apics:
                raise ValueError(f"APIC id {apic.apic_id} is already on the bus")
            self._apics[apic.apic_id] = apic

    def remove(self, apic: LocalApic) -> None:
        """Disconnect an APIC (no error if it was not connected)."""
        with self._lock:
            if self._apics.get(apic.apic_id) is apic:
                del self._apics[apic.apic_id]

    def get(self, apic_id: int) -> LocalApic | None:
        """The APIC connected with this initial APIC id."""
        with self._lock:
            return self._apics.get(apic_id)

    def apics(self) -> list[LocalApic]:
        """The connected APICs, ordered by initial APIC id."""
        with self._lock:
            return [self._apics[i] for i in sorted(self._apics)]

    def has_apic(self, apic_id: int) -> bool:
        """Whether some VP's local APIC has this APIC id (enabled or not)."""
        with self._lock:
            return any(a.apic_id == apic_id for a in self._apics.values())

    def _targets(
        self, dest: int, logical: bool, shorthand: int, source: LocalApic | None
    ) -> list[LocalApic]:
        with self._lock:
            apics = list(self._apics.values())
        if shorthand == SHORTHAND_SELF:
            return [source] if source is not None else []
        live = [a for a in apics if a.routing.mode != "disabled"]
        if shorthand == SHORTHAND_ALL:
            return live
        if shorthand == SHORTHAND_OTHERS:
            return [a for a in live if a is not source]
        if logical:
            return [a for a in live if _matches_logical(a.routing, dest)]
        x2 = source is not None and source.routing.mode == "x2apic"
        if dest == X2APIC_BROADCAST or (dest == XAPIC_BROADCAST and not x2):
            return live
        return [a for a in live if a.routing.id == dest]

    def deliver(
        self,
        dest: int,
        *,
        logical: bool,
        mode: int,
        vector: int,
        level: bool,
        shorthand: int = SHORTHAND_NONE,
        source: LocalApic | None = None,
        asserted: bool = True,
    ) -> bool:
        """Deliver an interrupt message; True if any APIC accepted it.

        `mode`: 0 fixed, 1 lowest priority (to the matching APIC with the
        lowest PPR, then lowest id), 4 NMI, 5 INIT, 6 SIPI; SMI, ExtINT and
        reserved modes raise ApicError. `level` is the trigger mode of fixed
        and lowest-priority interrupts (their TMR bit). An INIT level
        de-assert (`asserted` False, `level` True) does nothing, as on every
        processor since the Pentium 4. `shorthand`: 0 the destination, 1 self,
        2 all including self, 3 all excluding self (1 and 3 need `source`).
        """
        if mode in _REFUSED:
            raise ApicError(f"interrupt delivery mode {mode}: {_REFUSED[mode]}")
        if not 0 <= mode <= 7 or not 0 <= vector <= 0xFF or not 0 <= shorthand <= 3:
            raise ValueError(f"mode {mode}, vector {vector}, shorthand {shorthand}")
        if shorthand in (SHORTHAND_SELF, SHORTHAND_OTHERS) and source is None:
            raise ValueError(f"shorthand {shorthand} needs the sending APIC")
        if mode == INIT and level and not asserted:
            return False
        targets = self._targets(dest, logical, shorthand, source)
        if mode == LOWEST_PRIORITY:
            enabled = [a for a in targets if a.routing.enabled]
            if not enabled:
                return False
            targets = [min(enabled, key=lambda a: (a.ppr, a.apic_id))]
        accepted = False
        for apic in targets:
            if mode in (FIXED, LOWEST_PRIORITY):
                accepted |= apic.accept(vector, level=level)
            elif mode == NMI:
                apic.deliver_nmi()
                accepted = True
            elif mode == INIT:
                apic.deliver_init()
                accepted = True
            elif mode == SIPI:
                accepted |= apic.deliver_sipi(vector)
        return accepted

    def msi(self, address: int, data: int) -> bool:
        """Deliver a message-signalled interrupt; False if no APIC accepted it
        or the address is not in the 0xFEExxxxx interrupt range.

        Address: destination id bits 12-19, redirection hint bit 3 (makes a
        fixed interrupt lowest priority), logical destination bit 2. Data:
        vector 0-7, delivery mode 8-10, assert bit 14, level trigger bit 15.
        """
        if address & MSI_ADDRESS_MASK != MSI_ADDRESS:
            return False
        mode = data >> 8 & 7
        if address & 1 << 3 and mode == FIXED:
            mode = LOWEST_PRIORITY
        return self.deliver(
            address >> 12 & 0xFF,
            logical=bool(address & 1 << 2),
            mode=mode,
            vector=data & 0xFF,
            level=bool(data & 1 << 15),
            asserted=bool(data & 1 << 14),
        )
