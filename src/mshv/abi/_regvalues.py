"""Register value layouts: ``union hv_register_value`` and its members (reference 5.4).

Private module; import it through :mod:`mshv.abi.tlfs`.

Anonymous C unions and structs are mirrored with ctypes ``_anonymous_`` so their members
read as in C (``seg.present``, ``fp_cs.last_fp_rip``). The helper types that only exist
to express that nesting are private (``_name``).
"""

from __future__ import annotations

import ctypes

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64


class hv_u128(ctypes.Structure):
    """128-bit value as two u64s, ``high_part`` declared first (offset 0), as in the RFC.

    Whether the hypervisor really stores the upper qword first is unconfirmed
    (reference section 9): treat the 16 bytes as opaque, in hypervisor order.
    """

    _fields_ = [("high_part", _u64), ("low_part", _u64)]


# --- segment and descriptor-table registers ---------------------------------------------


class _segment_attribute_bits(ctypes.Structure):
    _fields_ = [
        ("segment_type", _u16, 4),
        ("non_system_segment", _u16, 1),  # S
        ("descriptor_privilege_level", _u16, 2),  # DPL
        ("present", _u16, 1),
        ("reserved", _u16, 4),
        ("available", _u16, 1),  # AVL
        ("long", _u16, 1),  # L
        ("default", _u16, 1),  # D/B
        ("granularity", _u16, 1),
    ]


class _segment_attributes(ctypes.Union):
    _anonymous_ = ("_bits",)
    _fields_ = [("attributes", _u16), ("_bits", _segment_attribute_bits)]


class hv_x64_segment_register(ctypes.Structure):
    """Segment register (16 bytes); ``attributes`` is also readable bit by bit."""

    _anonymous_ = ("_attr",)
    _fields_ = [
        ("base", _u64),
        ("limit", _u32),
        ("selector", _u16),
        ("_attr", _segment_attributes),
    ]


class hv_x64_table_register(ctypes.Structure):
    """GDTR/IDTR (16 bytes): limit at 6 so that base is naturally aligned at 8."""

    _fields_ = [("pad", _u16 * 3), ("limit", _u16), ("base", _u64)]


# --- x87 / SSE state --------------------------------------------------------------------


class hv_x64_fp_register(ctypes.Structure):
    """x87/MMX register (16 bytes): 64-bit mantissa, then exponent and sign."""

    _fields_ = [
        ("mantissa", _u64),
        ("biased_exponent", _u64, 15),
        ("sign", _u64, 1),
        ("reserved", _u64, 48),
    ]


class _fp_ip32(ctypes.Structure):
    _fields_ = [("last_fp_eip", _u32), ("last_fp_cs", _u16)]


class _fp_ip(ctypes.Union):
    # Long mode stores a 64-bit RIP; 32-bit mode an EIP plus CS selector.
    _anonymous_ = ("_ip32",)
    _fields_ = [("last_fp_rip", _u64), ("_ip32", _fp_ip32)]


class _fp_control_status(ctypes.Structure):
    _anonymous_ = ("_ip",)
    _fields_ = [
        ("fp_control", _u16),
        ("fp_status", _u16),
        ("fp_tag", _u8),
        ("reserved", _u8),
        ("last_fp_op", _u16),
        ("_ip", _fp_ip),
    ]


class hv_x64_fp_control_status_register(ctypes.Union):
    """x87 control/status/tag and last instruction pointer (16 bytes)."""

    _anonymous_ = ("_s",)
    _fields_ = [("as_uint128", hv_u128), ("_s", _fp_control_status)]


class _fp_dp32(ctypes.Structure):
    _fields_ = [("last_fp_dp", _u32), ("last_fp_ds", _u16)]


class _fp_dp(ctypes.Union):
    _anonymous_ = ("_dp32",)
    _fields_ = [("last_fp_rdp", _u64), ("_dp32", _fp_dp32)]


class _xmm_control_status(ctypes.Structure):
    _anonymous_ = ("_dp",)
    _fields_ = [
        ("_dp", _fp_dp),
        ("xmm_status_control", _u32),
        ("xmm_status_control_mask", _u32),
    ]


class hv_x64_xmm_control_status_register(ctypes.Union):
    """Last x87 data pointer plus MXCSR and its mask (16 bytes)."""

    _anonymous_ = ("_s",)
    _fields_ = [("as_uint128", hv_u128), ("_s", _xmm_control_status)]


# --- suspend and interrupt state --------------------------------------------------------


class _suspend_bits(ctypes.Structure):
    _fields_ = [("suspended", _u64, 1), ("reserved", _u64, 63)]


class hv_explicit_suspend_register(ctypes.Union):
    """HV_REGISTER_EXPLICIT_SUSPEND: bit 0 set while the root holds the VP stopped."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _suspend_bits)]


class hv_intercept_suspend_register(ctypes.Union):
    """HV_REGISTER_INTERCEPT_SUSPEND: bit 0 set while an intercept holds the VP stopped."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _suspend_bits)]


class hv_dispatch_suspend_register(ctypes.Union):
    """HV_REGISTER_DISPATCH_SUSPEND: bit 0 suspended."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _suspend_bits)]


class _interrupt_state_bits(ctypes.Structure):
    _fields_ = [
        ("interrupt_shadow", _u64, 1),
        ("nmi_masked", _u64, 1),
        ("reserved", _u64, 62),
    ]


class hv_x64_interrupt_state_register(ctypes.Union):
    """HV_REGISTER_INTERRUPT_STATE: bit 0 interrupt shadow, bit 1 NMI masked."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _interrupt_state_bits)]


class _pending_interruption_bits(ctypes.Structure):
    _fields_ = [
        ("interruption_pending", _u32, 1),
        ("interruption_type", _u32, 3),  # hv_x64_pending_interruption_type
        ("deliver_error_code", _u32, 1),
        ("instruction_length", _u32, 4),
        ("nested_event", _u32, 1),
        ("reserved", _u32, 6),
        ("interruption_vector", _u32, 16),
        ("error_code", _u32),
    ]


class hv_x64_pending_interruption_register(ctypes.Union):
    """HV_REGISTER_PENDING_INTERRUPTION: an event to inject on the next entry (8 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _pending_interruption_bits)]


class _npiep_bits(ctypes.Structure):
    _fields_ = [
        ("prevents_gdt", _u64, 1),
        ("prevents_idt", _u64, 1),
        ("prevents_ldt", _u64, 1),
        ("prevents_tr", _u64, 1),
        ("reserved", _u64, 60),
    ]


class hv_x64_msr_npiep_config_contents(ctypes.Union):
    """Non-privileged instruction execution prevention: which table loads fault."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64), ("_bits", _npiep_bits)]


class _pending_exception_bits(ctypes.Structure):
    _fields_ = [
        ("event_pending", _u32, 1),
        ("event_type", _u32, 3),
        ("reserved0", _u32, 4),
        ("deliver_error_code", _u32, 1),
        ("reserved1", _u32, 7),
        ("vector", _u32, 16),
        ("error_code", _u32),
        ("exception_parameter", _u64),
    ]


class hv_x64_pending_exception_event(ctypes.Union):
    """HV_REGISTER_PENDING_EVENT0 holding an exception (16 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64 * 2), ("_bits", _pending_exception_bits)]


class _pending_virtualization_fault_bits(ctypes.Structure):
    _fields_ = [
        ("event_pending", _u32, 1),
        ("event_type", _u32, 3),
        ("reserved0", _u32, 4),
        ("reserved1", _u32, 8),
        ("parameter0", _u32, 16),
        ("code", _u32),
        ("parameter1", _u64),
    ]


class hv_x64_pending_virtualization_fault_event(ctypes.Union):
    """HV_REGISTER_PENDING_EVENT0 holding a virtualization fault (16 bytes)."""

    _anonymous_ = ("_bits",)
    _fields_ = [("as_uint64", _u64 * 2), ("_bits", _pending_virtualization_fault_bits)]


# --- the value union and the name/value pair --------------------------------------------


class hv_register_value(ctypes.Union):
    """Any register value (16 bytes, 8-aligned); the member depends on the name."""

    _fields_ = [
        ("reg128", hv_u128),
        ("reg64", _u64),
        ("reg32", _u32),
        ("reg16", _u16),
        ("reg8", _u8),
        ("fp", hv_x64_fp_register),
        ("fp_control_status", hv_x64_fp_control_status_register),
        ("xmm_control_status", hv_x64_xmm_control_status_register),
        ("segment", hv_x64_segment_register),
        ("table", hv_x64_table_register),
        ("explicit_suspend", hv_explicit_suspend_register),
        ("intercept_suspend", hv_intercept_suspend_register),
        ("dispatch_suspend", hv_dispatch_suspend_register),
        ("interrupt_state", hv_x64_interrupt_state_register),
        ("pending_interruption", hv_x64_pending_interruption_register),
        ("npiep_config", hv_x64_msr_npiep_config_contents),
        ("pending_exception_event", hv_x64_pending_exception_event),
        ("pending_virtualization_fault_event", hv_x64_pending_virtualization_fault_event),
    ]


class hv_register_assoc(ctypes.Structure):
    """Name/value pair (32 bytes), the HvSetVpRegisters input element.

    Kernel-only in the RFC (the value aligned to 16); the explicit reserved fields give
    the same bytes with natural alignment.
    """

    _fields_ = [
        ("name", _u32),  # hv_register_name
        ("reserved1", _u32),
        ("reserved2", _u64),
        ("value", hv_register_value),
    ]
