"""Synthetic messages: ``hv_message`` and the x64 intercept payloads (reference 5.1-5.3).

MSHV_RUN_VP returns one 256-byte ``hv_message``: a 16-byte header whose
``message_type`` selects the payload struct (:data:`PAYLOAD_TYPES`), then 240 payload
bytes. A payload struct can be viewed in place with
``cls.from_buffer(msg, HV_MESSAGE_HEADER_SIZE)``; all of them fit in the 240 bytes.

Offsets below are those of the RFC's natural (unpacked) layout. Packing in v1 changes
only ``hv_x64_hypercall_intercept_message`` (200 -> 196 bytes).
"""

from __future__ import annotations

import ctypes
import enum

from ._regvalues import hv_register_value, hv_u128, hv_x64_segment_register

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64

HV_MESSAGE_SIZE = 256
"""Bytes in one SynIC message slot, and in the MSHV_RUN_VP argument."""

HV_MESSAGE_PAYLOAD_BYTE_COUNT = 240
"""Payload bytes after the 16-byte header."""

HV_MESSAGE_PAYLOAD_QWORD_COUNT = 30
"""The payload as u64s."""

HV_MESSAGE_HEADER_SIZE = HV_MESSAGE_SIZE - HV_MESSAGE_PAYLOAD_BYTE_COUNT
"""Offset of the payload in ``hv_message`` (16); not a C name."""

HV_SYNIC_INTERCEPTION_SINT_INDEX = 0
"""SINT slot on which the hypervisor posts intercept messages to the root."""


@enum.unique
class hv_message_type(enum.IntEnum):
    """``message_type`` of ``hv_message_header``; bit 31 marks hypervisor messages."""

    HVMSG_NONE = 0x00000000

    # Memory access
    HVMSG_UNMAPPED_GPA = 0x80000000
    HVMSG_GPA_INTERCEPT = 0x80000001

    # Timer
    HVMSG_TIMER_EXPIRED = 0x80000010

    # Errors
    HVMSG_INVALID_VP_REGISTER_VALUE = 0x80000020
    HVMSG_UNRECOVERABLE_EXCEPTION = 0x80000021
    HVMSG_UNSUPPORTED_FEATURE = 0x80000022

    # Trace buffer
    HVMSG_EVENTLOG_BUFFERCOMPLETE = 0x80000040

    # x64 intercepts
    HVMSG_X64_IO_PORT_INTERCEPT = 0x80010000
    HVMSG_X64_MSR_INTERCEPT = 0x80010001
    HVMSG_X64_CPUID_INTERCEPT = 0x80010002
    HVMSG_X64_EXCEPTION_INTERCEPT = 0x80010003
    HVMSG_X64_APIC_EOI = 0x80010004
    HVMSG_X64_LEGACY_FP_ERROR = 0x80010005
    HVMSG_X64_IOMMU_PRQ = 0x80010006
    HVMSG_X64_HALT = 0x80010007
    HVMSG_X64_INTERRUPTION_DELIVERABLE = 0x80010008
    HVMSG_X64_SIPI_INTERCEPT = 0x80010009


# --- header and message (5.1) -----------------------------------------------------------


class _message_flag_bits(ctypes.Structure):
    _fields_ = [("msg_pending", _u8, 1), ("reserved", _u8, 7)]


class hv_message_flags(ctypes.Union):
    """Header flags byte: bit 0 msg_pending (the RFC driver ignores it)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("asu8", _u8), ("_bits", _message_flag_bits)]


class _port_id_bits(ctypes.Structure):
    _fields_ = [("id", _u32, 24), ("reserved", _u32, 8)]


class hv_port_id(ctypes.Union):
    """SynIC port id: 24-bit id in a u32."""

    _anonymous_ = ("_bits",)
    _fields_ = [("asu32", _u32), ("_bits", _port_id_bits)]


class _sender_or_port(ctypes.Union):
    _fields_ = [("sender", _u64), ("port", hv_port_id)]


class hv_message_header(ctypes.Structure):
    """Message header (16 bytes); for intercepts ``sender`` is the partition id."""

    _anonymous_ = ("_origin",)
    _fields_ = [
        ("message_type", _u32),  # hv_message_type
        ("payload_size", _u8),
        ("message_flags", hv_message_flags),
        ("reserved", _u8 * 2),
        ("_origin", _sender_or_port),
    ]


class _message_payload(ctypes.Union):
    _fields_ = [("payload", _u64 * HV_MESSAGE_PAYLOAD_QWORD_COUNT)]


class hv_message(ctypes.Structure):
    """One synthetic message (256 bytes): header, then ``u.payload[30]``."""

    _fields_ = [("header", hv_message_header), ("u", _message_payload)]


# --- common intercept header (5.3) ------------------------------------------------------

# Bits of hv_x64_intercept_message_header.execution_state (a u16).
HV_X64_VP_EXECUTION_STATE_CPL_SHIFT = 0
HV_X64_VP_EXECUTION_STATE_CPL_MASK = 0x3 << 0
HV_X64_VP_EXECUTION_STATE_CR0_PE = 1 << 2
HV_X64_VP_EXECUTION_STATE_CR0_AM = 1 << 3
HV_X64_VP_EXECUTION_STATE_EFER_LMA = 1 << 4
HV_X64_VP_EXECUTION_STATE_DEBUG_ACTIVE = 1 << 5
HV_X64_VP_EXECUTION_STATE_INTERRUPTION_PENDING = 1 << 6
HV_X64_VP_EXECUTION_STATE_VTL_SHIFT = 7
HV_X64_VP_EXECUTION_STATE_VTL_MASK = 0xF << 7
HV_X64_VP_EXECUTION_STATE_ENCLAVE_MODE = 1 << 11
HV_X64_VP_EXECUTION_STATE_INTERRUPT_SHADOW = 1 << 12
HV_X64_VP_EXECUTION_STATE_VIRTUALIZATION_FAULT_ACTIVE = 1 << 13


class _execution_state_bits(ctypes.Structure):
    _fields_ = [
        ("cpl", _u16, 2),
        ("cr0_pe", _u16, 1),
        ("cr0_am", _u16, 1),
        ("efer_lma", _u16, 1),
        ("debug_active", _u16, 1),
        ("interruption_pending", _u16, 1),
        ("vtl", _u16, 4),
        ("enclave_mode", _u16, 1),
        ("interrupt_shadow", _u16, 1),
        ("virtualization_fault_active", _u16, 1),
        ("reserved", _u16, 2),
    ]


class hv_x64_vp_execution_state(ctypes.Union):
    """Decoder for an ``execution_state`` value, field by field (2 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint16", _u16), ("_bits", _execution_state_bits)]


class hv_x64_intercept_message_header(ctypes.Structure):
    """Common prefix of every x64 intercept payload (40 bytes).

    ``vp_index`` comes first in every payload: the driver's ISR routes on it.
    ``execution_state`` is kept as a plain u16 for cheap reads; decode it with the
    ``HV_X64_VP_EXECUTION_STATE_*`` masks or :class:`hv_x64_vp_execution_state`.
    """

    _fields_ = [
        ("vp_index", _u32),
        ("instruction_length", _u8, 4),
        ("cr8", _u8, 4),  # exo partitions only
        ("intercept_access_type", _u8),  # HV_INTERCEPT_ACCESS_*
        ("execution_state", _u16),
        ("cs_segment", hv_x64_segment_register),
        ("rip", _u64),
        ("rflags", _u64),
    ]


# --- intercept payloads (5.3) -----------------------------------------------------------


class _io_port_access_bits(ctypes.Structure):
    _fields_ = [
        ("access_size", _u8, 3),  # bytes: 1, 2 or 4
        ("string_op", _u8, 1),
        ("rep_prefix", _u8, 1),
        ("reserved", _u8, 3),
    ]


class hv_x64_io_port_access_info(ctypes.Union):
    """Size and form of a port access (1 byte)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint8", _u8), ("_bits", _io_port_access_bits)]


class hv_x64_io_port_intercept_message(ctypes.Structure):
    """HVMSG_X64_IO_PORT_INTERCEPT payload (128 bytes)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("port_number", _u16),
        ("access_info", hv_x64_io_port_access_info),
        ("instruction_byte_count", _u8),
        ("reserved", _u32),
        ("rax", _u64),
        ("instruction_bytes", _u8 * 16),
        ("ds_segment", hv_x64_segment_register),
        ("es_segment", hv_x64_segment_register),
        ("rcx", _u64),
        ("rsi", _u64),
        ("rdi", _u64),
    ]


class _memory_access_bits(ctypes.Structure):
    _fields_ = [
        ("gva_valid", _u8, 1),
        ("gva_gpa_valid", _u8, 1),
        ("hypercall_output_pending", _u8, 1),
        ("tlb_locked_no_overlay", _u8, 1),
        ("reserved", _u8, 4),
    ]


class hv_x64_memory_access_info(ctypes.Union):
    """What the memory-intercept addresses mean (1 byte)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint8", _u8), ("_bits", _memory_access_bits)]


class hv_x64_memory_intercept_message(ctypes.Structure):
    """HVMSG_UNMAPPED_GPA / HVMSG_GPA_INTERCEPT payload (80 bytes)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("cache_type", _u32),  # hv_cache_type
        ("instruction_byte_count", _u8),
        ("memory_access_info", hv_x64_memory_access_info),
        ("tpr_priority", _u8),
        ("reserved1", _u8),
        ("guest_virtual_address", _u64),
        ("guest_physical_address", _u64),
        ("instruction_bytes", _u8 * 16),
    ]


class hv_x64_msr_intercept_message(ctypes.Structure):
    """HVMSG_X64_MSR_INTERCEPT payload (64 bytes)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("msr_number", _u32),
        ("reserved", _u32),
        ("rdx", _u64),
        ("rax", _u64),
    ]


class hv_x64_cpuid_intercept_message(ctypes.Structure):
    """HVMSG_X64_CPUID_INTERCEPT payload (104 bytes): inputs, then the default result."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("rax", _u64),
        ("rcx", _u64),
        ("rdx", _u64),
        ("rbx", _u64),
        ("default_result_rax", _u64),
        ("default_result_rcx", _u64),
        ("default_result_rdx", _u64),
        ("default_result_rbx", _u64),
    ]


class _exception_info_bits(ctypes.Structure):
    _fields_ = [
        ("error_code_valid", _u8, 1),
        ("software_exception", _u8, 1),
        ("reserved", _u8, 6),
    ]


class hv_x64_exception_info(ctypes.Union):
    """Exception details flags (1 byte)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint8", _u8), ("_bits", _exception_info_bits)]


# The 16 GPRs in the hypervisor's order, as the exception payload lists them.
_GP_ORDER = (
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip


class hv_x64_exception_intercept_message(ctypes.Structure):
    """HVMSG_X64_EXCEPTION_INTERCEPT payload (240 bytes, the whole payload)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("exception_vector", _u16),
        ("exception_info", hv_x64_exception_info),
        ("instruction_byte_count", _u8),
        ("error_code", _u32),
        ("exception_parameter", _u64),
        ("reserved", _u64),
        ("instruction_bytes", _u8 * 16),
        ("ds_segment", hv_x64_segment_register),
        ("ss_segment", hv_x64_segment_register),
        *[(n, _u64) for n in _GP_ORDER],
    ]


class hv_x64_register_access_info(ctypes.Union):
    """Operand of a register intercept (16 bytes): value or location, per direction."""

    _fields_ = [
        ("source_value", hv_register_value),
        ("destination_register", _u32),
        ("source_address", _u64),
        ("destination_address", _u64),
    ]


class hv_x64_register_intercept_message(ctypes.Structure):
    """Register intercept payload (64 bytes); no HVMSG_* value names it."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("is_memory_op", _u8, 1),
        ("reserved", _u8, 7),
        ("reserved8", _u8),
        ("reserved16", _u16),
        ("register_name", _u32),  # hv_register_name
        ("access_info", hv_x64_register_access_info),
    ]


class hv_x64_hypercall_intercept_message(ctypes.Structure):
    """Hypercall intercept payload (200 bytes in the RFC); no HVMSG_* value names it."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("rax", _u64),
        ("rbx", _u64),
        ("rcx", _u64),
        ("rdx", _u64),
        ("r8", _u64),
        ("rsi", _u64),
        ("rdi", _u64),
        ("xmmregisters", hv_u128 * 6),
        ("isolated", _u32, 1),
        ("reserved", _u32, 31),
    ]


class hv_x64_invalid_vp_register_message(ctypes.Structure):
    """HVMSG_INVALID_VP_REGISTER_VALUE payload (8 bytes)."""

    _fields_ = [("vp_index", _u32), ("reserved", _u32)]


class hv_x64_unrecoverable_exception_message(ctypes.Structure):
    """HVMSG_UNRECOVERABLE_EXCEPTION payload (40 bytes, header only)."""

    _fields_ = [("header", hv_x64_intercept_message_header)]


class hv_x64_unsupported_feature_message(ctypes.Structure):
    """HVMSG_UNSUPPORTED_FEATURE payload (16 bytes)."""

    _fields_ = [
        ("vp_index", _u32),
        ("feature_code", _u32),  # hv_x64_unsupported_feature_code
        ("feature_parameter", _u64),
    ]


class hv_x64_halt_message(ctypes.Structure):
    """HVMSG_X64_HALT payload (40 bytes, header only)."""

    _fields_ = [("header", hv_x64_intercept_message_header)]


class hv_x64_interruption_deliverable_message(ctypes.Structure):
    """HVMSG_X64_INTERRUPTION_DELIVERABLE payload (48 bytes)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("deliverable_type", _u32),  # hv_x64_pending_interruption_type
        ("rsvd", _u32),
    ]


class hv_x64_sipi_intercept_message(ctypes.Structure):
    """HVMSG_X64_SIPI_INTERCEPT payload (48 bytes)."""

    _fields_ = [
        ("header", hv_x64_intercept_message_header),
        ("target_vp_index", _u32),
        ("interrupt_vector", _u32),
    ]


class hv_x64_apic_eoi_message(ctypes.Structure):
    """HVMSG_X64_APIC_EOI payload (8 bytes)."""

    _fields_ = [("vp_index", _u32), ("interrupt_vector", _u32)]


# The series never maps types to structs; this follows the names (reference 5.2, 9).
# Types without a uapi struct (NONE, TIMER_EXPIRED, EVENTLOG_BUFFERCOMPLETE,
# X64_LEGACY_FP_ERROR, X64_IOMMU_PRQ) are absent.
PAYLOAD_TYPES: dict[hv_message_type, type[ctypes.Structure]] = {
    hv_message_type.HVMSG_UNMAPPED_GPA: hv_x64_memory_intercept_message,
    hv_message_type.HVMSG_GPA_INTERCEPT: hv_x64_memory_intercept_message,
    hv_message_type.HVMSG_INVALID_VP_REGISTER_VALUE: hv_x64_invalid_vp_register_message,
    hv_message_type.HVMSG_UNRECOVERABLE_EXCEPTION: hv_x64_unrecoverable_exception_message,
    hv_message_type.HVMSG_UNSUPPORTED_FEATURE: hv_x64_unsupported_feature_message,
    hv_message_type.HVMSG_X64_IO_PORT_INTERCEPT: hv_x64_io_port_intercept_message,
    hv_message_type.HVMSG_X64_MSR_INTERCEPT: hv_x64_msr_intercept_message,
    hv_message_type.HVMSG_X64_CPUID_INTERCEPT: hv_x64_cpuid_intercept_message,
    hv_message_type.HVMSG_X64_EXCEPTION_INTERCEPT: hv_x64_exception_intercept_message,
    hv_message_type.HVMSG_X64_APIC_EOI: hv_x64_apic_eoi_message,
    hv_message_type.HVMSG_X64_HALT: hv_x64_halt_message,
    hv_message_type.HVMSG_X64_INTERRUPTION_DELIVERABLE: hv_x64_interruption_deliverable_message,
    hv_message_type.HVMSG_X64_SIPI_INTERCEPT: hv_x64_sipi_intercept_message,
}
"""Payload struct for each message type that has one (inferred from the names)."""
