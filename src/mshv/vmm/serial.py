"""A 16550A UART: COM1 for the guest's console.

Transmitted bytes go to a sink at once (the transmitter is always empty);
received bytes wait in a 64-byte FIFO that the VMM fills with `receive`.
Interrupts follow the chip: received data available and transmitter
holding register empty, by IER, with the IIR priorities and the THRE rules
(an IIR read reporting it clears it; a THR write or enabling it in IER
sets it). The interrupt output reaches the IRQ line only while MCR.OUT2 is
set, as on a PC. Loopback (MCR bit 4) feeds transmitted bytes back to the
receiver and mirrors the modem control outputs in MSR. Not modelled: line
status and modem status interrupts (the lines never change), the receive
timeout interrupt, and baud-rate timing.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

COM1 = 0x3F8
COM1_IRQ = 4
PORTS = 8
FIFO_SIZE = 64

# Registers (offset from the base port) and their bits.
RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
IER_RDI, IER_THRI = 0x01, 0x02
LCR_DLAB = 0x80
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
LSR_DR = 0x01  # data ready
LSR_THRE = 0x20  # transmit holding register empty
LSR_TEMT = 0x40  # transmitter empty
IIR_NO_INTERRUPT, IIR_THRE, IIR_RDI = 0x01, 0x02, 0x04
IIR_FIFO_ENABLED = 0xC0
FCR_ENABLE, FCR_CLEAR_RX = 0x01, 0x02
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_DCD_DSR_CTS = MSR_DCD | MSR_DSR | MSR_CTS


class Serial:
    """One UART. `output` receives every transmitted byte; `irq(level)` is
    the interrupt line (None: a polled UART)."""

    def __init__(self, output: Callable[[bytes], None],
                 irq: Callable[[bool], None] | None = None) -> None:  # fmt: skip
        self._output = output
        self._irq = irq
        self._line = False
        self._rx: deque[int] = deque()
        self._lock = threading.Lock()
        self.room = threading.Condition(self._lock)  # notified when the FIFO drains
        self.transmitted = 0
        self.received = 0
        self._ier = self._lcr = self._mcr = self._scr = self._fcr = 0
        self._thre_pending = False
        self._dll, self._dlm = 1, 0  # 115200 baud

    # --- the VMM's side ------------------------------------------------------------------

    def receive(self, data: bytes) -> int:
        """Queue bytes for the guest to read; returns how many fitted."""
        with self._lock:
            if self._mcr & MCR_LOOP:
                return len(data)  # in loopback the receiver hears only the transmitter
            n = min(len(data), FIFO_SIZE - len(self._rx))
            self._rx.extend(data[:n])
            self._update()
            return n

    def pending_input(self) -> int:
        with self._lock:
            return len(self._rx)

    # --- the guest's side ------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            value = self._read(offset)
            self._update()
            return value

    def write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            self._write(offset, value & 0xFF)
            self._update()

    def _iir(self) -> int:
        if self._ier & IER_RDI and self._rx:
            return IIR_RDI
        if self._ier & IER_THRI and self._thre_pending:
            return IIR_THRE
        return IIR_NO_INTERRUPT

    def _read(self, offset: int) -> int:
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            if dlab:
                return self._dll
            if not self._rx:
                return 0
            value = self._rx.popleft()
            self.received += 1
            if len(self._rx) < FIFO_SIZE // 2:
                self.room.notify_all()
            return value
        if offset == IER:
            return self._dlm if dlab else self._ier
        if offset == IIR_FCR:
            iir = self._iir()
            if iir == IIR_THRE:
                self._thre_pending = False
            return iir | (IIR_FIFO_ENABLED if self._fcr & FCR_ENABLE else 0)
        if offset == LCR:
            return self._lcr
        if offset == MCR:
            return self._mcr
        if offset == LSR:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self._rx else 0)
        if offset == MSR:
            if self._mcr & MCR_LOOP:
                m = self._mcr
                return (
                    (MSR_CTS if m & MCR_RTS else 0)
                    | (MSR_DSR if m & MCR_DTR else 0)
                    | (MSR_RI if m & MCR_OUT1 else 0)
                    | (MSR_DCD if m & MCR_OUT2 else 0)
                )
            return MSR_DCD_DSR_CTS
        return self._scr

    def _write(self, offset: int, value: int) -> None:
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            if dlab:
                self._dll = value
                return
            self.transmitted += 1
            if self._mcr & MCR_LOOP:
                if len(self._rx) < FIFO_SIZE:
                    self._rx.append(value)
            else:
                self._output(bytes((value,)))
            self._thre_pending = True  # sent at once: the holding register is empty again
        elif offset == IER:
            if dlab:
                self._dlm = value
                return
            if value & IER_THRI and not self._ier & IER_THRI:
                self._thre_pending = True
            self._ier = value & 0x0F
        elif offset == IIR_FCR:
            self._fcr = value & 0xC9  # enable, DMA mode, trigger level
            if value & FCR_CLEAR_RX or not value & FCR_ENABLE:
                self._rx.clear()
                self.room.notify_all()
        elif offset == LCR:
            self._lcr = value
        elif offset == MCR:
            self._mcr = value & 0x1F
        elif offset == SCR:
            self._scr = value

    def _update(self) -> None:
        if self._irq is None:
            return
        line = (self._iir() != IIR_NO_INTERRUPT and bool(self._mcr & MCR_OUT2)
                and not self._mcr & MCR_LOOP)  # fmt: skip
        if line != self._line:
            self._line = line
            self._irq(line)
