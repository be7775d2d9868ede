"""Draining a completion KVM has pending, without letting it change the guest.

After an I/O read, an MMIO read, or a userspace RDMSR/WRMSR, KVM finishes the
instruction on the next KVM_RUN. The hypervisor reports such instructions
unexecuted, so the engine lets KVM finish with `immediate_exit` set (it does
not re-enter the guest) and then puts the saved state back.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from mshv.hv.errors import EngineError
from mshv.kvm import abi as k
from mshv.kvm.locate import RFLAGS_DF, Located, LocateError, linear_address, locate_mmio

if TYPE_CHECKING:
    from mshv.kvm.processor import KvmProcessor

RUN_SYNC_END = k.RUN_SYNC_EVENTS + 64
_U32 = struct.Struct("<I")
_IO = struct.Struct("<BBHIQ")
_MMIO = struct.Struct("<Q8sIB")


def drain(p: KvmProcessor, loc: Located | None) -> None:
    """Let KVM finish its pending completion without entering the guest,
    then put back the state from before it. Completions that would store
    guest memory (INS, MOVS from MMIO) are handed the bytes already there."""
    page = p._page
    saved = bytes(page[k.RUN_SYNC_REGS : RUN_SYNC_END])
    xsave = p._vcpu.get_xsave() if loc is not None and loc.writes_vector else None
    page[k.RUN_IMMEDIATE_EXIT] = 1
    try:
        for _ in range(4096):
            prefill(p)
            try:
                p._vcpu.run()
            except InterruptedError:
                break
        else:
            raise EngineError("KVM kept exiting while draining a completion")
    finally:
        page[k.RUN_IMMEDIATE_EXIT] = 0
    page[k.RUN_SYNC_REGS : RUN_SYNC_END] = saved
    p.invalidate()
    p._dirty |= k.KVM_SYNC_X86_REGS
    if loc is not None and loc.writes_sregs:
        p._dirty |= k.KVM_SYNC_X86_SREGS | k.KVM_SYNC_X86_EVENTS
    if xsave is not None:
        p._vcpu.set_xsave(xsave)


def prefill(p: KvmProcessor) -> None:
    """Fill the data KVM is about to store into guest RAM with what the RAM
    already holds, so finishing INS or MOVS-from-MMIO changes nothing; let a
    pending RDMSR/WRMSR finish without a #GP (its registers are restored)."""
    page = p._page
    reason = _U32.unpack_from(page, k.RUN_EXIT_REASON)[0]
    if reason in (k.KVM_EXIT_X86_RDMSR, k.KVM_EXIT_X86_WRMSR):
        page[k.RUN_EXIT_UNION] = 0  # kvm_run.msr.error
    elif reason == k.KVM_EXIT_IO:
        direction, size, _, count, data_offset = _IO.unpack_from(page, k.RUN_EXIT_UNION)
        if direction != k.KVM_EXIT_IO_IN:
            return
        ctx = p.context()
        bits, _, _ = p._mode()
        mask = (1 << bits) - 1 if bits != 64 else (1 << 64) - 1
        step = -size if ctx.rflags & RFLAGS_DF else size
        for i in range(count):
            lin = (ctx.seg_bases[0] if bits != 64 else 0) + ((ctx.gprs[7] + i * step) & mask)
            data = p._mem.read_linear(lin, size, ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
            if len(data) == size:
                off = data_offset + i * size
                page[off : off + size] = data
    elif reason == k.KVM_EXIT_MMIO:
        gpa, _data, length, is_write = _MMIO.unpack_from(page, k.RUN_EXIT_UNION)
        if is_write:
            return
        ctx = p.context()
        try:
            loc, _ = locate_mmio(p._mem, ctx, p._host, gpa, length, False)
        except LocateError:
            return
        if not (loc.string_dst and loc.string_src):
            return  # the data goes to a register, which we restore
        dst = linear_address(loc.mems[0], ctx, ctx.gprs)
        data = p._mem.read_linear(dst, length, ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
        if len(data) == length:
            off = k.RUN_EXIT_UNION + 8
            page[off : off + length] = data
