"""Hyper-V TLFS definitions used by the RFC interface (reference section 5).

Values are those of the RFC (Nov 2020) uapi headers ``asm/hyperv-tlfs.h`` and
``asm-generic/hyperv-tlfs.h``. C enums are :class:`enum.IntEnum` classes under their C
name; ``#define`` groups are module-level ints. The register-name enum, the register value
layouts and the feature bits live in private modules and are re-exported here.

Synthetic message types and the intercept payloads are in :mod:`mshv.abi.message`; the
structures embedded in ioctl arguments are in :mod:`mshv.abi.uapi`.
"""

from __future__ import annotations

import enum

from ._features import (
    HV_PARTITION_PROCESSOR_FEATURE_BANKS as HV_PARTITION_PROCESSOR_FEATURE_BANKS,
)
from ._features import (
    HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS as HV_PARTITION_SYNTHETIC_PROCESSOR_FEATURES_BANKS,  # noqa: E501
)
from ._features import hv_partition_processor_feature as hv_partition_processor_feature
from ._features import hv_partition_processor_features as hv_partition_processor_features
from ._features import (
    hv_partition_processor_xsave_feature as hv_partition_processor_xsave_feature,
)
from ._features import (
    hv_partition_processor_xsave_features as hv_partition_processor_xsave_features,
)
from ._features import (
    hv_partition_synthetic_processor_feature as hv_partition_synthetic_processor_feature,
)
from ._features import (
    hv_partition_synthetic_processor_features as hv_partition_synthetic_processor_features,
)
from ._features import hv_x64_xsave_xfem_bit as hv_x64_xsave_xfem_bit
from ._features import hv_x64_xsave_xfem_register as hv_x64_xsave_xfem_register
from ._regnames import hv_register_name as hv_register_name
from ._regvalues import hv_dispatch_suspend_register as hv_dispatch_suspend_register
from ._regvalues import hv_explicit_suspend_register as hv_explicit_suspend_register
from ._regvalues import hv_intercept_suspend_register as hv_intercept_suspend_register
from ._regvalues import hv_register_assoc as hv_register_assoc
from ._regvalues import hv_register_value as hv_register_value
from ._regvalues import hv_u128 as hv_u128
from ._regvalues import hv_x64_fp_control_status_register as hv_x64_fp_control_status_register
from ._regvalues import hv_x64_fp_register as hv_x64_fp_register
from ._regvalues import hv_x64_interrupt_state_register as hv_x64_interrupt_state_register
from ._regvalues import hv_x64_msr_npiep_config_contents as hv_x64_msr_npiep_config_contents
from ._regvalues import hv_x64_pending_exception_event as hv_x64_pending_exception_event
from ._regvalues import (
    hv_x64_pending_interruption_register as hv_x64_pending_interruption_register,
)
from ._regvalues import (
    hv_x64_pending_virtualization_fault_event as hv_x64_pending_virtualization_fault_event,
)
from ._regvalues import hv_x64_segment_register as hv_x64_segment_register
from ._regvalues import hv_x64_table_register as hv_x64_table_register
from ._regvalues import (
    hv_x64_xmm_control_status_register as hv_x64_xmm_control_status_register,
)

# --- intercepts (section 5.6) -----------------------------------------------------------


@enum.unique
class hv_intercept_type(enum.IntEnum):
    """Kind of intercept for MSHV_INSTALL_INTERCEPT."""

    HV_INTERCEPT_TYPE_X64_IO_PORT = 0x0
    HV_INTERCEPT_TYPE_X64_MSR = 0x1
    HV_INTERCEPT_TYPE_X64_CPUID = 0x2
    HV_INTERCEPT_TYPE_EXCEPTION = 0x3
    HV_INTERCEPT_TYPE_REGISTER = 0x4
    HV_INTERCEPT_TYPE_MMIO = 0x5
    HV_INTERCEPT_TYPE_X64_GLOBAL_CPUID = 0x6
    HV_INTERCEPT_TYPE_X64_APIC_SMI = 0x7
    HV_INTERCEPT_TYPE_HYPERCALL = 0x8
    HV_INTERCEPT_TYPE_X64_APIC_INIT_SIPI = 0x9
    HV_INTERCEPT_MC_UPDATE_PATCH_LEVEL_MSR_READ = 0xA  # no TYPE_ in the header's name
    HV_INTERCEPT_TYPE_X64_APIC_WRITE = 0xB
    HV_INTERCEPT_TYPE_MAX = 0xC  # implicit: one past the last real type
    HV_INTERCEPT_TYPE_INVALID = 0xFFFFFFFF


# Install side: access_type_mask of MSHV_INSTALL_INTERCEPT, a bit mask.
HV_INTERCEPT_ACCESS_MASK_NONE = 0x00
HV_INTERCEPT_ACCESS_MASK_READ = 0x01
HV_INTERCEPT_ACCESS_MASK_WRITE = 0x02
HV_INTERCEPT_ACCESS_MASK_EXECUTE = 0x04

# Message side: intercept_access_type of the intercept message header, a plain number.
HV_INTERCEPT_ACCESS_READ = 0
HV_INTERCEPT_ACCESS_WRITE = 1
HV_INTERCEPT_ACCESS_EXECUTE = 2


# --- interrupt assertion (section 5.7) --------------------------------------------------


@enum.unique
class hv_interrupt_type(enum.IntEnum):
    """APIC delivery mode for MSHV_ASSERT_INTERRUPT (``hv_interrupt_control``)."""

    HV_X64_INTERRUPT_TYPE_FIXED = 0
    HV_X64_INTERRUPT_TYPE_LOWESTPRIORITY = 1
    HV_X64_INTERRUPT_TYPE_SMI = 2
    HV_X64_INTERRUPT_TYPE_REMOTEREAD = 3
    HV_X64_INTERRUPT_TYPE_NMI = 4
    HV_X64_INTERRUPT_TYPE_INIT = 5
    HV_X64_INTERRUPT_TYPE_SIPI = 6
    HV_X64_INTERRUPT_TYPE_EXTINT = 7
    HV_X64_INTERRUPT_TYPE_LOCALINT0 = 8
    HV_X64_INTERRUPT_TYPE_LOCALINT1 = 9
    HV_X64_INTERRUPT_TYPE_MAXIMUM = 0xA


# --- partition properties (section 5.9) -------------------------------------------------


@enum.unique
class hv_partition_property_code(enum.IntEnum):
    """Property for MSHV_GET/SET_PARTITION_PROPERTY; the high half names the group."""

    # Privilege
    HV_PARTITION_PROPERTY_PRIVILEGE_FLAGS = 0x00010000
    HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES = 0x00010001

    # Scheduling
    HV_PARTITION_PROPERTY_SUSPEND = 0x00020000
    HV_PARTITION_PROPERTY_CPU_RESERVE = 0x00020001
    HV_PARTITION_PROPERTY_CPU_CAP = 0x00020002
    HV_PARTITION_PROPERTY_CPU_WEIGHT = 0x00020003
    HV_PARTITION_PROPERTY_CPU_GROUP_ID = 0x00020004

    # Time
    HV_PARTITION_PROPERTY_TIME_FREEZE = 0x00030003

    # Debugging
    HV_PARTITION_PROPERTY_DEBUG_CHANNEL_ID = 0x00040000

    # Resources
    HV_PARTITION_PROPERTY_VIRTUAL_TLB_PAGE_COUNT = 0x00050000
    HV_PARTITION_PROPERTY_VSM_CONFIG = 0x00050001
    HV_PARTITION_PROPERTY_ZERO_MEMORY_ON_RESET = 0x00050002
    HV_PARTITION_PROPERTY_PROCESSORS_PER_SOCKET = 0x00050003
    HV_PARTITION_PROPERTY_NESTED_TLB_SIZE = 0x00050004
    HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING = 0x00050005
    HV_PARTITION_PROPERTY_VSM_PERMISSIONS_DIRTY_SINCE_LAST_QUERY = 0x00050006
    HV_PARTITION_PROPERTY_SGX_LAUNCH_CONTROL_CONFIG = 0x00050007
    HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL0 = 0x00050008
    HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL1 = 0x00050009
    HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL2 = 0x0005000A
    HV_PARTITION_PROPERTY_DEFAULT_SGX_LAUNCH_CONTROL3 = 0x0005000B
    HV_PARTITION_PROPERTY_ISOLATION_STATE = 0x0005000C
    HV_PARTITION_PROPERTY_ISOLATION_CONTROL = 0x0005000D
    HV_PARTITION_PROPERTY_RDT_L3_COS_INDEX = 0x0005000E
    HV_PARTITION_PROPERTY_RDT_RMID = 0x0005000F
    HV_PARTITION_PROPERTY_IMPLEMENTED_PHYSICAL_ADDRESS_BITS = 0x00050010
    HV_PARTITION_PROPERTY_NON_ARCHITECTURAL_CORE_SHARING = 0x00050011
    HV_PARTITION_PROPERTY_HYPERCALL_DOORBELL_PAGE = 0x00050012

    # Compatibility
    HV_PARTITION_PROPERTY_PROCESSOR_VENDOR = 0x00060000
    HV_PARTITION_PROPERTY_PROCESSOR_FEATURES_DEPRECATED = 0x00060001
    HV_PARTITION_PROPERTY_PROCESSOR_XSAVE_FEATURES = 0x00060002
    HV_PARTITION_PROPERTY_PROCESSOR_CL_FLUSH_SIZE = 0x00060003
    HV_PARTITION_PROPERTY_ENLIGHTENMENT_MODIFICATIONS = 0x00060004
    HV_PARTITION_PROPERTY_COMPATIBILITY_VERSION = 0x00060005
    HV_PARTITION_PROPERTY_PHYSICAL_ADDRESS_WIDTH = 0x00060006
    HV_PARTITION_PROPERTY_XSAVE_STATES = 0x00060007
    HV_PARTITION_PROPERTY_MAX_XSAVE_DATA_SIZE = 0x00060008
    HV_PARTITION_PROPERTY_PROCESSOR_CLOCK_FREQUENCY = 0x00060009
    HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0 = 0x0006000A
    HV_PARTITION_PROPERTY_PROCESSOR_FEATURES1 = 0x0006000B

    # Guest software
    HV_PARTITION_PROPERTY_GUEST_OS_ID = 0x00070000

    # Nested virtualization
    HV_PARTITION_PROPERTY_PROCESSOR_VIRTUALIZATION_FEATURES = 0x00080000


# --- VP state (section 5.10) ------------------------------------------------------------

HV_GET_SET_VP_STATE_TYPE_PFN = 1 << 31
"""Set in a state type whose data travels in pinned user pages named by PFN."""


@enum.unique
class hv_get_set_vp_state_type(enum.IntEnum):
    """State selector for MSHV_GET/SET_VP_STATE (the RFC driver accepts the first two)."""

    HV_GET_SET_VP_STATE_LOCAL_INTERRUPT_CONTROLLER_STATE = 0
    HV_GET_SET_VP_STATE_XSAVE = HV_GET_SET_VP_STATE_TYPE_PFN | 1
    HV_GET_SET_VP_STATE_SIM_PAGE = HV_GET_SET_VP_STATE_TYPE_PFN | 2
    HV_GET_SET_VP_STATE_SIEF_PAGE = HV_GET_SET_VP_STATE_TYPE_PFN | 3
    HV_GET_SET_VP_STATE_SYNTHETIC_TIMERS = 4


# --- intercept message field values (section 5.3) ---------------------------------------


@enum.unique
class hv_cache_type(enum.IntEnum):
    """x86 memory type of the accessed GPA (``cache_type`` of a memory intercept)."""

    HV_CACHE_TYPE_X64_UNCACHED = 0
    HV_CACHE_TYPE_X64_WRITE_COMBINING = 1
    HV_CACHE_TYPE_X64_WRITE_THROUGH = 4
    HV_CACHE_TYPE_X64_WRITE_PROTECTED = 5
    HV_CACHE_TYPE_X64_WRITE_BACK = 6


@enum.unique
class hv_x64_pending_interruption_type(enum.IntEnum):
    """Event class in ``pending_interruption.interruption_type`` and
    ``deliverable_type`` of the interruption-deliverable message (1 is unused)."""

    HV_X64_PENDING_INTERRUPT = 0
    HV_X64_PENDING_NMI = 2
    HV_X64_PENDING_EXCEPTION = 3


@enum.unique
class hv_x64_unsupported_feature_code(enum.IntEnum):
    """``feature_code`` of HVMSG_UNSUPPORTED_FEATURE."""

    HV_X64_UNSUPPORTED_FEATURE_INTERCEPT = 1
    HV_X64_UNSUPPORTED_FEATURE_TASK_SWITCH_TSS = 2


# --- later-ABI property codes the peers use (not in the RFC's enum) ------------------------

HV_PARTITION_PROPERTY_REFERENCE_TIME = 0x00030005
"""Partition reference time, 100 ns units (upstream ABI; Cloud Hypervisor saves it)."""
HV_PARTITION_PROPERTY_UNIMPLEMENTED_MSR_ACTION = 0x00050017
"""What an access to an MSR the hypervisor does not implement does (upstream ABI)."""
HV_UNIMPLEMENTED_MSR_ACTION_FAULT = 0
"""#GP, the default."""
HV_UNIMPLEMENTED_MSR_ACTION_IGNORE_WRITE_READ_ZERO = 1
"""Writes are dropped, reads return 0."""

# --- synthetic MSRs (TLFS) -----------------------------------------------------------------

HV_X64_MSR_GUEST_OS_ID = 0x40000000
HV_X64_MSR_HYPERCALL = 0x40000001
HV_X64_MSR_VP_INDEX = 0x40000002
HV_X64_MSR_RESET = 0x40000003
HV_X64_MSR_VP_RUNTIME = 0x40000010
HV_X64_MSR_TIME_REF_COUNT = 0x40000020
HV_X64_MSR_REFERENCE_TSC = 0x40000021
HV_X64_MSR_TSC_FREQUENCY = 0x40000022
HV_X64_MSR_APIC_FREQUENCY = 0x40000023
HV_X64_MSR_EOI = 0x40000070
HV_X64_MSR_ICR = 0x40000071
HV_X64_MSR_TPR = 0x40000072
HV_X64_MSR_VP_ASSIST_PAGE = 0x40000073

# --- hypervisor CPUID leaves (TLFS) --------------------------------------------------------

HV_CPUID_VENDOR_AND_MAX_FUNCTIONS = 0x40000000
HV_CPUID_INTERFACE = 0x40000001
HV_CPUID_VERSION = 0x40000002
HV_CPUID_FEATURES = 0x40000003
HV_CPUID_ENLIGHTENMENT_INFO = 0x40000004
HV_CPUID_IMPLEMENTATION_LIMITS = 0x40000005
HV_CPUID_HARDWARE_FEATURES = 0x40000006
HV_CPUID_SIGNATURE_HV1 = 0x31237648  # "Hv#1"
HV_CPUID_FEATURES_EDX_FREQUENCY_MSRS = 1 << 8

# --- hypercalls (TLFS call codes the emulation answers) -------------------------------------

HVCALL_NOTIFY_LONG_SPIN_WAIT = 0x0008
HVCALL_GET_PARTITION_ID = 0x0046
HV_HYPERCALL_FAST_BIT = 1 << 16
