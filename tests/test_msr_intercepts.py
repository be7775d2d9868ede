"""MSR intercepts (MSHV_INSTALL_INTERCEPT) completed by the VMM, the
unimplemented-MSR action, and intercept types the KVM engine refuses."""

from __future__ import annotations

import pytest

import mshv
from mshv.abi import tlfs as t
from mshv.abi.tlfs import hv_intercept_type as I
from tests.conftest import real_mode_vp
from tests.guests import asm

READ_WRITE = t.HV_INTERCEPT_ACCESS_MASK_READ | t.HV_INTERCEPT_ACCESS_MASK_WRITE
GUEST = asm(
    """
    mov ecx, 0x1234          ; an MSR nobody implements
    rdmsr
    out 0x80, eax            ; what the VMM supplied
    mov ecx, 0x174           ; IA32_SYSENTER_CS, which KVM implements
    mov eax, 0x5555
    xor edx, edx
    wrmsr
    rdmsr
    out 0x80, eax
    hlt
    """
)


def test_rdmsr_and_wrmsr_completed_by_the_vmm(partition: mshv.Partition) -> None:
    partition.install_intercept(I.HV_INTERCEPT_TYPE_X64_MSR, READ_WRITE)
    vp, mem = real_mode_vp(partition, GUEST)
    with mem:
        rd = vp.run()
        assert isinstance(rd, mshv.MsrIntercept)
        assert (rd.msr, rd.is_write, rd.rip, rd.instruction_length) == (0x1234, False, 0x1006, 2)
        assert vp.get("rip") == 0x1006  # not executed
        vp.set_registers(rax=0xABCD, rdx=0)
        vp.advance(rd)
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFFFF == 0xABCD
        vp.advance(out)

        wr = vp.run()
        assert isinstance(wr, mshv.MsrIntercept)
        assert (wr.msr, wr.is_write, wr.value) == (0x174, True, 0x5555)
        assert vp.get("sysenter_cs") == 0  # the write has not happened
        vp.set_registers(sysenter_cs=wr.value)  # the VMM performs it
        vp.advance(wr)
        rd2 = vp.run()
        assert isinstance(rd2, mshv.MsrIntercept) and rd2.msr == 0x174 and not rd2.is_write
        value = vp.get("sysenter_cs")
        assert isinstance(value, int)
        vp.set_registers(rax=value, rdx=0)
        vp.advance(rd2)
        out2 = vp.run()
        assert isinstance(out2, mshv.IoPortIntercept) and out2.rax & 0xFFFF == 0x5555


def test_write_only_intercept_leaves_reads_to_the_processor(partition: mshv.Partition) -> None:
    partition.install_intercept(I.HV_INTERCEPT_TYPE_X64_MSR, t.HV_INTERCEPT_ACCESS_MASK_WRITE)
    code = asm("mov ecx, 0x174\nrdmsr\nout 0x80, eax\nwrmsr\nhlt")
    vp, mem = real_mode_vp(partition, code)
    with mem:
        vp.set_registers(sysenter_cs=0x77)
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFFFF == 0x77
        vp.advance(out)
        wr = vp.run()
        assert isinstance(wr, mshv.MsrIntercept) and wr.is_write


def test_unimplemented_msr_faults_by_default(partition: mshv.Partition) -> None:
    """#GP goes to the guest (IVT vector 13 here), as the hypervisor does."""
    code = asm("mov ecx, 0x1234\nrdmsr\nmov al, 1\nout 0x80, al\nhlt")
    gp_handler = asm("mov al, 0xd\nout 0x80, al\nhlt", 16, 0x2000)
    vp, mem = real_mode_vp(partition, code)
    with mem:
        mem.write(0x2000, gp_handler)
        mem.write(13 * 4, (0x2000).to_bytes(2, "little") + b"\0\0")
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFF == 0xD


def test_unimplemented_msr_action_ignore(partition: mshv.Partition) -> None:
    partition.set_property(t.HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION, 1)
    code = asm("mov ecx, 0x1234\nmov eax, 7\nwrmsr\nmov eax, 9\nrdmsr\nout 0x80, eax\nhlt")
    vp, mem = real_mode_vp(partition, code)
    with mem:
        out = vp.run()
        assert isinstance(out, mshv.IoPortIntercept) and out.rax & 0xFFFF == 0


def test_mc_update_patch_level_read(partition: mshv.Partition) -> None:
    partition.install_intercept(I.HV_INTERCEPT_MC_UPDATE_PATCH_LEVEL_MSR_READ,
                                t.HV_INTERCEPT_ACCESS_MASK_READ)  # fmt: skip
    code = asm("mov ecx, 0x174\nrdmsr\nmov ecx, 0x8b\nrdmsr\nhlt")
    vp, mem = real_mode_vp(partition, code)
    with mem:
        msg = vp.run()  # the SYSENTER_CS read went to the processor
        assert isinstance(msg, mshv.MsrIntercept) and msg.msr == 0x8B and not msg.is_write


@pytest.mark.parametrize(
    "kind",
    [I.HV_INTERCEPT_TYPE_REGISTER, I.HV_INTERCEPT_TYPE_X64_APIC_SMI,
     I.HV_INTERCEPT_TYPE_HYPERCALL, I.HV_INTERCEPT_TYPE_X64_APIC_WRITE],
)  # fmt: skip
def test_undeliverable_intercepts_are_refused(partition: mshv.Partition, kind: int) -> None:
    with pytest.raises(mshv.UnsupportedError) as e:
        partition.install_intercept(kind, t.HV_INTERCEPT_ACCESS_MASK_EXECUTE, 3)
    assert e.value.errno == 95


@pytest.mark.parametrize(
    "kind",
    [I.HV_INTERCEPT_TYPE_X64_CPUID, I.HV_INTERCEPT_TYPE_EXCEPTION,
     I.HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID],
)  # fmt: skip
def test_kvm_refuses_what_only_the_software_engine_delivers(
    partition: mshv.Partition, engine: str, kind: int
) -> None:
    if engine == "tcg":
        partition.install_intercept(kind, t.HV_INTERCEPT_ACCESS_MASK_EXECUTE, 3)
        return
    with pytest.raises(mshv.UnsupportedError) as e:
        partition.install_intercept(kind, t.HV_INTERCEPT_ACCESS_MASK_EXECUTE, 3)
    assert e.value.errno == 95


def test_port_and_mmio_intercepts_are_always_on(partition: mshv.Partition) -> None:
    partition.install_intercept(I.HV_INTERCEPT_TYPE_X64_IO_PORT, READ_WRITE, 0x3F8)
    partition.install_intercept(I.HV_INTERCEPT_TYPE_MMIO, READ_WRITE)
    vp, mem = real_mode_vp(partition, asm("out 0x60, al\nhlt"))
    with mem:
        assert isinstance(vp.run(), mshv.IoPortIntercept)  # any port, installed or not
