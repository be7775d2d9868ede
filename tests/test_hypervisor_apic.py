"""The hypervisor's own local APIC, on both engines: its timer in
TSC-deadline mode, the task priority through CR8, and the APIC INIT/SIPI
intercept (the level-triggered EOI in program order: test_level_eoi_order)."""

from __future__ import annotations

import struct
import time

import mshv
from mshv.abi import tlfs as t
from mshv.abi.tlfs import hv_intercept_type as I
from tests.conftest import real_mode_vp
from tests.guests import (
    CODE64,
    X2APIC_EOI,
    X2APIC_ON,
    asm,
    identity_page_tables,
    ivt_entry,
    long_mode_registers,
)

VECTOR = 0x41
CLOCK_FREQUENCY = t.hv_partition_property_code.HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY


def test_tsc_deadline_timer_wakes_a_halted_vp(device: mshv.Device, engine: str) -> None:
    """The guest arms the TSC deadline 2 ms ahead and halts; the timer's
    interrupt ends the HLT (waiting inside RUN_VP) and its handler runs."""
    handler = asm("mov al, 0x99\nout 0x81, al\n" + X2APIC_EOI + "iret", 16, 0x2000)
    code = asm(
        X2APIC_ON
        + f"""
        mov ecx, 0x832          ; LVT timer: TSC-deadline mode, vector {VECTOR:#x}
        mov eax, 0x40000 | {VECTOR:#x}
        xor edx, edx
        wrmsr
        rdtsc
        add eax, edi            ; EDI: 2 ms of TSC ticks
        adc edx, 0
        mov ecx, 0x6e0          ; IA32_TSC_DEADLINE
        wrmsr
        sti
        hlt
        out 0x82, al
        """
    )
    with device.create_partition(lapic=True) as part:
        hz = part.get_property(CLOCK_FREQUENCY)
        vp, mem = real_mode_vp(part, code, rsp=0x800, rdi=hz // 500)
        with mem:
            mem.write(*ivt_entry(VECTOR, 0x2000))
            mem.write(0x2000, handler)
            t0 = time.monotonic()
            msg = vp.run()
            waited = time.monotonic() - t0
            assert isinstance(msg, mshv.IoPortIntercept), msg
            assert (msg.port, msg.rax & 0xFF) == (0x81, 0x99)
            assert waited >= 0.0015  # not before the deadline
            vp.advance(msg)
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x82


# 64-bit: x2APIC on, CR8 = 15 masks every vector, the VMM asserts one at the
# first OUT; it stays pending until CR8 goes back to 0.
TPR_GUEST = (
    X2APIC_ON
    + """
mov eax, 15
mov cr8, rax
sti
out 0x80, al
out 0x81, al
xor eax, eax
mov cr8, rax
out 0x82, al
"""
)
TPR_HANDLER = "out 0x90, al\n" + X2APIC_EOI + "iretq"
IDT, GDT, HANDLER64 = 0x4000, 0x5000, 0x3000


def test_cr8_masks_until_lowered(device: mshv.Device) -> None:
    """The APIC sees the guest's CR8 (the TPR): a vector waits while CR8
    masks it and is taken once CR8 is lowered, before the next OUT."""
    with device.create_partition(lapic=True) as part, mshv.GuestMemory(0x20_0000) as mem:
        mem.write(CODE64, asm(TPR_GUEST, 64, CODE64))
        mem.write(HANDLER64, asm(TPR_HANDLER, 64, HANDLER64))
        mem.write(IDT + 16 * VECTOR, struct.pack("<HHBBHII", HANDLER64, 8, 0, 0x8E, 0, 0, 0))
        mem.write(GDT, struct.pack("<3Q", 0, 0x0020_9A00_0000_0000, 0x0000_9200_0000_0000))
        identity_page_tables(mem.write)
        part.map_guest_memory(0, mem)
        vp = part.create_vp(0)
        regs = long_mode_registers()
        regs.update(idtr=mshv.Table(IDT, 0xFFF), gdtr=mshv.Table(GDT, 23), rsp=0x8000)
        vp.set_registers(regs)  # type: ignore[arg-type]
        ports: list[int] = []
        while len(ports) < 4:
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept), msg
            ports.append(msg.port)
            if msg.port == 0x80:
                assert msg.cr8 == 15
                part.assert_interrupt(VECTOR, 0)
            vp.advance(msg)
        assert ports == [0x80, 0x81, 0x90, 0x82]


def test_sipi_intercept_gives_the_sipi_to_the_vmm(device: mshv.Device) -> None:
    kind = I.HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI
    with device.create_partition(lapic=True) as part:
        part.install_intercept(kind, t.HV_INTERCEPT_ACCESS_MASK_EXECUTE)
        code = asm(
            X2APIC_ON
            + """
            mov ecx, 0x830      ; INIT, then SIPI vector 0x42, to APIC 1
            mov edx, 1
            mov eax, 0x4500
            wrmsr
            mov eax, 0x4642
            wrmsr
            out 0x80, al
            """
        )
        vp, mem = real_mode_vp(part, code)
        with mem:
            ap = part.create_vp(1)
            msg = vp.run()
            assert isinstance(msg, mshv.SipiIntercept), msg
            assert (msg.target_vp_index, msg.vector, msg.vp_index) == (1, 0x42, 0)
            assert ap.get("internal_activity_state") == 1  # INIT came; the SIPI did not
            msg = vp.run()  # the sender goes on past its WRMSR
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x80
