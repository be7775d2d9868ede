"""The local APIC the hypervisor owns (no engine has one of its own).

An xAPIC (MMIO page) and x2APIC (MSRs 0x800-0x8FF) as Intel SDM vol. 3,
chapter 10 describes them, in pure Python. The processor is reached only
through `CpuLine`: the APIC offers the vector the CPU should take next and
learns afterwards which vector the CPU took (its interrupt-acknowledge
cycle), so the engine's hot path never calls into the APIC.

Threads: the VP's own thread (register accesses, EOI, HLT), other VPs'
threads (IPIs, MSIs) and the timer thread all use one APIC, whose state is
under one lock. `CpuLine.offer_interrupt` and `take_acknowledged` are called
with that lock held, so offers reach the CPU in the order the state changed;
they must not block or call into the APIC. IPIs to other APICs,
`raise_nmi`, `wake` and the EOI hook run after the lock is released, so no
two APIC locks are ever held together.

The register file is `apic_regs`, the timer `apic_timer`, the bus
`apic_bus`, the register map `apic_defs`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal, Protocol

from mshv.hv import apic_defs as d
from mshv.hv.apic_bus import ApicBus as ApicBus
from mshv.hv.apic_defs import APIC_TIMER_HZ as APIC_TIMER_HZ
from mshv.hv.apic_defs import STATE_SIZE as STATE_SIZE
from mshv.hv.apic_defs import ApicError as ApicError
from mshv.hv.apic_defs import ApicMode as ApicMode
from mshv.hv.apic_defs import EoiResult as EoiResult
from mshv.hv.apic_defs import Ipi, Routing
from mshv.hv.apic_defs import LintResult as LintResult
from mshv.hv.apic_regs import ApicRegisters
from mshv.hv.apic_timer import ApicClock as ApicClock
from mshv.hv.timers import Timers

log = logging.getLogger(__name__)

StartupEvent = Literal["init"] | tuple[Literal["sipi"], int]
_UNKNOWN = -1  # what the line offers is not known: offer again


class CpuLine(Protocol):
    """The processor's interrupt inputs, implemented by the engine.

    `offer_interrupt` and `take_acknowledged` are called with the APIC's
    lock held: they must be quick and must not call into the APIC.
    `take_acknowledged` returns each vector the CPU took once, until None
    (the CPU may take a newer offer before the APIC collected the last)."""

    def offer_interrupt(self, vector: int | None) -> None:
        """The vector the CPU should take next (None: nothing pending)."""
        ...

    def take_acknowledged(self) -> int | None:
        """The vector the CPU took since the last call (it left 'offered')."""
        ...

    def raise_nmi(self) -> None:
        """Make an NMI pending in the CPU."""
        ...

    def wake(self) -> None:
        """Make the VP's thread re-check its state (it may be running guest code)."""
        ...


class LocalApic:
    """The local APIC of one VP. `apic_id` is its initial APIC id (the
    x2APIC id; the xAPIC id is its low 8 bits), `bsp` the IA32_APIC_BASE
    BSP flag. Call `attach` once the VP's processor exists."""

    def __init__(
        self, apic_id: int, bus: ApicBus, timers: Timers, clock: ApicClock, *, bsp: bool
    ) -> None:
        if not 0 <= apic_id < d.X2APIC_BROADCAST:
            raise ValueError(f"APIC id {apic_id}")
        self.apic_id = apic_id
        self.bsp = bsp
        self._bus = bus
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._line: CpuLine | None = None
        self._offered: int | None = _UNKNOWN
        self._init_pending = False
        self._sipi: int | None = None
        self._waiting_for_sipi = not bsp  # APs wait for a SIPI after power-on
        self._woken = False  # an NMI or wake_waiter() since the last wait_for_event
        self._nmi_unattached = False
        self._regs = ApicRegisters(
            apic_id, bsp=bsp, lock=self._lock, timers=timers, clock=clock,
            changed=self._changed, sync=self._collect,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<LocalApic {self.apic_id} {self._regs.mode}>"

    # --- the line to the CPU (lock held) -------------------------------------------

    def _changed(self) -> None:
        """IRR, ISR or TPR moved: offer the best vector, wake a HLT waiter."""
        best = self._regs.deliverable()
        if best is not None:
            self._cond.notify_all()
        if best != self._offered and self._line is not None:
            self._line.offer_interrupt(best)
            self._offered = best

    def _collect(self) -> None:
        """Collect the CPU's acknowledgments (lowest priority first, as the CPU
        took them): those vectors move to ISR."""
        if self._line is None:
            return
        taken = []
        while (v := self._line.take_acknowledged()) is not None:
            taken.append(v)
        for v in sorted(taken):
            self._offered = _UNKNOWN  # the CPU took it out of the line's offer
            self._regs.acknowledge(v)

    def _reconcile(self) -> None:
        """Bring the state up to now: first what the CPU took, then a timer
        expiry that is due but still on its way from the timer thread."""
        self._collect()
        self._regs.timer.catch_up()

    def attach(self, line: CpuLine) -> None:
        """Connect the VP's processor; it is offered what is pending now."""
        with self._lock:
            if self._line is not None:
                raise ValueError(f"APIC {self.apic_id} is already attached to a processor")
            self._line = line
            self._offered = _UNKNOWN
            self._changed()
            nmi, self._nmi_unattached = self._nmi_unattached, False
        if nmi:
            line.raise_nmi()

    def reconcile(self) -> None:
        """Collect the CPU's acknowledgment and due timer expiries now (every
        other call does it too)."""
        with self._lock:
            self._reconcile()

    def close(self) -> None:
        """The VP is gone: stop the timer (the owner removes the APIC from the bus)."""
        with self._lock:
            self._regs.timer.reset()

    # --- properties ----------------------------------------------------------------

    @property
    def mode(self) -> ApicMode:
        """'disabled', 'xapic' (the MMIO page at `mmio_base`) or 'x2apic'."""
        return self._regs.mode

    @property
    def mmio_base(self) -> int:
        """The guest-physical address of the xAPIC page (IA32_APIC_BASE)."""
        return self._regs.base & d.BASE_ADDRESS

    @property
    def routing(self) -> Routing:
        """The destination fields the bus matches (a consistent snapshot)."""
        return self._regs.routing

    @property
    def waiting_for_sipi(self) -> bool:
        """The VP is in the wait-for-SIPI state (an AP after power-on or INIT)."""
        return self._waiting_for_sipi

    @property
    def tpr(self) -> int:
        """The task priority register (0-255); CR8 is `tpr >> 4`."""
        return self._regs.tpr

    @tpr.setter
    def tpr(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"TPR {value:#x}")
        with self._lock:
            self._reconcile()
            self._regs.tpr = value
            self._changed()

    @property
    def ppr(self) -> int:
        """The processor priority register."""
        with self._lock:
            self._reconcile()
            return self._regs.ppr()

    def highest_in_service(self) -> int | None:
        """The vector the next EOI ends."""
        with self._lock:
            self._reconcile()
            return d.highest(self._regs.isr)

    def outstanding(self, vector: int) -> bool:
        """`vector` is requested (IRR) or in service (ISR): not yet ended by EOI."""
        with self._lock:
            self._reconcile()
            return bool((self._regs.irr | self._regs.isr) >> vector & 1)

    # --- register access -----------------------------------------------------------

    def _finish(self, todo: EoiResult | Ipi | None) -> EoiResult | None:
        """Complete a write outside the lock: the level EOI hook, or the IPI."""
        if isinstance(todo, EoiResult):
            hook = self._bus.on_level_eoi
            if todo.level and hook is not None:
                hook(todo.vector)
            return todo
        if todo is not None:
            # The ICR's trigger bit only marks an INIT de-assert: IPIs are edge-triggered.
            self._bus.deliver(
                todo.dest, logical=todo.logical, mode=todo.mode, vector=todo.vector,
                level=todo.trigger and todo.mode == d.INIT, shorthand=todo.shorthand,
                source=self, asserted=todo.asserted,
            )  # fmt: skip
        return None

    def mmio_read(self, offset: int, size: int) -> int:
        """Read `size` bytes at `offset` of the xAPIC page. A register is the
        first 4 bytes of its 16-byte slot, the rest reads 0; a reserved slot
        reads 0 and sets the ESR's illegal register address bit."""
        reg, byte = offset & 0xFF0, offset & 0xF
        with self._lock:
            self._reconcile()
            if self._regs.mode != "xapic" or not 0 <= offset < 0x1000 or byte >= 4:
                return 0
            if reg not in d.XAPIC_REGISTERS:
                self._regs.error(d.ESR_ILLEGAL_REGISTER)
                return 0
            return self._regs.read(reg) >> 8 * byte & ((1 << 8 * size) - 1)

    def mmio_write(self, offset: int, size: int, value: int) -> EoiResult | None:
        """Write to the xAPIC page: only aligned 32-bit stores reach a
        register, a reserved slot sets the illegal register address bit.
        Returns the interrupt ended when this write was an EOI; an ICR write
        of an IPI this model cannot send (SMI, ExtINT) raises ApicError."""
        reg = offset & 0xFF0
        with self._lock:
            self._reconcile()
            if self._regs.mode != "xapic" or not 0 <= offset < 0x1000:
                return None
            if reg not in d.XAPIC_REGISTERS:
                self._regs.error(d.ESR_ILLEGAL_REGISTER)
                return None
            if offset & 0xF or size != 4:
                return None
            todo = self._regs.write(reg, value & 0xFFFF_FFFF)
        return self._finish(todo)

    def msr_read(self, index: int) -> int | None:
        """RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register;
        None raises #GP (not in x2APIC mode, reserved or write-only)."""
        with self._lock:
            self._reconcile()
            regs = self._regs
            if index == d.MSR_APIC_BASE:
                return regs.read_base()
            if index == d.MSR_TSC_DEADLINE:
                return regs.timer.read_tsc_deadline()
            off = (index - d.MSR_X2APIC_FIRST) << 4
            if regs.mode != "x2apic" or off not in d.X2APIC_READABLE:
                return None
            if off == d.ICR_LOW:
                return regs.icr_high << 32 | regs.icr_low
            return regs.read(off)

    def msr_write(self, index: int, value: int) -> EoiResult | Literal[False] | None:
        """WRMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register.
        False raises #GP: not in x2APIC mode, a reserved or read-only
        register, bits 32-63 set (but in the ICR), a non-zero EOI or ESR
        value, SELF IPI bits 8-31, or an invalid IA32_APIC_BASE value. An
        EoiResult is the interrupt an EOI ended; None: done."""
        if not 0 <= value < 1 << 64:
            raise ValueError(f"MSR value {value:#x}")
        with self._lock:
            self._reconcile()
            regs = self._regs
            if index == d.MSR_APIC_BASE:
                return None if regs.write_base(value) else False
            if index == d.MSR_TSC_DEADLINE:
                regs.timer.write_tsc_deadline(value)
                return None
            off = (index - d.MSR_X2APIC_FIRST) << 4
            if regs.mode != "x2apic" or off not in d.X2APIC_WRITABLE:
                return False
            if value >> 32 and off != d.ICR_LOW:
                return False
            if (off in (d.EOI, d.ESR) and value) or (off == d.SELF_IPI and value >> 8):
                return False
            todo = regs.write(off, value)
        return self._finish(todo)

    def write_icr(self, value: int) -> None:
        """Send an IPI through the Hyper-V synthetic ICR MSR: the ICR's 64
        bits, whose high half is ICR high (xAPIC: destination in bits 56-63)."""
        if not 0 <= value < 1 << 64:
            raise ValueError(f"ICR value {value:#x}")
        with self._lock:
            self._reconcile()
            todo = self._regs.write_icr(value)
        self._finish(todo)

    # --- interrupts ----------------------------------------------------------------

    def accept(self, vector: int, *, level: bool) -> bool:
        """A fixed interrupt arrives: request `vector` (TMR bit = `level`).
        False if refused: software-disabled, or vectors 0-15 (an illegal
        vector is recorded in the ESR and signalled through the error LVT)."""
        if not 0 <= vector <= 0xFF:
            raise ValueError(f"vector {vector}")
        with self._lock:
            self._reconcile()
            return self._regs.accept(vector, level=level)

    def eoi(self) -> EoiResult | None:
        """End the highest in-service interrupt (also the Hyper-V synthetic
        EOI MSR). A level-triggered one is passed to the bus's EOI hook."""
        with self._lock:
            self._reconcile()
            todo = self._regs.eoi()
        return self._finish(todo)

    def assert_lint(self, pin: int) -> LintResult:
        """Assert LINT0 or LINT1 as its LVT entry says: 'delivered' (a fixed
        interrupt or NMI), 'extint' (the caller takes the vector from the PIC
        and gives it to the CPU) or 'dropped' (masked, INIT, SMI). With the
        APIC disabled the pins are the CPU's INTR (0) and NMI (1)."""
        if pin not in (0, 1):
            raise ValueError(f"LINT{pin}")
        with self._lock:
            self._reconcile()
            mode = self._regs.lint(pin)
        if mode == d.NMI:
            self.deliver_nmi()
        elif mode not in (d.FIXED, d.EXTINT):
            log.debug("LINT%d with delivery mode %s dropped", pin, mode)
            return "dropped"
        return "extint" if mode == d.EXTINT else "delivered"

    def deliver_nmi(self) -> None:
        """An NMI arrives: it goes to the CPU and ends a HLT wait."""
        with self._lock:
            line = self._line
            if line is None:
                self._nmi_unattached = True
        if line is not None:
            line.raise_nmi()  # before the waiter is woken, so it finds the NMI
        with self._lock:
            self._woken = True
            self._cond.notify_all()

    def deliver_init(self) -> None:
        """An INIT arrives: the registers but the ID and IA32_APIC_BASE reset,
        an AP waits for a SIPI, and the VP loop finds 'init' pending."""
        with self._lock:
            self._reconcile()
            self._regs.reset(init=True)
            self._init_pending = True
            self._sipi = None
            self._waiting_for_sipi = not self.bsp
            self._cond.notify_all()
            line = self._line
        if line is not None:
            line.wake()

    def deliver_sipi(self, vector: int) -> bool:
        """A start-up IPI arrives; taken (True) only in the wait-for-SIPI state."""
        if not 0 <= vector <= 0xFF:
            raise ValueError(f"SIPI vector {vector}")
        with self._lock:
            if not self._waiting_for_sipi:
                return False
            self._waiting_for_sipi = False
            self._sipi = vector
            self._cond.notify_all()
            line = self._line
        if line is not None:
            line.wake()
        return True

    def take_startup_event(self) -> StartupEvent | None:
        """For the VP loop: 'init', then ('sipi', vector), once each."""
        with self._lock:
            if self._init_pending:
                self._init_pending = False
                return "init"
            if self._sipi is not None:
                vector, self._sipi = self._sipi, None
                return ("sipi", vector)
            return None

    def wake_waiter(self) -> None:
        """End the current (or next) `wait_for_event` early: a kick."""
        with self._lock:
            self._woken = True
            self._cond.notify_all()

    def wait_for_event(self, timeout: float | None, *, interrupts_enabled: bool) -> bool:
        """Block the VP's thread in HLT until an interrupt is deliverable (if
        `interrupts_enabled`), an NMI, INIT or SIPI arrived or `wake_waiter`
        was called; False when `timeout` seconds passed first. The CPU stays
        the judge of what it takes: a True may be spurious."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._reconcile()
                if self._woken or self._init_pending or self._sipi is not None:
                    self._woken = False
                    return True
                if interrupts_enabled and self._regs.deliverable() is not None:
                    return True
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)

    # --- saved state ---------------------------------------------------------------

    def state(self) -> bytes:
        """The registers as hv_local_interrupt_controller_state (176 bytes).
        It has no TPR: that is CR8, saved with the registers."""
        with self._lock:
            self._reconcile()
            return self._regs.pack()

    def set_state(self, data: bytes) -> None:
        """Load a state from `state()`: pending interrupts are offered again
        and a running timer goes on from its current count. The TSC deadline
        (an MSR) and the TPR (CR8) are restored apart."""
        if len(data) != STATE_SIZE:
            raise ValueError(f"an APIC state is {STATE_SIZE} bytes, not {len(data)}")
        with self._lock:
            self._reconcile()
            self._regs.unpack(bytes(data))
