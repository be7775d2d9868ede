"""The IOAPIC register model and its delivery rules."""

from __future__ import annotations

import mshv
from mshv.abi.uapi import hv_local_interrupt_controller_state
from mshv.vmm import ioapic as io
from mshv.vmm.linux import Profile, apic_delivery

Sent = list[tuple[int, int, int, bool, bool]]


def _chip() -> tuple[io.IoApic, Sent]:
    sent: Sent = []
    return io.IoApic(2, lambda *a: sent.append(a)), sent


def _program(chip: io.IoApic, pin: int, low: int, high: int = 0) -> None:
    chip.write(io.IOREGSEL, 4, io.REG_TABLE + 2 * pin)
    chip.write(io.IOWIN, 4, low)
    chip.write(io.IOREGSEL, 4, io.REG_TABLE + 2 * pin + 1)
    chip.write(io.IOWIN, 4, high)


def _reg(chip: io.IoApic, reg: int) -> int:
    chip.write(io.IOREGSEL, 4, reg)
    return chip.read(io.IOWIN, 4)


def test_identification_registers() -> None:
    chip, _ = _chip()
    assert _reg(chip, io.REG_ID) == 2 << 24
    assert _reg(chip, io.REG_VERSION) == (io.PINS - 1) << 16 | io.VERSION
    assert _reg(chip, io.REG_TABLE) == io.MASKED  # every pin starts masked
    assert _reg(chip, 0x10 + 2 * io.PINS) == 0  # past the table


def test_edge_pin_delivers_on_rising_edges_while_unmasked() -> None:
    chip, sent = _chip()
    _program(chip, 4, 0x31, 1 << 24)  # vector 0x31, fixed, physical, edge, to APIC 1
    assert _reg(chip, io.REG_TABLE + 9) == 1 << 24
    chip.set_level(4, True)
    chip.set_level(4, True)  # still high: no new edge
    chip.set_level(4, False)
    chip.pulse(4)
    assert sent == [(0x31, 1, 0, False, False)] * 2
    _program(chip, 4, 0x31 | io.MASKED)
    chip.pulse(4)  # lost while masked, as on the chip
    _program(chip, 4, 0x31)
    assert len(sent) == 2


def test_level_pin_waits_for_eoi_and_refires_while_high() -> None:
    chip, sent = _chip()
    _program(chip, 9, 0x41 | io.LEVEL | 1 << 8 | io.DEST_LOGICAL, 3 << 24)
    chip.set_level(9, True)
    assert sent == [(0x41, 3, 1, True, True)]
    assert _reg(chip, io.REG_TABLE + 18) & io.REMOTE_IRR
    chip.set_level(9, True)
    assert len(sent) == 1  # remote IRR holds it
    chip.apic_eoi(0x41)
    assert len(sent) == 2  # still high after the EOI: again
    chip.set_level(9, False)
    chip.write(io.EOI, 4, 0x41)  # the EOI register does the same
    assert len(sent) == 2 and not _reg(chip, io.REG_TABLE + 18) & io.REMOTE_IRR


def test_level_line_high_while_masked_fires_on_unmask() -> None:
    chip, sent = _chip()
    _program(chip, 10, 0x50 | io.LEVEL | io.MASKED)
    chip.set_level(10, True)
    assert sent == []
    _program(chip, 10, 0x50 | io.LEVEL)
    assert sent == [(0x50, 0, 0, True, False)]


def test_active_low_polarity_and_read_only_bits() -> None:
    chip, sent = _chip()
    _program(chip, 5, 0x60 | io.POLARITY_LOW | io.DELIVERY_STATUS | io.REMOTE_IRR)
    assert _reg(chip, io.REG_TABLE + 10) == 0x60 | io.POLARITY_LOW  # status bits are the chip's
    chip.set_level(5, False)  # active low: the line asserts
    assert sent == [(0x60, 0, 0, False, False)]


def test_a_message_to_no_apic_is_dropped_and_counted(device: mshv.Device) -> None:
    """Through the hypervisor: a pin routed to APIC id 5 of a one-VP machine
    is dropped (counted), one routed to VP 0 is pending in its APIC."""
    profile = Profile()
    with device.create_partition(lapic=True) as part:
        vp = part.create_vp(0)
        state = hv_local_interrupt_controller_state.from_buffer_copy(vp.get_lapic_state())
        state.apic_spurious = 0x1FF  # software-enabled: it accepts fixed interrupts
        vp.set_lapic_state(bytes(state))
        chip = io.IoApic(1, apic_delivery(part, profile))
        _program(chip, 3, 0x33, 5 << 24)
        chip.set_level(3, True)
        assert profile.dropped_interrupts == 1
        _program(chip, 4, 0x34, 0)
        chip.set_level(4, True)
        assert profile.dropped_interrupts == 1
        state = hv_local_interrupt_controller_state.from_buffer_copy(vp.get_lapic_state())
        assert state.apic_irr[0x34 // 32] >> (0x34 % 32) & 1
