"""Size, alignment and every field offset of every abi struct/union.

Expected numbers are typed in from the reference tables (abi-rfc.md sections 3-5), never
derived from the code under test. Bitfields are given as (absolute bit, width) and are
checked by setting the field to all ones and reading the whole struct as an integer.
Each layout must list every field the class exposes, so nothing goes unchecked.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import pytest

from mshv.abi import message as m
from mshv.abi import tlfs as t
from mshv.abi import uapi as u

GP16: tuple[str, ...] = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")
GP16 += ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class Layout(NamedTuple):
    cls: Any
    size: int
    align: int
    offsets: dict[str, int]
    bits: dict[str, tuple[int, int]] = {}  # never mutated


def exposed_fields(cls: Any) -> set[str]:
    """Field names readable on ``cls``, with anonymous members flattened."""
    anonymous = set(getattr(cls, "_anonymous_", ()))
    names: set[str] = set()
    for field in cls._fields_:
        name, ftype = field[0], field[1]
        if name in anonymous:
            names |= exposed_fields(ftype)
        else:
            names.add(name)
    return names


# --- feature bit tables (reference 5.8 and 5.10), by bit position ----------------------


def named_bits(rows: list[tuple[int, str]], suffix: str = "") -> dict[str, tuple[int, int]]:
    bits: dict[str, tuple[int, int]] = {}
    for start, names in rows:
        for i, name in enumerate(names.split()):
            bits[name + suffix] = (start + i, 1)
    return bits


PROCESSOR_FEATURE_BITS = named_bits(
    [
        (0, "sse3 lahf_sahf ssse3 sse4_1 sse4_2 sse4a xop pop_cnt cmpxchg16b altmovcr8"),
        (10, "lzcnt mis_align_sse mmx_ext amd3dnow extended_amd3dnow page_1gb aes pclmulqdq"),
        (18, "pcid fma4 f16c rd_rand rd_wr_fs_gs smep enhanced_fast_string bmi1 bmi2"),
        (29, "movbe npiep1 dep_x87_fpu_save rd_seed adx intel_prefetch smap hle rtm"),
        (38, "rdtscp clflushopt clwb sha x87_pointers_saved invpcid ibrs stibp ibpb"),
        (47, "unrestricted_guest mdd fast_short_rep_mov l1dcache_flush rdcl_no ibrs_all"),
        (53, "skip_l1df ssb_no rsb_a_no virt_spec_ctrl rd_pid umip mbs_no mb_clear taa_no"),
        (62, "tsx_ctrl"),
        (64, "acount_mcount tsc_invariant cl_zero rdpru la57 mbec nested_virt psfd cet_ss"),
        (73, "cet_ibt vmx_exception_inject enqcmd umwait_tpause movdiri movdir64b cldemote"),
        (80, "serialize tsc_deadline_tmr tsc_adjust"),
    ],
    suffix="_support",
) | {
    # Bits 27/28 repeat HLE/RTM (marked deprecated); 83-85 have no _support suffix.
    "hle_support_deprecated": (27, 1),
    "rtm_support_deprecated": (28, 1),
    **named_bits([(83, "fzlrep_movsb fsrep_stosb fsrep_cmpsb")]),
}

XSAVE_FEATURE_BITS = named_bits([(0, "xsave xsaveopt avx")], suffix="_support")

SYNTHETIC_FEATURE_BITS = named_bits(
    [
        (0, "hypervisor_present hv1 access_vp_run_time_reg access_partition_reference_counter"),
        (4, "access_synic_regs access_synthetic_timer_regs access_intr_ctrl_regs"),
        (7, "access_hypercall_regs access_vp_index access_partition_reference_tsc"),
        (10, "access_guest_idle_reg access_frequency_regs"),
        (15, "enable_extended_gva_ranges_for_flush_virtual_address_list"),
        (18, "fast_hypercall_output"),
        (20, "start_virtual_processor"),
        (22, "direct_synthetic_timers"),
        (24, "extended_processor_masks tb_flush_hypercalls synthetic_cluster_ipi"),
        (27, "notify_long_spin_wait query_numa_distance signal_events retarget_device_interrupt"),
    ]
)

XFEM_BITS = named_bits(
    [
        (0, "legacy_x87 legacy_sse avx mpx_bndreg mpx_bndcsr avx_512_op_mask avx_512_zmmhi"),
        (7, "avx_512_zmm16_31"),
        (10, "pasid cet_u cet_s"),
        (17, "xtile_cfg xtile_data"),
    ]
)


def reserved(*spans: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Reserved runs, named reserved_<first>_<last> by the union builder."""
    return {f"reserved_{lo}_{hi}": (lo, hi - lo + 1) for lo, hi in spans}


def test_feature_tables_have_expected_sizes() -> None:
    assert len(PROCESSOR_FEATURE_BITS) == 85  # bits 0-62 and 64-85
    assert len(SYNTHETIC_FEATURE_BITS) == 23
    assert len(XFEM_BITS) == 13


@pytest.mark.parametrize(
    ("bits", "table"),
    [
        (t.hv_partition_processor_feature, PROCESSOR_FEATURE_BITS),
        (t.hv_partition_processor_xsave_feature, XSAVE_FEATURE_BITS),
        (t.hv_partition_synthetic_processor_feature, SYNTHETIC_FEATURE_BITS),
        (t.hv_x64_xsave_xfem_bit, XFEM_BITS),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_feature_bit_enums(bits: Any, table: dict[str, tuple[int, int]]) -> None:
    assert {member.name: member.value for member in bits} == {
        name: low for name, (low, _) in table.items()
    }


def suspend(cls: Any) -> Layout:
    return Layout(cls, 8, 8, {"as_uint64": 0}, {"suspended": (0, 1), "reserved": (1, 63)})


LAYOUTS = [
    # --- register values (5.4) ---
    Layout(t.hv_u128, 16, 8, {"high_part": 0, "low_part": 8}),
    Layout(
        t.hv_x64_segment_register,
        16,
        8,
        {"base": 0, "limit": 8, "selector": 12, "attributes": 14},
        {
            "segment_type": (112, 4),
            "non_system_segment": (116, 1),
            "descriptor_privilege_level": (117, 2),
            "present": (119, 1),
            "reserved": (120, 4),
            "available": (124, 1),
            "long": (125, 1),
            "default": (126, 1),
            "granularity": (127, 1),
        },
    ),
    Layout(t.hv_x64_table_register, 16, 8, {"pad": 0, "limit": 6, "base": 8}),
    Layout(
        t.hv_x64_fp_register,
        16,
        8,
        {"mantissa": 0},
        {"biased_exponent": (64, 15), "sign": (79, 1), "reserved": (80, 48)},
    ),
    Layout(
        t.hv_x64_fp_control_status_register,
        16,
        8,
        {
            "as_uint128": 0,
            "fp_control": 0,
            "fp_status": 2,
            "fp_tag": 4,
            "reserved": 5,
            "last_fp_op": 6,
            "last_fp_rip": 8,
            "last_fp_eip": 8,
            "last_fp_cs": 12,
        },
    ),
    Layout(
        t.hv_x64_xmm_control_status_register,
        16,
        8,
        {
            "as_uint128": 0,
            "last_fp_rdp": 0,
            "last_fp_dp": 0,
            "last_fp_ds": 4,
            "xmm_status_control": 8,
            "xmm_status_control_mask": 12,
        },
    ),
    suspend(t.hv_explicit_suspend_register),
    suspend(t.hv_intercept_suspend_register),
    suspend(t.hv_dispatch_suspend_register),
    Layout(
        t.hv_x64_interrupt_state_register,
        8,
        8,
        {"as_uint64": 0},
        {"interrupt_shadow": (0, 1), "nmi_masked": (1, 1), "reserved": (2, 62)},
    ),
    Layout(
        t.hv_x64_pending_interruption_register,
        8,
        8,
        {"as_uint64": 0, "error_code": 4},
        {
            "interruption_pending": (0, 1),
            "interruption_type": (1, 3),
            "deliver_error_code": (4, 1),
            "instruction_length": (5, 4),
            "nested_event": (9, 1),
            "reserved": (10, 6),
            "interruption_vector": (16, 16),
        },
    ),
    Layout(
        t.hv_x64_msr_npiep_config_contents,
        8,
        8,
        {"as_uint64": 0},
        {
            "prevents_gdt": (0, 1),
            "prevents_idt": (1, 1),
            "prevents_ldt": (2, 1),
            "prevents_tr": (3, 1),
            "reserved": (4, 60),
        },
    ),
    Layout(
        t.hv_x64_pending_exception_event,
        16,
        8,
        {"as_uint64": 0, "error_code": 4, "exception_parameter": 8},
        {
            "event_pending": (0, 1),
            "event_type": (1, 3),
            "reserved0": (4, 4),
            "deliver_error_code": (8, 1),
            "reserved1": (9, 7),
            "vector": (16, 16),
        },
    ),
    Layout(
        t.hv_x64_pending_virtualization_fault_event,
        16,
        8,
        {"as_uint64": 0, "code": 4, "parameter1": 8},
        {
            "event_pending": (0, 1),
            "event_type": (1, 3),
            "reserved0": (4, 4),
            "reserved1": (8, 8),
            "parameter0": (16, 16),
        },
    ),
    Layout(
        t.hv_register_value,
        16,
        8,
        dict.fromkeys(
            [
                "reg128",
                "reg64",
                "reg32",
                "reg16",
                "reg8",
                "fp",
                "fp_control_status",
                "xmm_control_status",
                "segment",
                "table",
                "explicit_suspend",
                "intercept_suspend",
                "dispatch_suspend",
                "interrupt_state",
                "pending_interruption",
                "npiep_config",
                "pending_exception_event",
                "pending_virtualization_fault_event",
            ],
            0,
        ),
    ),
    Layout(t.hv_register_assoc, 32, 8, {"name": 0, "reserved1": 4, "reserved2": 8, "value": 16}),
    # --- feature unions (5.8, 5.10) ---
    Layout(
        t.hv_partition_processor_features,
        16,
        8,
        {"as_uint64": 0},
        PROCESSOR_FEATURE_BITS | reserved((63, 63), (86, 127)),
    ),
    Layout(
        t.hv_partition_processor_xsave_features,
        8,
        8,
        {"as_uint64": 0},
        XSAVE_FEATURE_BITS | reserved((3, 63)),
    ),
    Layout(
        t.hv_partition_synthetic_processor_features,
        8,
        8,
        {"as_uint64": 0},
        SYNTHETIC_FEATURE_BITS
        | reserved((12, 14), (16, 17), (19, 19), (21, 21), (23, 23), (31, 63)),
    ),
    Layout(
        t.hv_x64_xsave_xfem_register,
        8,
        8,
        {"as_uint64": 0, "low_uint32": 0, "high_uint32": 4},
        XFEM_BITS | reserved((8, 9), (13, 16), (19, 63)),
    ),
    # --- structs embedded in ioctl arguments ---
    Layout(
        u.hv_partition_creation_properties,
        24,
        8,
        {"disabled_processor_features": 0, "disabled_processor_xsave_features": 16},
    ),
    Layout(
        u.hv_intercept_parameters,
        8,
        8,
        dict.fromkeys(
            ["as_uint64", "io_port", "cpuid_index", "apic_write_mask", "exception_vector"], 0
        ),
    ),
    Layout(
        u.hv_interrupt_control,
        8,
        8,
        {"as_uint64": 0, "interrupt_type": 0},
        {"level_triggered": (32, 1), "logical_dest_mode": (33, 1), "reserved": (34, 30)},
    ),
    Layout(u.hv_vp_state_data_xsave, 16, 8, {"flags": 0, "states": 8}),
    Layout(
        u.hv_local_interrupt_controller_state,
        176,
        4,
        {
            "apic_id": 0,
            "apic_version": 4,
            "apic_ldr": 8,
            "apic_dfr": 12,
            "apic_spurious": 16,
            "apic_isr": 20,
            "apic_tmr": 52,
            "apic_irr": 84,
            "apic_esr": 116,
            "apic_icr_high": 120,
            "apic_icr_low": 124,
            "apic_lvt_timer": 128,
            "apic_lvt_thermal": 132,
            "apic_lvt_perfmon": 136,
            "apic_lvt_lint0": 140,
            "apic_lvt_lint1": 144,
            "apic_lvt_error": 148,
            "apic_lvt_cmci": 152,
            "apic_error_status": 156,
            "apic_initial_count": 160,
            "apic_counter_value": 164,
            "apic_divide_configuration": 168,
            "apic_remote_read": 172,
        },
    ),
    Layout(
        u.hv_vp_register_page,
        416,
        8,
        {
            "version": 0,
            "isvalid": 2,
            "rsvdz": 3,
            "dirty": 4,
            "gp_registers": 8,
            **{name: 8 + 8 * i for i, name in enumerate(GP16)},
            "rip": 136,
            "rflags": 144,
            "xmm_registers": 152,
            **{f"xmm{i}": 152 + 16 * i for i in range(6)},
            "segment_registers": 248,
            **{name: 248 + 16 * i for i, name in enumerate(("es", "cs", "ss", "ds", "fs", "gs"))},
            "cr0": 344,
            "cr3": 352,
            "cr4": 360,
            "cr8": 368,
            "efer": 376,
            "dr7": 384,
            "pending_interruption": 392,
            "interrupt_state": 400,
            "instruction_emulation_hints": 408,
        },
    ),
    # --- linux/mshv.h (section 4) ---
    Layout(
        u.mshv_create_partition,
        40,
        8,
        {"flags": 0, "partition_creation_properties": 8, "synthetic_processor_features": 32},
    ),
    Layout(
        u.mshv_user_mem_region,
        32,
        8,
        {"size": 0, "guest_pfn": 8, "userspace_addr": 16, "flags": 24},
    ),
    Layout(u.mshv_create_vp, 4, 4, {"vp_index": 0}),
    Layout(u.mshv_vp_registers, 24, 8, {"count": 0, "names": 8, "values": 16}),
    Layout(
        u.mshv_install_intercept,
        16,
        8,
        {"access_type_mask": 0, "intercept_type": 4, "intercept_parameter": 8},
    ),
    Layout(u.mshv_assert_interrupt, 24, 8, {"control": 0, "dest_addr": 8, "vector": 16}),
    Layout(u.mshv_vp_state, 40, 8, {"type": 0, "xsave": 8, "buf_size": 24, "buf": 32}),
    Layout(u.mshv_partition_property, 16, 8, {"property_code": 0, "property_value": 8}),
    # --- messages (5.1, 5.3) ---
    Layout(m.hv_message_flags, 1, 1, {"asu8": 0}, {"msg_pending": (0, 1), "reserved": (1, 7)}),
    Layout(m.hv_port_id, 4, 4, {"asu32": 0}, {"id": (0, 24), "reserved": (24, 8)}),
    Layout(
        m.hv_message_header,
        16,
        8,
        {
            "message_type": 0,
            "payload_size": 4,
            "message_flags": 5,
            "reserved": 6,
            "sender": 8,
            "port": 8,
        },
    ),
    Layout(m.hv_message, 256, 8, {"header": 0, "u": 16}),
    Layout(
        m.hv_x64_vp_execution_state,
        2,
        2,
        {"as_uint16": 0},
        {
            "cpl": (0, 2),
            "cr0_pe": (2, 1),
            "cr0_am": (3, 1),
            "efer_lma": (4, 1),
            "debug_active": (5, 1),
            "interruption_pending": (6, 1),
            "vtl": (7, 4),
            "enclave_mode": (11, 1),
            "interrupt_shadow": (12, 1),
            "virtualization_fault_active": (13, 1),
            "reserved": (14, 2),
        },
    ),
    Layout(
        m.hv_x64_intercept_message_header,
        40,
        8,
        {
            "vp_index": 0,
            "intercept_access_type": 5,
            "execution_state": 6,
            "cs_segment": 8,
            "rip": 24,
            "rflags": 32,
        },
        {"instruction_length": (32, 4), "cr8": (36, 4)},
    ),
    Layout(
        m.hv_x64_io_port_access_info,
        1,
        1,
        {"as_uint8": 0},
        {"access_size": (0, 3), "string_op": (3, 1), "rep_prefix": (4, 1), "reserved": (5, 3)},
    ),
    Layout(
        m.hv_x64_io_port_intercept_message,
        128,
        8,
        {
            "header": 0,
            "port_number": 40,
            "access_info": 42,
            "instruction_byte_count": 43,
            "reserved": 44,
            "rax": 48,
            "instruction_bytes": 56,
            "ds_segment": 72,
            "es_segment": 88,
            "rcx": 104,
            "rsi": 112,
            "rdi": 120,
        },
    ),
    Layout(
        m.hv_x64_memory_access_info,
        1,
        1,
        {"as_uint8": 0},
        {
            "gva_valid": (0, 1),
            "gva_gpa_valid": (1, 1),
            "hypercall_output_pending": (2, 1),
            "tlb_locked_no_overlay": (3, 1),
            "reserved": (4, 4),
        },
    ),
    Layout(
        m.hv_x64_memory_intercept_message,
        80,
        8,
        {
            "header": 0,
            "cache_type": 40,
            "instruction_byte_count": 44,
            "memory_access_info": 45,
            "tpr_priority": 46,
            "reserved1": 47,
            "guest_virtual_address": 48,
            "guest_physical_address": 56,
            "instruction_bytes": 64,
        },
    ),
    Layout(
        m.hv_x64_msr_intercept_message,
        64,
        8,
        {"header": 0, "msr_number": 40, "reserved": 44, "rdx": 48, "rax": 56},
    ),
    Layout(
        m.hv_x64_cpuid_intercept_message,
        104,
        8,
        {
            "header": 0,
            "rax": 40,
            "rcx": 48,
            "rdx": 56,
            "rbx": 64,
            "default_result_rax": 72,
            "default_result_rcx": 80,
            "default_result_rdx": 88,
            "default_result_rbx": 96,
        },
    ),
    Layout(
        m.hv_x64_exception_info,
        1,
        1,
        {"as_uint8": 0},
        {"error_code_valid": (0, 1), "software_exception": (1, 1), "reserved": (2, 6)},
    ),
    Layout(
        m.hv_x64_exception_intercept_message,
        240,
        8,
        {
            "header": 0,
            "exception_vector": 40,
            "exception_info": 42,
            "instruction_byte_count": 43,
            "error_code": 44,
            "exception_parameter": 48,
            "reserved": 56,
            "instruction_bytes": 64,
            "ds_segment": 80,
            "ss_segment": 96,
            **{name: 112 + 8 * i for i, name in enumerate(GP16)},
        },
    ),
    Layout(
        m.hv_x64_register_access_info,
        16,
        8,
        dict.fromkeys(
            ["source_value", "destination_register", "source_address", "destination_address"], 0
        ),
    ),
    Layout(
        m.hv_x64_register_intercept_message,
        64,
        8,
        {"header": 0, "reserved8": 41, "reserved16": 42, "register_name": 44, "access_info": 48},
        {"is_memory_op": (320, 1), "reserved": (321, 7)},
    ),
    Layout(
        m.hv_x64_hypercall_intercept_message,
        200,
        8,
        {
            "header": 0,
            "rax": 40,
            "rbx": 48,
            "rcx": 56,
            "rdx": 64,
            "r8": 72,
            "rsi": 80,
            "rdi": 88,
            "xmmregisters": 96,
        },
        {"isolated": (192 * 8, 1), "reserved": (192 * 8 + 1, 31)},
    ),
    Layout(m.hv_x64_invalid_vp_register_message, 8, 4, {"vp_index": 0, "reserved": 4}),
    Layout(m.hv_x64_unrecoverable_exception_message, 40, 8, {"header": 0}),
    Layout(
        m.hv_x64_unsupported_feature_message,
        16,
        8,
        {"vp_index": 0, "feature_code": 4, "feature_parameter": 8},
    ),
    Layout(m.hv_x64_halt_message, 40, 8, {"header": 0}),
    Layout(
        m.hv_x64_interruption_deliverable_message,
        48,
        8,
        {"header": 0, "deliverable_type": 40, "rsvd": 44},
    ),
    Layout(
        m.hv_x64_sipi_intercept_message,
        48,
        8,
        {"header": 0, "target_vp_index": 40, "interrupt_vector": 44},
    ),
    Layout(m.hv_x64_apic_eoi_message, 8, 4, {"vp_index": 0, "interrupt_vector": 4}),
]


def _id(layout: Layout) -> str:
    return str(layout.cls.__name__)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_id)
def test_size_and_alignment(layout: Layout) -> None:
    assert ctypes.sizeof(layout.cls) == layout.size
    assert ctypes.alignment(layout.cls) == layout.align


@pytest.mark.parametrize("layout", LAYOUTS, ids=_id)
def test_every_field_is_listed(layout: Layout) -> None:
    assert exposed_fields(layout.cls) == set(layout.offsets) | set(layout.bits)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_id)
def test_field_offsets(layout: Layout) -> None:
    actual = {name: getattr(layout.cls, name).offset for name in layout.offsets}
    assert actual == layout.offsets


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay.bits], ids=_id)
def test_bitfield_positions(layout: Layout) -> None:
    for name, (low, width) in layout.bits.items():
        obj = layout.cls()
        ones = (1 << width) - 1
        setattr(obj, name, ones)
        assert int.from_bytes(bytes(obj), "little") == ones << low, name
        assert getattr(obj, name) == ones, name


def test_every_abi_struct_has_a_layout() -> None:
    """New public structs must be added to LAYOUTS."""
    covered = {lay.cls for lay in LAYOUTS}
    public = {
        obj
        for module in (t, u, m)
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and isinstance(obj, type)
        and issubclass(obj, ctypes.Structure | ctypes.Union)
    }
    assert public - covered == set()


# --- nested pieces reached through a parent -------------------------------------------


def test_vp_state_buf_members_share_the_pointer() -> None:
    state = u.mshv_vp_state()
    buf_type = type(state.buf)
    assert ctypes.sizeof(buf_type) == 8
    assert buf_type.lapic.offset == 0
    assert buf_type.bytes.offset == 0
    state.buf.bytes = 0x7F0000001000
    assert state.buf.lapic == 0x7F0000001000
    assert int.from_bytes(bytes(state)[32:40], "little") == 0x7F0000001000


def test_vp_state_xsave_absolute_offsets() -> None:
    state = u.mshv_vp_state()
    state.xsave.flags = 0x1111
    state.xsave.states.as_uint64 = 0x2222
    raw = bytes(state)
    assert int.from_bytes(raw[8:16], "little") == 0x1111
    assert int.from_bytes(raw[16:24], "little") == 0x2222


def test_message_payload_is_thirty_qwords_at_16() -> None:
    msg = m.hv_message()
    assert len(msg.u.payload) == 30
    msg.u.payload[0] = 0x0102030405060708
    msg.u.payload[29] = 0xFFFFFFFFFFFFFFFF
    raw = bytes(msg)
    assert raw[16:24] == bytes.fromhex("0807060504030201")
    assert raw[248:256] == b"\xff" * 8


def test_every_payload_fits_in_the_message() -> None:
    for cls in m.PAYLOAD_TYPES.values():
        assert ctypes.sizeof(cls) <= 240
    assert ctypes.sizeof(m.hv_x64_hypercall_intercept_message) <= 240
    assert ctypes.sizeof(m.hv_x64_register_intercept_message) <= 240


def test_payload_view_in_place() -> None:
    msg = m.hv_message()
    io = m.hv_x64_io_port_intercept_message.from_buffer(msg, 16)
    io.header.vp_index = 3
    io.port_number = 0x3F8
    assert msg.u.payload[0] & 0xFFFFFFFF == 3
    assert bytes(msg)[16 + 40 : 16 + 42] == (0x3F8).to_bytes(2, "little")


def test_register_page_offsets_table() -> None:
    expected = {
        "version": 0,
        "isvalid": 2,
        "rsvdz": 3,
        "dirty": 4,
        "gp_registers": 8,
        "rax": 8,
        "rcx": 16,
        "r15": 128,
        "rip": 136,
        "rflags": 144,
        "xmm_registers": 152,
        "xmm0": 152,
        "xmm5": 232,
        "segment_registers": 248,
        "es": 248,
        "cs": 264,
        "gs": 328,
        "cr0": 344,
        "cr3": 352,
        "cr4": 360,
        "cr8": 368,
        "efer": 376,
        "dr7": 384,
        "pending_interruption": 392,
        "interrupt_state": 400,
        "instruction_emulation_hints": 408,
    }
    offsets = u.HV_VP_REGISTER_PAGE_OFFSETS
    for name, offset in expected.items():
        assert offsets[name] == offset, name
    assert len(offsets) == 4 + 1 + 16 + 2 + 1 + 6 + 1 + 6 + 6 + 3


def test_register_page_names_alias_arrays() -> None:
    page = u.hv_vp_register_page()
    page.rbx = 0x1234
    page.xmm1.low_part = 5
    page.cs.selector = 0x10
    assert page.gp_registers[3] == 0x1234
    assert page.xmm_registers[1].low_part == 5
    assert page.segment_registers[1].selector == 0x10


def test_segment_attributes_alias_bits() -> None:
    seg = t.hv_x64_segment_register()
    seg.attributes = 0xA09B  # 64-bit code: G, L, P, DPL 0, S, type 0xB
    assert (seg.segment_type, seg.non_system_segment, seg.present) == (0xB, 1, 1)
    assert (seg.long, seg.default, seg.granularity) == (1, 0, 1)
