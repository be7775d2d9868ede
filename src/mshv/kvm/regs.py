"""TLFS register names to and from KVM vCPU state.

Each architectural register the engine provides lives in one KVM "class" of
state: the sync area of kvm_run (GPRs, segment/control registers, events:
no ioctl needed), or an ioctl-backed block (XSAVE, debug registers, XCRs,
MSRs). Values cross as 16-byte `hv_register_value` images.
"""

from __future__ import annotations

import functools
import struct

from mshv.abi.tlfs import hv_register_name as R
from mshv.hv import msr_registers, xsave
from mshv.kvm import abi as k

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_SEG = struct.Struct("<QIHH")  # hv_x64_segment_register
_TABLE = struct.Struct("<6xHQ")  # hv_x64_table_register: pad[3], limit, base

# Classes of KVM state.
GPR, SEG, DTABLE, CREG, XSAVE, DEBUG, XCR, MSR, PENDING, ISTATE, CONST, ACTIVITY = range(12)

# kvm_regs index of each TLFS general-purpose register, then RIP and RFLAGS.
_KVM_GPR = {
    R.HV_X64_REGISTER_RAX: 0, R.HV_X64_REGISTER_RCX: 2, R.HV_X64_REGISTER_RDX: 3,
    R.HV_X64_REGISTER_RBX: 1, R.HV_X64_REGISTER_RSP: 6, R.HV_X64_REGISTER_RBP: 7,
    R.HV_X64_REGISTER_RSI: 4, R.HV_X64_REGISTER_RDI: 5, R.HV_X64_REGISTER_R8: 8,
    R.HV_X64_REGISTER_R9: 9, R.HV_X64_REGISTER_R10: 10, R.HV_X64_REGISTER_R11: 11,
    R.HV_X64_REGISTER_R12: 12, R.HV_X64_REGISTER_R13: 13, R.HV_X64_REGISTER_R14: 14,
    R.HV_X64_REGISTER_R15: 15, R.HV_X64_REGISTER_RIP: 16, R.HV_X64_REGISTER_RFLAGS: 17,
}  # fmt: skip
# TLFS GPR order -> kvm_regs index (the hypervisor's order is the x86 encoding).
TLFS_TO_KVM = (0, 2, 3, 1, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)

# Offsets in kvm_sregs of segment descriptors, descriptor tables and control registers.
_SEGMENTS = {
    R.HV_X64_REGISTER_CS: 0, R.HV_X64_REGISTER_DS: 24, R.HV_X64_REGISTER_ES: 48,
    R.HV_X64_REGISTER_FS: 72, R.HV_X64_REGISTER_GS: 96, R.HV_X64_REGISTER_SS: 120,
    R.HV_X64_REGISTER_TR: 144, R.HV_X64_REGISTER_LDTR: 168,
}  # fmt: skip
_TABLES = {R.HV_X64_REGISTER_GDTR: 192, R.HV_X64_REGISTER_IDTR: 208}
_CREGS = {
    R.HV_X64_REGISTER_CR0: 224, R.HV_X64_REGISTER_CR2: 232, R.HV_X64_REGISTER_CR3: 240,
    R.HV_X64_REGISTER_CR4: 248, R.HV_X64_REGISTER_CR8: 256, R.HV_X64_REGISTER_EFER: 264,
    R.HV_X64_REGISTER_APIC_BASE: 272,
}  # fmt: skip
# Offsets in kvm_debugregs.
_DEBUG = {
    R.HV_X64_REGISTER_DR0: 0, R.HV_X64_REGISTER_DR1: 8, R.HV_X64_REGISTER_DR2: 16,
    R.HV_X64_REGISTER_DR3: 24, R.HV_X64_REGISTER_DR6: 32, R.HV_X64_REGISTER_DR7: 40,
}  # fmt: skip


MSRS = msr_registers.MSRS

XSAVE_XSTATE_BV = 512


@functools.lru_cache(maxsize=1024)  # bounded: names come from userspace
def classify(name: int) -> tuple[int, int] | None:
    """(class, key) for a register the engine provides, else None. The key is
    an offset into that class's KVM structure (or the MSR index)."""
    for table, cls in ((_KVM_GPR, GPR), (_SEGMENTS, SEG), (_TABLES, DTABLE), (_CREGS, CREG),
                       (_DEBUG, DEBUG), (MSRS, MSR)):  # fmt: skip
        key = table.get(name)  # type: ignore[call-overload]
        if key is not None:
            return cls, int(key)
    offset = xsave.legacy_offset(name)
    if offset is not None:
        return XSAVE, offset
    if name == R.HV_X64_REGISTER_XFEM:
        return XCR, 0
    if name == R.HV_REGISTER_PENDING_INTERRUPTION:
        return PENDING, 0
    if name == R.HV_REGISTER_INTERRUPT_STATE:
        return ISTATE, 0
    if name == R.HV_X64_REGISTER_INITIAL_APIC_ID:
        return CONST, 0
    if name == R.HV_REGISTER_INTERNAL_ACTIVITY_STATE:
        return ACTIVITY, 0
    return None


# HV_REGISTER_INTERNAL_ACTIVITY_STATE bits and KVM's multiprocessing states.
STARTUP_SUSPEND, HALT_SUSPEND = 1, 2


def activity_to_hv(mp_state: int) -> int:
    """A VP waiting for INIT or SIPI is startup-suspended; HLT halt-suspends."""
    if mp_state in (k.KVM_MP_STATE_UNINITIALIZED, k.KVM_MP_STATE_INIT_RECEIVED):
        return STARTUP_SUSPEND
    return HALT_SUSPEND if mp_state == k.KVM_MP_STATE_HALTED else 0


def activity_from_hv(value: int) -> int | None:
    """KVM's state for an activity value, None for one it cannot hold
    (idle suspend, or both bits)."""
    return {0: k.KVM_MP_STATE_RUNNABLE, STARTUP_SUSPEND: k.KVM_MP_STATE_INIT_RECEIVED,
            HALT_SUSPEND: k.KVM_MP_STATE_HALTED}.get(value)  # fmt: skip


# --- conversions -------------------------------------------------------------


_KSEG = struct.Struct("<QIHBBBBBBBBBx")  # kvm_segment


def segment_to_hv(raw: bytes | memoryview, off: int = 0) -> tuple[int, int, int, int]:
    """(base, limit, selector, attributes) from a kvm_segment image."""
    base, limit, sel, typ, present, dpl, db, s, long, g, avl, unusable = _KSEG.unpack_from(raw, off)
    attr = (
        (typ & 0xF) | (s & 1) << 4 | (dpl & 3) << 5 | (0x80 if present and not unusable else 0)
        | (avl & 1) << 12 | (long & 1) << 13 | (db & 1) << 14 | (g & 1) << 15
    )  # fmt: skip
    return base, limit, sel, attr


def segment_from_hv(value: bytes) -> bytes:
    """A kvm_segment image from an hv_x64_segment_register value."""
    base, limit, selector, a = _SEG.unpack_from(value)
    present = (a >> 7) & 1
    return _KSEG.pack(
        base, limit, selector, a & 0xF, present, (a >> 5) & 3, (a >> 14) & 1, (a >> 4) & 1,
        (a >> 13) & 1, (a >> 15) & 1, (a >> 12) & 1, 0 if present else 1,
    )  # fmt: skip


def pack_segment(seg: tuple[int, int, int, int]) -> bytes:
    return _SEG.pack(*seg)


def pending_to_hv(ev: k.kvm_vcpu_events) -> int:
    """hv_x64_pending_interruption_register from KVM's injected events."""
    if ev.exception_injected:
        v = 1 | 3 << 1 | (1 << 4 if ev.exception_has_error_code else 0)
        return v | int(ev.exception_nr) << 16 | int(ev.exception_error_code) << 32
    if ev.nmi_injected:
        return 1 | 2 << 1 | 2 << 16
    if ev.interrupt_injected:
        kind = 4 if ev.interrupt_soft else 0
        return 1 | kind << 1 | int(ev.interrupt_nr) << 16
    return 0


def pending_from_hv(ev: k.kvm_vcpu_events, value: int) -> bool:
    """Apply a pending-interruption value to `ev`; False if KVM cannot hold it."""
    ev.exception_injected = ev.nmi_injected = ev.interrupt_injected = 0
    if not value & 1:
        return True
    kind = (value >> 1) & 7
    vector = (value >> 16) & 0xFFFF
    if kind == 3:
        ev.exception_injected = 1
        ev.exception_nr = vector
        ev.exception_has_error_code = (value >> 4) & 1
        ev.exception_error_code = value >> 32
    elif kind == 2:
        ev.nmi_injected = 1
    elif kind in (0, 4):
        ev.interrupt_injected = 1
        ev.interrupt_nr = vector
        ev.interrupt_soft = 1 if kind == 4 else 0
    else:
        return False
    return vector <= 0xFF


def value_bytes(v: int) -> bytes:
    return _QQ.pack(v & 0xFFFF_FFFF_FFFF_FFFF, v >> 64)


def value_int(b: bytes) -> int:
    lo, hi = _QQ.unpack_from(b)
    return int(lo) | int(hi) << 64


_KTABLE = struct.Struct("<QH6x")  # kvm_dtable


def table_to_hv(raw: bytes | memoryview, off: int) -> bytes:
    base, limit = _KTABLE.unpack_from(raw, off)
    return _TABLE.pack(limit, base)


def table_from_hv(value: bytes) -> bytes:
    limit, base = _TABLE.unpack_from(value)
    return _KTABLE.pack(base, limit)
