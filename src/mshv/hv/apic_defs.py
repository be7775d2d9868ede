"""The local APIC's register map, reset values and message fields (Intel SDM
vol. 3, chapter 10), shared by the APIC, its register file, its timer and
the APIC bus.

Registers are named by their offset in the xAPIC page; in x2APIC mode the
same register is MSR 0x800 + (offset >> 4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, NamedTuple

from mshv.hv.errors import UnsupportedError

ApicMode = Literal["disabled", "xapic", "x2apic"]
LintResult = Literal["delivered", "extint", "dropped"]

# --- registers (xAPIC page offsets) ----------------------------------------------------
ID = 0x020
VERSION = 0x030
TPR = 0x080
APR = 0x090  # arbitration priority: xAPIC only
PPR = 0x0A0
EOI = 0x0B0
RRD = 0x0C0  # remote read: xAPIC only, always 0
LDR = 0x0D0
DFR = 0x0E0  # xAPIC only
SVR = 0x0F0
ISR = 0x100  # ISR, TMR and IRR: eight 32-bit registers each, vectors 32*i..32*i+31
TMR = 0x180
IRR = 0x200
ESR = 0x280
LVT_CMCI = 0x2F0
ICR_LOW = 0x300  # x2APIC: MSR 0x830 is the whole 64-bit ICR
ICR_HIGH = 0x310  # xAPIC only
LVT_TIMER = 0x320
INITIAL_COUNT = 0x380
CURRENT_COUNT = 0x390
DIVIDE = 0x3E0
SELF_IPI = 0x3F0  # x2APIC only

BITMAPS = {ISR + 0x10 * i: ("isr", i) for i in range(8)}
BITMAPS.update({TMR + 0x10 * i: ("tmr", i) for i in range(8)})
BITMAPS.update({IRR + 0x10 * i: ("irr", i) for i in range(8)})

# The LVT entries, in hv_local_interrupt_controller_state order.
LVT_TIMER_I, LVT_THERMAL, LVT_PERFMON, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_CMCI_I = range(7)
LVT_OFFSETS = (0x320, 0x330, 0x340, 0x350, 0x360, 0x370, LVT_CMCI)
LVT_INDEX = {off: i for i, off in enumerate(LVT_OFFSETS)}
# Writable bits of each entry: vector 0-7, delivery mode 8-10, polarity 13,
# trigger 15, mask 16, timer mode 17-18. Delivery status (12) reads 0: a
# message is delivered before the write returns. Remote IRR (14) is read-only.
LVT_WRITABLE = (0x700FF, 0x107FF, 0x107FF, 0x1A7FF, 0x1A7FF, 0x100FF, 0x107FF)
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
LVT_REMOTE_IRR = 1 << 14
TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE = 0, 1, 2  # LVT timer bits 17-18

XAPIC_REGISTERS = frozenset(
    {ID, VERSION, TPR, APR, PPR, EOI, RRD, LDR, DFR, SVR, *BITMAPS, ESR, ICR_LOW, ICR_HIGH,
     *LVT_OFFSETS, INITIAL_COUNT, CURRENT_COUNT, DIVIDE}
)  # fmt: skip
X2APIC_READABLE = XAPIC_REGISTERS - {APR, EOI, RRD, DFR, ICR_HIGH}
X2APIC_WRITABLE = frozenset(
    {TPR, EOI, SVR, ESR, ICR_LOW, *LVT_OFFSETS, INITIAL_COUNT, DIVIDE, SELF_IPI}
)

# --- values ----------------------------------------------------------------------------
VERSION_VALUE = 0x0005_0014  # integrated APIC, max LVT entry 5 (6 entries)
APIC_TIMER_HZ = 1_000_000_000  # the timer's input clock before the divider
SVR_ENABLE = 1 << 8  # software enable
SVR_WRITABLE = 0x1FF  # spurious vector and enable; no focus checking, no EOI suppression
DFR_FLAT, DFR_CLUSTER = 0xF, 0x0  # model, DFR bits 28-31
DFR_RESERVED = 0x0FFF_FFFF  # read as ones
DIVIDE_WRITABLE = 0xB  # bits 0, 1 and 3
ICR_WRITABLE = 0x000C_CFFF  # vector, mode, dest mode, level, trigger, shorthand

# Error status bits this APIC can detect (no checksums or accept errors on a
# system bus that never fails).
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

# Delivery modes of LVT entries, the ICR and MSIs.
FIXED, LOWEST_PRIORITY, SMI, NMI, INIT, SIPI, EXTINT = 0, 1, 2, 4, 5, 6, 7
SHORTHAND_NONE, SHORTHAND_SELF, SHORTHAND_ALL, SHORTHAND_OTHERS = range(4)
XAPIC_BROADCAST = 0xFF
X2APIC_BROADCAST = 0xFFFF_FFFF

# --- MSRs ------------------------------------------------------------------------------
MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
MSR_X2APIC_FIRST, MSR_X2APIC_LAST = 0x800, 0x8FF
BASE_BSP = 1 << 8
BASE_EXTD = 1 << 10  # x2APIC mode
BASE_ENABLE = 1 << 11  # global enable
BASE_ADDRESS = 0xF_FFFF_F000  # bits 12-35
BASE_WRITABLE = BASE_ADDRESS | BASE_EXTD | BASE_ENABLE
BASE_DEFAULT = 0xFEE0_0000


def divisor(dcr: int) -> int:
    """The timer divider the divide configuration register selects."""
    code = (dcr & 3) | (dcr >> 1 & 4)
    return 1 if code == 7 else 2 << code


def x2apic_ldr(apic_id: int) -> int:
    """The logical id an x2APIC derives from its id: cluster and member bit."""
    return (apic_id >> 4) << 16 | 1 << (apic_id & 15)


def highest(bits: int) -> int | None:
    """The highest vector set in a 256-bit IRR/ISR image."""
    return bits.bit_length() - 1 if bits else None


def word(bits: int, i: int) -> int:
    """32-bit register `i` of a 256-bit IRR/ISR/TMR image."""
    return bits >> (32 * i) & 0xFFFF_FFFF


def from_words(words: tuple[int, ...]) -> int:
    return sum(w << (32 * i) for i, w in enumerate(words))


def ppr(tpr: int, isr: int) -> int:
    """Processor priority: the TPR, or the class of the highest in-service
    vector if that is higher."""
    isrv = highest(isr) or 0
    return tpr if tpr >> 4 >= isrv >> 4 else isrv & 0xF0


def apr(tpr: int, irr: int, isr: int) -> int:
    """Arbitration priority (SDM 10.6.2.4); informational only here, as
    lowest-priority delivery arbitrates on the PPR."""
    irrv, isrv = highest(irr) or 0, highest(isr) or 0
    if tpr >> 4 >= irrv >> 4 and tpr >> 4 > isrv >> 4:
        return tpr
    return max(tpr & isrv & 0xF0, irrv & 0xF0)


# --- results and errors ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EoiResult:
    """The interrupt an EOI ended; `level` is its TMR bit (level-triggered)."""

    vector: int
    level: bool


class ApicError(UnsupportedError):
    """An interrupt message this APIC model does not deliver: SMI, ExtINT or a
    reserved delivery mode sent as a message."""


class Ipi(NamedTuple):
    """An interprocessor interrupt an ICR write sends, from the ICR fields."""

    dest: int
    logical: bool
    mode: int
    vector: int
    trigger: bool  # level-triggered
    asserted: bool  # the level bit: False with `trigger` is an INIT de-assert
    shorthand: int


class Routing(NamedTuple):
    """What the bus matches destinations against, snapshotted under the
    APIC's lock (readers take it without the lock)."""

    mode: ApicMode
    id: int  # the ID register: 8-bit xAPIC id or 32-bit x2APIC id
    ldr: int
    dfr: int
    enabled: bool  # software-enabled (SVR bit 8): accepts fixed interrupts


# --- hv_local_interrupt_controller_state -----------------------------------------------
# u32 fields: id, version, ldr, dfr, spurious, isr[8], tmr[8], irr[8], esr,
# icr high, icr low, 7 LVTs, error status, initial count, current count,
# divide configuration, remote read.
STATE = struct.Struct("<44I")
STATE_SIZE = STATE.size  # 176
S_ID, S_VERSION, S_LDR, S_DFR, S_SVR = range(5)
S_ISR, S_TMR, S_IRR = 5, 13, 21
S_ESR, S_ICR_HIGH, S_ICR_LOW, S_LVT = 29, 30, 31, 32
S_ERRORS, S_INITIAL, S_CURRENT, S_DIVIDE, S_REMOTE_READ = 39, 40, 41, 42, 43
