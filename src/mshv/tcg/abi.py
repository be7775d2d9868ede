"""The layouts of unicorn's x86 system mode (our patch set's
`include/unicorn/x86_sys.h`), restated with ctypes. The library reports its
own sizes and offsets (`uc_x86_sys_abi`); `library.load` refuses a build
whose layout differs from these."""

from __future__ import annotations

import ctypes
import enum

ABI = 1

UC_ARCH_X86 = 4
UC_MODE_64 = 1 << 3
UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC = 1, 2, 4


class ExitReason(enum.IntEnum):
    """Why `uc_x86_sys_run` returned."""

    NONE = 0
    KICK = 1
    SIGNAL = 2
    IO = 3
    MEMORY = 4
    MSR = 5
    CPUID = 6
    HLT = 7
    EXCEPTION = 8
    SHUTDOWN = 9
    WINDOW = 10
    CR8 = 11
    ERROR = 12
    WAKE = 13


# exit.flags
IO_WRITE, IO_STRING, IO_REP = 1, 2, 4
MEM_WRITE, MEM_FETCH, MEM_UNMAPPED = 1, 2, 4
MSR_WRITE, MSR_KNOWN = 1, 2
EXC_ERROR_CODE, EXC_SOFTWARE = 1, 2

DIRTY_REGS, DIRTY_SREGS, DIRTY_EVENTS = 1, 2, 4
RUNNING, HALTED, STARTUP = 0, 1, 2  # events.halted
HALT_WAITS = 1  # config.flags

MSR_BLOCKS = (0x0000_0000, 0x4000_0000, 0xC000_0000, 0xC001_0000)
MSR_BLOCK = 0x2000
MSR_BITMAP_BYTES = len(MSR_BLOCKS) * 2 * MSR_BLOCK // 8

_u8, _u16, _u32, _u64, _i64 = (ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32,
                               ctypes.c_uint64, ctypes.c_int64)  # fmt: skip


class uc_x86_sys_exit(ctypes.Structure):
    _fields_ = [
        ("reason", _u32),
        ("insn_len", _u32),
        ("flags", _u32),
        ("code", _u32),
        ("value", _u64),
        ("gpa", _u64),
        ("gva", _u64),
        ("cpuid", _u32 * 4),
        ("insn_bytes", _u32),
        ("insn", _u8 * 16),
        ("pad", _u32),
    ]


class uc_x86_sys_segment(ctypes.Structure):
    _fields_ = [("base", _u64), ("limit", _u32), ("selector", _u16), ("attributes", _u16)]


class uc_x86_sys_table(ctypes.Structure):
    _fields_ = [("base", _u64), ("limit", _u64)]


class uc_x86_sys_regs(ctypes.Structure):
    _fields_ = [("gpr", _u64 * 16), ("rip", _u64), ("rflags", _u64)]


class uc_x86_sys_sregs(ctypes.Structure):
    _fields_ = [
        ("seg", uc_x86_sys_segment * 8),  # es cs ss ds fs gs ldtr tr
        ("gdtr", uc_x86_sys_table),
        ("idtr", uc_x86_sys_table),
        ("cr0", _u64),
        ("cr2", _u64),
        ("cr3", _u64),
        ("cr4", _u64),
        ("cr8", _u64),
        ("efer", _u64),
        ("xcr0", _u64),
        ("dr", _u64 * 6),  # dr0-dr3, dr6, dr7
    ]


class uc_x86_sys_events(ctypes.Structure):
    _fields_ = [
        ("pending", _u64),
        ("interrupt_shadow", _u32),
        ("nmi_masked", _u32),
        ("halted", _u32),
        ("pad", _u32),
    ]


class uc_x86_sys_page(ctypes.Structure):
    _fields_ = [
        ("abi", _u32),
        ("size", _u32),
        ("dirty", _u64),
        ("exit", uc_x86_sys_exit),
        ("regs", uc_x86_sys_regs),
        ("sregs", uc_x86_sys_sregs),
        ("events", uc_x86_sys_events),
    ]


class uc_x86_sys_config(ctypes.Structure):
    _fields_ = [("tsc_hz", _u64), ("tsc_epoch_ns", _i64), ("parallel", _u32), ("flags", _u32)]


class uc_x86_sys_cpuid_entry(ctypes.Structure):
    _fields_ = [
        ("function", _u32),
        ("index", _u32),
        ("flags", _u32),
        ("eax", _u32),
        ("ebx", _u32),
        ("ecx", _u32),
        ("edx", _u32),
    ]


def expected_abi() -> list[int]:
    """What `uc_x86_sys_abi` must report, in its order."""
    page = uc_x86_sys_page
    return [
        ABI,
        ctypes.sizeof(page),
        page.dirty.offset,
        page.exit.offset,
        page.regs.offset,
        page.sregs.offset,
        page.events.offset,
        ctypes.sizeof(uc_x86_sys_exit),
        uc_x86_sys_exit.insn.offset,
        ctypes.sizeof(uc_x86_sys_sregs),
        ctypes.sizeof(uc_x86_sys_events),
        ctypes.sizeof(uc_x86_sys_config),
        ctypes.sizeof(uc_x86_sys_cpuid_entry),
        MSR_BITMAP_BYTES,
    ]


# Offsets for struct-based access on the run path.
OFF_DIRTY = uc_x86_sys_page.dirty.offset
OFF_EXIT = uc_x86_sys_page.exit.offset
OFF_REGS = uc_x86_sys_page.regs.offset
OFF_SREGS = uc_x86_sys_page.sregs.offset
OFF_EVENTS = uc_x86_sys_page.events.offset
OFF_RIP = OFF_REGS + uc_x86_sys_regs.rip.offset
OFF_RAX = OFF_REGS + uc_x86_sys_regs.gpr.offset  # gpr[0]
OFF_CR0 = OFF_SREGS + uc_x86_sys_sregs.cr0.offset
OFF_INSN = OFF_EXIT + uc_x86_sys_exit.insn.offset
