"""Pure device models: the bus and the UART."""

from __future__ import annotations

import pytest

from mshv.vmm import serial
from mshv.vmm.bus import Bus, BusOverlapError


class _Reg:
    def __init__(self) -> None:
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return 0x10 + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


def test_bus_routes_offsets_and_refuses_overlap() -> None:
    bus = Bus("pio")
    dev = _Reg()
    bus.register(0x60, 5, dev, "kbd")
    assert bus.read(0x62, 1) == 0x12
    bus.write(0x64, 1, 0xFE)
    assert dev.writes == [(4, 1, 0xFE)]
    for base, length in ((0x64, 1), (0x5F, 2), (0x50, 0x20)):
        with pytest.raises(BusOverlapError):
            bus.register(base, length, _Reg(), "other")
    bus.register(0x65, 1, _Reg(), "adjacent")


def test_bus_counts_unclaimed_accesses() -> None:
    bus = Bus("pio")
    assert bus.read(0x80, 2) == 0xFFFF
    bus.write(0x80, 1, 1)
    assert (bus.unclaimed_reads, bus.unclaimed_writes) == (1, 1)


def test_uart_transmits_and_reports_status() -> None:
    out = bytearray()
    uart = serial.Serial(out.extend)
    uart.write(serial.RBR_THR, 1, ord("h"))
    assert out == b"h" and uart.transmitted == 1
    assert uart.read(serial.LSR, 1) & serial.LSR_THRE
    assert not uart.read(serial.LSR, 1) & serial.LSR_DR
    uart.input.append(0x41)
    assert uart.read(serial.LSR, 1) & serial.LSR_DR
    assert uart.read(serial.RBR_THR, 1) == 0x41
    # DLAB switches offsets 0 and 1 to the divisor latch.
    uart.write(serial.LCR, 1, serial.LCR_DLAB)
    uart.write(serial.RBR_THR, 1, 3)
    assert uart.read(serial.RBR_THR, 1) == 3 and out == b"h"
