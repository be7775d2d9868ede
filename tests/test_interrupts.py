"""MSHV_ASSERT_INTERRUPT into the local APIC, from other threads while the
VP runs; level-triggered EOIs; ExtINT with deliverability notifications."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import mshv
from mshv.abi.tlfs import hv_interrupt_type as IT
from tests.guests import X2APIC_EOI, X2APIC_ON, asm, ivt_entry

MAIN = asm(X2APIC_ON + "sti\nidle:\nhlt\njmp idle")


def handler(tag: int, eoi: bool = True) -> bytes:
    """Report `tag` on port 0x80, end the interrupt, return."""
    body = f"push ax\npush cx\npush dx\nmov al, {tag}\nout 0x80, al\n"
    body += X2APIC_EOI if eoi else ""
    return asm(body + "pop dx\npop cx\npop ax\niret", 16, 0x2000 + 0x100 * tag)


@pytest.fixture
def apic_partition(device: mshv.Device) -> Iterator[mshv.Partition]:
    with device.create_partition(lapic=True) as part:
        yield part


def boot(
    part: mshv.Partition, handlers: dict[int, tuple[int, bytes]], main: bytes = MAIN
) -> mshv.Vp:
    mem = mshv.GuestMemory(0x10000)
    mem.write(0x1000, main)
    for vector, (tag, code) in handlers.items():
        mem.write(0x2000 + 0x100 * tag, code)
        off, entry = ivt_entry(vector, 0x2000 + 0x100 * tag)
        mem.write(off, entry)
    part.map_guest_memory(0, mem)
    vp = part.create_vp(0)
    cs = vp.get("cs")
    assert isinstance(cs, mshv.Segment)
    vp.set_registers(cs=mshv.Segment(0, cs.limit, 0, cs.attributes), rip=0x1000, rflags=2,
                     rsp=0x8000)  # fmt: skip
    return vp


def run_until(vp: mshv.Vp, want: int, on_msg: Callable[[mshv.Message], None]) -> list[int]:
    """Run the VP, collect the tags its handlers report, until `want` of them."""
    tags: list[int] = []
    while len(tags) < want:
        msg = vp.run()
        on_msg(msg)
        if isinstance(msg, mshv.IoPortIntercept) and msg.port == 0x80:
            tags.append(msg.rax & 0xFF)
            vp.advance(msg)
    return tags


def in_thread(fn: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_fixed_lowest_priority_and_nmi_from_another_thread(
    apic_partition: mshv.Partition,
) -> None:
    vp = boot(apic_partition, {0x40: (1, handler(1)), 0x41: (2, handler(2)),
                               2: (3, handler(3, eoi=False))})  # fmt: skip
    part = apic_partition

    def fire() -> None:
        for vector, kind in ((0x40, IT.HV_X64_INTERRUPT_TYPE_FIXED),
                             (0x41, IT.HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY),
                             (0, IT.HV_X64_INTERRUPT_TYPE_NMI)):  # fmt: skip
            time.sleep(0.05)  # the VP is halted in the hypervisor meanwhile
            part.assert_interrupt(vector, 0, kind)

    t = in_thread(fire)
    tags = run_until(vp, 3, lambda m: None)
    t.join()
    assert tags == [1, 2, 3]


def test_logical_destination(apic_partition: mshv.Partition) -> None:
    # x2APIC logical id of APIC 0 is cluster 0, bit 0: destination 1.
    vp = boot(apic_partition, {0x48: (1, handler(1))})

    def later() -> None:
        time.sleep(0.05)
        apic_partition.assert_interrupt(0x48, 1, logical=True)

    t = in_thread(later)
    assert run_until(vp, 1, lambda m: None) == [1]
    t.join()


def test_level_triggered_eoi_comes_back(apic_partition: mshv.Partition) -> None:
    vp = boot(apic_partition, {0x50: (1, handler(1)), 0x51: (2, handler(2))})
    eois: list[int] = []

    def on_msg(msg: mshv.Message) -> None:
        if isinstance(msg, mshv.ApicEoi):
            eois.append(msg.vector)
            assert msg.vp_index == 0

    def fire() -> None:
        time.sleep(0.05)
        apic_partition.assert_interrupt(0x50, 0, level=True)
        time.sleep(0.05)
        apic_partition.assert_interrupt(0x51, 0)  # edge: its EOI is not reported

    t = in_thread(fire)
    tags = run_until(vp, 2, on_msg)
    t.join()
    assert tags == [1, 2]
    assert eois == [0x50]


def test_extint_when_deliverable(apic_partition: mshv.Partition) -> None:
    """A userspace PIC: the VMM asks to be told when the guest can take an
    interrupt, then hands over an ExtINT vector."""
    main = asm(
        X2APIC_ON
        + """
        mov ecx, 0x835      ; LVT LINT0: ExtINT, unmasked (virtual wire)
        mov eax, 0x700
        xor edx, edx
        wrmsr
        cli
        mov al, 0x99
        out 0x80, al        ; interrupts are off here
        sti
    idle:
        hlt
        jmp idle
        """
    )
    vp = boot(apic_partition, {0x60: (1, handler(1, eoi=False))}, main)
    vp.set_registers(deliverability_notifications=2)  # tell me when an interrupt can go in
    first = vp.run()
    assert isinstance(first, mshv.IoPortIntercept) and first.rax & 0xFF == 0x99
    vp.advance(first)
    msg = vp.run()
    assert isinstance(msg, mshv.InterruptionDeliverable)
    assert msg.deliverable_type == 0
    assert msg.rflags & 0x200  # IF is set: the guest can take it now
    assert vp.get("deliverability_notifications") == 0  # one notification per request
    apic_partition.assert_interrupt(0x60, 0, IT.HV_X64_INTERRUPT_TYPE_EXTINT)
    out = vp.run()
    assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFF == 1


def test_nmi_notifications_are_refused(apic_partition: mshv.Partition) -> None:
    vp = apic_partition.create_vp(0)
    with pytest.raises(mshv.IoctlError) as e:
        vp.set_registers(deliverability_notifications=1)
    assert e.value.errno == 22


def test_no_local_apic_no_interrupts(partition: mshv.Partition) -> None:
    partition.create_vp(0)
    with pytest.raises(mshv.IoctlError) as e:
        partition.assert_interrupt(0x40, 0)
    assert e.value.errno == 22
    assert "LAPIC_ENABLED" in str(e.value)
