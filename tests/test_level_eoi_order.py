"""The EOI of a level-triggered interrupt reaches the VMM in program order:
a handler that does `out 0x10`, ends the interrupt, then `out 0x12` gives
the port intercept 0x10, HVMSG_X64_APIC_EOI, the port intercept 0x12, on
both engines, whether the EOI is written through the xAPIC page or the
x2APIC MSR. The vector is asserted from another thread while the VP halts."""

from __future__ import annotations

import threading
import time

import pytest

import mshv
from tests.conftest import real_mode_vp
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry

VECTOR = 0x50
HANDLER_AT = 0x2000
# Real mode with ES based at the xAPIC page (the VMM loads it): es:[0xf0] is
# the spurious vector register, es:[0x30] the version, es:[0xb0] the EOI.
XAPIC_MAIN = """
    mov dword ptr es:[0xf0], 0x1ff   ; software enable
    mov eax, dword ptr es:[0x30]     ; version, read through the page
    out 0x80, eax
    sti
idle:
    hlt
    jmp idle
"""
GUESTS = {
    "xapic": (XAPIC_MAIN, "mov dword ptr es:[0xb0], 0\n"),
    "x2apic": (X2APIC_ON + "out 0x80, al\nsti\nidle:\nhlt\njmp idle\n", X2APIC_EOI),
}


def _assert_later(part: mshv.Partition) -> threading.Thread:
    def fire() -> None:
        time.sleep(0.05)  # the VP is halted in RUN_VP by then
        part.assert_interrupt(VECTOR, 0, level=True)

    t = threading.Thread(target=fire)
    t.start()
    return t


@pytest.mark.parametrize("mode", sorted(GUESTS))
def test_level_eoi_between_the_handlers_port_writes(device: mshv.Device, mode: str) -> None:
    main, eoi = GUESTS[mode]
    handler = asm(f"out 0x10, al\n{eoi}out 0x12, al\niret", 16, HANDLER_AT)
    with device.create_partition(lapic=True) as part:
        vp, mem = real_mode_vp(part, asm(main), rsp=0x8000)
        with mem:
            mem.write(HANDLER_AT, handler)
            mem.write(*ivt_entry(VECTOR, HANDLER_AT))
            es = vp.get("es")
            assert isinstance(es, mshv.Segment)
            vp.set_registers(es=mshv.Segment(0xFEE0_0000, 0xFFFF, 0, es.attributes))
            first = vp.run()
            assert isinstance(first, mshv.IoPortIntercept) and first.port == 0x80, first
            if mode == "xapic":
                assert first.rax & 0xFF == 0x14  # the APIC version register
            vp.advance(first)
            for _ in range(2):  # a second round: the first EOI left nothing behind
                thread = _assert_later(part)
                seen: list[str] = []
                for _ in range(3):
                    msg = vp.run()  # a view the next run reuses: record it now
                    if isinstance(msg, mshv.ApicEoi):
                        seen.append(f"eoi {msg.vector:#x} vp {msg.vp_index}")
                    else:
                        assert isinstance(msg, mshv.IoPortIntercept), msg
                        seen.append(f"io {msg.port:#x}")
                        vp.advance(msg)
                thread.join()
                assert seen == ["io 0x10", f"eoi {VECTOR:#x} vp 0", "io 0x12"]
