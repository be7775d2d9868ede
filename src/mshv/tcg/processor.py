"""A virtual processor on the software engine: `mshv.hv.engine.Processor`
over one unicorn instance in x86 system mode.

The library stops before every instruction the hypervisor sees, with the
state exactly as before it, so there is nothing to undo here (the KVM engine
has to rewind KVM's completions). The architectural state is read from the
shared page; writes go into it and are loaded at the next run.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import iced_x86

from mshv.abi.tlfs import (
    HV_INTERCEPT_ACCESS_EXECUTE,
    HV_INTERCEPT_ACCESS_READ,
    HV_INTERCEPT_ACCESS_WRITE,
)
from mshv.abi.tlfs import hv_register_name as R
from mshv.hv import xsave
from mshv.hv.engine import Exit, ExitInfo
from mshv.hv.errors import EngineError
from mshv.tcg import abi
from mshv.tcg.abi import ExitReason
from mshv.tcg.cpu import Cpu
from mshv.tcg.regs import RegisterFile

if TYPE_CHECKING:
    from mshv.tcg.engine import TcgMachine

_GPRS = struct.Struct("<18Q")
_SEG = struct.Struct("<QIHH")
_CTRL = struct.Struct("<Q8xQQQQ")  # cr0, (cr2), cr3, cr4, cr8, efer
_EVENTS = struct.Struct("<QIII")
_U64 = struct.Struct("<Q")
_OFF_SEGS = abi.OFF_SREGS
_OFF_CTRL = abi.OFF_SREGS + abi.uc_x86_sys_sregs.cr0.offset
_STATE = slice(abi.OFF_REGS, abi.OFF_EVENTS + 24)  # what messages and the register page show
_SREGS = slice(abi.OFF_SREGS, abi.OFF_EVENTS + 24)
_IO, _MEMORY, _MSR, _CPUID = ExitReason.IO, ExitReason.MEMORY, ExitReason.MSR, ExitReason.CPUID
_DIRTY_REGS = abi.DIRTY_REGS
XSAVE_LAYOUT = xsave.Layout(supported=3, standard={}, align64=frozenset())
PENDING_GP = 1 | 3 << 1 | 1 << 4 | 13 << 16  # #GP(0)
XSTATE_BV = 512
X87_INIT = struct.pack("<HHBxH16x", 0x037F, 0, 0, 0)  # FCW, FSW, FTW, FOP, FIP, FDP
MXCSR_INIT = (0x1F80).to_bytes(4, "little")
_CS = R.HV_X64_REGISTER_CS


class TcgProcessor:
    """`Processor` and, for the hypervisor's local APIC, `InterruptLine`."""

    def __init__(self, machine: TcgMachine, index: int, cpu: Cpu, cr4_bits: int,
                 efer_bits: int, *, lapic: bool) -> None:  # fmt: skip
        self.exit = ExitInfo()
        self.index = index
        self._machine = machine
        self._cpu = cpu
        self._page = cpu.page
        self._view = cpu.view
        self._run_cpu = cpu.run
        self.registers = RegisterFile(cpu, index, cr4_bits, efer_bits, lapic=lapic)
        self.applied_version = -1  # the machine configuration this CPU has applied
        self._mapped: dict[int, tuple[int, int]] = {}  # handle -> (gpa, size)
        self._kicked = False  # Processor.kick: the next exit is INTERRUPTED
        self.in_run = False
        self._closing = False
        self._idle = threading.Condition()  # close() waits for a run in flight
        self.synced = threading.Condition(machine.lock)
        self._msr_pending = False
        self.seg_version = 0
        self._sregs_raw = b""
        self._state_raw = b""
        self._state_ver = 0
        self._ver_current = False
        self._sys: tuple[tuple[int, int, int, int], ...] | None = None
        self._segs: tuple[tuple[int, int, int, int], ...] = ()
        self._gp: tuple[int, ...] | None = None
        self.reset_state = bytes(self._view[_STATE])  # the power-on state, for INIT
        self.reset_fpu = cpu.xsave()

    # --- the run path --------------------------------------------------------

    def begin_run(self) -> None:
        pass  # the library arms its signal canary at every run

    def run(self) -> Exit:
        if self._msr_pending:
            raise EngineError("an MSR access is pending: complete_msr() or cancel() it first")
        with self._idle:
            if self._closing:
                raise EngineError(f"VP {self.index} is closed")
            self.in_run = True
        if self.applied_version != self._machine.version:
            self._machine.sync(self)
        try:
            while True:
                reason = self._run_cpu()
                self._gp = None
                self._sys = None
                self._ver_current = False
                if reason is _IO:
                    return self._io()
                if reason is ExitReason.KICK:
                    if self._kicked:
                        self._kicked = False
                        return Exit.INTERRUPTED
                    self._machine.sync(self)  # a kick of the machine's: memory or policy
                    continue
                return self._other(reason)
        finally:
            with self._idle:
                self.in_run = False
                self._idle.notify_all()

    def _io(self) -> Exit:
        _, length, flags, port, _, _, size, *_ = self._cpu.exit_fields()
        e = self.exit
        e.port = port
        e.insn_length = length
        e.insn_bytes = self._cpu.insn()
        e.access_type = (
            HV_INTERCEPT_ACCESS_WRITE if flags & abi.IO_WRITE else HV_INTERCEPT_ACCESS_READ
        )
        e.access_info = size | (flags & abi.IO_STRING) << 2 | (flags & abi.IO_REP) << 2
        return Exit.IO_PORT

    def _other(self, reason: ExitReason) -> Exit:
        x = self._page.exit
        e = self.exit
        if reason is _MEMORY:
            e.gpa, e.gva, e.gva_valid = x.gpa, x.gva, True
            e.insn_bytes = self._cpu.insn()
            if x.flags & abi.MEM_FETCH:
                e.access_type, e.insn_length = HV_INTERCEPT_ACCESS_EXECUTE, 0
            else:
                write = x.flags & abi.MEM_WRITE
                e.access_type = HV_INTERCEPT_ACCESS_WRITE if write else HV_INTERCEPT_ACCESS_READ
                e.insn_length = self._decoded_length(e.insn_bytes)
            return Exit.MEMORY
        if reason is _MSR:
            e.msr_index, e.msr_value = x.code, x.value
            e.access_type = (HV_INTERCEPT_ACCESS_WRITE if x.flags & abi.MSR_WRITE
                             else HV_INTERCEPT_ACCESS_READ)  # fmt: skip
            e.insn_length = x.insn_len
            self._msr_pending = True
            return Exit.MSR
        if reason is ExitReason.HLT:
            # No local APIC: the hypervisor reports HLT unexecuted.
            length = x.insn_len or 1
            p = self._page
            p.regs.rip = (p.regs.rip - length) & 0xFFFF_FFFF_FFFF_FFFF
            p.events.halted = abi.RUNNING
            p.dirty |= abi.DIRTY_REGS | abi.DIRTY_EVENTS
            e.insn_length = length
            e.insn_bytes = b"\xf4"
            return Exit.HALT
        if reason is ExitReason.EXCEPTION:
            e.exception_vector = x.code
            e.exception_flags = x.flags & (abi.EXC_ERROR_CODE | abi.EXC_SOFTWARE)
            e.error_code = x.value & 0xFFFF_FFFF
            e.exception_parameter = x.gpa
            e.insn_length = x.insn_len
            e.insn_bytes = self._cpu.insn()
            return Exit.EXCEPTION
        if reason is _CPUID:
            e.cpuid_leaf, e.cpuid_subleaf = x.code, x.value & 0xFFFF_FFFF
            e.cpuid_defaults = (x.cpuid[0], x.cpuid[1], x.cpuid[2], x.cpuid[3])
            e.insn_length = x.insn_len
            e.insn_bytes = self._cpu.insn()
            return Exit.CPUID
        if reason is ExitReason.SIGNAL:
            return Exit.INTERRUPTED
        if reason is ExitReason.SHUTDOWN:
            return Exit.TRIPLE_FAULT
        if reason is ExitReason.WINDOW:
            return Exit.INTERRUPT_WINDOW
        if reason is ExitReason.CR8:
            return Exit.TPR
        if reason is ExitReason.WAKE:
            return Exit.WAKE
        raise EngineError(f"the software CPU failed ({reason.name}): {self._cpu.error()}")

    def _decoded_length(self, code: bytes) -> int:
        bits = self._bitness()
        insn = iced_x86.Decoder(bits, code, ip=0).decode()
        return int(insn.len) if insn.code != iced_x86.Code.INVALID else 0

    def _bitness(self) -> int:
        p = self._page
        if not p.sregs.cr0 & 1 or p.regs.rflags & 1 << 17:
            return 16
        attr = p.sregs.seg[1].attributes
        if attr & 1 << 13 and p.sregs.efer & 1 << 10:
            return 64
        return 32 if attr & 1 << 14 else 16

    # --- requests from any thread ------------------------------------------

    def kick(self) -> None:
        self._kicked = True
        self._cpu.kick()

    def machine_kick(self) -> None:
        """Make a running CPU apply the machine's new configuration."""
        self._cpu.kick()

    def offer_interrupt(self, vector: int | None) -> None:
        self._cpu.set_irq(vector)

    def take_acknowledged(self) -> int | None:
        return self._cpu.take_ack()

    def raise_nmi(self) -> None:
        self._cpu.nmi()

    def wake(self) -> None:
        self._cpu.wake()

    # --- configuration, on the VP's thread ---------------------------------

    def apply(
        self, regions: dict[int, tuple[int, int, int, int]], msr_bitmap: bytes,
        exceptions: int, cpuid: tuple[bool, frozenset[int]], version: int,
    ) -> None:  # fmt: skip
        """The machine's memory map and intercepts (called by the machine,
        holding its lock)."""
        cpu = self._cpu
        for handle in [h for h in self._mapped if h not in regions]:
            gpa, size = self._mapped.pop(handle)
            cpu.unmap(gpa, size)
        for handle, (gpa, size, perms, host) in regions.items():
            if handle not in self._mapped:
                cpu.map(gpa, size, perms, host)
                self._mapped[handle] = (gpa, size)
        cpu.msr_policy(msr_bitmap)
        cpu.exception_intercepts(exceptions)
        cpu.cpuid_intercepts(cpuid[0], sorted(cpuid[1]))
        self.applied_version = version
        self.synced.notify_all()

    # --- state for intercept messages ----------------------------------------

    @property
    def state_version(self) -> int:
        if not self._ver_current:
            raw = bytes(self._view[_STATE])
            if raw != self._state_raw:
                self._state_raw = raw
                self._state_ver += 1
            self._ver_current = True
        return self._state_ver

    def _segments(self) -> tuple[tuple[int, int, int, int], ...]:
        segs = self._sys
        if segs is None:
            raw = bytes(self._view[_SREGS])
            if raw != self._sregs_raw:  # rare between exits: decode only then
                self._sregs_raw = raw
                self.seg_version += 1
                self._segs = tuple(_SEG.unpack_from(raw, 16 * i) for i in range(8))
            segs = self._sys = self._segs
        return segs

    def header(self) -> tuple[int, int, int, int, int, int, int, int]:
        base, limit, sel, attr = self._segments()[1]
        cr0, _, _cr4, cr8, efer = _CTRL.unpack_from(self._view, _OFF_CTRL)
        rip, rflags = struct.unpack_from("<QQ", self._view, abi.OFF_RIP)
        pending, shadow, _, _ = _EVENTS.unpack_from(self._view, abi.OFF_EVENTS)
        pe = cr0 & 1
        state = pe << 2 | (cr0 >> 18 & 1) << 3 | (efer >> 10 & 1) << 4
        state |= (pending & 1) << 6 | (shadow & 1) << 12
        if pe:
            state |= 3 if rflags & 1 << 17 else attr >> 5 & 3
        return state, cr8 & 0xF, base, limit, sel, attr, rip, rflags

    def gprs(self) -> tuple[int, ...]:
        gp = self._gp
        if gp is None:
            gp = self._gp = _GPRS.unpack_from(self._view, abi.OFF_REGS)
        return gp

    def segment(self, name: int) -> tuple[int, int, int, int]:
        return self._segments()[name - R.HV_X64_REGISTER_ES]

    def control(self) -> tuple[int, int, int, int, int, int, int]:
        cr0, cr3, cr4, cr8, efer = _CTRL.unpack_from(self._view, _OFF_CTRL)
        pending, shadow, nmi, _ = _EVENTS.unpack_from(self._view, abi.OFF_EVENTS)
        return cr0, cr3, cr4, cr8, efer, pending, shadow | nmi << 1

    def _invalidate(self) -> None:
        self._gp = None
        self._sys = None
        self._ver_current = False

    # --- registers ------------------------------------------------------------

    def get_registers(self, names: Sequence[int]) -> list[bytes]:
        return self.registers.get(names)

    def set_registers(self, names: Sequence[int], values: Sequence[bytes]) -> None:
        self.registers.set(names, values)
        self._invalidate()

    def set_rip(self, rip: int) -> None:
        _U64.pack_into(self._view, abi.OFF_RIP, rip & 0xFFFF_FFFF_FFFF_FFFF)
        self._page.dirty |= _DIRTY_REGS
        self._invalidate()

    def set_rax_rip(self, rax: int, rip: int) -> None:
        _U64.pack_into(self._view, abi.OFF_RAX, rax)
        _U64.pack_into(self._view, abi.OFF_RIP, rip)
        self._page.dirty |= _DIRTY_REGS
        self._invalidate()

    def reset_to_init(self) -> None:
        """The state INIT leaves a processor in (as at power-on, FPU included),
        waiting for SIPI."""
        self._view[_STATE] = self.reset_state
        self._page.events.halted = abi.STARTUP
        self._page.dirty |= abi.DIRTY_REGS | abi.DIRTY_SREGS | abi.DIRTY_EVENTS
        self._cpu.xrstor(self.reset_fpu)
        self._invalidate()

    def start_at(self, vector: int) -> None:
        """SIPI: real mode at vector:0000."""
        cs = self._page.sregs.seg[1]
        cs.selector, cs.base = vector << 8, vector << 12
        self._page.regs.rip = 0
        self._page.events.halted = abi.RUNNING
        self._page.dirty |= abi.DIRTY_REGS | abi.DIRTY_SREGS | abi.DIRTY_EVENTS
        self._invalidate()

    @property
    def waiting_for_startup(self) -> bool:
        return bool(self._page.events.halted == abi.STARTUP)

    # --- MSRs ---------------------------------------------------------------

    def complete_msr(self, value: int | None) -> None:
        if not self._msr_pending:
            raise EngineError("no MSR access is pending")
        self._msr_pending = False
        p = self._page
        if value is None:
            p.events.pending = PENDING_GP
            p.dirty |= abi.DIRTY_EVENTS
        else:
            if self.exit.access_type == HV_INTERCEPT_ACCESS_READ:
                p.regs.gpr[0] = value & 0xFFFF_FFFF
                p.regs.gpr[2] = (value >> 32) & 0xFFFF_FFFF
            p.regs.rip += self.exit.insn_length
            p.dirty |= abi.DIRTY_REGS
        self._invalidate()

    def cancel(self) -> None:
        self._msr_pending = False

    def msr_passthrough(self, index: int, is_write: bool, value: int) -> int | None:
        if is_write:
            return None if self._cpu.msr(index, value) is None else 0
        return self._cpu.msr(index)

    # --- interrupts -------------------------------------------------------------

    def request_interrupt_window(self, enable: bool) -> None:
        self._cpu.request_window(enable)

    def inject_extint(self, vector: int) -> bool:
        return self._cpu.extint(vector)

    def nmi_masked(self) -> bool:
        return bool(self._page.events.nmi_masked)

    def instruction_gpa(self) -> int | None:
        p = self._page
        cs = p.sregs.seg[1]
        linear = cs.base + p.regs.rip
        if self._bitness() != 64:
            linear &= 0xFFFF_FFFF
        s = p.sregs
        return self._machine.memory.translate(linear, s.cr0, s.cr3, s.cr4, s.efer)

    # --- FPU state and the TSC ---------------------------------------------------

    def xsave_state(self, components: int) -> bytes:
        standard = bytearray(self._cpu.xsave())
        # XSTATE_BV shows which components are in use (not in their initial
        # state), as XSAVE writes it.
        x87 = bytes(standard[0:24]) != X87_INIT or any(standard[32:160])
        sse = any(standard[160:416]) or standard[24:28] != MXCSR_INIT
        bv = (1 if x87 else 0) | (2 if sse else 0)
        standard[XSTATE_BV : XSTATE_BV + 8] = bv.to_bytes(8, "little")
        return xsave.to_compacted(bytes(standard), XSAVE_LAYOUT, components)

    def set_xsave_state(self, image: bytes) -> None:
        base = self._cpu.xsave()
        standard = bytearray(xsave.from_compacted(image, XSAVE_LAYOUT, base)[:576])
        # XRSTOR semantics: a component whose XSTATE_BV bit is clear is
        # loaded in its initial state (MXCSR is loaded either way).
        bv = int.from_bytes(standard[XSTATE_BV : XSTATE_BV + 8], "little")
        if not bv & 1:
            standard[0:24] = X87_INIT
            standard[32:160] = bytes(128)
        if not bv & 2:
            standard[160:416] = bytes(256)
        self._cpu.xrstor(bytes(standard))

    def tsc(self) -> int:
        return self._cpu.tsc()

    def set_tsc(self, value: int) -> None:
        self._cpu.set_tsc(value)

    def close(self) -> None:
        """Stop a run in flight (it returns INTERRUPTED), then free the CPU."""
        with self._idle:
            self._closing = True
            if self.in_run:
                self.kick()
                self._idle.wait_for(lambda: not self.in_run, timeout=10.0)
            if self.in_run:
                raise EngineError(f"VP {self.index} did not stop to be closed")
        self._cpu.close()
