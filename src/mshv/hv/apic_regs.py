"""The register file of a local APIC: what the xAPIC page and the x2APIC
MSRs read and write, interrupt request/service state, priorities, errors,
IA32_APIC_BASE and the 176-byte saved state.

It knows nothing of threads or of the CPU: every method runs with the owning
`LocalApic`'s lock held, `changed()` tells the owner that IRR, ISR or TPR
moved so it can offer the CPU its next interrupt, and `sync()` asks the owner
to collect the CPU's acknowledgment before a timer expiry changes the IRR.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mshv.hv import apic_defs as d
from mshv.hv.apic_defs import ApicMode, EoiResult, Ipi, Routing
from mshv.hv.apic_timer import ApicClock, ApicTimer
from mshv.hv.timers import Timers


class ApicRegisters:
    """The architectural state of one local APIC (SDM 10.4-10.12)."""

    def __init__(
        self,
        apic_id: int,
        *,
        bsp: bool,
        lock: threading.Lock,
        timers: Timers,
        clock: ApicClock,
        changed: Callable[[], None],
        sync: Callable[[], None],
    ) -> None:
        self.apic_id = apic_id
        self.bsp = bsp
        self._changed: Callable[[], None] = lambda: None  # nobody to tell while building
        self._sync = sync
        self.timer = ApicTimer(lock, timers, clock, self._timer_fired)
        self.mode: ApicMode = "xapic"
        self.base = d.BASE_DEFAULT | d.BASE_ENABLE
        self.reset(init=False)
        self._changed = changed

    def reset(self, *, init: bool) -> None:
        """Power-on values; an INIT keeps the ID and the mode (SDM 10.4.7.3)."""
        if not init:
            self.xapic_id = self.apic_id & 0xFF
        self.tpr = 0
        self.ldr = 0  # the xAPIC LDR (x2APIC: derived from the id)
        self.dfr = 0xFFFF_FFFF
        self.svr = 0xFF
        self.irr = self.isr = self.tmr = 0
        self.esr = self.errors = 0  # the latched ESR, errors since the last ESR write
        self.icr_low = self.icr_high = 0
        self.lvt = [d.LVT_MASKED] * 7
        self.timer.reset()
        self.update_routing()
        self._changed()

    def update_routing(self) -> None:
        """Refresh the snapshot the bus routes by, after ID, LDR, DFR, SVR or mode moved."""
        x2 = self.mode == "x2apic"
        self.routing = Routing(
            self.mode,
            self.apic_id if x2 else self.xapic_id,
            d.x2apic_ldr(self.apic_id) if x2 else self.ldr,
            self.dfr,
            bool(self.svr & d.SVR_ENABLE),
        )

    # --- interrupt state -----------------------------------------------------------

    def ppr(self) -> int:
        """The processor priority register."""
        return d.ppr(self.tpr, self.isr)

    def deliverable(self) -> int | None:
        """The vector to offer: the highest requested one above the PPR's class."""
        v = d.highest(self.irr)
        return v if v is not None and v >> 4 > self.ppr() >> 4 else None

    def acknowledge(self, vector: int) -> None:
        """The CPU took `vector`: it moves from requested to in service."""
        bit = 1 << vector
        if self.irr & bit:  # else a reset withdrew it before the CPU saw the reset
            self.irr &= ~bit
            self.isr |= bit
        self._changed()

    def set_irr(self, vector: int, *, level: bool) -> None:
        """Request `vector`; its TMR bit records the trigger mode."""
        bit = 1 << vector
        self.irr |= bit
        self.tmr = self.tmr | bit if level else self.tmr & ~bit
        self._changed()

    def accept(self, vector: int, *, level: bool) -> bool:
        """A fixed interrupt arrives; False if this APIC refuses it."""
        if not self.svr & d.SVR_ENABLE:
            return False  # a software-disabled APIC takes no fixed interrupts
        if vector < 16:
            self.error(d.ESR_RECEIVE_ILLEGAL_VECTOR)
            return False
        self.set_irr(vector, level=level)
        return True

    def error(self, bits: int) -> None:
        """Record an error and signal it through the error LVT entry."""
        self.errors |= bits
        lvt = self.lvt[d.LVT_ERROR]
        if not lvt & d.LVT_MASKED:
            if lvt & 0xFF < 16:  # flag it, without signalling the error again
                self.errors |= d.ESR_RECEIVE_ILLEGAL_VECTOR
            else:
                self.set_irr(lvt & 0xFF, level=False)

    def local(self, index: int) -> None:
        """A local event of LVT entry `index`: its fixed interrupt unless masked."""
        lvt = self.lvt[index]
        if not lvt & d.LVT_MASKED:
            if lvt & 0xFF < 16:
                self.error(d.ESR_RECEIVE_ILLEGAL_VECTOR)
            else:
                self.set_irr(lvt & 0xFF, level=False)

    def lint(self, pin: int) -> int | None:
        """A LINT pin is asserted: a fixed interrupt is requested here; the
        delivery mode is returned for the owner to act on (None: masked)."""
        i = d.LVT_LINT0 + pin
        lvt = self.lvt[i]
        if self.mode == "disabled":
            return d.EXTINT if pin == 0 else d.NMI  # the pins go straight to the CPU
        if lvt & d.LVT_MASKED:
            return None
        mode = lvt >> 8 & 7
        if mode == d.FIXED:
            level = bool(lvt & d.LVT_LEVEL)
            # A level-triggered one still in service (remote IRR) is not requested again.
            if not lvt & d.LVT_REMOTE_IRR and self.accept(lvt & 0xFF, level=level) and level:
                self.lvt[i] |= d.LVT_REMOTE_IRR
        return mode

    def _timer_fired(self) -> None:
        self._sync()  # the timer thread comes in without the owner's reconciling
        self.local(d.LVT_TIMER_I)

    def eoi(self) -> EoiResult | None:
        """End the highest in-service interrupt."""
        v = d.highest(self.isr)
        if v is None:
            return None
        self.isr &= ~(1 << v)
        level = bool(self.tmr >> v & 1)
        if level:  # a level-triggered LINT interrupt is no longer in service
            for i in (d.LVT_LINT0, d.LVT_LINT1):
                if self.lvt[i] & 0xFF == v:
                    self.lvt[i] &= ~d.LVT_REMOTE_IRR
        self._changed()
        return EoiResult(v, level)

    # --- register access -----------------------------------------------------------

    def read(self, off: int) -> int:
        """A register as the current mode shows it (the ICR: its low half)."""
        reader = _READERS.get(off)
        return reader(self) if reader is not None else 0  # EOI, remote read: 0

    def write(self, off: int, value: int) -> EoiResult | Ipi | None:
        """Write a register (`value`: 32 bits, or the 64-bit x2APIC ICR).
        Returns what the owner must finish outside its lock: an EOI's result,
        or an IPI to send. Read-only registers ignore writes."""
        if off in d.LVT_INDEX:
            self._write_lvt(d.LVT_INDEX[off], value)
        elif off == d.TPR:
            self.tpr = value & 0xFF
            self._changed()
        elif off == d.EOI:
            return self.eoi()
        elif off == d.ICR_LOW:
            self.icr_low = value & d.ICR_WRITABLE
            if self.mode == "x2apic":
                self.icr_high = value >> 32
            return self._ipi()
        elif off == d.ICR_HIGH:
            self.icr_high = value & 0xFF00_0000
        elif off == d.SVR:
            self.svr = value & d.SVR_WRITABLE
            if not self.svr & d.SVR_ENABLE:  # software disable masks every LVT entry
                self.lvt = [v | d.LVT_MASKED for v in self.lvt]
            self.update_routing()
        elif off == d.ESR:
            self.esr, self.errors = self.errors, 0
        elif off == d.INITIAL_COUNT:
            self.timer.write_initial(value)
        elif off == d.DIVIDE:
            self.timer.write_divide(value)
        elif off == d.SELF_IPI:
            if value < 16:
                self.error(d.ESR_SEND_ILLEGAL_VECTOR | d.ESR_RECEIVE_ILLEGAL_VECTOR)
            else:
                self.accept(value, level=False)
        elif off in (d.ID, d.LDR, d.DFR):
            if off == d.ID:
                self.xapic_id = value >> 24
            elif off == d.LDR:
                self.ldr = value & 0xFF00_0000
            else:
                self.dfr = value | d.DFR_RESERVED
            self.update_routing()
        return None

    def write_icr(self, value: int) -> Ipi | None:
        """Write all 64 bits of the ICR (the Hyper-V synthetic ICR MSR)."""
        if self.mode == "disabled":
            return None
        self.icr_high = value >> 32 & (0xFF00_0000 if self.mode == "xapic" else 0xFFFF_FFFF)
        self.icr_low = value & d.ICR_WRITABLE
        return self._ipi()

    def _write_lvt(self, i: int, value: int) -> None:
        value = value & d.LVT_WRITABLE[i] | self.lvt[i] & d.LVT_REMOTE_IRR
        if not self.svr & d.SVR_ENABLE:
            value |= d.LVT_MASKED  # the mask stays set while software-disabled
        if i == d.LVT_TIMER_I:
            self.timer.set_mode(value >> 17 & 3)
        self.lvt[i] = value

    def _ipi(self) -> Ipi | None:
        """The IPI the ICR now describes; an illegal vector is not sent."""
        low = self.icr_low
        vector, mode = low & 0xFF, low >> 8 & 7
        if mode in (d.FIXED, d.LOWEST_PRIORITY) and vector < 16:
            self.error(d.ESR_SEND_ILLEGAL_VECTOR)
            return None
        dest = self.icr_high if self.mode == "x2apic" else self.icr_high >> 24
        return Ipi(dest, bool(low & 1 << 11), mode, vector, bool(low & 1 << 15),
                   bool(low & 1 << 14), low >> 18 & 3)  # fmt: skip

    # --- IA32_APIC_BASE ------------------------------------------------------------

    def read_base(self) -> int:
        """IA32_APIC_BASE as RDMSR reads it."""
        return self.base | (d.BASE_BSP if self.bsp else 0)

    def write_base(self, value: int) -> bool:
        """Apply a write; False for #GP: reserved bits, or an invalid mode
        transition (SDM figure 10-27: x2APIC to xAPIC, disabled to x2APIC).
        The BSP flag is read-only."""
        if value & ~(d.BASE_WRITABLE | d.BASE_BSP):
            return False
        enable, extd = bool(value & d.BASE_ENABLE), bool(value & d.BASE_EXTD)
        if extd and not enable:
            return False
        new: ApicMode = "x2apic" if extd else "xapic" if enable else "disabled"
        old = self.mode
        if (old, new) in (("x2apic", "xapic"), ("disabled", "x2apic")):
            return False
        self.base = value & d.BASE_WRITABLE
        if new != old:
            self.mode = new
            if new == "disabled":
                # Every register but the ID is lost; leaving x2APIC mode, the
                # xAPIC ID is the x2APIC ID's low byte.
                if old == "x2apic":
                    self.xapic_id = self.apic_id & 0xFF
                self.reset(init=True)
            else:  # xAPIC to x2APIC: the ID and LDR change, the rest stays
                self.update_routing()
        return True

    # --- hv_local_interrupt_controller_state ---------------------------------------

    def pack(self) -> bytes:
        """The registers as hv_local_interrupt_controller_state."""
        words = [0] * 44
        words[d.S_ID] = self.read(d.ID)
        words[d.S_VERSION] = d.VERSION_VALUE
        words[d.S_LDR], words[d.S_DFR], words[d.S_SVR] = self.routing.ldr, self.dfr, self.svr
        for i in range(8):
            words[d.S_ISR + i] = d.word(self.isr, i)
            words[d.S_TMR + i] = d.word(self.tmr, i)
            words[d.S_IRR + i] = d.word(self.irr, i)
        words[d.S_ESR], words[d.S_ERRORS] = self.esr, self.errors
        words[d.S_ICR_HIGH], words[d.S_ICR_LOW] = self.icr_high, self.icr_low
        words[d.S_LVT : d.S_LVT + 7] = self.lvt
        words[d.S_INITIAL] = self.timer.initial
        words[d.S_CURRENT] = self.timer.current()
        words[d.S_DIVIDE] = self.timer.divide
        return d.STATE.pack(*words)

    def unpack(self, data: bytes) -> None:
        """Load a saved state. The x2APIC id and LDR follow from the APIC id;
        vectors 0-15 cannot be requested; the timer goes on counting."""
        w = d.STATE.unpack(data)
        if self.mode != "x2apic":
            self.xapic_id = w[d.S_ID] >> 24
            self.ldr = w[d.S_LDR] & 0xFF00_0000
        self.dfr = w[d.S_DFR] | d.DFR_RESERVED
        self.svr = w[d.S_SVR] & d.SVR_WRITABLE
        self.isr = d.from_words(w[d.S_ISR : d.S_ISR + 8]) & ~0xFFFF
        self.tmr = d.from_words(w[d.S_TMR : d.S_TMR + 8]) & ~0xFFFF
        self.irr = d.from_words(w[d.S_IRR : d.S_IRR + 8]) & ~0xFFFF
        self.esr, self.errors = w[d.S_ESR], w[d.S_ERRORS]
        self.icr_high, self.icr_low = w[d.S_ICR_HIGH], w[d.S_ICR_LOW] & d.ICR_WRITABLE
        if self.mode != "x2apic":
            self.icr_high &= 0xFF00_0000
        masked = 0 if self.svr & d.SVR_ENABLE else d.LVT_MASKED
        self.lvt = [
            v & (mask | d.LVT_REMOTE_IRR) | masked
            for v, mask in zip(w[d.S_LVT : d.S_LVT + 7], d.LVT_WRITABLE, strict=True)
        ]
        self.timer.restore(
            w[d.S_INITIAL], w[d.S_CURRENT], w[d.S_DIVIDE], self.lvt[d.LVT_TIMER_I] >> 17 & 3
        )
        self.update_routing()
        self._changed()


def _bitmap_reader(name: str, i: int) -> Callable[[ApicRegisters], int]:
    return lambda a: d.word(getattr(a, name), i)


def _lvt_reader(i: int) -> Callable[[ApicRegisters], int]:
    return lambda a: a.lvt[i]


# Register offset -> its value, built once: reads are frequent.
_READERS: dict[int, Callable[[ApicRegisters], int]] = {
    d.ID: lambda a: a.apic_id if a.mode == "x2apic" else a.xapic_id << 24,
    d.VERSION: lambda a: d.VERSION_VALUE,
    d.TPR: lambda a: a.tpr,
    d.APR: lambda a: d.apr(a.tpr, a.irr, a.isr),
    d.PPR: lambda a: a.ppr(),
    d.LDR: lambda a: a.routing.ldr,
    d.DFR: lambda a: a.dfr,
    d.SVR: lambda a: a.svr,
    d.ESR: lambda a: a.esr,
    d.ICR_LOW: lambda a: a.icr_low,
    d.ICR_HIGH: lambda a: a.icr_high,
    d.INITIAL_COUNT: lambda a: a.timer.initial,
    d.CURRENT_COUNT: lambda a: a.timer.current(),
    d.DIVIDE: lambda a: a.timer.divide,
    **{off: _bitmap_reader(name, i) for off, (name, i) in d.BITMAPS.items()},
    **{off: _lvt_reader(i) for off, i in d.LVT_INDEX.items()},
}
