"""The PC's legacy ports that Linux touches on a machine with ACPI and an
IOAPIC: the 8259 pair, the CMOS RTC, system control port B, the POST/delay
port and the ELCR.

Interrupts reach the guest through the IOAPIC only. The 8259s are kept as
registers (the ICW sequence, IMR, the IRR/ISR read select): Linux programs
and masks them, and probes their presence by reading the IMR back; with all
lines on the IOAPIC they never raise an interrupt. The RTC keeps the host's
time (UTC) with an offset the guest may set; its interrupts (periodic,
alarm, update) are not delivered.
"""

from __future__ import annotations

import datetime
import threading
import time

PIC_MASTER, PIC_SLAVE = 0x20, 0xA0
ELCR = 0x4D0  # edge/level control for the 8259 IRQs, two ports
SYSTEM_CONTROL_B = 0x61
POST = 0x80
CMOS = 0x70  # index, data


class Pic8259:
    """One 8259A: command port at offset 0, data (IMR) at offset 1."""

    def __init__(self) -> None:
        self.imr = 0xFF
        self.vector_base = 0
        self._init_step = 0  # 0: not initialising; 2, 3, 4: the ICW expected next
        self._needs_icw3 = self._needs_icw4 = False

    def read(self, offset: int, size: int) -> int:
        if offset == 1:
            return self.imr
        return 0  # IRR or ISR: no interrupt is ever pending or in service here

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 0:
            if value & 0x10:  # ICW1: start initialisation
                self._init_step = 2
                self._needs_icw3 = not value & 0x02
                self._needs_icw4 = bool(value & 0x01)
                self.imr = 0
            # OCW3 selects IRR or ISR for command-port reads, both empty here;
            # OCW2 (EOI and rotation commands) has nothing in service to end.
            return
        if self._init_step == 2:
            self.vector_base = value & 0xF8
            self._init_step = 3 if self._needs_icw3 else (4 if self._needs_icw4 else 0)
        elif self._init_step == 3:
            self._init_step = 4 if self._needs_icw4 else 0
        elif self._init_step == 4:
            self._init_step = 0
        else:
            self.imr = value  # OCW1


class Elcr:
    """The two edge/level control registers (IRQs 0-2, 8 and 13 are always edge)."""

    def __init__(self) -> None:
        self.value = [0, 0]

    def read(self, offset: int, size: int) -> int:
        return self.value[offset]

    def write(self, offset: int, size: int, value: int) -> None:
        self.value[offset] = value & (0xF8 if offset == 0 else 0xDE)


class SystemControlB:
    """Port 0x61: speaker gate and data (stored), and the refresh bit that
    toggles on every read, which delay loops watch. No NMI is ever reported."""

    def __init__(self) -> None:
        self._value = 0
        self._refresh = False

    def read(self, offset: int, size: int) -> int:
        self._refresh = not self._refresh
        return self._value | (0x10 if self._refresh else 0)

    def write(self, offset: int, size: int, value: int) -> None:
        self._value = value & 0x0F


class PostPort:
    """Port 0x80: POST codes and I/O delays; the last code is kept."""

    def __init__(self) -> None:
        self.code = 0
        self.writes = 0

    def read(self, offset: int, size: int) -> int:
        return self.code

    def write(self, offset: int, size: int, value: int) -> None:
        self.code = value & 0xFF
        self.writes += 1


# CMOS indexes
SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR = 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09
STATUS_A, STATUS_B, STATUS_C, STATUS_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32
B_24_HOUR, B_BINARY, B_SET = 0x02, 0x04, 0x80
D_VALID = 0x80
_TIME_FIELDS = (SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR, CENTURY)


def _bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


def _unbcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0xF)


class CmosRtc:
    """The MC146818 RTC and its CMOS RAM behind ports 0x70/0x71."""

    def __init__(self) -> None:
        self._index = 0
        self._ram = bytearray(128)
        self._ram[STATUS_A] = 0x26  # 32.768 kHz time base, 1.024 kHz rate; never UIP
        self._ram[STATUS_B] = B_24_HOUR
        self._offset = 0.0  # guest time - host time, seconds
        self._lock = threading.Lock()

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(time.time() + self._offset, datetime.UTC)

    def _fields(self, t: datetime.datetime) -> dict[int, int]:
        return {SECONDS: t.second, MINUTES: t.minute, HOURS: t.hour,
                WEEKDAY: t.isoweekday() % 7 + 1, DAY: t.day, MONTH: t.month,
                YEAR: t.year % 100, CENTURY: t.year // 100}  # fmt: skip

    def _encode(self, v: int) -> int:
        return v if self._ram[STATUS_B] & B_BINARY else _bcd(v)

    def _decode(self, v: int) -> int:
        return v if self._ram[STATUS_B] & B_BINARY else _unbcd(v)

    def read(self, offset: int, size: int) -> int:
        with self._lock:
            if offset == 0:
                return self._index
            i = self._index
            if i in _TIME_FIELDS:
                return self._encode(self._fields(self._now())[i])
            if i == STATUS_C:
                return 0  # no interrupt flags: the RTC raises none
            if i == STATUS_D:
                return D_VALID
            return self._ram[i]

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        with self._lock:
            if offset == 0:
                self._index = value & 0x7F  # bit 7 masks NMI: there are none to mask
                return
            i = self._index
            if i in _TIME_FIELDS:
                fields = self._fields(self._now())
                fields[i] = self._decode(value)
                try:
                    t = datetime.datetime(fields[CENTURY] * 100 + fields[YEAR], fields[MONTH],
                                          fields[DAY], fields[HOURS], fields[MINUTES],
                                          fields[SECONDS], tzinfo=datetime.UTC)  # fmt: skip
                except ValueError:
                    return  # an impossible date while the guest sets fields one by one
                self._offset = t.timestamp() - time.time()
            elif i in (STATUS_C, STATUS_D):
                return  # read-only
            elif i == STATUS_A:
                self._ram[i] = value & 0x7F  # UIP is read-only
            else:
                self._ram[i] = value
