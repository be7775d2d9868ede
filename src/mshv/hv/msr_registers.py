"""TLFS register names that stand for architectural MSRs, and their
indices: what an engine reads and writes as the processor's own MSRs."""

from __future__ import annotations

from mshv.abi.tlfs import hv_register_name as R


def _msr_table() -> dict[int, int]:
    table = {
        R.HV_X64_REGISTER_TSC: 0x10,
        R.HV_X64_REGISTER_KERNEL_GS_BASE: 0xC000_0102,
        R.HV_X64_REGISTER_PAT: 0x277,
        R.HV_X64_REGISTER_SYSENTER_CS: 0x174,
        R.HV_X64_REGISTER_SYSENTER_ESP: 0x175,
        R.HV_X64_REGISTER_SYSENTER_EIP: 0x176,
        R.HV_X64_REGISTER_STAR: 0xC000_0081,
        R.HV_X64_REGISTER_LSTAR: 0xC000_0082,
        R.HV_X64_REGISTER_CSTAR: 0xC000_0083,
        R.HV_X64_REGISTER_SFMASK: 0xC000_0084,
        R.HV_X64_REGISTER_TSC_AUX: 0xC000_0103,
        R.HV_X64_REGISTER_MSR_MTRR_CAP: 0xFE,
        R.HV_X64_REGISTER_MSR_MTRR_DEF_TYPE: 0x2FF,
        R.HV_X64_REGISTER_MSR_MTRR_FIX64K00000: 0x250,
        R.HV_X64_REGISTER_MSR_MTRR_FIX16K80000: 0x258,
        R.HV_X64_REGISTER_MSR_MTRR_FIX16KA0000: 0x259,
        R.HV_X64_REGISTER_BNDCFGS: 0xD90,
        R.HV_X64_REGISTER_DEBUG_CTL: 0x1D9,
        R.HV_X64_REGISTER_SPEC_CTRL: 0x48,
        R.HV_X64_REGISTER_VIRT_SPEC_CTRL: 0xC001_011F,
        R.HV_X64_REGISTER_MSR_IA32_MISC_ENABLE: 0x1A0,
        R.HV_X64_REGISTER_IA32_FEATURE_CONTROL: 0x3A,
    }
    for i in range(16):
        table[R[f"HV_X64_REGISTER_MSR_MTRR_PHYS_BASE{i:X}"]] = 0x200 + 2 * i
        table[R[f"HV_X64_REGISTER_MSR_MTRR_PHYS_MASK{i:X}"]] = 0x201 + 2 * i
    fixed4k = ("C0000", "C8000", "D0000", "D8000", "E0000", "E8000", "F0000", "F8000")
    for i, name in enumerate(fixed4k):
        table[R[f"HV_X64_REGISTER_MSR_MTRR_FIX4K{name}"]] = 0x268 + i
    for i in range(4):
        table[R[f"HV_X64_REGISTER_SGX_LAUNCH_CONTROL{i}"]] = 0x8C + i
    return {int(n): m for n, m in table.items()}


MSRS = _msr_table()
