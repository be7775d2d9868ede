"""Partition properties (HvGet/SetPartitionProperty), code by code.

Each RFC property code is one of: readable and settable with its effect;
readable only (setting it fails with HV_STATUS_INVALID_PARTITION_STATE, as
the hypervisor answers for properties fixed at creation); or a service the
KVM engine cannot give, refused both ways (docs/conformance.md). Unknown
codes are HV_STATUS_UNKNOWN_PROPERTY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mshv.abi import tlfs as t
from mshv.abi.status import hv_status
from mshv.abi.tlfs import hv_partition_processor_feature as PF
from mshv.abi.tlfs import hv_partition_processor_xsave_feature as XF
from mshv.abi.tlfs import hv_partition_property_code as P
from mshv.hv import synthetic
from mshv.hv.errors import HvError, UnsupportedError

if TYPE_CHECKING:
    from mshv.hv.partition import Partition

Getter = Callable[["Partition"], int]
Setter = Callable[["Partition", int], None]

COMPATIBILITY_VERSION = 0x0607  # what the RFC driver creates partitions with
VENDOR_INTEL, VENDOR_AMD = 0, 1

# Why each property the engine cannot give is refused.
UNSUPPORTED: dict[int, str] = {
    P.HV_PARTITION_PROPERTY_SUSPEND: "suspending a partition's VPs",
    P.HV_PARTITION_PROPERTY_CPU_RESERVE: "CPU scheduling controls",
    P.HV_PARTITION_PROPERTY_CPU_CAP: "CPU scheduling controls",
    P.HV_PARTITION_PROPERTY_CPU_WEIGHT: "CPU scheduling controls",
    P.HV_PARTITION_PROPERTY_CPU_GROUP_ID: "CPU scheduling controls",
    P.HV_PARTITION_PROPERTY_DEBUG_CHANNEL_ID: "hypervisor debug channels",
    P.HV_PARTITION_PROPERTY_VIRTUAL_TLB_PAGE_COUNT: "a virtual TLB",
    P.HV_PARTITION_PROPERTY_VSM_CONFIG: "virtual secure mode",
    P.HV_PARTITION_PROPERTY_VSM_PERMISSIONS_DIRTY_SINCE_LAST_QUERY: "virtual secure mode",
    P.HV_PARTITION_PROPERTY_ZERO_MEMORY_ON_RESET: "partition reset",
    P.HV_PARTITION_PROPERTY_NESTED_TLB_SIZE: "nested virtualisation",
    P.HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING: "GPA access tracking",
    P.HV_PARTITION_PROPERTY_SGX_LAUNCH_CONTROL_CONFIG: "SGX",
    P.HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL0: "SGX",
    P.HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL1: "SGX",
    P.HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL2: "SGX",
    P.HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL3: "SGX",
    P.HV_PARTITION_PROPERTY_ISOLATION_CONTROL: "isolation",
    P.HV_PARTITION_PROPERTY_RDT_L3_COS_INDEX: "resource director technology",
    P.HV_PARTITION_PROPERTY_RDT_RMID: "resource director technology",
    P.HV_PARTITION_PROPERTY_HYPERCALL_DOORBELL_PAGE: "hypercall doorbells",
    P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES_DEPRECATED: "the deprecated feature bank",
    P.HV_PARTITION_PROPERTY_ENLIGHTENMENT_MODIFICATIONS: "enlightenment modifications",
}

# Processor feature bits as CPUID shows them: feature -> (leaf, subleaf, reg, bit),
# reg 0..3 = EAX, EBX, ECX, EDX. Features without a CPUID bit read as absent.
_CPUID_FEATURES = {
    PF.sse3_support: (1, 0, 2, 0),
    PF.lahf_sahf_support: (0x8000_0001, 0, 2, 0),
    PF.ssse3_support: (1, 0, 2, 9),
    PF.sse4_1_support: (1, 0, 2, 19),
    PF.sse4_2_support: (1, 0, 2, 20),
    PF.sse4a_support: (0x8000_0001, 0, 2, 6),
    PF.xop_support: (0x8000_0001, 0, 2, 11),
    PF.pop_cnt_support: (1, 0, 2, 23),
    PF.cmpxchg16b_support: (1, 0, 2, 13),
    PF.altmovcr8_support: (0x8000_0001, 0, 2, 4),
    PF.lzcnt_support: (0x8000_0001, 0, 2, 5),
    PF.mis_align_sse_support: (0x8000_0001, 0, 2, 7),
    PF.mmx_ext_support: (0x8000_0001, 0, 3, 22),
    PF.amd3dnow_support: (0x8000_0001, 0, 3, 31),
    PF.extended_amd3dnow_support: (0x8000_0001, 0, 3, 30),
    PF.page_1gb_support: (0x8000_0001, 0, 3, 26),
    PF.aes_support: (1, 0, 2, 25),
    PF.pclmulqdq_support: (1, 0, 2, 1),
    PF.pcid_support: (1, 0, 2, 17),
    PF.fma4_support: (0x8000_0001, 0, 2, 16),
    PF.f16c_support: (1, 0, 2, 29),
    PF.rd_rand_support: (1, 0, 2, 30),
    PF.rd_wr_fs_gs_support: (7, 0, 1, 0),
    PF.smep_support: (7, 0, 1, 7),
    PF.enhanced_fast_string_support: (7, 0, 1, 9),
    PF.bmi1_support: (7, 0, 1, 3),
    PF.bmi2_support: (7, 0, 1, 8),
    PF.movbe_support: (1, 0, 2, 22),
    PF.rd_seed_support: (7, 0, 1, 18),
    PF.adx_support: (7, 0, 1, 19),
    PF.smap_support: (7, 0, 1, 20),
    PF.hle_support: (7, 0, 1, 4),
    PF.rtm_support: (7, 0, 1, 11),
    PF.rdtscp_support: (0x8000_0001, 0, 3, 27),
    PF.clflushopt_support: (7, 0, 1, 23),
    PF.clwb_support: (7, 0, 1, 24),
    PF.sha_support: (7, 0, 1, 29),
    PF.invpcid_support: (7, 0, 1, 10),
    PF.ibrs_support: (7, 0, 3, 26),
    PF.stibp_support: (7, 0, 3, 27),
    PF.ibpb_support: (7, 0, 3, 26),
    PF.fast_short_rep_mov_support: (7, 0, 3, 4),
    PF.l1dcache_flush_support: (7, 0, 3, 28),
    PF.virt_spec_ctrl_support: (0x8000_0008, 0, 1, 25),
    PF.rd_pid_support: (7, 0, 2, 22),
    PF.umip_support: (7, 0, 2, 2),
    PF.mb_clear_support: (7, 0, 3, 10),
    PF.tsc_invariant_support: (0x8000_0007, 0, 3, 8),
    PF.la57_support: (7, 0, 2, 16),
    PF.cet_ss_support: (7, 0, 2, 7),
    PF.cet_ibt_support: (7, 0, 3, 20),
    PF.enqcmd_support: (7, 0, 2, 29),
    PF.umwait_tpause_support: (7, 0, 2, 5),
    PF.movdiri_support: (7, 0, 2, 27),
    PF.movdir64b_support: (7, 0, 2, 28),
    PF.cldemote_support: (7, 0, 2, 25),
    PF.serialize_support: (7, 0, 3, 14),
    PF.tsc_deadline_tmr_support: (1, 0, 2, 24),
    PF.tsc_adjust_support: (7, 0, 1, 1),
    PF.rdpru_support: (0x8000_0008, 0, 1, 4),
    PF.cl_zero_support: (0x8000_0008, 0, 1, 0),
}


def processor_features(cpuid: Callable[[int, int], tuple[int, int, int, int]], bank: int) -> int:
    value = 0
    for feature, (leaf, sub, reg, bit) in _CPUID_FEATURES.items():
        if feature // 64 == bank and cpuid(leaf, sub)[reg] >> bit & 1:
            value |= 1 << (feature % 64)
    return value


def xsave_features(cpuid: Callable[[int, int], tuple[int, int, int, int]]) -> int:
    value = 0
    if cpuid(1, 0)[2] >> 26 & 1:
        value |= 1 << XF.xsave_support
    if cpuid(0xD, 1)[0] & 1:
        value |= 1 << XF.xsaveopt_support
    if cpuid(1, 0)[2] >> 28 & 1:
        value |= 1 << XF.avx_support
    return value


def _fixed(part: Partition, value: int) -> None:
    raise HvError(hv_status.HV_STATUS_INVALID_PARTITION_STATE, "the property is fixed")


def _set_synthetic_features(part: Partition, value: int) -> None:
    part.set_synthetic_features(value)


def _set_processors_per_socket(part: Partition, value: int) -> None:
    if part.vps:
        raise HvError(hv_status.HV_STATUS_INVALID_PARTITION_STATE, "VPs already exist")
    if not 1 <= value <= synthetic.MAX_VPS:
        raise HvError(hv_status.HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE, f"{value} per socket")
    part.processors_per_socket = value


def _set_unimplemented_msr_action(part: Partition, value: int) -> None:
    if value not in (t.HV_UNIMPLEMENTED_MSR_ACTION_FAULT,
                     t.HV_UNIMPLEMENTED_MSR_ACTION_IGNORE_WRITE_READ_ZERO):  # fmt: skip
        raise HvError(hv_status.HV_STATUS_PROPERTY_VALUE_OUT_OF_RANGE, f"action {value}")
    part.unimplemented_msr_action = value


def _set_guest_os_id(part: Partition, value: int) -> None:
    part.guest_os_id = value


def _vendor(part: Partition) -> int:
    _, ebx, ecx, edx = part.cpuid(0, 0)
    return VENDOR_AMD if (ebx, edx, ecx) == (0x68747541, 0x69746E65, 0x444D4163) else VENDOR_INTEL


TABLE: dict[int, tuple[Getter, Setter]] = {
    P.HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS: (
        lambda p: synthetic.privileges(p.synthetic_features), _fixed),
    P.HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES: (
        lambda p: p.synthetic_features, _set_synthetic_features),
    P.HV_PARTITION_PROPERTY_TIME_FREEZE: (
        lambda p: int(p.clock.frozen is not None), lambda p, v: p.set_time_freeze(bool(v))),
    t.HV_PARTITION_PROPERTY_REFERENCE_TIME: (
        lambda p: p.reference_time(None), lambda p, v: p.set_reference_time(v)),
    P.HV_PARTITION_PROPERTY_PROCESSORS_PER_SOCKET: (
        lambda p: p.processors_per_socket, _set_processors_per_socket),
    t.HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION: (
        lambda p: p.unimplemented_msr_action, _set_unimplemented_msr_action),
    P.HV_PARTITION_PROPERTY_ISOLATION_STATE: (lambda p: 0, _fixed),  # not isolated
    P.HV_PARTITION_PROPERTY_IMPLEMENTED_PHYSICAL_ADDRESS_BITS: (
        lambda p: p.machine.physical_address_bits, _fixed),
    # KVM does no core scheduling: the VPs share cores with anything else.
    P.HV_PARTITION_PROPERTY_NON_ARCHITECTURAL_CORE_SHARING: (lambda p: 1, _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_VENDOR: (_vendor, _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES: (lambda p: xsave_features(p.cpuid), _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_CL_FLUSH_SIZE: (lambda p: p.cpuid(1, 0)[1] >> 8 & 0xFF,
                                                      _fixed),
    P.HV_PARTITION_PROPERTY_COMPATIBILITY_VERSION: (lambda p: COMPATIBILITY_VERSION, _fixed),
    P.HV_PARTITION_PROPERTY_PHYSICAL_ADDRESS_WIDTH: (
        lambda p: p.machine.physical_address_bits, _fixed),
    P.HV_PARTITION_PROPERTY_XSAVE_STATES: (lambda p: p.xsave_supported(), _fixed),
    P.HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE: (lambda p: p.max_xsave_size(), _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY: (lambda p: p.clock.tsc_hz, _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0: (
        lambda p: processor_features(p.cpuid, 0), _fixed),
    P.HV_PARTITION_PROPERTY_PROCESSOR_FEATURES1: (
        lambda p: processor_features(p.cpuid, 1), _fixed),
    P.HV_PARTITION_PROPERTY_GUEST_OS_ID: (lambda p: p.guest_os_id, _set_guest_os_id),
    P.HV_PARTITION_PROPERTY_PROCESSOR_VIRTUALIZATION_FEATURES: (lambda p: 0, _fixed),
}  # fmt: skip


def _entry(code: int) -> tuple[Getter, Setter]:
    if code in UNSUPPORTED:
        raise UnsupportedError(f"partition property {code:#x} ({UNSUPPORTED[code]})")
    entry = TABLE.get(code)
    if entry is None:
        raise HvError(hv_status.HV_STATUS_UNKNOWN_PROPERTY, f"property code {code:#x}")
    return entry


def get(part: Partition, code: int) -> int:
    return _entry(code)[0](part) & 0xFFFF_FFFF_FFFF_FFFF


def set_(part: Partition, code: int, value: int) -> None:
    _entry(code)[1](part, value)
