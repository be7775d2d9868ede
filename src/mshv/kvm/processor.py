"""A virtual processor on a KVM vCPU, with the Microsoft Hypervisor's
"nothing completed" semantics at every intercept.

The architectural state lives in kvm_run's sync area (KVM_CAP_SYNC_REGS):
KVM fills regs, sregs and events on every return from KVM_RUN and loads what
we mark dirty on the next entry, so the run path needs no other ioctl. Every
vCPU ioctl costs about 5 us on nested hosts; the run path avoids them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mshv.abi.tlfs import (
    HV_INTERCEPT_ACCESS_EXECUTE,
    HV_INTERCEPT_ACCESS_READ,
    HV_INTERCEPT_ACCESS_WRITE,
)
from mshv.hv.engine import Exit, ExitInfo
from mshv.hv.errors import EngineError
from mshv.kvm import abi as k
from mshv.kvm.locate import (
    RFLAGS_DF,
    Context,
    Host,
    Located,
    LocateError,
    done_elements,
    linear_address,
    locate_mmio,
    locate_pio,
    pre_state,
)
from mshv.kvm.memory import CR0_PE, EFER_LMA, GuestMemory
from mshv.kvm.regfile import RegisterFile
from mshv.kvm.regs import TLFS_TO_KVM
from mshv.kvm.vcpu import VcpuFd

_REGS = struct.Struct("<18Q")
_IO = struct.Struct("<BBHIQ")
_MMIO = struct.Struct("<Q8sIB")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SEG = struct.Struct("<QIHBBBBBBBBB")  # kvm_segment up to `unusable`
_CRS = struct.Struct("<7Q")  # cr0, cr2, cr3, cr4, cr8, efer, apic_base

RUN_SYNC_END = k.RUN_SYNC_EVENTS + 64
_SR = k.RUN_SYNC_SREGS
_SEG_OFF = {"cs": 0, "ds": 24, "es": 48, "fs": 72, "gs": 96, "ss": 120, "tr": 144, "ldt": 168}
_TLFS_SEGS = ("es", "cs", "ss", "ds", "fs", "gs")  # hv_vp_register_page order
_CRS_OFF = _SR + 224
_RIP_OFF = k.RUN_SYNC_REGS + 16 * 8
_EV = k.RUN_SYNC_EVENTS
_EV_OFF_INJ = (_EV + 0, _EV + 8, _EV + 12)  # exception.injected, interrupt.injected, nmi.injected
_EV_SHADOW = _EV + 11

DIRTY_ALL = k.KVM_SYNC_X86_REGS | k.KVM_SYNC_X86_SREGS | k.KVM_SYNC_X86_EVENTS
_INSN_WINDOW = 16


class KvmProcessor:
    """`mshv.hv.engine.Processor` on a KVM vCPU."""

    def __init__(self, vcpu: VcpuFd, index: int, memory: GuestMemory, host: Host) -> None:
        self.exit = ExitInfo()
        self.index = index
        self._vcpu = vcpu
        self._page = vcpu.page
        self._mem = memory
        self._host = host
        self._dirty = 0  # kvm_dirty_regs to hand KVM on the next entry
        self._cache: dict[tuple[int, ...], Located] = {}
        self._page[k.RUN_VALID_REGS : k.RUN_VALID_REGS + 8] = _U64.pack(DIRTY_ALL)
        # Until the first KVM_RUN the sync area is empty: fill it from the vCPU.
        p = self._page
        p[k.RUN_SYNC_REGS : k.RUN_SYNC_SREGS] = bytes(vcpu.get_regs())
        p[k.RUN_SYNC_SREGS : k.RUN_SYNC_EVENTS] = bytes(vcpu.get_sregs())
        p[k.RUN_SYNC_EVENTS : RUN_SYNC_END] = bytes(vcpu.get_vcpu_events())
        self.registers = RegisterFile(vcpu, index, self)

    # --- the run path --------------------------------------------------------

    def run(self) -> Exit:
        page = self._page
        if self._dirty:
            _U64.pack_into(page, k.RUN_DIRTY_REGS, self._dirty)
            self._dirty = 0
        try:
            self._vcpu.run()
        except InterruptedError:
            page[k.RUN_IMMEDIATE_EXIT] = 0
            return Exit.INTERRUPTED
        reason = _U32.unpack_from(page, k.RUN_EXIT_REASON)[0]
        if reason == k.KVM_EXIT_IO:
            return self._io()
        if reason == k.KVM_EXIT_MMIO:
            return self._mmio()
        if reason == k.KVM_EXIT_HLT:
            return self._halt()
        if reason == k.KVM_EXIT_SHUTDOWN:
            return Exit.TRIPLE_FAULT
        if reason == k.KVM_EXIT_FAIL_ENTRY:
            return Exit.INVALID_STATE
        if reason == k.KVM_EXIT_INTR:
            return Exit.INTERRUPTED
        if reason == k.KVM_EXIT_INTERNAL_ERROR:
            return self._internal_error()
        raise EngineError(f"KVM exit reason {reason} is not handled by the KVM engine")

    def kick(self) -> None:
        self._page[k.RUN_IMMEDIATE_EXIT] = 1

    def mark_dirty(self, flags: int) -> None:
        self._dirty |= flags

    def _mode(self) -> tuple[int, int, int]:
        """(bitness, cs_base, rip_linear) from the sync area."""
        page = self._page
        cs = _SEG.unpack_from(page, _SR)
        cr0 = _U64.unpack_from(page, _CRS_OFF)[0]
        rip = _U64.unpack_from(page, _RIP_OFF)[0]
        if not cr0 & CR0_PE or _U64.unpack_from(page, _RIP_OFF + 8)[0] & (1 << 17):
            return 16, cs[0], (cs[0] + (rip & 0xFFFF)) & 0xFFFF_FFFF
        efer = _U64.unpack_from(page, _CRS_OFF + 40)[0]
        if efer & EFER_LMA and cs[8]:
            return 64, cs[0], rip
        bits = 32 if cs[6] else 16
        return bits, cs[0], (cs[0] + rip) & 0xFFFF_FFFF

    def context(self) -> Context:
        page = self._page
        bits, _, rip_linear = self._mode()
        r = _REGS.unpack_from(page, k.RUN_SYNC_REGS)
        cr0, _, cr3, cr4, _, efer, _ = _CRS.unpack_from(page, _CRS_OFF)
        bases = tuple(_U64.unpack_from(page, _SR + _SEG_OFF[s])[0] for s in _TLFS_SEGS)
        return Context(bits, rip_linear, [r[i] for i in TLFS_TO_KVM], r[17], bases,
                       cr0, cr3, cr4, efer)  # fmt: skip

    def _crs(self) -> tuple[int, int, int, int]:
        cr0, _, cr3, cr4, _, efer, _ = _CRS.unpack_from(self._page, _CRS_OFF)
        return cr0, cr3, cr4, efer

    def _cached(self, key: tuple[int, ...], rip_linear: int) -> tuple[Located, bytes] | None:
        """A located instruction still valid for the bytes now in memory."""
        loc = self._cache.get(key)
        if loc is None:
            return None
        code = self._mem.read_linear(rip_linear + loc.offset, _INSN_WINDOW, *self._crs())
        if code[: loc.length] != loc.code:
            return None
        return loc, code

    def _io(self) -> Exit:
        direction, size, port, count, _ = _IO.unpack_from(self._page, k.RUN_EXIT_UNION)
        is_write = direction == k.KVM_EXIT_IO_OUT
        bits, _, rip_linear = self._mode()
        key = (1, bits, rip_linear, port, size, is_write)
        hit = self._cached(key, rip_linear)
        if hit is None:
            ctx = self.context()
            try:
                loc = locate_pio(self._mem, ctx, self._host, port, size, is_write, count)
            except LocateError as err:
                raise EngineError(f"I/O port exit: {err}") from err
            self._cache[key] = loc
            hit = self._cached(key, rip_linear)
            assert hit is not None
        loc, code = hit
        if not loc.simple or not is_write or loc.offset == 0:
            ctx = self.context()
            gprs = pre_state(loc, ctx, done_elements(loc, is_write, count))
            # A pending completion (a read, or a write the host finishes on the
            # next entry) must be drained before we restore the state.
            pending = not is_write or (loc.offset == 0 and not (loc.string_src or loc.rep))
            if pending:
                self._drain(loc)
            self._restore_gprs(gprs)
        self._rewind(loc.offset)
        e = self.exit
        e.insn_length = loc.length
        e.insn_bytes = code
        e.port = port
        e.access_size = size
        e.is_write = is_write
        e.string_op = loc.string_src or loc.string_dst
        e.rep_prefix = loc.rep
        return Exit.IO_PORT

    def _mmio(self) -> Exit:
        gpa, _data, length, is_write = _MMIO.unpack_from(self._page, k.RUN_EXIT_UNION)
        ctx = self.context()
        try:
            loc, gva = locate_mmio(self._mem, ctx, self._host, gpa, length, bool(is_write))
        except LocateError as err:
            raise EngineError(f"memory exit: {err}") from err
        count = max(1, length // loc.element) if loc.element else 1
        gprs = pre_state(loc, ctx, done_elements(loc, bool(is_write), count))
        # Reads complete on the next entry; so does the rest of a write that KVM
        # split into fragments (wider than 8 bytes or crossing a page).
        if not is_write or length < loc.access_size:
            self._drain(loc)
        self._restore_gprs(gprs)
        self._rewind(loc.offset)
        code = self._mem.read_linear(ctx.rip_linear + loc.offset, _INSN_WINDOW, *self._crs())
        e = self.exit
        e.insn_length = loc.length
        e.insn_bytes = code
        e.gpa = gpa
        e.gva = gva
        e.gva_valid = True
        e.access_type = HV_INTERCEPT_ACCESS_WRITE if loc.writes_memory else HV_INTERCEPT_ACCESS_READ
        return Exit.MEMORY

    def _halt(self) -> Exit:
        # KVM has stepped over HLT; the hypervisor reports it unexecuted.
        _, _, rip_linear = self._mode()
        code = self._mem.read_linear(rip_linear - 1, _INSN_WINDOW, *self._crs())
        if code[:1] == b"\xf4":
            self._rewind(-1)
            self.exit.insn_length = 1
            self.exit.insn_bytes = code
        else:
            self.exit.insn_length = 0
            self.exit.insn_bytes = b""
        return Exit.HALT

    def _internal_error(self) -> Exit:
        # An instruction fetch from memory that is not RAM is an execute
        # intercept on unmapped memory, not a failure of the engine.
        _, _, rip_linear = self._mode()
        gpa = self._mem.translate(rip_linear, *self._crs())
        if gpa is not None and self._mem.lookup(gpa) is None:
            e = self.exit
            e.insn_length = 0
            e.insn_bytes = b""
            e.gpa = gpa
            e.gva = rip_linear
            e.gva_valid = True
            e.access_type = HV_INTERCEPT_ACCESS_EXECUTE
            return Exit.MEMORY
        suberror = _U32.unpack_from(self._page, k.RUN_EXIT_UNION)[0]
        code = self._mem.read_linear(rip_linear, _INSN_WINDOW, *self._crs())
        raise EngineError(
            f"KVM cannot execute the guest instruction at linear {rip_linear:#x} "
            f"(bytes {code.hex(' ') or 'unreadable'}): KVM_EXIT_INTERNAL_ERROR suberror "
            f"{suberror}; this host's KVM emulates CPL 0 code and refuses some instructions"
        )

    # --- undoing KVM's work ----------------------------------------------------

    def _rewind(self, offset: int) -> None:
        if offset:
            page = self._page
            rip = _U64.unpack_from(page, _RIP_OFF)[0]
            _U64.pack_into(page, _RIP_OFF, (rip + offset) & 0xFFFF_FFFF_FFFF_FFFF)
            self._dirty |= k.KVM_SYNC_X86_REGS

    def _restore_gprs(self, gprs: list[int]) -> None:
        page = self._page
        base = k.RUN_SYNC_REGS
        for tlfs, kvm in enumerate(TLFS_TO_KVM):
            _U64.pack_into(page, base + 8 * kvm, gprs[tlfs])
        self._dirty |= k.KVM_SYNC_X86_REGS

    def _drain(self, loc: Located) -> None:
        """Let KVM finish its pending completion without entering the guest,
        then put back the state from before it. Completions that would store
        guest memory (INS, MOVS from MMIO) are handed the bytes already there."""
        page = self._page
        saved = bytes(page[k.RUN_SYNC_REGS : RUN_SYNC_END])
        xsave = self._vcpu.get_xsave() if loc.writes_vector else None
        page[k.RUN_IMMEDIATE_EXIT] = 1
        try:
            for _ in range(4096):
                self._prefill()
                try:
                    self._vcpu.run()
                except InterruptedError:
                    break
            else:
                raise EngineError("KVM kept exiting while draining a completion")
        finally:
            page[k.RUN_IMMEDIATE_EXIT] = 0
        page[k.RUN_SYNC_REGS : RUN_SYNC_END] = saved
        self._dirty |= k.KVM_SYNC_X86_REGS
        if loc.writes_sregs:
            self._dirty |= k.KVM_SYNC_X86_SREGS | k.KVM_SYNC_X86_EVENTS
        if xsave is not None:
            self._vcpu.set_xsave(xsave)

    def _prefill(self) -> None:
        """Fill the data KVM is about to store into guest RAM with what the RAM
        already holds, so finishing INS or MOVS-from-MMIO changes nothing."""
        page = self._page
        reason = _U32.unpack_from(page, k.RUN_EXIT_REASON)[0]
        if reason == k.KVM_EXIT_IO:
            direction, size, _, count, data_offset = _IO.unpack_from(page, k.RUN_EXIT_UNION)
            if direction != k.KVM_EXIT_IO_IN:
                return
            ctx = self.context()
            bits, _, _ = self._mode()
            mask = (1 << bits) - 1 if bits != 64 else (1 << 64) - 1
            step = -size if ctx.rflags & RFLAGS_DF else size
            for i in range(count):
                lin = (ctx.seg_bases[0] if bits != 64 else 0) + ((ctx.gprs[7] + i * step) & mask)
                data = self._mem.read_linear(lin, size, ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
                if len(data) == size:
                    off = data_offset + i * size
                    page[off : off + size] = data
        elif reason == k.KVM_EXIT_MMIO:
            gpa, _data, length, is_write = _MMIO.unpack_from(page, k.RUN_EXIT_UNION)
            if is_write:
                return
            ctx = self.context()
            try:
                loc, _ = locate_mmio(self._mem, ctx, self._host, gpa, length, False)
            except LocateError:
                return
            if not (loc.string_dst and loc.string_src):
                return  # the data goes to a register, which we restore
            dst = linear_address(loc.mems[0], ctx, ctx.gprs)
            data = self._mem.read_linear(dst, length, ctx.cr0, ctx.cr3, ctx.cr4, ctx.efer)
            if len(data) == length:
                off = k.RUN_EXIT_UNION + 8
                page[off : off + length] = data

    # --- state for intercept messages --------------------------------------------

    def header(self) -> tuple[int, int, int, int, int, int, int, int]:
        page = self._page
        cs = _SEG.unpack_from(page, _SR)
        cr0, _, _, _, cr8, efer, _ = _CRS.unpack_from(page, _CRS_OFF)
        rip, rflags = struct.unpack_from("<QQ", page, _RIP_OFF)
        base, limit, sel, typ, present, dpl, db, s, long, g, avl, unusable = cs
        attr = (typ | s << 4 | dpl << 5 | (0 if unusable or not present else 0x80)
                | avl << 12 | long << 13 | db << 14 | g << 15)  # fmt: skip
        pe = cr0 & 1
        cpl = (3 if rflags & (1 << 17) else dpl) if pe else 0
        state = cpl | pe << 2 | ((cr0 >> 18) & 1) << 3 | ((efer >> 10) & 1) << 4
        if page[_EV_OFF_INJ[0]] or page[_EV_OFF_INJ[1]] or page[_EV_OFF_INJ[2]]:
            state |= 1 << 6
        if page[_EV_SHADOW]:
            state |= 1 << 12
        return state, cr8 & 0xF, base, limit, sel, attr, rip, rflags

    def gprs(self) -> tuple[int, ...]:
        r = _REGS.unpack_from(self._page, k.RUN_SYNC_REGS)
        return (r[0], r[2], r[3], r[1], r[6], r[7], r[4], r[5], *r[8:18])

    def segment(self, name: int) -> tuple[int, int, int, int]:
        return self.registers.segment(name)

    def set_rip(self, rip: int) -> None:
        _U64.pack_into(self._page, _RIP_OFF, rip)
        self._dirty |= k.KVM_SYNC_X86_REGS

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        return self.registers.get(names)

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        self.registers.set(names, values)

    def close(self) -> None:
        self._vcpu.close()

