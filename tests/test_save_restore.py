"""Save every VP's registers and state plus guest memory, restore them into a
new partition, and the guest continues exactly where it was.

The guest (real mode, x2APIC, SSE) keeps its state everywhere a restore
could lose it: a vector in XMM0, a running sum in ESI and in memory, an MSR
it reads back late, and an interrupt the VMM asserts while the guest has
interrupts off, so it waits in the local APIC's IRR across the save.
"""

from __future__ import annotations

import struct

import mshv
from mshv.abi.tlfs import HV_PARTITION_PROPERTY_REFERENCE_TIME as REFERENCE_TIME
from mshv.abi.uapi import hv_local_interrupt_controller_state
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry

SUM_AT = 0x5000
XMM_AT = 0x5100
PATTERN = bytes(range(0x30, 0x40))
HANDLER = 0x2000
VECTOR = 0x40
STI_AT, MSR_AT, END = 30, 35, 40  # counter values where things happen
SAVE_AT = 20

GUEST = asm(
    X2APIC_ON
    + f"""
    mov eax, cr4
    or eax, 0x600           ; OSFXSR | OSXMMEXCPT
    mov cr4, eax
    mov eax, cr0
    and eax, 0xfffffffb     ; no EM
    or eax, 2               ; MP
    mov cr0, eax
    mov ecx, 0x176          ; SYSENTER_EIP: an MSR to read back after the restore
    mov eax, 0x1234
    xor edx, edx
    wrmsr
    movdqu xmm0, [{XMM_AT}]  ; a vector register to carry across
    mov dword ptr [{XMM_AT}], 0
    xor esi, esi
    xor ebx, ebx
next:
    inc ebx
    mov eax, ebx
    add esi, eax
    mov dword ptr [{SUM_AT}], esi
    out 0x80, eax           ; the counter
    cmp eax, {STI_AT}
    jne no_sti
    sti                     ; the interrupt pending since before the save comes in:
    nop                     ; here on hardware; at the OUT's exit on a host whose
    out 0x83, al            ; KVM emulates CPL 0 code (it looks only on entry)
    cli
no_sti:
    cmp eax, {MSR_AT}
    jne next
    mov ecx, 0x176
    rdmsr
    out 0x82, eax
    movdqu [{XMM_AT} + 16], xmm0
    jmp next
    """
)
ISR = asm(f"push eax\nmov al, 0x99\nout 0x81, al\n{X2APIC_EOI}pop eax\niret", 16, HANDLER)


def _boot(device: mshv.Device) -> tuple[mshv.Partition, mshv.Vp, mshv.GuestMemory]:
    part = device.create_partition(lapic=True)
    mem = mshv.GuestMemory(0x10000)
    mem.write(0x1000, GUEST)
    mem.write(XMM_AT, PATTERN)
    mem.write(HANDLER, ISR)
    mem.write(*ivt_entry(VECTOR, HANDLER))
    part.map_guest_memory(0, mem)
    vp = part.create_vp(0)
    cs = vp.get("cs")
    assert isinstance(cs, mshv.Segment)
    vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2,
                     rsp=0x8000)  # fmt: skip
    return part, vp, mem


def _run(vp: mshv.Vp, trace: list[tuple[int, int]], until: int, part: mshv.Partition) -> None:
    """Run, recording (port, value) of each OUT, until the counter reaches `until`."""
    while True:
        msg = vp.run()
        assert isinstance(msg, mshv.IoPortIntercept), msg
        value = msg.rax & 0xFFFF_FFFF
        trace.append((msg.port, value))
        vp.advance(msg)
        if msg.port == 0x80 and value == 10:
            part.assert_interrupt(VECTOR, 0)  # IF is off: it waits in the IRR
        if msg.port == 0x80 and value == until:
            return


def test_continues_in_a_new_partition(device: mshv.Device) -> None:
    # The reference: one partition, start to end.
    part, vp, mem = _boot(device)
    with part, mem:
        expected: list[tuple[int, int]] = []
        _run(vp, expected, END, part)
        expected_xmm0, expected_rsi = vp.get("xmm0"), vp.get("rsi")
    assert (0x81, 0x99) in expected and (0x82, 0x1234) in expected

    # Stop at SAVE_AT, save, throw the partition away, restore, go on.
    part, vp, mem = _boot(device)
    with part, mem:
        trace: list[tuple[int, int]] = []
        _run(vp, trace, SAVE_AT, part)
        saved = vp.save_state()
        image = mem.read(0, 0x10000)
        ref_time = part.get_property(REFERENCE_TIME)
    assert saved.lapic is not None
    irr = hv_local_interrupt_controller_state.from_buffer_copy(saved.lapic).apic_irr
    assert irr[VECTOR // 32] >> VECTOR % 32 & 1, "the asserted vector should wait in the IRR"

    with device.create_partition(lapic=True) as new, mshv.GuestMemory(0x10000) as new_mem:
        new_mem.write(0, image)
        new.map_guest_memory(0, new_mem)
        new.set_property(REFERENCE_TIME, ref_time)
        new_vp = new.create_vp(0)
        new_vp.restore_state(saved)
        # Everything reads back as saved; the TSC runs on (KVM on some hosts ignores writes).
        again = new_vp.save_state()
        assert {n: v for n, v in again.registers.items() if n != "tsc"} == {
            n: v for n, v in saved.registers.items() if n != "tsc"
        }
        assert again.xsave == saved.xsave and again.lapic is not None
        _run(new_vp, trace, END, new)
        assert trace == expected
        assert new_vp.get("xmm0") == expected_xmm0 == int.from_bytes(PATTERN, "little")
        assert new_mem.read(XMM_AT, 32) == bytes(4) + PATTERN[4:] + PATTERN
        assert new_vp.get("rsi") == expected_rsi
        assert struct.unpack("<I", new_mem.read(SUM_AT, 4))[0] == expected_rsi
