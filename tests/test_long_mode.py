"""Guests in 64-bit mode: intercepts with paging (GVA vs GPA), RIP-relative
operands, and a triple fault."""

from __future__ import annotations

import struct

import mshv
from mshv.abi.tlfs import HV_INTERCEPT_ACCESS_READ, HV_INTERCEPT_ACCESS_WRITE
from tests.guests import CODE64, asm, identity_page_tables, long_mode_registers

MMIO_GPA = 0xD000_0000  # not RAM; the guest maps it at linear 0x40000000


def _vp(part: mshv.Partition, code: bytes) -> tuple[mshv.Vp, mshv.GuestMemory]:
    mem = mshv.GuestMemory(0x20_0000)
    mem.write(CODE64, code)
    identity_page_tables(mem.write, {1: MMIO_GPA})
    part.map_guest_memory(0, mem)
    vp = part.create_vp(0)
    vp.set_registers(long_mode_registers())  # type: ignore[arg-type]
    return vp, mem


GUEST = """
    mov dx, 0x3f8
    mov al, 0x4c                      ; 'L'
    out dx, al
    mov rbx, 0x40000010
    mov dword ptr [rbx], 0x12345678   ; MMIO write through paging
    mov eax, dword ptr [rbx + 4]      ; MMIO read
    mov qword ptr [rip + 0x200], rax  ; RAM: no intercept
    hlt
"""


def test_long_mode_io_and_paged_mmio(partition: mshv.Partition) -> None:
    code = asm(GUEST, 64, CODE64)
    vp, mem = _vp(partition, code)
    with mem:
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept)
        assert (out.port, out.rax & 0xFF, out.rip) == (0x3F8, 0x4C, CODE64 + 6)
        # 64-bit mode: CS.L set, and execution_state says long mode (efer_lma, cr0_pe).
        assert out.cs.attributes & (1 << 13)
        assert out.execution_state & (1 << 4) and out.execution_state & (1 << 2)
        vp.advance(out)

        write = vp.run()
        assert isinstance(write, mshv.UnmappedGpa)
        assert write.access_type == HV_INTERCEPT_ACCESS_WRITE
        assert (write.gpa, write.gva, write.gva_valid) == (MMIO_GPA + 0x10, 0x4000_0010, True)
        store = asm("mov dword ptr [rbx], 0x12345678", 64, write.rip)
        assert write.instruction_length == len(store)
        assert write.instruction_bytes[: len(store)] == store
        vp.advance(write)

        read = vp.run()
        assert isinstance(read, mshv.UnmappedGpa)
        assert read.access_type == HV_INTERCEPT_ACCESS_READ
        assert (read.gpa, read.gva) == (MMIO_GPA + 0x14, 0x4000_0014)
        vp.set_registers(rax=0xCAFEF00D)
        vp.advance(read)

        halt = vp.run()
        assert isinstance(halt, mshv.Halt)
        # The RIP-relative store right before HLT wrote the value the VMM supplied.
        assert struct.unpack("<Q", mem.read(halt.rip + 0x200, 8))[0] == 0xCAFEF00D


def test_rip_relative_mmio(partition: mshv.Partition) -> None:
    """A RIP-relative store whose target is not RAM is located and reported."""
    code = asm("mov dword ptr [rip + 0x3ffff000], 7\nhlt", 64, CODE64)
    vp, mem = _vp(partition, code)
    with mem:
        msg = vp.run()
        assert isinstance(msg, mshv.UnmappedGpa)
        target = CODE64 + len(code) - 1 + 0x3FFF_F000
        assert msg.gva == target
        assert msg.gpa == MMIO_GPA + (target - 0x4000_0000)
        assert msg.rip == CODE64


def test_triple_fault(partition: mshv.Partition) -> None:
    """#UD with an empty IDT escalates to a triple fault."""
    vp, mem = _vp(partition, asm("ud2", 64, CODE64))
    with mem:
        msg = vp.run()
        assert isinstance(msg, mshv.UnrecoverableException)
        assert msg.vp_index == 0
