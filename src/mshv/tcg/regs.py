"""TLFS registers of a software-engine processor: where each one lives (the
shared state page, the CPU's own MSRs, its FPU image) and the checks a value
must pass. Values the processor could not hold are refused as
HV_STATUS_INVALID_REGISTER_VALUE, before anything changes."""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv import xsave
from mshv.hv.control import control_problem
from mshv.hv.errors import HvError
from mshv.hv.msr_registers import MSRS
from mshv.tcg import abi
from mshv.tcg.cpu import Cpu

# Where a register lives.
GPR, SEG, DTABLE, CREG, DEBUG, MSR, XSAVE, PENDING, ISTATE, ACTIVITY, CONST = range(11)

_QQ = struct.Struct("<QQ")
_Q = struct.Struct("<Q")
_SEG = struct.Struct("<QIHH")
_TABLE = struct.Struct("<6xHQ")
_CREGS: dict[int, str] = {
    R.HV_X64_REGISTER_CR0: "cr0", R.HV_X64_REGISTER_CR2: "cr2", R.HV_X64_REGISTER_CR3: "cr3",
    R.HV_X64_REGISTER_CR4: "cr4", R.HV_X64_REGISTER_CR8: "cr8", R.HV_X64_REGISTER_EFER: "efer",
    R.HV_X64_REGISTER_XFEM: "xcr0",
}  # fmt: skip
_DEBUG: dict[int, int] = {
    R.HV_X64_REGISTER_DR0: 0, R.HV_X64_REGISTER_DR1: 1, R.HV_X64_REGISTER_DR2: 2,
    R.HV_X64_REGISTER_DR3: 3, R.HV_X64_REGISTER_DR6: 4, R.HV_X64_REGISTER_DR7: 5,
}  # fmt: skip

STARTUP_SUSPEND, HALT_SUSPEND = 1, 2  # HV_REGISTER_INTERNAL_ACTIVITY_STATE
# MSRs of features the software CPU does not have (no LBR/BTF, no speculation
# controls), whose registers hold 0: a VP's saved state reads and writes them.
ZERO_ONLY_MSRS = frozenset({0x1D9, 0x48})  # IA32_DEBUGCTL, IA32_SPEC_CTRL


@functools.lru_cache(maxsize=1024)  # bounded: names come from userspace
def classify(name: int) -> tuple[int, int] | None:
    """(where, key) of a register the software engine provides, else None."""
    if R.HV_X64_REGISTER_RAX <= name <= R.HV_X64_REGISTER_RFLAGS:
        return GPR, name - R.HV_X64_REGISTER_RAX
    if R.HV_X64_REGISTER_ES <= name <= R.HV_X64_REGISTER_TR:
        return SEG, name - R.HV_X64_REGISTER_ES
    if name in (R.HV_X64_REGISTER_IDTR, R.HV_X64_REGISTER_GDTR):
        return DTABLE, name - R.HV_X64_REGISTER_IDTR
    if name in _CREGS:
        return CREG, name
    if name in _DEBUG:
        return DEBUG, _DEBUG[name]
    if name in MSRS:
        return MSR, MSRS[name]
    offset = xsave.legacy_offset(name)
    if offset is not None:
        return XSAVE, offset
    if name == R.HV_REGISTER_PENDING_INTERRUPTION:
        return PENDING, 0
    if name == R.HV_REGISTER_INTERRUPT_STATE:
        return ISTATE, 0
    if name == R.HV_REGISTER_INTERNAL_ACTIVITY_STATE:
        return ACTIVITY, 0
    if name == R.HV_X64_REGISTER_INITIAL_APIC_ID:
        return CONST, 0
    return None


def label(n: int) -> str:
    try:
        return R(n).name
    except ValueError:
        return f"{n:#x}"


def value(v: int) -> bytes:
    return _QQ.pack(v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64)


def _invalid(what: str) -> HvError:
    return HvError(hv_status.HV_STATUS_INVALID_REGISTER_VALUE, what)


class RegisterFile:
    """Get and set TLFS registers of one CPU, all or nothing."""

    def __init__(self, cpu: Cpu, index: int, cr4_bits: int, efer_bits: int, *,
                 lapic: bool) -> None:  # fmt: skip
        self._cpu = cpu
        self._index = index
        self._lapic = lapic  # startup suspend (waiting for INIT/SIPI) needs a local APIC
        self._cr4_bits = cr4_bits  # CR4 bits the CPU implements
        self._efer_bits = efer_bits

    def _classify(self, names: Sequence[int]) -> list[tuple[int, int]]:
        out = []
        for n in names:
            c = classify(n)
            if c is None:
                raise HvError(
                    hv_status.HV_STATUS_INVALID_PARAMETER,
                    f"register {label(n)} is not provided by the software engine",
                )
            out.append(c)
        return out

    # --- get -----------------------------------------------------------------

    def get(self, names: Sequence[int]) -> list[bytes]:
        kinds = self._classify(names)
        page = self._cpu.page
        image = self._cpu.xsave() if any(c == XSAVE for c, _ in kinds) else b""
        out = []
        for (cls, key), name in zip(kinds, names, strict=True):
            if cls == GPR:
                v = value(page.regs.gpr[key] if key < 16 else
                          page.regs.rip if key == 16 else page.regs.rflags)  # fmt: skip
            elif cls == SEG:
                sg = page.sregs.seg[key]
                v = _SEG.pack(sg.base, sg.limit, sg.selector, sg.attributes)
            elif cls == DTABLE:
                t = page.sregs.idtr if key == 0 else page.sregs.gdtr
                v = _TABLE.pack(t.limit & 0xFFFF, t.base)
            elif cls == CREG:
                v = value(getattr(page.sregs, _CREGS[name]))
            elif cls == DEBUG:
                v = value(page.sregs.dr[key])
            elif cls == MSR:
                got = 0 if key in ZERO_ONLY_MSRS else self._cpu.msr(key)
                if got is None:
                    raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER,
                                  f"register {label(name)}: the software CPU has no MSR "
                                  f"{key:#x}")  # fmt: skip
                v = value(got)
            elif cls == XSAVE:
                v = image[key : key + 16]
            elif cls == PENDING:
                v = value(page.events.pending)
            elif cls == ISTATE:
                v = value(page.events.interrupt_shadow | page.events.nmi_masked << 1)
            elif cls == ACTIVITY:
                halted = page.events.halted
                v = value({abi.HALTED: HALT_SUSPEND, abi.STARTUP: STARTUP_SUSPEND}.get(halted, 0))
            else:  # CONST: the initial APIC id, which is the VP index
                v = value(self._index)
            out.append(v)
        return out

    # --- set -----------------------------------------------------------------

    def set(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        kinds = self._classify(names)
        page = self._cpu.page
        creg: dict[str, int] = {}
        msrs: dict[int, int] = {}
        image: bytearray | None = None
        staged: list[tuple[int, int, int, bytes]] = []  # cls, key, name, value
        for (cls, key), raw, name in zip(kinds, values, names, strict=True):
            v = int(_Q.unpack_from(raw)[0])
            if cls == CREG:
                creg[_CREGS[name]] = v
            elif cls == DEBUG and key >= 4 and v >> 32:
                raise _invalid(f"{label(name)} {v:#x}: the upper 32 bits are reserved")
            elif cls == MSR and key in ZERO_ONLY_MSRS:
                if v:
                    raise _invalid(f"{label(name)} {v:#x}: the software CPU has no such feature")
                continue
            elif cls == MSR:
                msrs[key] = v
            elif cls == XSAVE:
                if image is None:
                    image = bytearray(self._cpu.xsave())
                image[key : key + 16] = raw[:16]
            elif cls == PENDING:
                _check_pending(v)
            elif cls == ISTATE and v & ~3:
                raise _invalid(f"interrupt state {v:#x}")
            elif cls == ACTIVITY and (v not in (0, STARTUP_SUSPEND, HALT_SUSPEND)
                                      or (v == STARTUP_SUSPEND and not self._lapic)):  # fmt: skip
                raise _invalid(
                    f"internal activity state {v:#x} cannot be held by the engine"
                    + ("" if self._lapic else " (the partition has no local APIC)")
                )
            elif cls == CONST:
                raise HvError(hv_status.HV_STATUS_INVALID_PARAMETER,
                              f"register {label(name)} is read-only")  # fmt: skip
            staged.append((cls, key, name, bytes(raw[:16])))
        if creg:
            self._check_control(creg)
        # The MSRs are the CPU's: write them first, putting back what was
        # there if one is refused.
        done: dict[int, int] = {}
        for index, v in msrs.items():
            old = self._cpu.msr(index)
            if old is None or self._cpu.msr(index, v) is None:
                for i, o in done.items():
                    self._cpu.msr(i, o)
                raise _invalid(f"MSR {index:#x}: the software CPU has no such MSR")
            done[index] = old
        if image is not None:
            self._cpu.xrstor(bytes(image))
        dirty = 0
        for cls, key, name, raw in staged:
            dirty |= _stage(page, cls, key, name, raw)
        page.dirty |= dirty

    def _check_control(self, new: dict[str, int]) -> None:
        """CR0/CR4/EFER/XCR0 as VM entry would accept them, alone and together."""
        s = self._cpu.page.sregs
        cr0, cr4 = new.get("cr0", s.cr0), new.get("cr4", s.cr4)
        efer, xcr0 = new.get("efer", s.efer), new.get("xcr0", s.xcr0)
        if cr4 & ~self._cr4_bits:
            raise _invalid(f"CR4 {cr4:#x}: bits {cr4 & ~self._cr4_bits:#x} are not supported")
        if efer & ~self._efer_bits:
            raise _invalid(f"EFER {efer:#x}: bits {efer & ~self._efer_bits:#x} are not supported")
        why = control_problem(cr0, cr4, efer)
        if why:
            raise _invalid(why)
        if "cr8" in new and new["cr8"] > 0xF:
            raise _invalid(f"CR8 {new['cr8']:#x}")
        if not xcr0 & 1 or xcr0 & ~3:
            raise _invalid(f"XFEM {xcr0:#x}: x87 must be on; only x87 and SSE exist")


def _check_pending(v: int) -> None:
    if not v & 1:
        return
    kind = v >> 1 & 7
    if kind not in (0, 2, 3, 4, 5, 6) or (v >> 16 & 0xFFFF) > 0xFF:
        raise _invalid(f"pending interruption {v:#x} cannot be held by the software engine")


def _stage(page: abi.uc_x86_sys_page, cls: int, key: int, name: int, raw: bytes) -> int:
    """Write one checked value into the page; the dirty bits it needs."""
    v = int(_Q.unpack_from(raw)[0])
    if cls == GPR:
        if key < 16:
            page.regs.gpr[key] = v
        elif key == 16:
            page.regs.rip = v
        else:
            page.regs.rflags = (v & 0x3F_7FD7) | 2
        return abi.DIRTY_REGS
    if cls == SEG:
        base, limit, selector, attributes = _SEG.unpack_from(raw)
        sg = page.sregs.seg[key]
        sg.base, sg.limit, sg.selector, sg.attributes = base, limit, selector, attributes
        return abi.DIRTY_SREGS
    if cls == DTABLE:
        limit, base = _TABLE.unpack_from(raw)
        t = page.sregs.idtr if key == 0 else page.sregs.gdtr
        t.base, t.limit = base, limit
        return abi.DIRTY_SREGS
    if cls == CREG:
        setattr(page.sregs, _CREGS[name], v)
        return abi.DIRTY_SREGS
    if cls == DEBUG:
        page.sregs.dr[key] = v
        return abi.DIRTY_SREGS
    if cls == PENDING:
        page.events.pending = v
        return abi.DIRTY_EVENTS
    if cls == ISTATE:
        page.events.interrupt_shadow = v & 1
        page.events.nmi_masked = v >> 1 & 1
        return abi.DIRTY_EVENTS
    if cls == ACTIVITY:
        page.events.halted = {HALT_SUSPEND: abi.HALTED, STARTUP_SUSPEND: abi.STARTUP}.get(v, 0)
        return abi.DIRTY_EVENTS
    return 0  # MSR and XSAVE values are applied already
