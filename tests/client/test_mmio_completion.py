"""MMIO as the client API completes it: `msg.access` decodes the intercepted
instruction (size, direction, the stored value, the loaded register) and
`vp.complete_mmio_read`/`complete_mmio_write` finish it, in the forms Linux
uses, in 64-bit and real mode, on both engines."""

from __future__ import annotations

import pytest

import mshv
from mshv.decode import DecodeError
from tests.conftest import real_mode_vp
from tests.guests import CODE64, asm, identity_page_tables, long_mode_registers

MMIO_GPA = 0xD000_0000  # not RAM; mapped at linear 0x40000000

GUEST64 = """
    mov rbx, 0x40000010
    mov r9, 0x1122334455667788
    mov qword ptr [rbx], r9           ; a 64-bit store from R9
    mov word ptr [rbx + 2], 0xbeef    ; a store of an immediate
    mov rcx, -1
    mov ecx, dword ptr [rbx + 4]      ; a 32-bit load clears the upper half
    mov rdx, -1
    mov dh, byte ptr [rbx + 8]        ; an 8-bit load into DH keeps the rest
    movzx r10, word ptr [rbx + 12]
    movsx r11, byte ptr [rbx + 14]
    out 0x80, al
"""


def test_decoded_accesses_and_completions_in_64_bit_mode(partition: mshv.Partition) -> None:
    with mshv.GuestMemory(0x20_0000) as mem:
        mem.write(CODE64, asm(GUEST64, 64, CODE64))
        identity_page_tables(mem.write, {1: MMIO_GPA})
        partition.map_guest_memory(0, mem)
        vp = partition.create_vp(0)
        vp.set_registers(long_mode_registers())  # type: ignore[arg-type]
        loads = {0x14: 0xAABBCCDD, 0x18: 0x5A, 0x1C: 0x8001, 0x1E: 0x80}
        seen = []
        while True:
            msg = vp.run()
            if isinstance(msg, mshv.IoPortIntercept):
                break
            assert isinstance(msg, mshv.UnmappedGpa), msg
            a = msg.access
            seen.append((msg.gpa - MMIO_GPA, a.size, a.is_write, a.value))
            if a.is_write:
                vp.complete_mmio_write(msg)
            else:
                vp.complete_mmio_read(msg, loads[msg.gpa - MMIO_GPA])
        assert seen == [
            (0x10, 8, True, 0x1122334455667788), (0x12, 2, True, 0xBEEF),
            (0x14, 4, False, None), (0x18, 1, False, None),
            (0x1C, 2, False, None), (0x1E, 1, False, None),
        ]  # fmt: skip
        regs = vp.get_registers("rcx", "rdx", "r10", "r11")
        assert regs == {"rcx": 0xAABBCCDD, "rdx": 0xFFFF_FFFF_FFFF_5AFF, "r10": 0x8001,
                        "r11": 0xFFFF_FFFF_FFFF_FF80}  # fmt: skip


def test_real_mode_load_and_the_wrong_completion(partition: mshv.Partition) -> None:
    # DS base 0xd0000000 (set by the VMM): MMIO from real mode.
    vp, mem = real_mode_vp(partition, asm("mov ax, word ptr [0x20]\nout 0x80, al"))
    with mem:
        ds = vp.get("ds")
        assert isinstance(ds, mshv.Segment)
        vp.set_registers(ds=mshv.Segment(MMIO_GPA, 0xFFFF, 0, ds.attributes), rax=0xFFFF_0000)
        msg = vp.run()
        assert isinstance(msg, mshv.UnmappedGpa) and msg.bitness == 16
        assert (msg.access.size, msg.access.is_write) == (2, False)
        with pytest.raises(ValueError, match="loads; use complete_mmio_read"):
            vp.complete_mmio_write(msg)
        vp.complete_mmio_read(msg, 0x1234)
        assert isinstance(vp.run(), mshv.IoPortIntercept)
        assert vp.get("rax") == 0xFFFF_1234


def test_an_instruction_it_does_not_emulate_is_named(partition: mshv.Partition) -> None:
    vp, mem = real_mode_vp(partition, asm("inc word ptr [0x20]"))
    with mem:
        ds = vp.get("ds")
        assert isinstance(ds, mshv.Segment)
        vp.set_registers(ds=mshv.Segment(MMIO_GPA, 0xFFFF, 0, ds.attributes))
        msg = vp.run()
        assert isinstance(msg, mshv.UnmappedGpa)
        with pytest.raises(DecodeError, match="only MOV, MOVZX and MOVSX"):
            msg.access  # noqa: B018 - the property decodes


@pytest.mark.parametrize(("source", "r9"), [
    ("mov qword ptr [rbx], r9", 0),  # REX.W|B: without it, a 4-byte store from ECX
    ("mov dword ptr [rbx], r9d", 7),  # REX.B: without it, a store from ECX (0)
])  # fmt: skip
def test_rex_prefixed_stores_are_reported_whole(partition: mshv.Partition, source: str,
                                                r9: int) -> None:  # fmt: skip
    """The KVM engine finds the instruction's start from the exit: an access
    narrower than KVM's, or storing another value, is not it. (Two stores of
    one size and value that differ only in a prefix are indistinguishable
    there; docs/conformance.md.)"""
    with mshv.GuestMemory(0x20_0000) as mem:
        code = asm(f"mov rbx, 0x40000010\n{source}", 64, CODE64)
        mem.write(CODE64, code)
        identity_page_tables(mem.write, {1: MMIO_GPA})
        partition.map_guest_memory(0, mem)
        vp = partition.create_vp(0)
        vp.set_registers(long_mode_registers())  # type: ignore[arg-type]
        vp.set_registers(r9=r9)
        msg = vp.run()
        assert isinstance(msg, mshv.UnmappedGpa)
        store = code[7:]
        assert msg.rip == CODE64 + 7 and msg.instruction_bytes[: len(store)] == store
