"""Registers by name and their Python values (pure)."""

from __future__ import annotations

import pytest

from mshv.abi.tlfs import hv_register_name as R
from mshv.client import registers as regs


def test_names_cover_every_register() -> None:
    assert len(regs.NAMES) == len(R)
    assert regs.number("rip") == R.HV_X64_REGISTER_RIP
    assert regs.number("CS") == R.HV_X64_REGISTER_CS
    assert regs.number("explicit_suspend") == R.HV_REGISTER_EXPLICIT_SUSPEND
    assert regs.number(0x20000) == R.HV_X64_REGISTER_RAX
    with pytest.raises(ValueError, match="unknown register"):
        regs.number("eax")


def test_values_round_trip() -> None:
    seg = regs.Segment.flat(0x8, code=True, long=True)
    assert seg.present and seg.dpl == 0 and seg.attributes & (1 << 13)
    assert regs.decode(R.HV_X64_REGISTER_CS, regs.encode(R.HV_X64_REGISTER_CS, seg)) == seg
    table = regs.Table(0x1000, 0x27)
    raw = regs.encode(R.HV_X64_REGISTER_GDTR, table)
    assert raw[6:8] == b"\x27\x00" and raw[8:10] == b"\x00\x10"
    assert regs.decode(R.HV_X64_REGISTER_GDTR, raw) == table
    xmm = (1 << 127) | 5
    assert regs.decode(R.HV_X64_REGISTER_XMM0, regs.encode(R.HV_X64_REGISTER_XMM0, xmm)) == xmm


def test_values_are_checked() -> None:
    with pytest.raises(TypeError):
        regs.encode(R.HV_X64_REGISTER_RAX, regs.Table(0, 0))
    with pytest.raises(TypeError):
        regs.encode(R.HV_X64_REGISTER_CS, 5)
    with pytest.raises(ValueError):
        regs.encode(R.HV_X64_REGISTER_RAX, 1 << 128)


@pytest.mark.parametrize(("name", "value", "error", "says"), [
    ("rax", 1 << 100, ValueError, "register rax: .* does not fit 64 unsigned bits"),
    ("rip", (1 << 64) + 0x1234, ValueError, "register rip: .* 64 unsigned bits"),
    ("rip", -1, ValueError, "register rip: -0x1 does not fit 64"),
    ("xmm3", 1 << 128, ValueError, "register xmm3: .* 128 unsigned bits"),
    ("rax", "1", TypeError, "register rax needs an int, not str"),
    ("cs", 5, TypeError, "register cs needs a Segment, not int"),
    ("gdtr", regs.Segment(0, 0, 0, 0), TypeError, "register gdtr does not take a Segment"),
    ("rflags", True, TypeError, "register rflags needs an int, not bool"),
])  # fmt: skip
def test_each_register_checks_its_width_and_kind(
    name: str, value: object, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        regs.encode(regs.number(name), value)  # type: ignore[arg-type]


def test_segment_and_table_fields_are_checked() -> None:
    with pytest.raises(ValueError, match=r"Segment\.base .* 64 unsigned bits"):
        regs.Segment(1 << 70, 0, 0, 0)
    with pytest.raises(ValueError, match=r"Segment\.selector"):
        regs.Segment(0, 0, 0x10000, 0)
    with pytest.raises(TypeError, match=r"Segment\.limit must be an int"):
        regs.Segment(0, "0", 0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Table\.limit"):
        regs.Table(0, 1 << 16)
    with pytest.raises(TypeError, match="a register is named by a str or an int"):
        regs.number(1.5)  # type: ignore[arg-type]
