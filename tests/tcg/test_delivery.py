"""Patch set, system mode: exceptions and interrupts are delivered through
the guest's IDT in real and long mode (privilege change, IST, error codes,
#DF, a triple fault as an exit), an exception can be intercepted before
delivery, and SYSCALL/SYSENTER enter the kernel as hardware does."""

from __future__ import annotations

import struct

from mshv.tcg import abi
from mshv.tcg.abi import ExitReason
from mshv.tcg.cpu import Cpu
from tests.guests import asm, ivt_entry
from tests.tcg.machine import IDT, Ram, idt_entry, long_mode, real_mode, step_over


def out_values(cpu: Cpu, count: int) -> list[int]:
    """Run, collecting the value of each OUT (and stepping over it)."""
    seen: list[int] = []
    while len(seen) < count:
        reason = cpu.run()
        assert reason is ExitReason.IO, (reason, cpu.error())
        seen.append(cpu.page.exit.value)
        step_over(cpu)
    return seen


def test_real_mode_int_and_divide_error_use_the_ivt(ram: Ram, cpu: Cpu) -> None:
    ram.write(*ivt_entry(0x21, 0x200))
    ram.write(*ivt_entry(0, 0x300))
    ram.write(0x200, asm("mov al, 0x21\nout 0x80, al\niret", 16, 0x200))
    # #DE: the handler moves the return address past the 2-byte DIV
    ram.write(0x300, asm("mov al, 0xde\nout 0x80, al\nmov bp, sp\nadd word ptr [bp], 2\niret",
                         16, 0x300))  # fmt: skip
    code = asm("int 0x21\nxor dx, dx\nxor cx, cx\nmov ax, 5\ndiv cx\nmov al, 0xee\nout 0x80, al\n"
               "hlt", 16, 0x1000)  # fmt: skip
    ram.write(0x1000, code)
    real_mode(cpu, 0x1000, rsp=0x800)
    assert out_values(cpu, 3) == [0x21, 0xDE, 0xEE]


def test_long_mode_page_fault_with_error_code_and_cr2(ram: Ram, cpu: Cpu) -> None:
    handler = asm("mov rax, cr2\nout 0x80, eax\npop rax\nout 0x81, eax\nhlt", 64, 0x4000)
    ram.write(0x4000, handler)
    idt_entry(ram, 14, 0x4000)
    code = asm("mov rbx, 0x40000000\nmov dword ptr [rbx], 1\nhlt", 64, 0x1000)
    ram.write(0x1000, code)
    long_mode(cpu, ram, 0x1000)
    seen = out_values(cpu, 2)
    assert seen == [0x4000_0000, 0x2]  # CR2; error code: write, not present, CPL 0


def test_user_mode_interrupt_switches_to_rsp0_and_ist(ram: Ram, cpu: Cpu) -> None:
    # int 0x80 from CPL 3 lands on TSS.RSP0 (0x6000); #UD uses IST1 (0x5000)
    ram.write(0x4000, asm("mov rax, rsp\nout 0x80, eax\nmov rax, [rsp + 8]\nout 0x81, eax\n"
                          "iretq", 64, 0x4000))  # fmt: skip
    ram.write(0x4100, asm("mov rax, rsp\nout 0x82, eax\nhlt", 64, 0x4100))
    idt_entry(ram, 0x80, 0x4000, dpl=3)
    idt_entry(ram, 6, 0x4100, ist=1)
    user = asm("int 0x80\nud2", 64, 0x1800)
    ram.write(0x1800, user)
    long_mode(cpu, ram, 0x1000)
    # drop to CPL 3 with iretq: ss 0x2b, rsp 0x7800, rflags, cs 0x33, rip 0x1800
    ram.write(0x1000, asm("push 0x2b\npush 0x7800\npush 2\npush 0x33\npush 0x1800\niretq", 64,
                          0x1000))  # fmt: skip
    seen = out_values(cpu, 3)
    assert seen[0] == 0x6000 - 40  # five qwords pushed on RSP0
    assert seen[1] == 0x33  # the user CS in the frame
    assert seen[2] == 0x5000 - 40  # IST1


def test_intercepted_page_fault_keeps_the_guest_cr2(ram: Ram, cpu: Cpu) -> None:
    cpu.exception_intercepts(1 << 14)
    first = "mov rbx, 0x40000000\nmov dword ptr [rbx], 1\n"
    second = "mov rbx, 0x50000000\nmov eax, dword ptr [rbx]\n"
    ram.write(0x1000, asm(first + second + "hlt", 64, 0x1000))
    long_mode(cpu, ram, 0x1000)
    cpu.page.sregs.cr2 = 0x1234
    steps = (  # fault address, error code, where the faulting instruction is, where to resume
        (0x4000_0000, 2, len(asm("mov rbx, 0x40000000", 64)), len(asm(first, 64))),
        (0x5000_0000, 0, len(asm(first + "mov rbx, 0x50000000", 64)), len(asm(first + second, 64))),
    )
    for address, error, at, resume in steps:
        assert cpu.run() is ExitReason.EXCEPTION
        e = cpu.page.exit
        assert (e.code, e.flags & abi.EXC_ERROR_CODE, e.value, e.gpa) == (14, 1, error, address)
        assert cpu.page.regs.rip == 0x1000 + at
        assert cpu.page.sregs.cr2 == 0x1234
        cpu.page.regs.rip = 0x1000 + resume  # the VMM skips the instruction
        cpu.page.dirty |= abi.DIRTY_REGS
    # the second fault was not taken for a double fault
    assert cpu.run() is ExitReason.HLT


def test_faults_while_delivering_escalate_to_a_triple_fault(ram: Ram, cpu: Cpu) -> None:
    # #UD goes to a handler on an unmapped page: its fetch page-faults; the
    # #PF gate is not present (#NP while delivering #PF: a double fault),
    # nor is the #DF gate: triple fault, an exit.
    ram.write(0x1000, asm("ud2", 64, 0x1000))
    long_mode(cpu, ram, 0x1000)
    idt_entry(ram, 6, 0x4000_0000)
    assert cpu.run() is ExitReason.SHUTDOWN


def test_double_fault_is_delivered(ram: Ram, cpu: Cpu) -> None:
    # INT 0x50 through a not-present gate raises #NP, whose gate is not
    # present either: two contributory faults make #DF, taken on IST1.
    ram.write(0x4000, asm("pop rax\nout 0x80, eax\nmov rax, rsp\nout 0x81, eax\nhlt", 64,
                          0x4000))  # fmt: skip
    idt_entry(ram, 8, 0x4000, ist=1)
    ram.write(0x1000, asm("int 0x50", 64, 0x1000))
    long_mode(cpu, ram, 0x1000)
    assert out_values(cpu, 2) == [0, 0x5000 - 40]  # error code 0; IST1 stack


def test_syscall_and_sysret_round_trip(ram: Ram, cpu: Cpu) -> None:
    kernel = asm("mov rax, rcx\nout 0x80, eax\nmov rax, r11\nout 0x81, eax", 64, 0x4000)
    kernel += bytes.fromhex("480f07")  # sysretq
    ram.write(0x4000, kernel)
    user = asm("mov ebx, 1\nsyscall\nmov eax, ebx\nout 0x82, eax\nhlt", 64, 0x1800)
    ram.write(0x1800, user)
    long_mode(cpu, ram, 0x1000)
    # STAR: kernel CS 0x08 (SS 0x10); SYSRET CS = 0x20+16 = 0x30|3, SS 0x28|3
    cpu.msr(0xC000_0081, 0x0020_0008 << 32)
    cpu.msr(0xC000_0082, 0x4000)  # LSTAR
    cpu.msr(0xC000_0084, 0x200)  # FMASK: IF
    cpu.page.sregs.efer |= 1  # SCE
    ram.write(0x1000, asm("push 0x2b\npush 0x7800\npush 0x202\npush 0x33\npush 0x1800\niretq",
                          64, 0x1000))  # fmt: skip
    # out from CPL 3 needs IOPL 3
    ram.write(0x1000, asm("push 0x2b\npush 0x7800\npush 0x3202\npush 0x33\npush 0x1800\niretq",
                          64, 0x1000))  # fmt: skip
    seen = out_values(cpu, 3)
    assert seen[0] == 0x1800 + 7  # RCX: after SYSCALL
    assert seen[1] & 0x200  # R11: user RFLAGS with IF
    assert seen[2] == 1
    cs = cpu.page.sregs.seg[1]
    assert (cs.selector, cs.attributes >> 5 & 3) == (0x33, 3)


def test_sysenter_enters_at_the_msrs(ram: Ram, cpu: Cpu) -> None:
    ram.write(0x4000, asm("mov rax, rsp\nout 0x80, eax\nhlt", 64, 0x4000))
    ram.write(0x1000, asm("sysenter", 64, 0x1000))
    long_mode(cpu, ram, 0x1000)
    cpu.msr(0x174, 0x8)
    cpu.msr(0x175, 0x6800)
    cpu.msr(0x176, 0x4000)
    assert out_values(cpu, 1) == [0x6800]


def test_idt_limit_and_vectors_in_16_bit_real_mode_iret(ram: Ram, cpu: Cpu) -> None:
    # the IDT pointer moved: LIDT in real mode relocates the IVT
    ram.write(0x5000 + 4 * 0x30, struct.pack("<HH", 0x600, 0))
    ram.write(0x600, asm("mov al, 0x30\nout 0x80, al\niret", 16, 0x600))
    ram.write(0x900, struct.pack("<HI", 0x3FF, 0x5000))
    ram.write(0x1000, asm("lidt [0x900]\nint 0x30\nmov al, 1\nout 0x80, al\nhlt", 16, 0x1000))
    real_mode(cpu, 0x1000, rsp=0x800)
    assert out_values(cpu, 2) == [0x30, 1]
    assert IDT  # long-mode IDT location used by the other tests


def test_protected_mode_interrupt_from_ring_3_uses_the_tss_stack(ram: Ram, cpu: Cpu) -> None:
    """32-bit protected mode: INT 0x30 from CPL 3 through a DPL 3 interrupt
    gate switches to the TSS's SS0:ESP0 and pushes SS, ESP, EFLAGS, CS, EIP."""
    gdt = struct.pack(
        "<6Q",
        0,
        0x00CF9A000000FFFF,  # 0x08 code, ring 0
        0x00CF92000000FFFF,  # 0x10 data, ring 0
        0x00CFFA000000FFFF,  # 0x1b code, ring 3
        0x00CFF2000000FFFF,  # 0x23 data, ring 3
        0x0000890060000067,  # 0x28 32-bit TSS at 0x6000
    )
    ram.write(0x2000, gdt)
    tss = bytearray(104)
    struct.pack_into("<II", tss, 4, 0x9000, 0x10)  # ESP0, SS0
    ram.write(0x6000, bytes(tss))
    gate = 0x4000 | 0x08 << 16 | 0xEE00 << 32  # 32-bit interrupt gate, DPL 3, P
    ram.write(0x3000 + 8 * 0x30, struct.pack("<Q", gate))
    ram.write(0x4000, asm("mov eax, esp\nout 0x80, eax\nmov eax, [esp + 16]\nout 0x81, eax\n"
                          "hlt", 32, 0x4000))  # fmt: skip
    ram.write(0x5000, asm("int 0x30", 32, 0x5000))
    # ring 0 code: load TR, then IRET to ring 3 at 0x5000 with ESP 0x8000
    ram.write(0x1000, asm("mov ax, 0x28\nltr ax\npush 0x23\npush 0x8000\npush 0x3202\n"
                          "push 0x1b\npush 0x5000\niretd", 32, 0x1000))  # fmt: skip
    p = cpu.page
    s = p.sregs
    s.cr0 = 0x11
    s.gdtr.base, s.gdtr.limit = 0x2000, len(gdt) - 1
    s.idtr.base, s.idtr.limit = 0x3000, 0x7FF
    flat = [(0, 0xFFFF_FFFF, 0x10, 0xC093)] * 6
    flat[1] = (0, 0xFFFF_FFFF, 0x08, 0xC09B)
    for i, seg in enumerate(flat):
        s.seg[i].base, s.seg[i].limit, s.seg[i].selector, s.seg[i].attributes = seg
    s.seg[7].base, s.seg[7].limit, s.seg[7].selector, s.seg[7].attributes = 0, 0xFFFF, 0, 0x8B
    p.regs.rip, p.regs.rflags, p.regs.gpr[4] = 0x1000, 2, 0x7000
    p.dirty = abi.DIRTY_REGS | abi.DIRTY_SREGS | abi.DIRTY_EVENTS
    assert out_values(cpu, 2) == [0x9000 - 20, 0x23]  # on ESP0; the user SS in the frame
