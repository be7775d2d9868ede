"""The hypervisor's own local APIC, on the software engine: its timer in
TSC-deadline mode, the xAPIC page, the level-triggered EOI reported in
program order, and the APIC INIT/SIPI intercept. Where KVM's APIC can do the
same, the test runs there too."""

from __future__ import annotations

import threading
import time

import pytest

import mshv
from mshv.abi import tlfs as t
from mshv.abi.tlfs import hv_intercept_type as I
from tests.conftest import real_mode_vp
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry

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


def _xapic_guest() -> tuple[bytes, bytes]:
    """Unreal-mode-free xAPIC access from real mode: FS based at the APIC
    page (0xFEE00000) through a segment the VMM loads."""
    main = asm(
        """
        mov ecx, 0x1b           ; IA32_APIC_BASE: global enable, xAPIC mode
        rdmsr
        or eax, 0x800
        wrmsr
        mov dword ptr fs:[0xf0], 0x1ff   ; SVR: software enable
        mov eax, dword ptr fs:[0x30]     ; version
        out 0x80, eax
        sti
        hlt
        out 0x83, al
        """
    )
    # The level-triggered vector's handler: OUT 0x10, the EOI write, OUT 0x12.
    handler = asm("out 0x10, al\nmov dword ptr fs:[0xb0], 0\nout 0x12, al\niret", 16, 0x2000)
    return main, handler


def test_level_eoi_through_the_xapic_page_in_program_order() -> None:
    """The hypervisor's APIC (software engine) reports the EOI right after the
    instruction that wrote it: after the OUT before it, before the OUT after."""
    main, handler = _xapic_guest()
    with mshv.Device(engine="tcg") as device, device.create_partition(lapic=True) as part:
        vp, mem = real_mode_vp(part, main, rsp=0x800)
        with mem:
            mem.write(*ivt_entry(VECTOR, 0x2000))
            mem.write(0x2000, handler)
            vp.set_registers(fs=mshv.Segment(0xFEE0_0000, 0xFFFF, 0, 0x93))
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x80
            assert msg.rax & 0xFF == 0x14  # the xAPIC version register, read through the page
            vp.advance(msg)
            seen: list[str] = []

            def assert_later() -> None:
                time.sleep(0.05)  # the VP is halted in another thread by then
                part.assert_interrupt(VECTOR, 0, level=True)

            threading.Thread(target=assert_later).start()
            for _ in range(4):
                msg = vp.run()
                if isinstance(msg, mshv.ApicEoi):
                    seen.append(f"eoi {msg.vector:#x}")
                    continue
                assert isinstance(msg, mshv.IoPortIntercept), msg
                seen.append(f"out {msg.port:#x}")
                vp.advance(msg)
            assert seen == ["out 0x10", f"eoi {VECTOR:#x}", "out 0x12", "out 0x83"]


def test_sipi_intercept_gives_the_sipi_to_the_vmm(device: mshv.Device, engine: str) -> None:
    kind = I.HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI
    with device.create_partition(lapic=True) as part:
        if engine == "kvm":
            with pytest.raises(mshv.UnsupportedError):
                part.install_intercept(kind, t.HV_INTERCEPT_ACCESS_MASK_EXECUTE)
            return
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
