"""A 16550A UART, as much of it as a polled or interrupt-less guest console uses.

Transmitted bytes go to a sink; receive has a queue the VMM fills. The line
status register always reports the transmitter empty (output is instant).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

COM1 = 0x3F8
PORTS = 8

# Registers (offset from the base port) and their bits.
RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LCR_DLAB = 0x80
LSR_DR = 0x01  # data ready
LSR_THRE = 0x20  # transmit holding register empty
LSR_TEMT = 0x40  # transmitter empty
IIR_NO_INTERRUPT = 0x01
IIR_FIFO_ENABLED = 0xC0
MSR_DCD_DSR_CTS = 0xB0


class Serial:
    """One UART. `output` receives every transmitted byte."""

    def __init__(self, output: Callable[[bytes], None]) -> None:
        self._output = output
        self.input: deque[int] = deque()
        self.transmitted = 0
        self._ier = self._lcr = self._mcr = self._scr = self._fcr = 0
        self._dll, self._dlm = 1, 0  # 115200 baud

    def read(self, offset: int, size: int) -> int:
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            if dlab:
                return self._dll
            return self.input.popleft() if self.input else 0
        if offset == IER:
            return self._dlm if dlab else self._ier
        if offset == IIR_FCR:
            return IIR_NO_INTERRUPT | (IIR_FIFO_ENABLED if self._fcr & 1 else 0)
        if offset == LCR:
            return self._lcr
        if offset == MCR:
            return self._mcr
        if offset == LSR:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.input else 0)
        if offset == MSR:
            return MSR_DCD_DSR_CTS
        return self._scr

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self._lcr & LCR_DLAB
        if offset == RBR_THR:
            if dlab:
                self._dll = value
            else:
                self.transmitted += 1
                self._output(bytes((value,)))
        elif offset == IER:
            if dlab:
                self._dlm = value
            else:
                self._ier = value & 0x0F
        elif offset == IIR_FCR:
            self._fcr = value
        elif offset == LCR:
            self._lcr = value
        elif offset == MCR:
            self._mcr = value
        elif offset == SCR:
            self._scr = value
