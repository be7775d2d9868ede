"""What a VP does with the hypervisor's own local APIC (every engine; none
has an APIC of its own): x2APIC and APIC-base MSRs, the xAPIC page (decoded
and emulated), CR8, INIT and SIPI, and the EOI message of a level-triggered
interrupt, reported right after the instruction that ended it, before
anything later in program order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from mshv import decode
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv.apic import EoiResult, LocalApic
from mshv.hv.apic_timer import ApicClock
from mshv.hv.engine import InterruptLine, Processor
from mshv.hv.errors import EngineError

if TYPE_CHECKING:
    from mshv.hv.vp import Vp

APIC_PAGE = 0x1000
X2APIC_MSRS = range(0x800, 0x900)
APIC_BASE_MSR, TSC_DEADLINE_MSR = 0x1B, 0x6E0
APIC_MSRS = frozenset({*X2APIC_MSRS, APIC_BASE_MSR, TSC_DEADLINE_MSR})
TPR_OFFSET, X2APIC_TPR = 0x80, 0x808
ICR_LOW_OFFSET, X2APIC_ICR = 0x300, 0x830
SIPI_MODE = 6


class VpClock:
    """The APIC timer's view of its VP's time stamp counter."""

    def __init__(self, processor: Processor, tsc_hz: int) -> None:
        self._p = processor
        self.tsc_hz = tsc_hz

    def tsc_now(self) -> int:
        return self._p.tsc()


def line_of(p: Processor) -> InterruptLine:
    """The processor of a machine with a local APIC is also its interrupt line."""
    return cast(InterruptLine, p)


class VpApic:
    """One VP's LocalApic and how the VP loop uses it."""

    def __init__(self, vp: Vp, apic: LocalApic) -> None:
        self.vp = vp
        self.apic = apic

    @staticmethod
    def clock(p: Processor, tsc_hz: int) -> ApicClock:
        return VpClock(p, tsc_hz)

    # --- MSRs -----------------------------------------------------------------

    def msr(self, index: int, is_write: bool, value: int) -> tuple[int | None, EoiResult | None]:
        """Do an APIC MSR access: (the value read, 0 for a write, None for
        #GP; the interrupt an EOI ended)."""
        apic = self.apic
        if not is_write:
            return apic.msr_read(index), None
        if index == X2APIC_ICR and self._sipi_intercepted(value):
            return 0, None
        result = apic.msr_write(index, value & 0xFFFF_FFFF_FFFF_FFFF)
        if result is False:
            return None, None
        if index == X2APIC_TPR:
            self._tpr_to_cr8()
        return 0, result if isinstance(result, EoiResult) else None

    # --- the xAPIC page ---------------------------------------------------------

    def owns(self, gpa: int) -> bool:
        apic = self.apic
        return apic.mode == "xapic" and apic.mmio_base <= gpa < apic.mmio_base + APIC_PAGE

    def mmio(self, p: Processor) -> EoiResult | None:
        """Emulate the instruction that touched the xAPIC page and step over it."""
        e = p.exit
        try:
            access = decode.decode(e.insn_bytes, bitness(p), p.gprs())
        except decode.DecodeError as err:
            raise EngineError(f"access to the local APIC page at {e.gpa:#x}: {err}") from err
        offset = e.gpa - self.apic.mmio_base
        result: EoiResult | None = None
        rip = p.header()[6]
        if access.is_write:
            value = access.value or 0
            if offset & 0xFF0 == ICR_LOW_OFFSET and self._xapic_sipi(value):
                pass
            else:
                result = self.apic.mmio_write(offset, access.size, value)
            if offset & 0xFF0 == TPR_OFFSET:
                self._tpr_to_cr8()
            p.set_rip(rip + access.length)
        else:
            loaded = self.apic.mmio_read(offset, access.size)
            reg = access.register
            assert reg is not None  # a load names its destination
            name = R.HV_X64_REGISTER_RAX + reg
            new = access.result(p.gprs()[reg], loaded)
            p.set_registers([name, R.HV_X64_REGISTER_RIP],
                            [_value(new), _value(rip + access.length)])  # fmt: skip
        return result

    # --- CR8, INIT and SIPI -------------------------------------------------------

    def cr8_written(self, cr8: int) -> None:
        self.apic.tpr = (cr8 & 0xF) << 4

    def _tpr_to_cr8(self) -> None:
        p = self.vp.processor
        cr8 = self.apic.tpr >> 4
        if p.control()[3] != cr8:
            p.set_registers([R.HV_X64_REGISTER_CR8], [_value(cr8)])

    def startup(self) -> None:
        """INIT or SIPI arrived (Exit.WAKE): put the processor where they say."""
        line = line_of(self.vp.processor)
        while (event := self.apic.take_startup_event()) is not None:
            if event == "init":
                line.reset_to_init()
            else:
                line.start_at(event[1])

    def _sipi_intercepted(self, icr: int) -> bool:
        """With the APIC INIT/SIPI intercept, a SIPI this VP sends goes to the
        VMM (HVMSG_X64_SIPI_INTERCEPT) instead of the target."""
        vp = self.vp
        if not vp.partition.intercepts.init_sipi or icr >> 8 & 7 != SIPI_MODE:
            return False
        dest = icr >> 32 if self.apic.mode == "x2apic" else icr >> 56 & 0xFF
        vp.queue_sipi_intercept(dest, icr & 0xFF)
        return True

    def _xapic_sipi(self, icr_low: int) -> bool:
        high = self.apic.mmio_read(0x310, 4)
        return self._sipi_intercepted(icr_low | high << 32)


def bitness(p: Processor) -> int:
    cr0, _, _, _, efer, _, _ = p.control()
    attr = p.segment(R.HV_X64_REGISTER_CS)[3]
    rflags = p.header()[7]
    if not cr0 & 1 or rflags & 1 << 17:
        return 16
    if attr & 1 << 13 and efer & 1 << 10:
        return 64
    return 32 if attr & 1 << 14 else 16


def _value(v: int) -> bytes:
    return (v & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") + bytes(8)
