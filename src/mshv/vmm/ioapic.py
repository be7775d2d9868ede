"""An IOAPIC (82093AA register model, version 0x20 with the EOI register).

Pins are driven by devices with `set_level`; a pin whose redirection entry
is unmasked sends its interrupt to the hypervisor's local APICs with
MSHV_ASSERT_INTERRUPT. Edge-triggered pins send on a rising edge (an edge
while masked is lost, as on the chip); level-triggered pins send while the
line is high and remote IRR is clear, and send again after the guest's EOI
(HVMSG_X64_APIC_EOI, or a write to the EOI register) if still high.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

PINS = 24
VERSION = 0x20
MMIO_SIZE = 0x1000
IOREGSEL, IOWIN, EOI = 0x00, 0x10, 0x40
REG_ID, REG_VERSION, REG_ARBITRATION, REG_TABLE = 0x00, 0x01, 0x02, 0x10
# Redirection entry bits
VECTOR = 0xFF
DELIVERY_MODE_SHIFT = 8
DEST_LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12
POLARITY_LOW = 1 << 13
REMOTE_IRR = 1 << 14
LEVEL = 1 << 15
MASKED = 1 << 16
DEST_SHIFT = 56
WRITABLE = ~(DELIVERY_STATUS | REMOTE_IRR) & (1 << 64) - 1
RESERVED_LOW = 0xFFFE_0000  # bits 17-31 of the low dword
RESERVED_HIGH = 0x00FF_FFFF  # bits 32-55

# Delivers (vector, destination, delivery mode, level, logical).
Deliver = Callable[[int, int, int, bool, bool], None]


class IoApic:
    def __init__(self, ioapic_id: int, deliver: Deliver) -> None:
        self.id = ioapic_id
        self._deliver = deliver
        self._select = 0
        self._entries = [MASKED] * PINS
        self._lines = [False] * PINS
        self._lock = threading.Lock()
        self.delivered = 0

    # --- the guest's view (MMIO) ---------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == IOREGSEL:
                return self._select
            if offset == IOWIN:
                return self._read_register(self._select)
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            if offset == IOREGSEL:
                self._select = value & 0xFF
            elif offset == IOWIN:
                self._write_register(self._select, value & 0xFFFF_FFFF)
            elif offset == EOI:
                self._eoi(value & 0xFF)

    def _read_register(self, reg: int) -> int:
        if reg in (REG_ID, REG_ARBITRATION):
            return (self.id & 0xF) << 24
        if reg == REG_VERSION:
            return (PINS - 1) << 16 | VERSION
        pin, high = divmod(reg - REG_TABLE, 2)
        if reg < REG_TABLE or pin >= PINS:
            return 0
        entry = self._entries[pin]
        return entry >> 32 if high else entry & 0xFFFF_FFFF

    def _write_register(self, reg: int, value: int) -> None:
        if reg == REG_ID:
            self.id = value >> 24 & 0xF
            return
        pin, high = divmod(reg - REG_TABLE, 2)
        if reg < REG_TABLE or pin >= PINS:
            return
        old = self._entries[pin]
        if high:
            new = (old & 0xFFFF_FFFF) | (value & ~RESERVED_HIGH) << 32
        else:
            new = (old & ~0xFFFF_FFFF) | (value & ~RESERVED_LOW)
        new = (new & WRITABLE) | (old & (DELIVERY_STATUS | REMOTE_IRR))
        if not new & LEVEL:
            new &= ~REMOTE_IRR
        self._entries[pin] = new
        if old & MASKED and not new & MASKED and new & LEVEL:
            self._service(pin)  # a level line already high fires once unmasked

    # --- devices ---------------------------------------------------------------------------

    def set_level(self, pin: int, high: bool) -> None:
        """Drive the pin's line (active high as seen by the entry's polarity)."""
        with self._lock:
            entry = self._entries[pin]
            asserted = high != bool(entry & POLARITY_LOW)
            rising = asserted and not self._lines[pin]
            self._lines[pin] = asserted
            if entry & LEVEL:
                self._service(pin)
            elif rising and not entry & MASKED:
                self._send(pin)

    def pulse(self, pin: int) -> None:
        """An edge on the pin (for edge-triggered sources)."""
        self.set_level(pin, True)
        self.set_level(pin, False)

    def apic_eoi(self, vector: int) -> None:
        """The guest ended a level-triggered interrupt with this vector."""
        with self._lock:
            self._eoi(vector)

    def _eoi(self, vector: int) -> None:
        for pin, entry in enumerate(self._entries):
            if entry & REMOTE_IRR and entry & VECTOR == vector:
                self._entries[pin] = entry & ~REMOTE_IRR
                self._service(pin)

    def _service(self, pin: int) -> None:
        entry = self._entries[pin]
        if self._lines[pin] and not entry & (MASKED | REMOTE_IRR):
            self._entries[pin] = entry | REMOTE_IRR
            self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self._entries[pin]
        self.delivered += 1
        self._deliver(entry & VECTOR, entry >> DEST_SHIFT, entry >> DELIVERY_MODE_SHIFT & 7,
                      bool(entry & LEVEL), bool(entry & DEST_LOGICAL))  # fmt: skip

    def entry(self, pin: int) -> int:
        return self._entries[pin]
