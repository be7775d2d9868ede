"""MSHV_GET/SET_VP_REGISTERS for every class of register, and what the guest
then sees."""

from __future__ import annotations

import pytest

import mshv
from tests.conftest import real_mode_vp
from tests.guests import asm

ROUND_TRIP = {
    "rax": 0x1111_2222_3333_4444,
    "r15": 0xFFFF_FFFF_FFFF_FFFF,
    "rflags": 0x202,
    "ds": mshv.Segment(0x10000, 0xFFFF, 0x1000, 0x93),
    "gdtr": mshv.Table(0x5000, 0x27),
    "idtr": mshv.Table(0x6000, 0x3FF),
    "cr2": 0xDEAD_B000,
    "cr3": 0x7000,
    "dr0": 0x1000,
    "dr3": 0x4000,
    "dr7": 0x401,
    "xmm0": (0x0123_4567_89AB_CDEF << 64) | 0xFEDC_BA98_7654_3210,
    "xmm15": 1 << 127,
    "tsc_aux": 7,
    "sysenter_cs": 0x10,
    "sysenter_esp": 0x8000,
    "sysenter_eip": 0x9000,
    "star": 0x0023_0010_0000_0000,
    "lstar": 0xFFFF_8000_0000_1000,
    "cstar": 0xFFFF_8000_0000_2000,
    "sfmask": 0x4700,
    "kernel_gs_base": 0xFFFF_8880_0000_0000,
    "pat": 0x0007_0406_0007_0406,
    "msr_mtrr_def_type": 0xC06,
}


def test_round_trip(partition: mshv.Partition) -> None:
    vp = partition.create_vp(0)
    vp.set_registers(ROUND_TRIP)  # type: ignore[arg-type]
    assert vp.get_registers(*ROUND_TRIP) == ROUND_TRIP


def test_fp_and_vector_state(partition: mshv.Partition) -> None:
    vp = partition.create_vp(0)
    fp = vp.get("fp_control_status")
    xmm_cs = vp.get("xmm_control_status")
    assert isinstance(fp, int) and isinstance(xmm_cs, int)
    assert fp & 0xFFFF == 0x37F  # FCW after reset
    assert (xmm_cs >> 64) & 0xFFFF_FFFF == 0x1F80  # MXCSR after reset
    new_mxcsr = 0x1FA0
    vp.set_registers(xmm_control_status=(xmm_cs & ~(0xFFFF_FFFF << 64)) | new_mxcsr << 64)
    assert (vp.get("xmm_control_status") >> 64) & 0xFFFF_FFFF == new_mxcsr
    vp.set_registers(fp_mmx3=0x4000_8000_0000_0000_0000)  # 2.0 as an 80-bit value
    assert vp.get("fp_mmx3") == 0x4000_8000_0000_0000_0000
    xfem = vp.get("xfem")
    assert isinstance(xfem, int) and xfem & 1  # x87 is always enabled


def test_reset_state_and_read_only(partition: mshv.Partition) -> None:
    vp = partition.create_vp(3)
    regs = vp.get_registers("rip", "cs", "cr0", "initial_apic_id", "explicit_suspend")
    assert regs["rip"] == 0xFFF0
    assert regs["cs"] == mshv.Segment(0xFFFF_0000, 0xFFFF, 0xF000, 0x9B)
    assert regs["cr0"] == 0x6000_0010
    assert (regs["initial_apic_id"], regs["explicit_suspend"]) == (3, 1)
    with pytest.raises(mshv.IoctlError) as e:
        vp.set_registers(initial_apic_id=1)
    assert e.value.errno == 22


def test_a_refused_value_changes_nothing(partition: mshv.Partition) -> None:
    vp = partition.create_vp(0)
    before = vp.get_registers("rax", "cr0", "dr0")
    with pytest.raises(mshv.IoctlError) as e:  # CR0.PG without PE is invalid
        vp.set_registers(rax=5, dr0=0x1234, cr0=0x8000_0010)
    assert e.value.errno == 22
    assert "HV_STATUS_INVALID_REGISTER_VALUE" in str(e.value)
    assert vp.get_registers("rax", "cr0", "dr0") == before


@pytest.mark.parametrize(
    ("regs", "rule"),
    [
        ({"cr0": 0x8000_0010}, "CR0.PG is set without CR0.PE"),
        ({"cr0": 0x2000_0011}, "CR0.NW is set without CR0.CD"),
        ({"efer": 0x500}, "EFER.LMA is 1 but EFER.LME and CR0.PG make it 0"),
        ({"efer": 0x100, "cr0": 0x8000_0011}, "need CR4.PAE"),
    ],
)
def test_a_refusal_names_the_rule_broken(
    partition: mshv.Partition, regs: dict[str, int], rule: str
) -> None:
    vp = partition.create_vp(0)
    with pytest.raises(mshv.IoctlError) as e:
        vp.set_registers(regs)
    assert e.value.errno == 22
    assert rule in str(e.value)


def test_unknown_register_is_named(partition: mshv.Partition) -> None:
    vp = partition.create_vp(0)
    with pytest.raises(mshv.IoctlError) as e:
        vp.get("stimer0_config")  # synthetic timers are not provided
    assert e.value.errno == 22
    assert "HV_X64_REGISTER_STIMER0_CONFIG" in str(e.value) or "STIMER0" in str(e.value)


def test_guest_sees_what_the_vmm_set(partition: mshv.Partition) -> None:
    code = asm(
        """
        mov ecx, 0x174      ; IA32_SYSENTER_CS
        rdmsr
        out 0x80, ax
        mov ax, ds
        out 0x80, ax
        mov ax, word ptr [0x10]
        out 0x80, ax
        """
    )
    vp, mem = real_mode_vp(partition, code, size=0x20000)
    with mem:
        mem.write(0x10010, b"\x34\x12")
        vp.set_registers(sysenter_cs=0xBEEF, ds=mshv.Segment(0x10000, 0xFFFF, 0x1000, 0x93))
        seen = []
        for _ in range(3):
            msg = vp.run()
            assert isinstance(msg, mshv.IoPortIntercept)
            seen.append(msg.rax & 0xFFFF)
            vp.advance(msg)
        assert seen == [0xBEEF, 0x1000, 0x1234]
