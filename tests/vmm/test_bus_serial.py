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
    assert uart.receive(b"A") == 1
    assert uart.read(serial.LSR, 1) & serial.LSR_DR
    assert uart.read(serial.RBR_THR, 1) == 0x41
    # DLAB switches offsets 0 and 1 to the divisor latch.
    uart.write(serial.LCR, 1, serial.LCR_DLAB)
    uart.write(serial.RBR_THR, 1, 3)
    assert uart.read(serial.RBR_THR, 1) == 3 and out == b"h"


def _uart() -> tuple[serial.Serial, list[bool], bytearray]:
    lines: list[bool] = []
    out = bytearray()
    uart = serial.Serial(out.extend, lines.append)
    uart.write(serial.MCR, 1, serial.MCR_OUT2)
    return uart, lines, out


def test_thre_interrupt_follows_ier_iir_and_thr() -> None:
    uart, lines, out = _uart()
    assert uart.read(serial.IIR_FCR, 1) == serial.IIR_NO_INTERRUPT and lines == []
    uart.write(serial.IER, 1, serial.IER_THRI)  # enabling it with THR empty raises it
    assert lines == [True]
    assert uart.read(serial.IIR_FCR, 1) == serial.IIR_THRE  # reading IIR clears it
    assert lines == [True, False]
    uart.write(serial.RBR_THR, 1, ord("a"))  # sent at once: empty again
    assert lines[-1] is True and out == b"a"
    uart.write(serial.MCR, 1, 0)  # OUT2 gates the line on a PC
    assert lines[-1] is False


def test_received_data_interrupt_has_priority_and_fifo_limit() -> None:
    uart, _, _ = _uart()
    uart.write(serial.IER, 1, serial.IER_RDI | serial.IER_THRI)
    assert uart.receive(b"x" * 100) == serial.FIFO_SIZE
    assert uart.read(serial.IIR_FCR, 1) == serial.IIR_RDI
    for _ in range(serial.FIFO_SIZE):
        assert uart.read(serial.RBR_THR, 1) == ord("x")
    assert uart.read(serial.IIR_FCR, 1) == serial.IIR_THRE
    assert not uart.read(serial.LSR, 1) & serial.LSR_DR


def test_fifo_enable_shows_in_iir_and_clears_receive() -> None:
    uart, _, _ = _uart()
    uart.receive(b"ab")
    uart.write(serial.IIR_FCR, 1, serial.FCR_ENABLE | serial.FCR_CLEAR_RX)
    assert uart.read(serial.IIR_FCR, 1) & serial.IIR_FIFO_ENABLED == serial.IIR_FIFO_ENABLED
    assert uart.pending_input() == 0


def test_loopback_echoes_and_mirrors_modem_lines() -> None:
    uart, _, out = _uart()
    uart.write(serial.MCR, 1, serial.MCR_LOOP | serial.MCR_OUT2 | serial.MCR_RTS)
    assert uart.read(serial.MSR, 1) == serial.MSR_DCD | serial.MSR_CTS
    uart.write(serial.RBR_THR, 1, 0x55)
    assert out == b"" and uart.read(serial.RBR_THR, 1) == 0x55
    assert uart.receive(b"z") == 1 and uart.pending_input() == 0  # outside input is cut off
