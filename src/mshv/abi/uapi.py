"""ctypes layouts of the RFC ``linux/mshv.h`` ioctl arguments (reference sections 3, 4, 5).

Layouts use natural x86-64 alignment (no ``__packed``), as in the RFC; v1 and later
packed most TLFS structs, which changes no size used here. Pointer members are
``c_uint64`` so they hold raw user addresses (``ctypes.addressof(buf)``).

Also here: the TLFS structures those arguments embed or point at, the driver's limits
and flag groups, and the kernel-internal errno ``ENOTSUPP``.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Mapping
from types import MappingProxyType

from ._features import (
    hv_partition_processor_features as hv_partition_processor_features,
)
from ._features import (
    hv_partition_processor_xsave_features as hv_partition_processor_xsave_features,
)
from ._features import (
    hv_partition_synthetic_processor_features as hv_partition_synthetic_processor_features,
)
from ._features import hv_x64_xsave_xfem_register as hv_x64_xsave_xfem_register
from ._regvalues import (
    hv_u128,
    hv_x64_interrupt_state_register,
    hv_x64_pending_interruption_register,
    hv_x64_segment_register,
)

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64

# --- linux/mshv.h constants -------------------------------------------------------------

MSHV_VERSION = 0x0
"""The only version MSHV_REQUEST_VERSION accepts."""

MSHV_VP_MAX_REGISTERS = 128
"""Most registers one MSHV_GET/SET_VP_REGISTERS call may name (more: EINVAL)."""

# --- driver limits (not in the header; the RFC driver enforces them) --------------------

MSHV_MAX_PARTITIONS = 128
"""Partitions system-wide (more: ENOSPC)."""

MSHV_MAX_MEM_REGIONS = 64
"""Guest memory regions per partition (more: ENOSPC)."""

MSHV_MAX_VPS = 256
"""``vp_index`` must be below this (else EINVAL)."""

ENOTSUPP = 524
"""Kernel-internal errno (absent from :mod:`errno`); MSHV_REQUEST_VERSION returns it."""

# --- HV_MAP_GPA_*: ``flags`` of mshv_user_mem_region (generic uapi) ---------------------

HV_MAP_GPA_PERMISSIONS_NONE = 0x0
HV_MAP_GPA_READABLE = 0x1
HV_MAP_GPA_WRITABLE = 0x2
HV_MAP_GPA_KERNEL_EXECUTABLE = 0x4
HV_MAP_GPA_USER_EXECUTABLE = 0x8
HV_MAP_GPA_EXECUTABLE = 0xC  # kernel and user
HV_MAP_GPA_PERMISSIONS_MASK = 0xF

# --- HV_PARTITION_CREATION_FLAG_*: ``flags`` of mshv_create_partition -------------------

HV_PARTITION_CREATION_FLAG_SMT_ENABLED_GUEST = 1 << 0
HV_PARTITION_CREATION_FLAG_GPA_LARGE_PAGES_DISABLED = 1 << 3
HV_PARTITION_CREATION_FLAG_GPA_SUPER_PAGES_ENABLED = 1 << 4
# Kernel-only: the driver ORs it into every partition it creates.
HV_PARTITION_CREATION_FLAG_EXO_PARTITION = 1 << 8
# Needed for MSHV_ASSERT_INTERRUPT (the hypervisor then emulates the local APIC).
HV_PARTITION_CREATION_FLAG_LAPIC_ENABLED = 1 << 13

HV_XSAVE_DATA_NO_XMM_REGISTERS = 1
"""A value for ``mshv_vp_state.xsave.flags``."""

# --- register page (section 5.10) -------------------------------------------------------


@enum.unique
class hv_vp_state_page_type(enum.IntEnum):
    """Which per-VP state page HvMapVpStatePage maps."""

    HV_VP_STATE_PAGE_REGISTERS = 0
    HV_VP_STATE_PAGE_COUNT = 1


MSHV_VP_MMAP_REGISTERS_OFFSET = hv_vp_state_page_type.HV_VP_STATE_PAGE_REGISTERS * 0x1000
"""mmap offset of the register page on a VP fd; the only offset accepted (0)."""

HV_VP_REGISTER_PAGE_VERSION_1 = 1
"""``hv_vp_register_page.version`` of the layout below."""

# Bit indices of ``hv_vp_register_page.dirty``, one per register class.
HV_X64_REGISTER_CLASS_GENERAL = 0
HV_X64_REGISTER_CLASS_IP = 1
HV_X64_REGISTER_CLASS_XMM = 2
HV_X64_REGISTER_CLASS_SEGMENT = 3
HV_X64_REGISTER_CLASS_FLAGS = 4


# Register names in page order; the GP order (rax, rcx, rdx, rbx, ...) is the hypervisor's.
_GP_NAMES = (
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip
_XMM_NAMES = tuple(f"xmm{i}" for i in range(6))
_SEGMENT_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")


class _gp_names(ctypes.Structure):
    _fields_ = [(n, _u64) for n in _GP_NAMES]


class _gp_registers(ctypes.Union):
    _anonymous_ = ("_names",)
    _fields_ = [("_names", _gp_names), ("gp_registers", _u64 * 16)]


class _xmm_names(ctypes.Structure):
    _fields_ = [(n, hv_u128) for n in _XMM_NAMES]


class _xmm_registers(ctypes.Union):
    _anonymous_ = ("_names",)
    _fields_ = [("_names", _xmm_names), ("xmm_registers", hv_u128 * 6)]


class _segment_names(ctypes.Structure):
    _fields_ = [(n, hv_x64_segment_register) for n in _SEGMENT_NAMES]


class _segment_registers(ctypes.Union):
    _anonymous_ = ("_names",)
    _fields_ = [("_names", _segment_names), ("segment_registers", hv_x64_segment_register * 6)]


class hv_vp_register_page(ctypes.Structure):
    """Start of the page mmapped from a VP fd (416 of its 4096 bytes).

    Registers are readable by name (``rax``, ``xmm0``, ``cs``) or as arrays. cr0 onward
    are read-only. The ``isvalid``/``dirty`` protocol is not specified by the RFC.
    """

    _anonymous_ = ("_gp", "_xmm", "_seg")
    _fields_ = [
        ("version", _u16),
        ("isvalid", ctypes.c_bool),
        ("rsvdz", _u8),
        ("dirty", _u32),  # bit n = HV_X64_REGISTER_CLASS_* n
        ("_gp", _gp_registers),
        ("rip", _u64),
        ("rflags", _u64),
        ("_xmm", _xmm_registers),
        ("_seg", _segment_registers),
        ("cr0", _u64),
        ("cr3", _u64),
        ("cr4", _u64),
        ("cr8", _u64),
        ("efer", _u64),
        ("dr7", _u64),
        ("pending_interruption", hv_x64_pending_interruption_register),
        ("interrupt_state", hv_x64_interrupt_state_register),
        ("instruction_emulation_hints", _u64),
    ]


HV_VP_REGISTER_PAGE_OFFSETS: Mapping[str, int] = MappingProxyType(
    {
        name: int(getattr(hv_vp_register_page, name).offset)
        for name in (
            "version", "isvalid", "rsvdz", "dirty",
            "gp_registers", *_GP_NAMES, "rip", "rflags",
            "xmm_registers", *_XMM_NAMES, "segment_registers", *_SEGMENT_NAMES,
            "cr0", "cr3", "cr4", "cr8", "efer", "dr7",
            "pending_interruption", "interrupt_state", "instruction_emulation_hints",
        )
    }
)  # fmt: skip
"""Byte offset in the register page of every field and of every named register."""

# --- TLFS structures embedded in ioctl arguments ----------------------------------------


class hv_partition_creation_properties(ctypes.Structure):
    """Creation-time feature masks (24 bytes); the RFC driver ignores both."""

    _fields_ = [
        ("disabled_processor_features", hv_partition_processor_features),
        ("disabled_processor_xsave_features", hv_partition_processor_xsave_features),
    ]


class hv_intercept_parameters(ctypes.Union):
    """Per-type intercept parameter (8 bytes); types not listed take none."""

    _fields_ = [
        ("as_uint64", _u64),
        ("io_port", _u16),  # X64_IO_PORT
        ("cpuid_index", _u32),  # X64_CPUID
        ("apic_write_mask", _u32),  # X64_APIC_WRITE
        ("exception_vector", _u16),  # EXCEPTION
    ]


class _interrupt_control_bits(ctypes.Structure):
    _fields_ = [
        ("interrupt_type", _u32),  # hv_interrupt_type
        ("level_triggered", _u32, 1),
        ("logical_dest_mode", _u32, 1),
        ("reserved", _u32, 30),
    ]


class hv_interrupt_control(ctypes.Union):
    """Delivery mode and trigger/destination modes of an asserted interrupt (8 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _interrupt_control_bits)]


class hv_vp_state_data_xsave(ctypes.Structure):
    """XSAVE selector of mshv_vp_state (16 bytes); ``states`` is an XFEM mask."""

    _fields_ = [("flags", _u64), ("states", hv_x64_xsave_xfem_register)]


class hv_local_interrupt_controller_state(ctypes.Structure):
    """Emulated local APIC state (176 bytes): the data of the LAPIC VP-state type."""

    _fields_ = [
        ("apic_id", _u32),
        ("apic_version", _u32),
        ("apic_ldr", _u32),
        ("apic_dfr", _u32),
        ("apic_spurious", _u32),
        ("apic_isr", _u32 * 8),
        ("apic_tmr", _u32 * 8),
        ("apic_irr", _u32 * 8),
        ("apic_esr", _u32),
        ("apic_icr_high", _u32),
        ("apic_icr_low", _u32),
        ("apic_lvt_timer", _u32),
        ("apic_lvt_thermal", _u32),
        ("apic_lvt_perfmon", _u32),
        ("apic_lvt_lint0", _u32),
        ("apic_lvt_lint1", _u32),
        ("apic_lvt_error", _u32),
        ("apic_lvt_cmci", _u32),
        ("apic_error_status", _u32),
        ("apic_initial_count", _u32),
        ("apic_counter_value", _u32),
        ("apic_divide_configuration", _u32),
        ("apic_remote_read", _u32),
    ]


# --- ioctl arguments (section 4) --------------------------------------------------------


class mshv_create_partition(ctypes.Structure):
    """MSHV_CREATE_PARTITION argument (40 bytes)."""

    _fields_ = [
        ("flags", _u64),  # HV_PARTITION_CREATION_FLAG_*
        ("partition_creation_properties", hv_partition_creation_properties),
        ("synthetic_processor_features", hv_partition_synthetic_processor_features),
    ]


class mshv_user_mem_region(ctypes.Structure):
    """MSHV_MAP/UNMAP_GUEST_MEMORY argument (32 bytes); ``size`` in bytes."""

    _fields_ = [
        ("size", _u64),
        ("guest_pfn", _u64),
        ("userspace_addr", _u64),
        ("flags", _u32),  # HV_MAP_GPA_*; ignored on unmap
    ]


class mshv_create_vp(ctypes.Structure):
    """MSHV_CREATE_VP argument (4 bytes)."""

    _fields_ = [("vp_index", _u32)]


class mshv_vp_registers(ctypes.Structure):
    """MSHV_GET/SET_VP_REGISTERS argument, RFC form (24 bytes).

    ``names`` points at ``count`` u32 register names, ``values`` at ``count``
    16-byte ``hv_register_value``; v1 replaced both with one ``hv_register_assoc`` array.
    """

    _fields_ = [("count", ctypes.c_int), ("names", _u64), ("values", _u64)]


class mshv_install_intercept(ctypes.Structure):
    """MSHV_INSTALL_INTERCEPT argument (16 bytes)."""

    _fields_ = [
        ("access_type_mask", _u32),  # HV_INTERCEPT_ACCESS_MASK_*
        ("intercept_type", _u32),  # hv_intercept_type
        ("intercept_parameter", hv_intercept_parameters),
    ]


class mshv_assert_interrupt(ctypes.Structure):
    """MSHV_ASSERT_INTERRUPT argument (24 bytes); ``dest_addr`` is the target APIC id."""

    _fields_ = [
        ("control", hv_interrupt_control),
        ("dest_addr", _u64),
        ("vector", _u32),
    ]


class _vp_state_buf(ctypes.Union):
    _fields_ = [("lapic", _u64), ("bytes", _u64)]


class mshv_vp_state(ctypes.Structure):
    """MSHV_GET/SET_VP_STATE argument (40 bytes).

    ``buf.lapic``/``buf.bytes`` are the user address of the buffer (one pointer union in
    C), ``buf_size`` its length in bytes.
    """

    _fields_ = [
        ("type", _u32),  # hv_get_set_vp_state_type
        ("xsave", hv_vp_state_data_xsave),  # used only for the XSAVE type
        ("buf_size", _u64),
        ("buf", _vp_state_buf),
    ]


class mshv_partition_property(ctypes.Structure):
    """MSHV_GET/SET_PARTITION_PROPERTY argument (16 bytes)."""

    _fields_ = [
        ("property_code", _u32),  # hv_partition_property_code
        ("property_value", _u64),
    ]
