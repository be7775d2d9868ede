"""A virtual processor on a KVM vCPU, with the Microsoft Hypervisor's
"nothing completed" semantics at every intercept.

The architectural state lives in kvm_run's sync area (KVM_CAP_SYNC_REGS):
KVM fills regs, sregs and events on every return from KVM_RUN and loads what
we mark dirty on the next entry, so the run path needs no other ioctl. Every
vCPU ioctl costs about 5 us on nested hosts; the run path avoids them.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence

from mshv._libc import ioctl_int
from mshv.abi.tlfs import (
    HV_INTERCEPT_ACCESS_EXECUTE,
    HV_INTERCEPT_ACCESS_READ,
    HV_INTERCEPT_ACCESS_WRITE,
)
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv import xsave
from mshv.hv.engine import Exit, ExitInfo
from mshv.hv.errors import EngineError
from mshv.hv.memory import CR0_PG, EFER_LMA, GuestMemory
from mshv.kvm import abi as k
from mshv.kvm import signals
from mshv.kvm.drain import drain
from mshv.kvm.locate import (
    Context,
    Host,
    Located,
    LocateError,
    done_elements,
    locate_mmio,
    locate_pio,
    pre_state,
)
from mshv.kvm.regfile import RegisterFile
from mshv.kvm.regs import TLFS_TO_KVM, pending_to_hv, segment_to_hv
from mshv.kvm.tsc import TscClock
from mshv.kvm.vcpu import VcpuFd

_KVM_RUN = k.KVM_RUN
_KVM_EXIT_IO = k.KVM_EXIT_IO
_DIRTY_REGS = k.RUN_DIRTY_REGS
_EXIT_UNION = k.RUN_EXIT_UNION
_SYNC_REGS = k.KVM_SYNC_X86_REGS
_EXIT_IO_PORT = Exit.IO_PORT
_EXIT_REASON = k.RUN_EXIT_REASON
_REGS = struct.Struct("<18Q")
_IO = struct.Struct("<BBHIQ")
_MMIO = struct.Struct("<Q8sIB")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_CRS = struct.Struct("<7Q")  # cr0, cr2, cr3, cr4, cr8, efer, apic_base
_CS_MODE = struct.Struct("<Q9xBxB")  # kvm_segment base, db, l
_QQ = struct.Struct("<QQ")
_MSR_EXIT = struct.Struct("<8xIIQ")  # kvm_run.msr: error, pad, then reason, index, data
_MSR_DATA = k.RUN_EXIT_UNION + 16
_IA32_TSC = 0x10

RUN_SYNC_END = k.RUN_SYNC_EVENTS + 64
_SR = k.RUN_SYNC_SREGS
_BASES = struct.Struct("<Q16xQ16xQ16xQ16xQ16xQ")  # cs, ds, es, fs, gs, ss bases
_SEG_BY_NAME = {
    R.HV_X64_REGISTER_ES: 48, R.HV_X64_REGISTER_CS: 0, R.HV_X64_REGISTER_SS: 120,
    R.HV_X64_REGISTER_DS: 24, R.HV_X64_REGISTER_FS: 72, R.HV_X64_REGISTER_GS: 96,
    R.HV_X64_REGISTER_TR: 144, R.HV_X64_REGISTER_LDTR: 168,
}  # fmt: skip
_CS = R.HV_X64_REGISTER_CS
_CRS_OFF = _SR + 224
_RIP_OFF = k.RUN_SYNC_REGS + 16 * 8
_RAX_OFF = k.RUN_SYNC_REGS
_EV = k.RUN_SYNC_EVENTS
_EV_END = RUN_SYNC_END

_TSC_NAMES = frozenset({R.HV_X64_REGISTER_TSC})  # register writes that move the TSC
DIRTY_ALL = k.KVM_SYNC_X86_REGS | k.KVM_SYNC_X86_SREGS | k.KVM_SYNC_X86_EVENTS
_INSN_WINDOW = 16


class KvmProcessor:
    """`mshv.hv.engine.Processor` on a KVM vCPU."""

    def __init__(
        self,
        vcpu: VcpuFd,
        index: int,
        memory: GuestMemory,
        host: Host,
        layout: xsave.Layout,
        tsc_khz: int,
    ) -> None:
        self.exit = ExitInfo()
        self.index = index
        self._vcpu = vcpu
        self._fd = vcpu.fd
        self._page = vcpu.page
        self._gp: tuple[int, ...] | None = None  # this exit's GPRs in TLFS order
        self.seg_version = 0  # bumped whenever the segment registers change
        self._mem = memory
        self._host = host
        self._dirty = 0  # kvm_dirty_regs to hand KVM on the next entry
        self._cache: dict[tuple[int, ...], Located] = {}
        # What derives from sregs and events (segments in TLFS form, control
        # registers, the header's execution state), recomputed only when KVM's
        # raw bytes for them change, which is rare between exits.
        self._sys_raw = b""
        self._sys_current = False
        self._segs: dict[int, tuple[int, int, int, int]] = {}
        self._control: tuple[int, int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0, 0)
        self._state = (0, 0)  # execution state without and with RFLAGS.VM
        self._mode_info = (0, 0, 0, 0)  # cs_base, bits (protected, no VM), pe, paging
        self._kvm_rip: int | None = None  # RIP inside KVM when only our rewind differs
        self._msr_pending = False  # a userspace RDMSR/WRMSR waits for complete_msr/cancel
        self._msr_reason = 0  # why KVM gave the pending access to userspace
        self._xsave_layout = layout
        self._state_raw = b""
        self._state_ver = 0
        self._ver_current = False
        self._page[k.RUN_VALID_REGS : k.RUN_VALID_REGS + 8] = _U64.pack(DIRTY_ALL)
        # Until the first KVM_RUN the sync area is empty: fill it from the vCPU.
        p = self._page
        p[k.RUN_SYNC_REGS : k.RUN_SYNC_SREGS] = bytes(vcpu.get_regs())
        p[k.RUN_SYNC_SREGS : k.RUN_SYNC_EVENTS] = bytes(vcpu.get_sregs())
        p[k.RUN_SYNC_EVENTS : RUN_SYNC_END] = bytes(vcpu.get_vcpu_events())
        self.registers = RegisterFile(vcpu, index, self)
        self.clock = TscClock(self._read_tsc, tsc_khz)
        self.runner = 0  # native id of the thread in run(), 0 outside it

    # --- the run path --------------------------------------------------------

    def begin_run(self) -> None:
        pass  # every signal during KVM_RUN ends the run: nothing to tell apart

    def run(self) -> Exit:
        clock = self.clock
        clock.running()
        self.runner = threading.get_native_id()
        try:
            return self.run_once()
        finally:
            self.runner = 0
            clock.stopped()

    def run_once(self) -> Exit:
        """One KVM_RUN and what its exit means."""
        if self._msr_pending:
            raise EngineError("an MSR access is pending: complete_msr() or cancel() it first")
        page = self._page
        dirty = self._dirty
        if dirty:
            # After a rewind that the VMM undid by advancing RIP, KVM already
            # holds these registers: loading them again costs an entry.
            if dirty != _SYNC_REGS or _U64.unpack_from(page, _RIP_OFF)[0] != self._kvm_rip:
                _U64.pack_into(page, _DIRTY_REGS, dirty)
            self._dirty = 0
        self._sys_current = self._ver_current = False
        self._gp = None
        self._kvm_rip = None
        try:
            ioctl_int(self._fd, _KVM_RUN, 0)
        except InterruptedError:
            page[k.RUN_IMMEDIATE_EXIT] = 0
            return Exit.INTERRUPTED
        except OSError as e:
            return self._run_failed(e)
        reason = _U32.unpack_from(page, _EXIT_REASON)[0]
        if reason == _KVM_EXIT_IO:
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
        if reason in (k.KVM_EXIT_X86_RDMSR, k.KVM_EXIT_X86_WRMSR):
            return self._msr(reason == k.KVM_EXIT_X86_WRMSR)
        if reason == k.KVM_EXIT_IRQ_WINDOW_OPEN:
            page[k.RUN_REQUEST_INTERRUPT_WINDOW] = 0
            return Exit.INTERRUPT_WINDOW
        if reason == k.KVM_EXIT_SET_TPR:
            return Exit.TPR  # CR8 lowered (hosts whose KVM exits for it)
        raise EngineError(f"KVM exit reason {reason} is not handled by the KVM engine")

    def kick(self) -> None:
        self._page[k.RUN_IMMEDIATE_EXIT] = 1  # a run about to enter returns at once
        runner = self.runner
        if runner:
            signals.kick(runner)  # one in the guest leaves it

    def activity(self) -> int | None:
        return None  # KVM's MP state: running or halted at an intercepted HLT

    def set_activity(self, value: int) -> bool:
        return False

    def mark_dirty(self, flags: int) -> None:
        self._dirty |= flags
        self.invalidate()

    def invalidate(self) -> None:
        """The sync area changed outside the run path: drop derived caches."""
        self._gp = None
        self._sys_current = self._ver_current = False
        self._kvm_rip = None

    @property
    def state_version(self) -> int:
        """Changes whenever registers an intercept message or the register page
        shows may have changed (KVM's sync-area bytes differ)."""
        if not self._ver_current:
            raw = bytes(self._page[k.RUN_SYNC_REGS : _EV_END])
            if raw != self._state_raw:
                self._state_raw = raw
                self._state_ver += 1
            self._ver_current = True
        return self._state_ver

    def _system(self) -> None:
        """Bring what derives from sregs and events up to date for this exit."""
        if self._sys_current:
            return
        page = self._page
        raw = bytes(page[_SR:_EV_END])
        if raw != self._sys_raw:
            self._sys_raw = raw
            self._segs = {n: segment_to_hv(raw, off) for n, off in _SEG_BY_NAME.items()}
            self.seg_version += 1
            cr0, _, cr3, cr4, cr8, efer, _ = _CRS.unpack_from(raw, 224)
            ev = k.kvm_vcpu_events.from_buffer_copy(raw, _EV - _SR)
            pending = pending_to_hv(ev)
            shadow = 1 if ev.interrupt_shadow else 0
            self._control = (cr0, cr3, cr4, cr8, efer, pending,
                             shadow | (2 if ev.nmi_masked else 0))  # fmt: skip
            cs_base, _, _, attr = self._segs[_CS]
            pe = cr0 & 1
            base_state = pe << 2 | ((cr0 >> 18) & 1) << 3 | ((efer >> 10) & 1) << 4
            if pending & 1:
                base_state |= 1 << 6
            if shadow:
                base_state |= 1 << 12
            cpl = (attr >> 5) & 3 if pe else 0
            self._state = (base_state | cpl, base_state | (3 if pe else 0))
            if not pe:
                bits = 16
            elif attr & (1 << 13) and efer & EFER_LMA:
                bits = 64
            else:
                bits = 32 if attr & (1 << 14) else 16
            self._mode_info = (cs_base, bits, pe, cr0 & CR0_PG)
        self._sys_current = True

    def _mode(self) -> tuple[int, int, int]:
        """(bitness, cs_base, rip_linear) from the sync area."""
        self._system()
        cs_base, bits, pe, _ = self._mode_info
        rip, rflags = _QQ.unpack_from(self._page, _RIP_OFF)
        if bits == 64:
            return 64, cs_base, rip
        if not pe or rflags & (1 << 17):
            return 16, cs_base, (cs_base + (rip & 0xFFFF)) & 0xFFFF_FFFF
        return bits, cs_base, (cs_base + rip) & 0xFFFF_FFFF

    def context(self) -> Context:
        page = self._page
        bits, _, rip_linear = self._mode()
        r = _REGS.unpack_from(page, k.RUN_SYNC_REGS)
        cr0, _, cr3, cr4, _, efer, _ = _CRS.unpack_from(page, _CRS_OFF)
        cs, ds, es, fs, gs, ss = _BASES.unpack_from(page, _SR)
        bases = (es, cs, ss, ds, fs, gs)
        return Context(bits, rip_linear, [r[i] for i in TLFS_TO_KVM], r[17], bases,
                       cr0, cr3, cr4, efer)  # fmt: skip

    def _crs(self) -> tuple[int, int, int, int]:
        cr0, _, cr3, cr4, _, efer, _ = _CRS.unpack_from(self._page, _CRS_OFF)
        return cr0, cr3, cr4, efer

    def fetch(self, linear: int, size: int = _INSN_WINDOW) -> bytes:
        """Up to `size` guest bytes at a linear address, as far as readable."""
        self._system()
        if not self._mode_info[3]:
            data = self._mem.read(linear, size)
            if data is not None:
                return data
        return self._mem.read_linear(linear, size, *self._crs())

    def _io(self) -> Exit:
        page = self._page
        direction, size, port, count, _ = _IO.unpack_from(page, _EXIT_UNION)
        bits, _, rip_linear = self._mode()
        key = (rip_linear, port, size, direction, bits)
        loc = self._cache.get(key)
        if loc is not None and loc.offset < 0 and direction and loc.simple:
            # The hot case: an OUT the host finished, already decoded. Check the
            # bytes are still that instruction, step RIP back onto it, report it.
            code = self.fetch(rip_linear + loc.offset)
            if code[: loc.length] == loc.code:
                rip = _U64.unpack_from(page, _RIP_OFF)[0]
                _U64.pack_into(page, _RIP_OFF, rip + loc.offset)
                if not self._dirty:
                    self._kvm_rip = rip  # see run()
                self._dirty |= _SYNC_REGS
                self._gp = None
                self._ver_current = False
                e = self.exit
                e.insn_length = loc.length
                e.insn_bytes = code
                e.port = port
                e.access_type = HV_INTERCEPT_ACCESS_WRITE
                e.access_info = size
                return _EXIT_IO_PORT
        return self._io_slow(loc, key, direction, size, port, count, bits, rip_linear)

    def _io_slow(
        self, loc: Located | None, key: tuple[int, ...], direction: int, size: int, port: int,
        count: int, bits: int, rip_linear: int,
    ) -> Exit:  # fmt: skip
        is_write = direction == k.KVM_EXIT_IO_OUT
        code = b""
        if loc is not None:
            # Revalidate against memory: the guest may have rewritten its code.
            code = self.fetch(rip_linear + loc.offset)
            if code[: loc.length] != loc.code:
                loc = None
        if loc is None:
            try:
                loc = locate_pio(self._mem, self.context(), self._host, port, size, is_write, count)
            except LocateError as err:
                raise EngineError(f"I/O port exit: {err}") from err
            self._cache[key] = loc
            code = self.fetch(rip_linear + loc.offset)
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
        e.access_type = HV_INTERCEPT_ACCESS_WRITE if is_write else HV_INTERCEPT_ACCESS_READ
        string = loc.string_src or loc.string_dst
        e.access_info = size | string << 3 | loc.rep << 4
        return Exit.IO_PORT

    def _mmio(self) -> Exit:
        gpa, raw, length, is_write = _MMIO.unpack_from(self._page, k.RUN_EXIT_UNION)
        ctx = self.context()
        data = int.from_bytes(raw, "little") if is_write else None
        try:
            loc, gva = locate_mmio(self._mem, ctx, self._host, gpa, length, bool(is_write), data)
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
        code = self.fetch(ctx.rip_linear + loc.offset)
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
        code = self.fetch(rip_linear - 1)
        if code[:1] == b"\xf4":
            self._rewind(-1)
            self.exit.insn_length = 1
            self.exit.insn_bytes = code
        else:
            self.exit.insn_length = 0
            self.exit.insn_bytes = b""
        return Exit.HALT

    def _fetch_intercept(self) -> bool:
        """An instruction fetch from memory that is not RAM is an execute
        intercept on unmapped memory, not a failure of the engine."""
        self.invalidate()
        _, _, rip_linear = self._mode()
        gpa = self._mem.translate(rip_linear, *self._crs())
        if gpa is None or self._mem.lookup(gpa) is not None:
            return False
        e = self.exit
        e.insn_length = 0
        e.insn_bytes = b""
        e.gpa = gpa
        e.gva = rip_linear
        e.gva_valid = True
        e.access_type = HV_INTERCEPT_ACCESS_EXECUTE
        return True

    def _run_failed(self, err: OSError) -> Exit:
        # Some hosts fail KVM_RUN outright (ENOSPC, EFAULT) for a fetch KVM
        # cannot serve; anything else is the engine failing.
        if self._fetch_intercept():
            return Exit.MEMORY
        raise EngineError(f"KVM_RUN failed: {err.strerror} (errno {err.errno})") from err

    def _internal_error(self) -> Exit:
        if self._fetch_intercept():
            return Exit.MEMORY
        _, _, rip_linear = self._mode()
        suberror = _U32.unpack_from(self._page, k.RUN_EXIT_UNION)[0]
        code = self.fetch(rip_linear)
        raise EngineError(
            f"KVM cannot execute the guest instruction at linear {rip_linear:#x} "
            f"(bytes {code.hex(' ') or 'unreadable'}): KVM_EXIT_INTERNAL_ERROR suberror "
            f"{suberror}; this host's KVM emulates CPL 0 code and refuses some instructions"
        )

    # --- undoing KVM's work ----------------------------------------------------

    def _rewind(self, offset: int) -> None:
        if offset:
            self._gp = None
            self._ver_current = False
            page = self._page
            rip = _U64.unpack_from(page, _RIP_OFF)[0]
            _U64.pack_into(page, _RIP_OFF, (rip + offset) & 0xFFFF_FFFF_FFFF_FFFF)
            self._dirty |= k.KVM_SYNC_X86_REGS

    def _restore_gprs(self, gprs: list[int]) -> None:
        self._gp = None
        self._ver_current = False
        page = self._page
        base = k.RUN_SYNC_REGS
        for tlfs, kvm in enumerate(TLFS_TO_KVM):
            _U64.pack_into(page, base + 8 * kvm, gprs[tlfs])
        self._dirty |= k.KVM_SYNC_X86_REGS

    def _drain(self, loc: Located | None) -> None:
        drain(self, loc)

    # --- MSRs, interrupts, state -------------------------------------------------

    def _msr(self, is_write: bool) -> Exit:
        # RIP is at the RDMSR/WRMSR; KVM finishes it on the next entry with
        # kvm_run.msr.data (a read) or a #GP (kvm_run.msr.error).
        self._msr_reason, index, data = _MSR_EXIT.unpack_from(self._page, _EXIT_UNION)
        e = self.exit
        e.msr_index = index
        e.msr_value = data
        e.access_type = HV_INTERCEPT_ACCESS_WRITE if is_write else HV_INTERCEPT_ACCESS_READ
        e.insn_length = 2
        self._msr_pending = True
        return Exit.MSR

    def complete_msr(self, value: int | None) -> None:
        if not self._msr_pending:
            raise EngineError("no MSR access is pending")
        page = self._page
        page[_EXIT_UNION] = 1 if value is None else 0
        if value is not None:
            _U64.pack_into(page, _MSR_DATA, value & 0xFFFF_FFFF_FFFF_FFFF)
        self._msr_pending = False

    def cancel(self) -> None:
        if self._msr_pending:
            self._msr_pending = False
            self._drain(None)

    def msr_passthrough(self, index: int, is_write: bool, value: int) -> int | None:
        # The guest's access, done by the host (KVM_GET/SET_MSRS). KVM is more
        # lenient with host-initiated writes; the filter only sends MSRs
        # outside the architectural blocks this way (engine.MSR_BLOCKS). An
        # access KVM refused for the guest stays refused.
        if self._msr_pending and self._msr_reason == k.KVM_MSR_EXIT_REASON_INVAL:
            return None
        try:
            if is_write:
                self._vcpu.set_msrs({index: value})
                return 0
            return self._vcpu.get_msrs([index])[index]
        except OSError:
            return None

    def request_interrupt_window(self, enable: bool) -> None:
        self._page[k.RUN_REQUEST_INTERRUPT_WINDOW] = 1 if enable else 0

    def inject_extint(self, vector: int) -> bool:
        try:
            self._vcpu.interrupt(vector)
        except FileExistsError:
            return False  # KVM still holds the previous one
        return True

    def instruction_gpa(self) -> int | None:
        _, _, rip_linear = self._mode()
        return self._mem.translate(rip_linear, *self._crs())

    def nmi_masked(self) -> bool:
        return bool(self._page[_EV + 14])  # kvm_vcpu_events.nmi.masked

    def xsave_state(self, components: int) -> bytes:
        return xsave.to_compacted(bytes(self._vcpu.get_xsave()), self._xsave_layout, components)

    def set_xsave_state(self, image: bytes) -> None:
        base = bytes(self._vcpu.get_xsave())
        standard = xsave.from_compacted(image, self._xsave_layout, base)
        self._vcpu.set_xsave(k.kvm_xsave.from_buffer_copy(standard))

    def _read_tsc(self) -> int:
        return self._vcpu.get_msrs([_IA32_TSC])[_IA32_TSC]

    def tsc(self) -> int:
        return self.clock.now()

    def set_tsc(self, value: int) -> None:
        self._vcpu.set_msrs({_IA32_TSC: value})
        self.clock.exact()

    # --- state for intercept messages --------------------------------------------

    def header(self) -> tuple[int, int, int, int, int, int, int, int]:
        self._system()
        base, limit, sel, attr = self._segs[_CS]
        rip, rflags = _QQ.unpack_from(self._page, _RIP_OFF)
        state = self._state[1] if rflags & (1 << 17) else self._state[0]
        return state, self._control[3] & 0xF, base, limit, sel, attr, rip, rflags

    def control(self) -> tuple[int, int, int, int, int, int, int]:
        self._system()
        return self._control

    def gprs(self) -> tuple[int, ...]:
        gp = self._gp
        if gp is None:
            r = _REGS.unpack_from(self._page, k.RUN_SYNC_REGS)
            gp = self._gp = (r[0], r[2], r[3], r[1], r[6], r[7], r[4], r[5], *r[8:18])
        return gp

    def segment(self, name: int) -> tuple[int, int, int, int]:
        self._system()
        return self._segs[name]

    def set_rip(self, rip: int) -> None:
        self._gp = None
        self._ver_current = False
        _U64.pack_into(self._page, _RIP_OFF, rip)
        self._dirty |= k.KVM_SYNC_X86_REGS

    def set_rax_rip(self, rax: int, rip: int) -> None:
        self._gp = None
        self._ver_current = False
        _U64.pack_into(self._page, _RAX_OFF, rax)  # kvm_regs starts with RAX
        _U64.pack_into(self._page, _RIP_OFF, rip)
        self._dirty |= k.KVM_SYNC_X86_REGS

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        return self.registers.get(names)

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        self.registers.set(names, values)
        if _TSC_NAMES.intersection(names):
            self.clock.exact()

    def close(self) -> None:
        self._vcpu.close()
