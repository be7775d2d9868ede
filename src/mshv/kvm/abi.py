"""KVM's userspace ABI as far as the engine uses it: request numbers, exit
reasons, capabilities and the ctypes layouts of their arguments (x86-64)."""

from __future__ import annotations

import ctypes
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64

KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(0, nr, 0)


def _iow(nr: int, size: int) -> int:
    return _ioc(1, nr, size)


def _ior(nr: int, size: int) -> int:
    return _ioc(2, nr, size)


def _iowr(nr: int, size: int) -> int:
    return _ioc(3, nr, size)


# --- layouts -----------------------------------------------------------------


class kvm_userspace_memory_region(ctypes.Structure):
    _fields_ = [
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),
        ("userspace_addr", c_uint64),
    ]


_KVM_REGS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip


class kvm_regs(ctypes.Structure):
    _fields_ = [(name, c_uint64) for name in _KVM_REGS]


class kvm_segment(ctypes.Structure):
    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class kvm_dtable(ctypes.Structure):
    _fields_ = [("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3)]


class kvm_sregs(ctypes.Structure):
    _fields_ = [
        ("cs", kvm_segment),
        ("ds", kvm_segment),
        ("es", kvm_segment),
        ("fs", kvm_segment),
        ("gs", kvm_segment),
        ("ss", kvm_segment),
        ("tr", kvm_segment),
        ("ldt", kvm_segment),
        ("gdt", kvm_dtable),
        ("idt", kvm_dtable),
        ("cr0", c_uint64),
        ("cr2", c_uint64),
        ("cr3", c_uint64),
        ("cr4", c_uint64),
        ("cr8", c_uint64),
        ("efer", c_uint64),
        ("apic_base", c_uint64),
        ("interrupt_bitmap", c_uint64 * 4),
    ]


class kvm_vcpu_events(ctypes.Structure):
    _fields_ = [
        ("exception_injected", c_uint8),
        ("exception_nr", c_uint8),
        ("exception_has_error_code", c_uint8),
        ("exception_pending", c_uint8),
        ("exception_error_code", c_uint32),
        ("interrupt_injected", c_uint8),
        ("interrupt_nr", c_uint8),
        ("interrupt_soft", c_uint8),
        ("interrupt_shadow", c_uint8),
        ("nmi_injected", c_uint8),
        ("nmi_pending", c_uint8),
        ("nmi_masked", c_uint8),
        ("nmi_pad", c_uint8),
        ("sipi_vector", c_uint32),
        ("flags", c_uint32),
        ("smi_smm", c_uint8),
        ("smi_pending", c_uint8),
        ("smi_inside_nmi", c_uint8),
        ("smi_latched_init", c_uint8),
        ("triple_fault_pending", c_uint8),
        ("reserved", c_uint8 * 26),
        ("exception_has_payload", c_uint8),
        ("exception_payload", c_uint64),
    ]


class kvm_fpu(ctypes.Structure):
    _fields_ = [
        ("fpr", c_uint8 * 128),  # 8 x87 registers, 16 bytes each
        ("fcw", c_uint16),
        ("fsw", c_uint16),
        ("ftwx", c_uint8),  # abridged tag word, one bit per register
        ("pad1", c_uint8),
        ("last_opcode", c_uint16),
        ("last_ip", c_uint64),
        ("last_dp", c_uint64),
        ("xmm", c_uint8 * 256),
        ("mxcsr", c_uint32),
        ("pad2", c_uint32),
    ]


class kvm_debugregs(ctypes.Structure):
    _fields_ = [
        ("db", c_uint64 * 4),
        ("dr6", c_uint64),
        ("dr7", c_uint64),
        ("flags", c_uint64),
        ("reserved", c_uint64 * 9),
    ]


class kvm_msr_entry(ctypes.Structure):
    _fields_ = [("index", c_uint32), ("reserved", c_uint32), ("data", c_uint64)]


class kvm_msrs_header(ctypes.Structure):
    _fields_ = [("nmsrs", c_uint32), ("pad", c_uint32)]


class kvm_cpuid_entry2(ctypes.Structure):
    _fields_ = [
        ("function", c_uint32),
        ("index", c_uint32),
        ("flags", c_uint32),
        ("eax", c_uint32),
        ("ebx", c_uint32),
        ("ecx", c_uint32),
        ("edx", c_uint32),
        ("padding", c_uint32 * 3),
    ]


class kvm_cpuid2_header(ctypes.Structure):
    _fields_ = [("nent", c_uint32), ("padding", c_uint32)]


class kvm_translation(ctypes.Structure):
    _fields_ = [
        ("linear_address", c_uint64),
        ("physical_address", c_uint64),
        ("valid", c_uint8),
        ("writeable", c_uint8),
        ("usermode", c_uint8),
        ("pad", c_uint8 * 5),
    ]


class kvm_enable_cap(ctypes.Structure):
    _fields_ = [
        ("cap", c_uint32),
        ("flags", c_uint32),
        ("args", c_uint64 * 4),
        ("pad", c_uint8 * 64),
    ]


class kvm_xcr(ctypes.Structure):
    _fields_ = [("xcr", c_uint32), ("reserved", c_uint32), ("value", c_uint64)]


class kvm_xcrs(ctypes.Structure):
    _fields_ = [
        ("nr_xcrs", c_uint32),
        ("flags", c_uint32),
        ("xcrs", kvm_xcr * 16),
        ("padding", c_uint64 * 16),
    ]


class kvm_xsave(ctypes.Structure):
    _fields_ = [("region", c_uint32 * 1024)]


class kvm_interrupt(ctypes.Structure):
    _fields_ = [("irq", c_uint32)]


class kvm_mp_state(ctypes.Structure):
    _fields_ = [("mp_state", c_uint32)]


class kvm_guest_debug(ctypes.Structure):
    _fields_ = [("control", c_uint32), ("pad", c_uint32), ("debugreg", c_uint64 * 8)]


class kvm_msr_filter_range(ctypes.Structure):
    _fields_ = [
        ("flags", c_uint32),
        ("nmsrs", c_uint32),
        ("base", c_uint32),
        ("pad", c_uint32),
        ("bitmap", c_uint64),
    ]


class kvm_msr_filter(ctypes.Structure):
    _fields_ = [("flags", c_uint32), ("pad", c_uint32), ("ranges", kvm_msr_filter_range * 16)]


class kvm_signal_mask_header(ctypes.Structure):
    _fields_ = [("len", c_uint32)]


# --- request numbers ---------------------------------------------------------

# /dev/kvm
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_MSR_INDEX_LIST = _iowr(0x02, 4)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = _iowr(0x05, ctypes.sizeof(kvm_cpuid2_header))
# VM fd
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, ctypes.sizeof(kvm_userspace_memory_region))
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, 8)
KVM_ENABLE_CAP = _iow(0xA3, ctypes.sizeof(kvm_enable_cap))
KVM_X86_SET_MSR_FILTER = _iow(0xC6, ctypes.sizeof(kvm_msr_filter))
# vCPU fd
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, ctypes.sizeof(kvm_regs))
KVM_SET_REGS = _iow(0x82, ctypes.sizeof(kvm_regs))
KVM_GET_SREGS = _ior(0x83, ctypes.sizeof(kvm_sregs))
KVM_SET_SREGS = _iow(0x84, ctypes.sizeof(kvm_sregs))
KVM_TRANSLATE = _iowr(0x85, ctypes.sizeof(kvm_translation))
KVM_INTERRUPT = _iow(0x86, ctypes.sizeof(kvm_interrupt))
KVM_GET_MSRS = _iowr(0x88, ctypes.sizeof(kvm_msrs_header))
KVM_SET_MSRS = _iow(0x89, ctypes.sizeof(kvm_msrs_header))
KVM_SET_SIGNAL_MASK = _iow(0x8B, ctypes.sizeof(kvm_signal_mask_header))
KVM_GET_FPU = _ior(0x8C, ctypes.sizeof(kvm_fpu))
KVM_SET_FPU = _iow(0x8D, ctypes.sizeof(kvm_fpu))
KVM_SET_CPUID2 = _iow(0x90, ctypes.sizeof(kvm_cpuid2_header))
KVM_GET_CPUID2 = _iowr(0x91, ctypes.sizeof(kvm_cpuid2_header))
KVM_GET_MP_STATE = _ior(0x98, ctypes.sizeof(kvm_mp_state))
KVM_SET_MP_STATE = _iow(0x99, ctypes.sizeof(kvm_mp_state))
KVM_NMI = _io(0x9A)
KVM_SET_GUEST_DEBUG = _iow(0x9B, ctypes.sizeof(kvm_guest_debug))
KVM_GET_VCPU_EVENTS = _ior(0x9F, ctypes.sizeof(kvm_vcpu_events))
KVM_SET_VCPU_EVENTS = _iow(0xA0, ctypes.sizeof(kvm_vcpu_events))
KVM_GET_DEBUGREGS = _ior(0xA1, ctypes.sizeof(kvm_debugregs))
KVM_SET_DEBUGREGS = _iow(0xA2, ctypes.sizeof(kvm_debugregs))
KVM_GET_XSAVE = _ior(0xA4, ctypes.sizeof(kvm_xsave))
KVM_SET_XSAVE = _iow(0xA5, ctypes.sizeof(kvm_xsave))
KVM_GET_XCRS = _ior(0xA6, ctypes.sizeof(kvm_xcrs))
KVM_SET_XCRS = _iow(0xA7, ctypes.sizeof(kvm_xcrs))
KVM_GET_TSC_KHZ = _io(0xA3)

KVM_API_VERSION = 12

# --- capabilities ------------------------------------------------------------
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_READONLY_MEM = 81
KVM_CAP_SYNC_REGS = 74
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_X86_USER_SPACE_MSR = 188
KVM_CAP_X86_MSR_FILTER = 189

# KVM_CAP_X86_USER_SPACE_MSR: which MSR accesses exit to userspace.
KVM_MSR_EXIT_REASON_INVAL = 1 << 0
KVM_MSR_EXIT_REASON_UNKNOWN = 1 << 1
KVM_MSR_EXIT_REASON_FILTER = 1 << 2
KVM_MSR_FILTER_DEFAULT_ALLOW = 0
KVM_MSR_FILTER_DEFAULT_DENY = 1
KVM_MSR_FILTER_READ = 1 << 0
KVM_MSR_FILTER_WRITE = 1 << 1
KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600

# --- memslot flags -----------------------------------------------------------
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1

# --- sync regs ---------------------------------------------------------------
KVM_SYNC_X86_REGS = 1 << 0
KVM_SYNC_X86_SREGS = 1 << 1
KVM_SYNC_X86_EVENTS = 1 << 2

# --- vcpu events flags -------------------------------------------------------
KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1
KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x2
KVM_VCPUEVENT_VALID_SHADOW = 0x4

# --- mp states ---------------------------------------------------------------
KVM_MP_STATE_RUNNABLE = 0
KVM_MP_STATE_UNINITIALIZED = 1
KVM_MP_STATE_INIT_RECEIVED = 2
KVM_MP_STATE_HALTED = 3
KVM_MP_STATE_SIPI_RECEIVED = 4

# --- exit reasons ------------------------------------------------------------
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_SET_TPR = 11
KVM_EXIT_TPR_ACCESS = 12
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# --- struct kvm_run: offsets in the shared page ------------------------------
RUN_REQUEST_INTERRUPT_WINDOW = 0
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_READY_FOR_INTERRUPT_INJECTION = 12
RUN_IF_FLAG = 13
RUN_CR8 = 16
RUN_APIC_BASE = 24
RUN_EXIT_UNION = 32  # the per-exit-reason data
RUN_VALID_REGS = 288
RUN_DIRTY_REGS = 296
RUN_SYNC_REGS = 304
RUN_SYNC_SREGS = RUN_SYNC_REGS + ctypes.sizeof(kvm_regs)
RUN_SYNC_EVENTS = RUN_SYNC_SREGS + ctypes.sizeof(kvm_sregs)
