"""Interrupts never disturb what they interrupt: a guest that checksums and
rewrites 16 MiB, demand-paging it with its own #PF handler, gives the same
result while the hypervisor's local APIC timer interrupts it at 1 kHz and
the VMM sends it NMIs at 100 Hz as with neither. On the software engine:
KVM here runs CPL 0 code about 2000 times slower, far too slow for this
much guest code."""

from __future__ import annotations

import hashlib
import random
import struct
import threading

import mshv
from mshv.abi.tlfs import hv_interrupt_type as IT
from tests.guests import asm

REGION, REGION_SIZE = 0x20_0000, 0x100_0000  # 2 MiB .. 18 MiB, demand-paged
PT = 0x10000  # the region's page tables: 8 tables of 512 PTEs
PML4, PDPT, PD = 0x8000, 0x9000, 0xA000
IDT, GDT = 0x2000, 0x3000
TIMER_COUNT, PF_COUNT, RESULT = 0x5000, 0x5008, 0x5010
PASSES = 40
NMI_COUNT = 0x5018

GUEST = f"""
    mov ecx, 0x1b               ; x2APIC on, software-enabled
    rdmsr
    or eax, 0xc00
    wrmsr
    mov ecx, 0x80f
    mov eax, 0x1ff
    xor edx, edx
    wrmsr
    test r15, r15
    jz no_timer
    mov ecx, 0x83e              ; divide by 1
    mov eax, 0xb
    wrmsr
    mov ecx, 0x832              ; LVT timer: periodic, vector 0x40
    mov eax, 0x20040
    wrmsr
    mov ecx, 0x838              ; 1 ms at 1 GHz
    mov eax, 1000000
    wrmsr
no_timer:
    sti
    xor r8, r8
    mov r9, 0x100000001b3
    mov r14, {PASSES}
one_pass:
    mov rdi, {PT}               ; unmap the region and take every page again
    mov rcx, {REGION_SIZE // 4096}
    xor eax, eax
    rep stosq
    mov rax, cr3
    mov cr3, rax
    mov rsi, {REGION}
    mov rcx, {REGION_SIZE // 8}
mix:
    mov rax, qword ptr [rsi]
    xor rax, r8
    rol rax, 13
    add r8, rax
    imul r8, r9
    mov qword ptr [rsi], r8
    add rsi, 8
    dec rcx
    jnz mix
    dec r14
    jnz one_pass
    cli
    mov qword ptr [{RESULT}], r8
    mov ecx, 0x838              ; stop the timer
    xor eax, eax
    xor edx, edx
    wrmsr
    out 0x80, al
"""
PAGE_FAULT = f"""
    push rax
    push rbx
    mov rax, cr2
    mov rbx, rax
    sub rbx, {REGION}
    shr rbx, 12
    shl rbx, 3
    add rbx, {PT}
    shr rax, 12
    shl rax, 12
    or rax, 3
    mov qword ptr [rbx], rax
    inc qword ptr [{PF_COUNT}]
    pop rbx
    pop rax
    add rsp, 8
    iretq
"""
TIMER = f"""
    push rax
    push rcx
    push rdx
    inc qword ptr [{TIMER_COUNT}]
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
    pop rdx
    pop rcx
    pop rax
    iretq
"""


NMI = f"""
    inc qword ptr [{NMI_COUNT}]
    iretq
"""


def _gate(handler: int) -> bytes:
    low = (handler & 0xFFFF) | 0x8 << 16 | 0x8E << 40 | ((handler >> 16) & 0xFFFF) << 48
    return struct.pack("<QQ", low, handler >> 32)


def _run(timer: bool, pattern: bytes) -> tuple[int, bytes, int, int, int]:
    size = REGION + REGION_SIZE
    with mshv.Device(engine="tcg") as dev, dev.create_partition(lapic=True) as part, \
            mshv.GuestMemory(size) as mem:  # fmt: skip
        mem.write(REGION, pattern)
        mem.write(0x1000, asm(GUEST, 64, 0x1000))
        mem.write(0x4000, asm(PAGE_FAULT, 64, 0x4000))
        mem.write(0x4400, asm(TIMER, 64, 0x4400))
        mem.write(0x4800, asm(NMI, 64, 0x4800))
        mem.write(IDT + 16 * 2, _gate(0x4800))
        mem.write(IDT + 16 * 14, _gate(0x4000))
        mem.write(IDT + 16 * 0x40, _gate(0x4400))
        mem.write(GDT, struct.pack("<QQQ", 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF))
        mem.write(PML4, struct.pack("<Q", PDPT | 3))
        mem.write(PDPT, struct.pack("<Q", PD | 3))
        mem.write(PD, struct.pack("<Q", 0x83))  # code, tables, stack: a large page
        for i in range(REGION_SIZE // 0x20_0000):
            mem.write(PD + 8 * (1 + i), struct.pack("<Q", (PT + 0x1000 * i) | 3))
        part.map_guest_memory(0, mem)
        vp = part.create_vp(0)
        data = mshv.Segment(0, 0xFFFF_FFFF, 0x10, 0xC093)
        vp.set_registers(
            cr3=PML4, cr4=1 << 5, efer=1 << 8 | 1 << 10, cr0=0x8000_0011,
            cs=mshv.Segment(0, 0xFFFF_FFFF, 0x8, 0xA09B), ds=data, es=data, ss=data,
            gdtr=mshv.Table(GDT, 0x17), idtr=mshv.Table(IDT, 0xFFF),
            rip=0x1000, rflags=2, rsp=0x7000, r15=1 if timer else 0,
        )  # fmt: skip
        done = threading.Event()

        def nmis() -> None:
            while not done.wait(0.01):
                part.assert_interrupt(0, 0, IT.HV_X64_INTERRUPT_TYPE_NMI)

        sender = threading.Thread(target=nmis)
        if timer:
            sender.start()
        try:
            msg = vp.run()  # interrupts, EOIs and page faults stay inside
        finally:
            done.set()
            if timer:
                sender.join()
        assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x80, msg
        (result,) = struct.unpack("<Q", mem.read(RESULT, 8))
        digest = hashlib.sha256(mem.read(REGION, REGION_SIZE)).digest()
        timer_count, pf_count, _, nmi_count = struct.unpack("<4Q", mem.read(TIMER_COUNT, 32))
        return result, digest, timer_count, pf_count, nmi_count


def test_timer_interrupts_change_nothing() -> None:
    pattern = random.Random(0x6D736876).randbytes(REGION_SIZE)
    quiet = _run(False, pattern)
    busy = _run(True, pattern)
    assert quiet[2] == quiet[4] == 0
    assert busy[2] >= 200, f"only {busy[2]} timer interrupts arrived"
    assert busy[4] >= 10, f"only {busy[4]} NMIs arrived"
    assert quiet[3] == busy[3] == PASSES * REGION_SIZE // 4096  # every page, every pass
    assert busy[:2] == quiet[:2]  # bit-identical checksum and memory
