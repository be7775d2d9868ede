"""The ACPI power-management registers the FADT names, and the reset register.

PM1a event block: status (write 1 to clear) and enable. PM1a control:
SCI_EN reads as set (the platform is always in ACPI mode, so there is no
SMI command port); writing SLP_EN with the \\_S5 sleep type powers the
machine off. Other sleep states are not offered in the DSDT, and a guest
that asks for one anyway is refused loudly (the request is reported, not
ignored). Writing the reset value to the reset port resets the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mshv.vmm.acpi import RESET_VALUE, SLP_TYP_S5

log = logging.getLogger(__name__)

SCI_EN = 1 << 0
SLP_TYP_SHIFT, SLP_EN = 10, 1 << 13
RESET_BIT = 0x04  # of the reset control register's value


class PowerManagement:
    """Ports: the event block (4 bytes) and the control block (2 bytes).
    `power_off()` and `sleep(state)` are the machine's."""

    def __init__(self, power_off: Callable[[], None],
                 unsupported: Callable[[str], None]) -> None:  # fmt: skip
        self._power_off = power_off
        self._unsupported = unsupported
        self.status = 0
        self.enable = 0
        self.control = SCI_EN

    def read_event(self, offset: int, size: int) -> int:
        value = (self.enable << 16 | self.status) >> (8 * offset)
        return value & ((1 << 8 * size) - 1)

    def write_event(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            byte = value >> (8 * i) & 0xFF
            reg = offset + i
            if reg < 2:
                self.status &= ~(byte << 8 * reg)
            elif reg < 4:
                shift = 8 * (reg - 2)
                self.enable = (self.enable & ~(0xFF << shift)) | byte << shift

    def read_control(self, offset: int, size: int) -> int:
        return (self.control >> (8 * offset)) & ((1 << 8 * size) - 1)

    def write_control(self, offset: int, size: int, value: int) -> None:
        value = (value << 8 * offset) & 0xFFFF
        if size == 1:
            keep = 0xFF00 if offset == 0 else 0x00FF
            value |= self.control & keep
        self.control = (value & ~SLP_EN) | SCI_EN
        if value & SLP_EN:
            typ = value >> SLP_TYP_SHIFT & 7
            if typ == SLP_TYP_S5:
                self._power_off()
            else:
                self._unsupported(f"the guest asked for ACPI sleep type {typ}; only S5 "
                                  "(power-off) is offered")  # fmt: skip


class EventBlock:
    def __init__(self, pm: PowerManagement) -> None:
        self.read, self.write = pm.read_event, pm.write_event


class ControlBlock:
    def __init__(self, pm: PowerManagement) -> None:
        self.read, self.write = pm.read_control, pm.write_control


class ResetControl:
    """Port 0xCF9, the FADT's reset register."""

    def __init__(self, reset: Callable[[], None]) -> None:
        self._reset = reset
        self.value = 0

    def read(self, offset: int, size: int) -> int:
        return self.value

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value & 0xFF
        if self.value & RESET_BIT or self.value == RESET_VALUE:
            self._reset()
