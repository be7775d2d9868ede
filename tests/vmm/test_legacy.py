"""The legacy PC devices and the ACPI power registers."""

from __future__ import annotations

import datetime

from mshv.vmm import acpi, legacy, pm


def test_pic_init_sequence_then_imr_reads_back() -> None:
    pic = legacy.Pic8259()
    assert pic.read(1, 1) == 0xFF  # masked at power-on
    for port, value in ((0, 0x11), (1, 0x30), (1, 0x04), (1, 0x01)):  # ICW1-4
        pic.write(port, 1, value)
    assert pic.vector_base == 0x30 and pic.read(1, 1) == 0
    pic.write(1, 1, 0xFB)  # OCW1
    assert pic.read(1, 1) == 0xFB and pic.read(0, 1) == 0


def test_rtc_reports_utc_in_bcd_and_takes_a_new_time() -> None:
    rtc = legacy.CmosRtc()

    def get(index: int) -> int:
        rtc.write(0, 1, index)
        return rtc.read(1, 1)

    now = datetime.datetime.now(datetime.UTC)
    year = (get(legacy.CENTURY) >> 4) * 1000 + (get(legacy.CENTURY) & 0xF) * 100
    year += (get(legacy.YEAR) >> 4) * 10 + (get(legacy.YEAR) & 0xF)
    assert abs(year - now.year) <= 1
    assert get(legacy.STATUS_A) & 0x80 == 0 and get(legacy.STATUS_D) == legacy.D_VALID
    rtc.write(0, 1, legacy.YEAR)
    rtc.write(1, 1, 0x01)  # the guest sets the year to 2001 (BCD)
    assert get(legacy.YEAR) == 0x01
    rtc.write(0, 1, 0x40)
    rtc.write(1, 1, 0x5A)  # CMOS RAM
    assert get(0x40) == 0x5A


def test_port_b_refresh_toggles() -> None:
    b = legacy.SystemControlB()
    assert b.read(0, 1) & 0x10 != b.read(0, 1) & 0x10


def test_pm1_control_powers_off_with_s5_only() -> None:
    events: list[str] = []
    power = pm.PowerManagement(lambda: events.append("off"), events.append)
    ctl = pm.ControlBlock(power)
    assert ctl.read(0, 2) & pm.SCI_EN
    ctl.write(0, 2, 1 << pm.SLP_TYP_SHIFT | pm.SLP_EN)
    assert events and "sleep type 1" in events[0]
    ctl.write(0, 2, acpi.SLP_TYP_S5 << pm.SLP_TYP_SHIFT | pm.SLP_EN)
    assert events[-1] == "off"


def test_pm1_status_is_write_one_to_clear_and_enable_is_stored() -> None:
    power = pm.PowerManagement(lambda: None, lambda why: None)
    evt = pm.EventBlock(power)
    power.status = 0x0101
    evt.write(0, 2, 0x0001)
    assert evt.read(0, 2) == 0x0100
    evt.write(2, 2, 0x0120)
    assert evt.read(2, 2) == 0x0120 and evt.read(0, 4) == 0x0120_0100


def test_reset_register() -> None:
    resets: list[int] = []
    reg = pm.ResetControl(lambda: resets.append(1))
    reg.write(0, 1, 0x02)
    assert not resets
    reg.write(0, 1, acpi.RESET_VALUE)
    assert resets == [1]
