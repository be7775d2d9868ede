"""Synthetic processor features: what the guest sees of the hypervisor
(CPUID 0x40000000..) and the synthetic MSRs the features enable."""

from __future__ import annotations

import struct

import pytest

import mshv
from mshv.abi.tlfs import hv_partition_synthetic_processor_feature as F
from tests.guests import CODE64, asm, identity_page_tables, long_mode_registers

LINUX_PROFILE = (
    1 << F.hypervisor_present | 1 << F.hv1 | 1 << F.access_partition_reference_counter
    | 1 << F.access_hypercall_regs | 1 << F.access_vp_index
    | 1 << F.access_partition_reference_tsc | 1 << F.access_frequency_regs
    | 1 << F.notify_long_spin_wait
)  # fmt: skip
HYPERCALL_PAGE, TSC_PAGE = 0x5000, 0x6000

GUEST = f"""
    mov eax, 0x40000000
    cpuid
    out 0x80, eax                 ; highest leaf
    mov eax, ebx
    out 0x80, eax                 ; "Micr"
    mov eax, 0x40000001
    cpuid
    out 0x80, eax                 ; "Hv#1"
    mov eax, 0x40000003
    cpuid
    out 0x80, eax                 ; privileges
    mov eax, edx
    out 0x80, eax                 ; misc features
    mov ecx, 0x40000000           ; guest OS id
    mov eax, 0x1234
    xor edx, edx
    wrmsr
    mov ecx, 0x40000001           ; the hypercall page
    mov eax, {HYPERCALL_PAGE | 1}
    xor edx, edx
    wrmsr
    mov rcx, 0x10008              ; fast HvCallNotifyLongSpinWait
    xor edx, edx
    mov rax, {HYPERCALL_PAGE}
    call rax
    out 0x80, eax                 ; its status
    mov rcx, 0x9999               ; no such call
    mov rax, {HYPERCALL_PAGE}
    call rax
    out 0x80, eax
    mov ecx, 0x40000002           ; VP index
    rdmsr
    out 0x80, eax
    mov ecx, 0x40000022           ; TSC frequency
    rdmsr
    out 0x80, eax
    mov ecx, 0x40000021           ; the reference TSC page
    mov eax, {TSC_PAGE | 1}
    xor edx, edx
    wrmsr
    mov ecx, 0x40000020           ; reference time, twice
    rdmsr
    mov esi, eax
    mov ebx, 20000
delay:
    dec ebx
    jnz delay
    rdmsr
    sub eax, esi
    out 0x80, eax                 ; how much it advanced
    call page_time                ; reference time from the TSC page, twice
    mov r12, rax
    mov ebx, 20000
delay2:
    dec ebx
    jnz delay2
    call page_time
    sub rax, r12
    out 0x80, eax                 ; how much it advanced
    hlt
page_time:                        ; ((tsc * scale) >> 64) + offset
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rdi, {TSC_PAGE}
    mul qword ptr [rdi + 8]
    mov rax, rdx
    add rax, qword ptr [rdi + 16]
    ret
"""


def _vp(part: mshv.Partition, code: bytes, index: int = 0) -> tuple[mshv.Vp, mshv.GuestMemory]:
    mem = mshv.GuestMemory(0x20_0000)
    mem.write(CODE64, code)
    identity_page_tables(mem.write)
    part.map_guest_memory(0, mem)
    vp = part.create_vp(index)
    vp.set_registers(long_mode_registers(), rsp=0x10_0000)  # type: ignore[arg-type]
    return vp, mem


def _outputs(vp: mshv.Vp) -> list[int]:
    values: list[int] = []
    while True:
        msg = vp.run()
        if isinstance(msg, mshv.Halt):
            return values
        assert isinstance(msg, mshv.IoPortIntercept), msg
        values.append(msg.rax & 0xFFFF_FFFF)
        vp.advance(msg)


def test_linux_profile(device: mshv.Device) -> None:
    with device.create_partition(synthetic_features=LINUX_PROFILE) as part:
        vp, mem = _vp(part, asm(GUEST, 64, CODE64))
        with mem:
            out = _outputs(vp)
            assert out[0] == 0x40000006
            assert struct.pack("<I", out[1]) == b"Micr"
            assert struct.pack("<I", out[2]) == b"Hv#1"
            assert out[3] == 0xA62  # reference counter, hypercall, VP index, TSC page, frequencies
            assert out[4] == 1 << 8  # frequency MSRs available
            assert out[5:7] == [0, 2]  # success; HV_STATUS_INVALID_HYPERCALL_CODE
            assert out[7] == 0  # VP index
            tsc_hz = part.get_property(0x00060009)  # PROCESSOR_CLOCK_FREQUENCY
            assert out[8] == tsc_hz & 0xFFFF_FFFF
            assert out[9] > 0  # reference time advanced (100 ns units)
            assert 0 < out[10] < 10_000_000  # so did the guest's own reading of the TSC page
            assert vp.get_registers("guest_os_id", "hypercall") == {
                "guest_os_id": 0x1234, "hypercall": HYPERCALL_PAGE | 1}  # fmt: skip
            # The hypercall page holds code that reaches the hypervisor.
            assert mem.read(HYPERCALL_PAGE, 4) == bytes.fromhex("f30f1efa")
            # The reference TSC page: valid, and its time agrees with the MSR's.
            seq, _, scale, offset = struct.unpack("<IIQq", mem.read(TSC_PAGE, 24))
            assert seq not in (0, 0xFFFF_FFFF)
            assert scale == (10_000_000 << 64) // tsc_hz
            tsc = vp.get("tsc")
            ref = vp.get("time_ref_count")
            assert isinstance(tsc, int) and isinstance(ref, int)
            from_page = ((tsc * scale) >> 64) + offset
            assert abs(from_page - ref) < 10_000_000  # within a second
            later = vp.get("time_ref_count")
            assert isinstance(later, int) and later > ref


def test_msrs_of_a_disabled_feature_fault(device: mshv.Device) -> None:
    with device.create_partition(synthetic_features=1 << F.hypervisor_present | 1 << F.hv1) as p:
        code = asm("mov ecx, 0x40000001\nxor eax, eax\nxor edx, edx\nwrmsr\nhlt", 64, CODE64)
        vp, mem = _vp(p, code)
        with mem:
            assert isinstance(vp.run(), mshv.UnrecoverableException)  # #GP, no IDT


def test_no_features_no_hypervisor_leaves(device: mshv.Device) -> None:
    with device.create_partition() as part:
        code = asm("mov eax, 1\ncpuid\nmov eax, ecx\nout 0x80, eax\nhlt", 64, CODE64)
        vp, mem = _vp(part, code)
        with mem:
            assert _outputs(vp)[0] >> 31 == 0  # CPUID.1:ECX.hypervisor clear


@pytest.mark.parametrize("bit", [F.access_synic_regs, F.access_synthetic_timer_regs,
                                 F.access_vp_run_time_reg, F.tb_flush_hypercalls])  # fmt: skip
def test_features_the_engine_lacks_are_refused(device: mshv.Device, bit: int) -> None:
    with pytest.raises(mshv.UnsupportedError) as e:
        device.create_partition(synthetic_features=1 << bit)
    assert e.value.errno == 95
