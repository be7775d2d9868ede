"""TLFS enums and constants against the reference tables (abi-rfc.md section 5).

The register-name table is typed in full from section 5.5; other enums are checked
entry by entry where the reference lists them.
"""

from __future__ import annotations

import enum

import pytest

from mshv.abi import message as m
from mshv.abi import status as s
from mshv.abi import tlfs as t
from mshv.abi import uapi as u


def entries(text: str, prefix: str) -> dict[str, int]:
    """Parse 'NAME 0xVALUE; NAME 0xVALUE; ...' (newlines allowed) into prefixed names."""
    out: dict[str, int] = {}
    for item in text.replace("\n", ";").split(";"):
        if item.strip():
            name, value = item.split()
            out[prefix + name] = int(value, 16)
    return out


def series(
    fmt: str, count: int, first: int, prefix: str, *, step: int = 1, start: int = 0
) -> dict[str, int]:
    """``count`` names numbered from ``start`` ({i} decimal, {X} hex), values from ``first``."""
    return {
        prefix + fmt.format(i=start + k, X=f"{start + k:X}"): first + step * k for k in range(count)
    }


R = "HV_REGISTER_"
X = "HV_X64_REGISTER_"

# Section 5.5, row by row.
EXPECTED_REGISTERS: dict[str, int] = {
    **entries(
        """EXPLICIT_SUSPEND 0x0; INTERCEPT_SUSPEND 0x1; INSTRUCTION_EMULATION_HINTS 0x2;
        DISPATCH_SUSPEND 0x3; INTERNAL_ACTIVITY_STATE 0x4; HYPERVISOR_VERSION 0x100
        PRIVILEGES_AND_FEATURES_INFO 0x200; FEATURES_INFO 0x201; IMPLEMENTATION_LIMITS_INFO 0x202
        HARDWARE_FEATURES_INFO 0x203; CPU_MANAGEMENT_FEATURES_INFO 0x204; SVM_FEATURES_INFO 0x205
        SKIP_LEVEL_FEATURES_INFO 0x206; NESTED_VIRT_FEATURES_INFO 0x207; IPT_FEATURES_INFO 0x208
        GUEST_CRASH_CTL 0x215
        POWER_STATE_CONFIG_C1 0x220; POWER_STATE_TRIGGER_C1 0x221; POWER_STATE_CONFIG_C2 0x222
        POWER_STATE_TRIGGER_C2 0x223; POWER_STATE_CONFIG_C3 0x224; POWER_STATE_TRIGGER_C3 0x225
        PROCESSOR_CLOCK_FREQUENCY 0x240; INTERRUPT_CLOCK_FREQUENCY 0x241; GUEST_IDLE 0x250
        DEBUG_DEVICE_OPTIONS 0x260; MEMORY_ZEROING_CONTROL 0x270
        PENDING_INTERRUPTION 0x10002; INTERRUPT_STATE 0x10003; PENDING_EVENT0 0x10004
        PENDING_EVENT1 0x10005
        VP_RUNTIME 0x90000; GUEST_OS_ID 0x90002; VP_INDEX 0x90003; TIME_REF_COUNT 0x90004
        CPU_MANAGEMENT_VERSION 0x90007; VP_ASSIST_PAGE 0x90013; VP_ROOT_SIGNAL_COUNT 0x90014
        REFERENCE_TSC 0x90017
        STATS_PARTITION_RETAIL 0x90020; STATS_PARTITION_INTERNAL 0x90021
        STATS_VP_RETAIL 0x90022; STATS_VP_INTERNAL 0x90023; NESTED_VP_INDEX 0x91003
        SCONTROL 0xA0010; SVERSION 0xA0011; SIFP 0xA0012; SIPP 0xA0013; EOM 0xA0014
        SIRBP 0xA0015
        NESTED_SCONTROL 0xA1010; NESTED_SVERSION 0xA1011; NESTED_SIFP 0xA1012
        NESTED_SIPP 0xA1013; NESTED_EOM 0xA1014; NESTED_SIRBP 0xA1015
        STIME_UNHALTED_TIMER_CONFIG 0xB0100; STIME_UNHALTED_TIMER_COUNT 0xB0101
        VSM_CODE_PAGE_OFFSETS 0xD0002; VSM_VP_STATUS 0xD0003; VSM_PARTITION_STATUS 0xD0004
        VSM_VINA 0xD0005; VSM_CAPABILITIES 0xD0006; VSM_PARTITION_CONFIG 0xD0007
        VSM_VP_WAIT_FOR_TLB_LOCK 0xD0020; ISOLATION_CAPABILITIES 0xD0100""",
        R,
    ),
    **series("GUEST_CRASH_P{i}", 5, 0x210, R),
    **series("SINT{i}", 16, 0xA0000, R),
    **series("NESTED_SINT{i}", 16, 0xA1000, R),
    **series("STIMER{i}_CONFIG", 4, 0xB0000, R, step=2),
    **series("STIMER{i}_COUNT", 4, 0xB0001, R, step=2),
    **series("VSM_VP_SECURE_CONFIG_VTL{i}", 15, 0xD0010, R),
    **entries(
        """DELIVERABILITY_NOTIFICATIONS 0x10006
        RAX 0x20000; RCX 0x20001; RDX 0x20002; RBX 0x20003; RSP 0x20004; RBP 0x20005
        RSI 0x20006; RDI 0x20007; RIP 0x20010; RFLAGS 0x20011
        FP_CONTROL_STATUS 0x30018; XMM_CONTROL_STATUS 0x30019
        CR0 0x40000; CR2 0x40001; CR3 0x40002; CR4 0x40003; CR8 0x40004; XFEM 0x40005
        INTERMEDIATE_CR0 0x41000; INTERMEDIATE_CR4 0x41003; INTERMEDIATE_CR8 0x41004
        DR6 0x50004; DR7 0x50005
        ES 0x60000; CS 0x60001; SS 0x60002; DS 0x60003; FS 0x60004; GS 0x60005
        LDTR 0x60006; TR 0x60007; IDTR 0x70000; GDTR 0x70001
        TSC 0x80000; EFER 0x80001; KERNEL_GS_BASE 0x80002; APIC_BASE 0x80003; PAT 0x80004
        SYSENTER_CS 0x80005; SYSENTER_EIP 0x80006; SYSENTER_ESP 0x80007; STAR 0x80008
        LSTAR 0x80009; CSTAR 0x8000A; SFMASK 0x8000B; INITIAL_APIC_ID 0x8000C
        MSR_MTRR_CAP 0x8000D; MSR_MTRR_DEF_TYPE 0x8000E; MSR_MTRR_FIX64K00000 0x80070
        MSR_MTRR_FIX16K80000 0x80071; MSR_MTRR_FIX16KA0000 0x80072
        MSR_MTRR_FIX4KC0000 0x80073; MSR_MTRR_FIX4KC8000 0x80074
        MSR_MTRR_FIX4KD0000 0x80075; MSR_MTRR_FIX4KD8000 0x80076
        MSR_MTRR_FIX4KE0000 0x80077; MSR_MTRR_FIX4KE8000 0x80078
        MSR_MTRR_FIX4KF0000 0x80079; MSR_MTRR_FIX4KF8000 0x8007A
        TSC_AUX 0x8007B; BNDCFGS 0x8007C; DEBUG_CTL 0x8007D; AVAILABLE0008007E 0x8007E
        AVAILABLE0008007F 0x8007F; SPEC_CTRL 0x80084; PRED_CMD 0x80085
        VIRT_SPEC_CTRL 0x80086
        MSR_IA32_MISC_ENABLE 0x800A0; IA32_FEATURE_CONTROL 0x800A1; IA32_VMX_BASIC 0x800A2
        IA32_VMX_PINBASED_CTLS 0x800A3; IA32_VMX_PROCBASED_CTLS 0x800A4
        IA32_VMX_EXIT_CTLS 0x800A5; IA32_VMX_ENTRY_CTLS 0x800A6; IA32_VMX_MISC 0x800A7
        IA32_VMX_CR0_FIXED0 0x800A8; IA32_VMX_CR0_FIXED1 0x800A9; IA32_VMX_CR4_FIXED0 0x800AA
        IA32_VMX_CR4_FIXED1 0x800AB; IA32_VMX_VMCS_ENUM 0x800AC
        IA32_VMX_PROCBASED_CTLS2 0x800AD; IA32_VMX_EPT_VPID_CAP 0x800AE
        IA32_VMX_TRUE_PINBASED_CTLS 0x800AF; IA32_VMX_TRUE_PROCBASED_CTLS 0x800B0
        IA32_VMX_TRUE_EXIT_CTLS 0x800B1; IA32_VMX_TRUE_ENTRY_CTLS 0x800B2
        PERF_GLOBAL_CTRL 0x81000; PERF_GLOBAL_STATUS 0x81001; PERF_GLOBAL_IN_USE 0x81002
        FIXED_CTR_CTRL 0x81003; DS_AREA 0x81004; PEBS_ENABLE 0x81005; PEBS_LD_LAT 0x81006
        PEBS_FRONTEND 0x81007; PERF_EVT_SEL0 0x81100; PMC0 0x81200; FIXED_CTR0 0x81300
        RTIT_CTL 0x81008; RTIT_STATUS 0x81009; RTIT_OUTPUT_BASE 0x8100A
        RTIT_OUTPUT_MASK_PTRS 0x8100B; RTIT_CR3_MATCH 0x8100C; RTIT_ADDR0A 0x81400
        LBR_TOS 0x82000; LBR_SELECT 0x82001; LER_FROM_LIP 0x82002; LER_TO_LIP 0x82003
        LBR_FROM0 0x82100; LBR_TO0 0x82200; LBR_INFO0 0x83300
        APIC_ID 0x84802; APIC_VERSION 0x84803
        HYPERCALL 0x90001; SYNTHETIC_EOI 0x90010; SYNTHETIC_ICR 0x90011
        SYNTHETIC_TPR 0x90012; EMULATED_TIMER_PERIOD 0x90030; EMULATED_TIMER_CONTROL 0x90031
        PM_TIMER_ASSIST 0x90032
        CR_INTERCEPT_CONTROL 0xE0000; CR_INTERCEPT_CR0_MASK 0xE0001
        CR_INTERCEPT_CR4_MASK 0xE0002; CR_INTERCEPT_IA32_MISC_ENABLE_MASK 0xE0003""",
        X,
    ),
    **series("R{i}", 8, 0x20008, X, start=8),
    **series("XMM{i}", 16, 0x30000, X),
    **series("FP_MMX{i}", 8, 0x30010, X),
    **series("DR{i}", 4, 0x50000, X),
    **series("MSR_MTRR_PHYS_BASE{X}", 16, 0x80010, X),
    **series("MSR_MTRR_PHYS_MASK{X}", 16, 0x80040, X),
    **series("SGX_LAUNCH_CONTROL{i}", 4, 0x80080, X),
}
# The reference says 322 entries; its explicit list (RTIT_ADDR0A being the only named
# RTIT address register) adds up to exactly that.
REGISTER_COUNT = 322


def test_register_table_transcription_is_complete() -> None:
    assert len(EXPECTED_REGISTERS) == REGISTER_COUNT


def test_register_names_match_reference_exactly() -> None:
    actual = {member.name: member.value for member in t.hv_register_name}
    assert actual == EXPECTED_REGISTERS
    assert len(t.hv_register_name) == REGISTER_COUNT


def test_register_name_range_boundaries() -> None:
    r = t.hv_register_name
    assert int(r.HV_REGISTER_EXPLICIT_SUSPEND) == 0 and int(r.HV_REGISTER_INTERCEPT_SUSPEND) == 1
    assert (r.HV_X64_REGISTER_XMM0, r.HV_X64_REGISTER_XMM15) == (0x30000, 0x3000F)
    assert (r.HV_X64_REGISTER_R8, r.HV_X64_REGISTER_R15) == (0x20008, 0x2000F)
    assert int(r.HV_X64_REGISTER_MSR_MTRR_PHYS_BASE0) == 0x80010
    assert int(r.HV_X64_REGISTER_MSR_MTRR_PHYS_BASEF) == 0x8001F
    assert int(r.HV_X64_REGISTER_MSR_MTRR_PHYS_MASKF) == 0x8004F
    assert (r.HV_REGISTER_SINT0, r.HV_REGISTER_SINT15) == (0xA0000, 0xA000F)
    assert int(r.HV_REGISTER_STIMER3_COUNT) == 0xB0007
    assert int(r.HV_REGISTER_VSM_VP_SECURE_CONFIG_VTL14) == 0xD001E
    assert "HV_X64_REGISTER_RTIT_ADDR0B" not in r.__members__


# --- enums with no duplicate values ---------------------------------------------------

ENUMS = [
    t.hv_register_name,
    t.hv_intercept_type,
    t.hv_interrupt_type,
    t.hv_partition_property_code,
    t.hv_get_set_vp_state_type,
    t.hv_cache_type,
    t.hv_x64_pending_interruption_type,
    t.hv_x64_unsupported_feature_code,
    t.hv_partition_processor_feature,
    t.hv_partition_processor_xsave_feature,
    t.hv_partition_synthetic_processor_feature,
    t.hv_x64_xsave_xfem_bit,
    u.hv_vp_state_page_type,
    m.hv_message_type,
    s.hv_status,
]


@pytest.mark.parametrize("cls", ENUMS, ids=lambda c: c.__name__)
def test_enum_has_no_aliases(cls: type[enum.IntEnum]) -> None:
    assert len(cls.__members__) == len(cls)


def as_dict(cls: type[enum.IntEnum]) -> dict[str, int]:
    return {member.name: member.value for member in cls}


def test_intercept_types() -> None:
    assert as_dict(t.hv_intercept_type) == {
        "HV_INTERCEPT_TYPE_X64_IO_PORT": 0x0,
        "HV_INTERCEPT_TYPE_X64_MSR": 0x1,
        "HV_INTERCEPT_TYPE_X64_CPUID": 0x2,
        "HV_INTERCEPT_TYPE_EXCEPTION": 0x3,
        "HV_INTERCEPT_TYPE_REGISTER": 0x4,
        "HV_INTERCEPT_TYPE_MMIO": 0x5,
        "HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID": 0x6,
        "HV_INTERCEPT_TYPE_X64_APIC_SMI": 0x7,
        "HV_INTERCEPT_TYPE_HYPERCALL": 0x8,
        "HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI": 0x9,
        "HV_INTERCEPT_MC_UPDATE_PATCH_LEVEL_MSR_READ": 0xA,
        "HV_INTERCEPT_TYPE_X64_APIC_WRITE": 0xB,
        "HV_INTERCEPT_TYPE_MAX": 0xC,
        "HV_INTERCEPT_TYPE_INVALID": 0xFFFFFFFF,
    }


def test_intercept_access_codes() -> None:
    masks = (
        t.HV_INTERCEPT_ACCESS_MASK_NONE,
        t.HV_INTERCEPT_ACCESS_MASK_READ,
        t.HV_INTERCEPT_ACCESS_MASK_WRITE,
        t.HV_INTERCEPT_ACCESS_MASK_EXECUTE,
    )
    assert masks == (0x00, 0x01, 0x02, 0x04)
    kinds = (t.HV_INTERCEPT_ACCESS_READ, t.HV_INTERCEPT_ACCESS_WRITE, t.HV_INTERCEPT_ACCESS_EXECUTE)
    assert kinds == (0, 1, 2)


def test_interrupt_types() -> None:
    names = "FIXED LOWESTPRIORITY SMI REMOTEREAD NMI INIT SIPI EXTINT LOCALINT0 LOCALINT1 MAXIMUM"
    expected = {f"HV_X64_INTERRUPT_TYPE_{n}": i for i, n in enumerate(names.split())}
    assert as_dict(t.hv_interrupt_type) == expected
    assert int(t.hv_interrupt_type.HV_X64_INTERRUPT_TYPE_MAXIMUM) == 0xA


def test_partition_property_codes() -> None:
    expected = entries(
        """PRIVILEGE_FLAGS 0x00010000; SYNTHETIC_PROC_FEATURES 0x00010001
        SUSPEND 0x00020000; CPU_RESERVE 0x00020001; CPU_CAP 0x00020002
        CPU_WEIGHT 0x00020003; CPU_GROUP_ID 0x00020004; TIME_FREEZE 0x00030003
        DEBUG_CHANNEL_ID 0x00040000
        VIRTUAL_TLB_PAGE_COUNT 0x00050000; VSM_CONFIG 0x00050001
        ZERO_MEMORY_ON_RESET 0x00050002; PROCESSORS_PER_SOCKET 0x00050003
        NESTED_TLB_SIZE 0x00050004; GPA_PAGE_ACCESS_TRACKING 0x00050005
        VSM_PERMISSIONS_DIRTY_SINCE_LAST_QUERY 0x00050006
        SGX_LAUNCH_CONTROL_CONFIG 0x00050007; DEFAULT_SGX_LAUNCH_CONTROL0 0x00050008
        DEFAULT_SGX_LAUNCH_CONTROL1 0x00050009; DEFAULT_SGX_LAUNCH_CONTROL2 0x0005000A
        DEFAULT_SGX_LAUNCH_CONTROL3 0x0005000B; ISOLATION_STATE 0x0005000C
        ISOLATION_CONTROL 0x0005000D; RDT_L3_COS_INDEX 0x0005000E; RDT_RMID 0x0005000F
        IMPLEMENTED_PHYSICAL_ADDRESS_BITS 0x00050010
        NON_ARCHITECTURAL_CORE_SHARING 0x00050011; HYPERCALL_DOORBELL_PAGE 0x00050012
        PROCESSOR_VENDOR 0x00060000; PROCESSOR_FEATURES_DEPRECATED 0x00060001
        PROCESSOR_XSAVE_FEATURES 0x00060002; PROCESSOR_CL_FLUSH_SIZE 0x00060003
        ENLIGHTENMENT_MODIFICATIONS 0x00060004; COMPATIBILITY_VERSION 0x00060005
        PHYSICAL_ADDRESS_WIDTH 0x00060006; XSAVE_STATES 0x00060007
        MAX_XSAVE_DATA_SIZE 0x00060008; PROCESSOR_CLOCK_FREQUENCY 0x00060009
        PROCESSOR_FEATURES0 0x0006000A; PROCESSOR_FEATURES1 0x0006000B
        GUEST_OS_ID 0x00070000; PROCESSOR_VIRTUALIZATION_FEATURES 0x00080000""",
        "HV_PARTITION_PROPERTY_",
    )
    assert len(expected) == 42
    assert as_dict(t.hv_partition_property_code) == expected


def test_message_types() -> None:
    expected = entries(
        """NONE 0x00000000; UNMAPPED_GPA 0x80000000; GPA_INTERCEPT 0x80000001
        TIMER_EXPIRED 0x80000010; INVALID_VP_REGISTER_VALUE 0x80000020
        UNRECOVERABLE_EXCEPTION 0x80000021; UNSUPPORTED_FEATURE 0x80000022
        EVENTLOG_BUFFERCOMPLETE 0x80000040; X64_IO_PORT_INTERCEPT 0x80010000
        X64_MSR_INTERCEPT 0x80010001; X64_CPUID_INTERCEPT 0x80010002
        X64_EXCEPTION_INTERCEPT 0x80010003; X64_APIC_EOI 0x80010004
        X64_LEGACY_FP_ERROR 0x80010005; X64_IOMMU_PRQ 0x80010006; X64_HALT 0x80010007
        X64_INTERRUPTION_DELIVERABLE 0x80010008; X64_SIPI_INTERCEPT 0x80010009""",
        "HVMSG_",
    )
    assert len(expected) == 18
    assert as_dict(m.hv_message_type) == expected


def test_payload_types_follow_the_inference_table() -> None:
    mt = m.hv_message_type
    expected = {
        mt.HVMSG_UNMAPPED_GPA: m.hv_x64_memory_intercept_message,
        mt.HVMSG_GPA_INTERCEPT: m.hv_x64_memory_intercept_message,
        mt.HVMSG_INVALID_VP_REGISTER_VALUE: m.hv_x64_invalid_vp_register_message,
        mt.HVMSG_UNRECOVERABLE_EXCEPTION: m.hv_x64_unrecoverable_exception_message,
        mt.HVMSG_UNSUPPORTED_FEATURE: m.hv_x64_unsupported_feature_message,
        mt.HVMSG_X64_IO_PORT_INTERCEPT: m.hv_x64_io_port_intercept_message,
        mt.HVMSG_X64_MSR_INTERCEPT: m.hv_x64_msr_intercept_message,
        mt.HVMSG_X64_CPUID_INTERCEPT: m.hv_x64_cpuid_intercept_message,
        mt.HVMSG_X64_EXCEPTION_INTERCEPT: m.hv_x64_exception_intercept_message,
        mt.HVMSG_X64_APIC_EOI: m.hv_x64_apic_eoi_message,
        mt.HVMSG_X64_HALT: m.hv_x64_halt_message,
        mt.HVMSG_X64_INTERRUPTION_DELIVERABLE: m.hv_x64_interruption_deliverable_message,
        mt.HVMSG_X64_SIPI_INTERCEPT: m.hv_x64_sipi_intercept_message,
    }
    assert dict(m.PAYLOAD_TYPES) == expected


def test_message_constants() -> None:
    assert (m.HV_MESSAGE_SIZE, m.HV_MESSAGE_PAYLOAD_BYTE_COUNT) == (256, 240)
    assert (m.HV_MESSAGE_PAYLOAD_QWORD_COUNT, m.HV_MESSAGE_HEADER_SIZE) == (30, 16)
    assert m.HV_SYNIC_INTERCEPTION_SINT_INDEX == 0


def test_execution_state_masks_match_bitfields() -> None:
    masks = {
        "cpl": m.HV_X64_VP_EXECUTION_STATE_CPL_MASK,
        "cr0_pe": m.HV_X64_VP_EXECUTION_STATE_CR0_PE,
        "cr0_am": m.HV_X64_VP_EXECUTION_STATE_CR0_AM,
        "efer_lma": m.HV_X64_VP_EXECUTION_STATE_EFER_LMA,
        "debug_active": m.HV_X64_VP_EXECUTION_STATE_DEBUG_ACTIVE,
        "interruption_pending": m.HV_X64_VP_EXECUTION_STATE_INTERRUPTION_PENDING,
        "vtl": m.HV_X64_VP_EXECUTION_STATE_VTL_MASK,
        "enclave_mode": m.HV_X64_VP_EXECUTION_STATE_ENCLAVE_MODE,
        "interrupt_shadow": m.HV_X64_VP_EXECUTION_STATE_INTERRUPT_SHADOW,
        "virtualization_fault_active": m.HV_X64_VP_EXECUTION_STATE_VIRTUALIZATION_FAULT_ACTIVE,
    }
    # Reference bit table: cpl 0-1, then one bit each from 2, vtl 7-10, then 11, 12, 13.
    assert masks["cpl"] == 0b11 and masks["vtl"] == 0b1111 << 7
    assert [masks[k].bit_length() - 1 for k in ("cr0_pe", "enclave_mode")] == [2, 11]
    assert masks["virtualization_fault_active"] == 1 << 13
    for name, mask in masks.items():
        state = m.hv_x64_vp_execution_state(as_uint16=mask)
        assert getattr(state, name) == (1 << bin(mask).count("1")) - 1, name
    assert m.HV_X64_VP_EXECUTION_STATE_CPL_SHIFT == 0
    assert m.HV_X64_VP_EXECUTION_STATE_VTL_SHIFT == 7


def test_vp_state_types() -> None:
    st = t.hv_get_set_vp_state_type
    assert t.HV_GET_SET_VP_STATE_TYPE_PFN == 0x80000000
    assert as_dict(st) == {
        "HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE": 0,
        "HV_GET_SET_VP_STATE_XSAVE": 0x80000001,
        "HV_GET_SET_VP_STATE_SIM_PAGE": 0x80000002,
        "HV_GET_SET_VP_STATE_SIEF_PAGE": 0x80000003,
        "HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS": 4,
    }
    assert as_dict(u.hv_vp_state_page_type) == {
        "HV_VP_STATE_PAGE_REGISTERS": 0,
        "HV_VP_STATE_PAGE_COUNT": 1,
    }


def test_message_field_enums() -> None:
    assert as_dict(t.hv_cache_type) == {
        "HV_CACHE_TYPE_X64_UNCACHED": 0,
        "HV_CACHE_TYPE_X64_WRITE_COMBINING": 1,
        "HV_CACHE_TYPE_X64_WRITE_THROUGH": 4,
        "HV_CACHE_TYPE_X64_WRITE_PROTECTED": 5,
        "HV_CACHE_TYPE_X64_WRITE_BACK": 6,
    }
    assert as_dict(t.hv_x64_pending_interruption_type) == {
        "HV_X64_PENDING_INTERRUPT": 0,
        "HV_X64_PENDING_NMI": 2,
        "HV_X64_PENDING_EXCEPTION": 3,
    }
    assert as_dict(t.hv_x64_unsupported_feature_code) == {
        "HV_X64_UNSUPPORTED_FEATURE_INTERCEPT": 1,
        "HV_X64_UNSUPPORTED_FEATURE_TASK_SWITCH_TSS": 2,
    }


def test_feature_bit_spot_checks() -> None:
    pf = t.hv_partition_processor_feature
    assert (pf.sse3_support, pf.tsx_ctrl_support, pf.acount_mcount_support) == (0, 62, 64)
    assert (pf.hle_support_deprecated, pf.hle_support, pf.fsrep_cmpsb) == (27, 36, 85)
    sf = t.hv_partition_synthetic_processor_feature
    assert (sf.hypervisor_present, sf.access_frequency_regs) == (0, 11)
    assert (sf.fast_hypercall_output, sf.retarget_device_interrupt) == (18, 30)
    assert int(t.hv_partition_processor_xsave_feature.avx_support) == 2
    xb = t.hv_x64_xsave_xfem_bit
    assert (xb.legacy_x87, xb.avx_512_zmm16_31, xb.pasid, xb.xtile_data) == (0, 7, 10, 18)
    assert t.HV_PARTITION_PROCESSOR_FEATURE_BANKS == 2
    assert t.HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS == 1


def test_uapi_constants() -> None:
    assert u.MSHV_VERSION == 0
    assert u.MSHV_VP_MAX_REGISTERS == 128
    assert u.MSHV_VP_MMAP_REGISTERS_OFFSET == 0
    assert u.HV_VP_REGISTER_PAGE_VERSION_1 == 1
    assert (u.MSHV_MAX_PARTITIONS, u.MSHV_MAX_MEM_REGIONS, u.MSHV_MAX_VPS) == (128, 64, 256)
    assert u.ENOTSUPP == 524
    assert u.HV_XSAVE_DATA_NO_XMM_REGISTERS == 1
    classes = (
        u.HV_X64_REGISTER_CLASS_GENERAL,
        u.HV_X64_REGISTER_CLASS_IP,
        u.HV_X64_REGISTER_CLASS_XMM,
        u.HV_X64_REGISTER_CLASS_SEGMENT,
        u.HV_X64_REGISTER_CLASS_FLAGS,
    )
    assert classes == (0, 1, 2, 3, 4)


def test_map_gpa_flags() -> None:
    flags = (
        u.HV_MAP_GPA_PERMISSIONS_NONE,
        u.HV_MAP_GPA_READABLE,
        u.HV_MAP_GPA_WRITABLE,
        u.HV_MAP_GPA_KERNEL_EXECUTABLE,
        u.HV_MAP_GPA_USER_EXECUTABLE,
        u.HV_MAP_GPA_EXECUTABLE,
        u.HV_MAP_GPA_PERMISSIONS_MASK,
    )
    assert flags == (0x0, 0x1, 0x2, 0x4, 0x8, 0xC, 0xF)


def test_partition_creation_flags() -> None:
    flags = (
        u.HV_PARTITION_CREATION_FLAG_SMT_ENABLED_GUEST,
        u.HV_PARTITION_CREATION_FLAG_GPA_LARGE_PAGES_DISABLED,
        u.HV_PARTITION_CREATION_FLAG_GPA_SUPER_PAGES_ENABLED,
        u.HV_PARTITION_CREATION_FLAG_EXO_PARTITION,
        u.HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED,
    )
    assert flags == (1 << 0, 1 << 3, 1 << 4, 1 << 8, 1 << 13)


def test_interrupt_control_packs_type_and_modes() -> None:
    ctl = u.hv_interrupt_control()
    ctl.interrupt_type = t.hv_interrupt_type.HV_X64_INTERRUPT_TYPE_NMI
    ctl.level_triggered = 1
    assert ctl.as_uint64 == 4 | 1 << 32
    ctl.logical_dest_mode = 1
    assert ctl.as_uint64 == 4 | 1 << 32 | 1 << 33


def test_synthetic_features_first_bank_is_the_property_value() -> None:
    feats = u.hv_partition_synthetic_processor_features()
    feats.hypervisor_present = 1
    feats.hv1 = 1
    feats.access_hypercall_regs = 1
    assert feats.as_uint64[0] == 0b1000_0011
