"""A bare machine on `mshv.tcg.cpu.Cpu` for the patch-set tests: guest RAM
at GPA 0 and helpers to put a CPU in real or long mode. No hypervisor."""

from __future__ import annotations

import ctypes
import mmap
import struct

from mshv.tcg import abi
from mshv.tcg.abi import ExitReason
from mshv.tcg.cpu import Cpu
from tests.guests import PD, PDPT, PML4

RAM = 0x40_0000  # 4 MiB
TSC_HZ = 1_000_000_000
CODE64_ATTR = 0xA09B  # code, S, P, L, G
DATA_ATTR = 0xC093  # data, S, P, D/B, G
TSS_ATTR = 0x008B  # busy 64-bit TSS, P


class Ram:
    def __init__(self, size: int = RAM) -> None:
        self.map = mmap.mmap(-1, size)
        anchor = ctypes.c_char.from_buffer(self.map)
        self.address = ctypes.addressof(anchor)
        del anchor
        self.size = size

    def write(self, gpa: int, data: bytes) -> None:
        self.map[gpa : gpa + len(data)] = data

    def read(self, gpa: int, size: int) -> bytes:
        return bytes(self.map[gpa : gpa + size])

    def u64(self, gpa: int) -> int:
        return int(struct.unpack_from("<Q", self.map, gpa)[0])

    def close(self) -> None:
        self.map.close()


def new_cpu(ram: Ram, *, parallel: bool = True, perms: int = 7) -> Cpu:
    cpu = Cpu(TSC_HZ, parallel=parallel)
    cpu.map(0, ram.size, perms, ram.address)
    return cpu


def real_mode(cpu: Cpu, rip: int, **gprs: int) -> None:
    """CS=0 and every other segment 0, IVT at 0, RIP as given."""
    p = cpu.page
    for i in range(6):
        p.sregs.seg[i].base = 0
        p.sregs.seg[i].selector = 0
    p.regs.rip = rip
    p.regs.rflags = 2
    for name, value in gprs.items():
        p.regs.gpr[_GPR.index(name)] = value
    p.dirty = abi.DIRTY_REGS | abi.DIRTY_SREGS | abi.DIRTY_EVENTS


_GPR = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
IDT, GDT, TSS = 0x3000, 0x2000, 0x2800


def long_mode(cpu: Cpu, ram: Ram, rip: int, *, rsp: int = 0x7000) -> None:
    """64-bit mode, CPL 0, the first 2 MiB identity-mapped (a large page),
    an empty IDT at IDT (256 entries, to be filled by `idt_entry`), a TSS
    whose RSP0 and IST1 point at 0x6000 and 0x5000."""
    ram.write(PML4, struct.pack("<Q", PDPT | 7))  # present, writable, user
    ram.write(PDPT, struct.pack("<Q", PD | 7))
    ram.write(PD, struct.pack("<Q", 0x87))
    tss = bytearray(104)
    struct.pack_into("<Q", tss, 4, 0x6000)  # RSP0
    struct.pack_into("<Q", tss, 36, 0x5000)  # IST1
    ram.write(TSS, bytes(tss))
    p = cpu.page
    s = p.sregs
    s.cr0 = 0x8000_0011
    s.cr3 = PML4
    s.cr4 = 0x20  # PAE
    s.efer = 0x500  # LME | LMA
    code = (0, 0xFFFF_FFFF, 0x8, CODE64_ATTR)
    data = (0, 0xFFFF_FFFF, 0x10, DATA_ATTR)
    for i, seg in enumerate((data, code, data, data, data, data)):
        s.seg[i].base, s.seg[i].limit, s.seg[i].selector, s.seg[i].attributes = seg
    s.seg[6].attributes = 0  # no LDT
    s.seg[7].base, s.seg[7].limit, s.seg[7].selector, s.seg[7].attributes = (TSS, 103, 0x18,
                                                                             TSS_ATTR)  # fmt: skip
    s.idtr.base, s.idtr.limit = IDT, 256 * 16 - 1
    s.gdtr.base, s.gdtr.limit = GDT, 0x3F
    # GDT: null, code 0x8, data 0x10, TSS 0x18 (16 bytes), user code 0x2b / data 0x23
    gdt = struct.pack("<QQQ", 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF)
    gdt += _tss_descriptor(TSS, 103)
    gdt += struct.pack("<QQ", 0x00CFF3000000FFFF, 0x00AFFB000000FFFF)  # 0x28 data3, 0x30 code3
    ram.write(GDT, gdt)
    p.regs.rip = rip
    p.regs.rflags = 2
    p.regs.gpr[4] = rsp
    p.dirty = abi.DIRTY_REGS | abi.DIRTY_SREGS | abi.DIRTY_EVENTS


def _tss_descriptor(base: int, limit: int) -> bytes:
    low = (limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | 0x89 << 40 | ((base >> 24) & 0xFF) << 56
    return struct.pack("<QQ", low, base >> 32)


def idt_entry(ram: Ram, vector: int, handler: int, ist: int = 0, dpl: int = 0) -> None:
    gate = (handler & 0xFFFF) | 0x8 << 16 | ist << 32 | (0x8E | dpl << 5) << 40
    gate |= ((handler >> 16) & 0xFFFF) << 48
    ram.write(IDT + 16 * vector, struct.pack("<QQ", gate, handler >> 32))


def step_over(cpu: Cpu) -> None:
    """Complete an exit the way a VMM does: move RIP past the instruction."""
    cpu.page.regs.rip += cpu.page.exit.insn_len
    cpu.page.dirty |= abi.DIRTY_REGS


def run_to(cpu: Cpu, reason: ExitReason, limit: int = 1000) -> None:
    """Run (stepping over port writes) until an exit of `reason`."""
    for _ in range(limit):
        got = cpu.run()
        if got is reason:
            return
        if got is ExitReason.IO and cpu.page.exit.flags & abi.IO_WRITE:
            step_over(cpu)
            continue
        raise AssertionError(f"expected {reason.name}, got {got.name}: {cpu.error()}")
    raise AssertionError(f"no {reason.name} exit")
